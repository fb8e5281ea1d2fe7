package main

// gotype.go: the Go form of a Python type hint. Pure: it knows nothing of
// Python processes or files, so that its tests need no interpreter.

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/pypool/pypool"
)

// goType is a hint's Go form.
type goType struct {
	expr string // the Go type expression
	// note says why expr is any where the hint has no exact Go form, or
	// what to know about it; "" when there is nothing to say.
	note string
	// nilable is true for a Go type whose nil crosses as None (slice, map,
	// interface, pointer): an Optional of it needs no pointer.
	nilable bool
}

// namedType is a Go struct generated for a Python class (TypedDict,
// dataclass, NamedTuple).
type namedType struct {
	goName string
	hint   pypool.Hint // with its fields
}

// mapper maps hints to Go types, collecting the named types they use and
// the errors of those it cannot write.
type mapper struct {
	named map[string]*namedType // by Go name
	errs  []string
}

func newMapper() *mapper {
	return &mapper{named: map[string]*namedType{}}
}

// noHint is the Go form of a missing hint.
var noHint = goType{expr: "any", note: "no type hint", nilable: true}

// goType returns the Go form of h (nil: no hint).
func (m *mapper) goType(h *pypool.Hint) goType {
	if h == nil {
		return noHint
	}
	switch h.Kind {
	case pypool.HintAny:
		return goType{expr: "any", nilable: true}
	case pypool.HintNone:
		return goType{expr: "any", note: "always None", nilable: true}
	case pypool.HintBool:
		return goType{expr: "bool"}
	case pypool.HintInt:
		return goType{expr: "int64"}
	case pypool.HintFloat:
		return goType{expr: "float64"}
	case pypool.HintStr:
		return goType{expr: "string"}
	case pypool.HintBytes:
		return goType{expr: "[]byte", nilable: true}
	case pypool.HintDatetime:
		return goType{expr: "time.Time"}
	case pypool.HintNDArray:
		return goType{expr: "pypool.Array"}
	case pypool.HintList:
		if len(h.Args) != 1 {
			return goType{expr: "[]any", nilable: true}
		}
		item := m.goType(&h.Args[0])
		return goType{expr: "[]" + item.expr, note: item.note, nilable: true}
	case pypool.HintDict:
		if len(h.Args) != 2 {
			return goType{expr: "map[string]any", note: h.String() + ": a dict with keys of any type crosses as map[string]any only if they are strings", nilable: true}
		}
		key := m.goType(&h.Args[0])
		switch key.expr {
		case "string", "int64", "float64", "bool":
		default:
			return goType{expr: "any", note: h.String() + ": no Go map key for " + h.Args[0].String(), nilable: true}
		}
		value := m.goType(&h.Args[1])
		return goType{expr: "map[" + key.expr + "]" + value.expr, note: value.note, nilable: true}
	case pypool.HintTuple:
		return m.tuple(h)
	case pypool.HintOptional:
		if len(h.Args) != 1 {
			return goType{expr: "any", note: h.String(), nilable: true}
		}
		inner := m.goType(&h.Args[0])
		if inner.nilable {
			return goType{expr: inner.expr, note: joinNotes(inner.note, "nil for None"), nilable: true}
		}
		return goType{expr: "*" + inner.expr, note: inner.note, nilable: true}
	case pypool.HintUnion:
		return goType{expr: "any", note: h.String() + ": a union has no Go form", nilable: true}
	case pypool.HintLiteral:
		return m.literal(h)
	case pypool.HintIterator:
		return goType{expr: "any", note: h.String() + ": an iterator crosses only as a generator's result (a stream)", nilable: true}
	case pypool.HintTypedDict, pypool.HintDataclass, pypool.HintNamedTuple:
		return goType{expr: m.class(h)}
	case pypool.HintUnknown:
		return goType{expr: "any", note: h.Repr + ": no Go form", nilable: true}
	}
	return goType{expr: "any", note: h.String() + ": no Go form", nilable: true}
}

// tuple: a tuple[X, ...] or a tuple of items of one type is a []X; a
// tuple of items of several types is a []any.
func (m *mapper) tuple(h *pypool.Hint) goType {
	if len(h.Args) == 0 {
		return goType{expr: "[]any", nilable: true}
	}
	if len(h.Args) == 2 && h.Args[1].Kind == pypool.HintEllipsis {
		item := m.goType(&h.Args[0])
		return goType{expr: "[]" + item.expr, note: item.note, nilable: true}
	}
	first := m.goType(&h.Args[0])
	for i := 1; i < len(h.Args); i++ {
		if m.goType(&h.Args[i]).expr != first.expr {
			return goType{expr: "[]any", note: h.String() + ": items of several types", nilable: true}
		}
	}
	return goType{expr: "[]" + first.expr, note: joinNotes(first.note, fmt.Sprintf("%d items", len(h.Args))), nilable: true}
}

// literal: a Literal of strings is a string, of ints an int64, of bools
// a bool, of floats a float64.
func (m *mapper) literal(h *pypool.Hint) goType {
	expr := ""
	for _, v := range h.Values {
		var e string
		switch v.(type) {
		case string:
			e = "string"
		case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
			e = "int64"
		case bool:
			e = "bool"
		case float32, float64:
			e = "float64"
		default:
			e = "any"
		}
		if expr != "" && e != expr {
			e = "any"
		}
		expr = e
	}
	if len(h.Values) == 1 && h.Values[0] == nil {
		return goType{expr: "any", note: h.String() + ": None is its only value", nilable: true}
	}
	if expr == "" || expr == "any" {
		return goType{expr: "any", note: h.String() + ": values of several types", nilable: true}
	}
	return goType{expr: expr, note: "one of " + strings.TrimSuffix(strings.TrimPrefix(h.String(), "Literal["), "]")}
}

// class registers the Go struct of a TypedDict, dataclass or NamedTuple and
// returns its name.
func (m *mapper) class(h *pypool.Hint) string {
	name := exported(h.Name)
	if t, ok := m.named[name]; ok {
		if t.hint.Module != h.Module || t.hint.Name != h.Name || t.hint.Kind != h.Kind {
			m.errs = append(m.errs, fmt.Sprintf("two classes give the Go type %s: %s.%s and %s.%s", name, t.hint.Module, t.hint.Name, h.Module, h.Name))
		} else if t.hint.Fields != nil && h.Fields != nil && fieldsText(t.hint.Fields) != fieldsText(h.Fields) {
			// Two classes of one name in one module (nested in two
			// classes, made by one factory): one struct would be wrong
			// for the other.
			m.errs = append(m.errs, fmt.Sprintf("two classes named %s.%s, of other fields (%s and %s), would both be the Go type %s: "+
				"give them names of their own", h.Module, h.Name, fieldsText(t.hint.Fields), fieldsText(h.Fields), name))
		}
		if t.hint.Fields == nil && h.Fields != nil {
			t.hint = *h
			m.fieldTypes(h)
		}
		return name
	}
	m.named[name] = &namedType{goName: name, hint: *h}
	m.fieldTypes(h)
	return name
}

// fieldsText is a class's fields as Python would write them: "x: int, y: str".
func fieldsText(fields []pypool.HintField) string {
	var parts []string
	for _, f := range fields {
		part := f.Name
		if f.Hint != nil {
			part += ": " + f.Hint.String()
		}
		if !f.Required {
			part += " (may be left out)"
		}
		parts = append(parts, part)
	}
	return oneLine(strings.Join(parts, ", "))
}

// fieldTypes maps a class's fields, registering the classes they use.
func (m *mapper) fieldTypes(h *pypool.Hint) {
	for _, f := range h.Fields {
		if !taggable(f.Name) {
			m.errs = append(m.errs, fmt.Sprintf("Python class %s.%s: key %s cannot be the msgpack tag of a Go struct's field "+
				"(a tag cannot be \"\" or \"-\", hold a , : ' \" ` \\, a control character or a bidi control, or start or end with a space): rename the key",
				h.Module, h.Name, strconv.Quote(f.Name)))
			continue
		}
		m.goType(f.Hint)
	}
}

// taggable says whether a msgpack struct tag names the key: msgpack reads
// a tag up to its first ',' (options follow), as name:value at a ':', a
// quoted name at a single quote, trims its spaces, and leaves out a field tagged
// "-" (a field tagged "" takes its Go name); a quote, a backslash, a
// backtick or a control character breaks the tag itself.
func taggable(key string) bool {
	if key == "" || key == "-" || key != strings.TrimSpace(key) || strings.ContainsAny(key, ",:'\"`\\") {
		return false
	}
	for _, r := range key {
		// A control character (a raw string drops a CR), a byte order
		// mark (Go refuses it in a source file), a bidi control (the tag
		// would read otherwise than it is).
		if unicode.IsControl(r) || r == '\ufeff' || unicode.Is(unicode.Bidi_Control, r) {
			return false
		}
	}
	return true
}

// namedTypes returns the registered classes sorted by Go name.
func (m *mapper) namedTypes() []*namedType {
	out := make([]*namedType, 0, len(m.named))
	for _, t := range m.named {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].goName < out[j].goName })
	return out
}

// isClass says whether h is a class's hint (a Go struct).
func isClass(h *pypool.Hint) bool {
	return h != nil && (h.Kind == pypool.HintTypedDict || h.Kind == pypool.HintDataclass || h.Kind == pypool.HintNamedTuple)
}

// holds says whether the struct named from holds, by value (a field of
// its type, not in a slice, map or pointer), the struct named to, itself
// or through others: a field that closes such a circle must be a pointer,
// or Go refuses the type.
func (m *mapper) holds(from, to string, seen map[string]bool) bool {
	t, ok := m.named[from]
	if !ok || seen[from] {
		return false
	}
	seen[from] = true
	for _, f := range t.hint.Fields {
		if f.Required && isClass(f.Hint) {
			name := exported(f.Hint.Name)
			if name == to || m.holds(name, to, seen) {
				return true
			}
		}
	}
	return false
}

// fieldType is a class field's Go form: a key a TypedDict may leave out is
// a pointer (or a nilable type) with omitempty, so that Go leaves it out
// too when it is nil.
func (m *mapper) fieldType(class string, f pypool.HintField) (goType, string) {
	t := m.goType(f.Hint)
	if f.Required {
		if isClass(f.Hint) && m.holds(t.expr, class, map[string]bool{}) {
			t.note = joinNotes(t.note, "a pointer, as "+t.expr+" holds "+class+" (a Go struct cannot hold itself)")
			t.expr = "*" + t.expr
			t.nilable = true
		}
		return t, ""
	}
	if !t.nilable {
		t.expr = "*" + t.expr
		t.nilable = true
	}
	return t, ",omitempty"
}

func joinNotes(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
