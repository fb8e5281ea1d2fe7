package main

// names.go: Python names as Go identifiers.

import (
	"go/token"
	"strings"
	"unicode"
)

// initialisms are written in capitals inside Go names, as golint wants
// (sku_id -> SkuID).
var initialisms = map[string]bool{
	"api": true, "ascii": true, "cpu": true, "csv": true, "dns": true, "html": true, "http": true, "https": true,
	"id": true, "ip": true, "json": true, "sql": true, "tcp": true, "ttl": true, "udp": true, "ui": true,
	"uid": true, "uri": true, "url": true, "utf8": true, "uuid": true, "xml": true,
}

// exported turns a Python name (snake_case, or already CamelCase) into an
// exported Go identifier: duplicate_text -> DuplicateText, user_id -> UserID.
func exported(name string) string {
	var b strings.Builder
	for _, part := range strings.Split(name, "_") {
		if part == "" {
			continue
		}
		if initialisms[strings.ToLower(part)] {
			b.WriteString(strings.ToUpper(part))
			continue
		}
		r := []rune(part)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	s := b.String()
	if s == "" || !unicode.IsLetter([]rune(s)[0]) {
		s = "X" + s
	}
	return s
}

// reserved are the names a generated function's parameters may not take:
// the generated code's own (its parameters and locals, the packages it
// uses) and Go's predeclared identifiers that it writes.
var reserved = map[string]bool{
	"ctx": true, "c": true, "opts": true, "args": true, "kw": true, "err": true,
	"context": true, "pypool": true, "time": true, "iter": true,
	"any": true, "bool": true, "byte": true, "error": true, "float64": true, "int64": true, "string": true,
	"append": true, "len": true, "nil": true, "true": true, "false": true, "iota": true,
}

// local turns a Python parameter name into a Go parameter name:
// lowerCamelCase, with a trailing underscore when it would be a keyword or
// a name the generated code uses.
func local(name string) string {
	s := exported(name)
	r := []rune(s)
	// Lower the leading initialism or letter: ID -> id, URLPath -> urlPath.
	n := 0
	for n < len(r) && unicode.IsUpper(r[n]) {
		n++
	}
	switch {
	case n == len(r):
		n = len(r)
	case n > 1:
		n-- // the last capital starts the next word
	}
	for i := 0; i < n; i++ {
		r[i] = unicode.ToLower(r[i])
	}
	s = string(r)
	if token.IsKeyword(s) || reserved[s] {
		s += "_"
	}
	return s
}
