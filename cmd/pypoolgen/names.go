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
// A name that would not start with an upper-case letter (a digit, a letter
// without case: 名前) gets an X in front, so that it is exported: a struct
// field msgpack would not see, or a function the package's users could not
// call, would be silently wrong.
func exported(name string) string {
	s := camel(name)
	if s == "" || !unicode.IsUpper([]rune(s)[0]) {
		s = "X" + s
	}
	return s
}

// camel joins the words of name, each with a capital: the words are
// separated by '_' and by any character Go does not allow in a name (a
// combining mark, a middle dot, which Python allows; a '-' or a space, in
// an __all__ name or a TypedDict key).
func camel(name string) string {
	var b strings.Builder
	parts := strings.FieldsFunc(name, func(r rune) bool { return r == '_' || !(unicode.IsLetter(r) || unicode.IsDigit(r)) })
	for _, part := range parts {
		if initialisms[strings.ToLower(part)] {
			b.WriteString(strings.ToUpper(part))
			continue
		}
		r := []rune(part)
		r[0] = unicode.ToUpper(r[0])
		b.WriteString(string(r))
	}
	return b.String()
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
	s := camel(name)
	if s == "" || !unicode.IsLetter([]rune(s)[0]) {
		s = "X" + s
	}
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
