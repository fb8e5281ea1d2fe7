package main

import (
	"strings"
	"testing"

	"github.com/pypool/pypool"
)

func h(kind pypool.HintKind, args ...pypool.Hint) pypool.Hint {
	return pypool.Hint{Kind: kind, Args: args}
}

// TestGoTypes: every hint kind's Go form, without Python.
func TestGoTypes(t *testing.T) {
	str, integer, float := h(pypool.HintStr), h(pypool.HintInt), h(pypool.HintFloat)
	item := pypool.Hint{Kind: pypool.HintTypedDict, Name: "Item", Module: "m", Fields: []pypool.HintField{{Name: "sku", Hint: &str, Required: true}}}
	cases := []struct {
		hint     *pypool.Hint
		want     string
		wantNote bool
	}{
		{nil, "any", true},
		{&pypool.Hint{Kind: pypool.HintAny}, "any", false},
		{&str, "string", false},
		{&integer, "int64", false},
		{&float, "float64", false},
		{&pypool.Hint{Kind: pypool.HintBool}, "bool", false},
		{&pypool.Hint{Kind: pypool.HintBytes}, "[]byte", false},
		{&pypool.Hint{Kind: pypool.HintDatetime}, "time.Time", false},
		{&pypool.Hint{Kind: pypool.HintNDArray}, "pypool.Array", false},
		{ptr(h(pypool.HintList, str)), "[]string", false},
		{ptr(h(pypool.HintList)), "[]any", false},
		{ptr(h(pypool.HintDict, str, h(pypool.HintList, integer))), "map[string][]int64", false},
		{ptr(h(pypool.HintDict, integer, str)), "map[int64]string", false},
		{ptr(h(pypool.HintDict, h(pypool.HintTuple, integer, integer), str)), "any", true},
		{ptr(h(pypool.HintTuple, integer, h(pypool.HintEllipsis))), "[]int64", false},
		{ptr(h(pypool.HintTuple, integer, integer)), "[]int64", true},
		{ptr(h(pypool.HintTuple, integer, str)), "[]any", true},
		{ptr(h(pypool.HintOptional, integer)), "*int64", false},
		{ptr(h(pypool.HintOptional, h(pypool.HintList, str))), "[]string", true},
		{ptr(h(pypool.HintOptional, item)), "*Item", false},
		{ptr(h(pypool.HintUnion, integer, str)), "any", true},
		{&pypool.Hint{Kind: pypool.HintLiteral, Values: []any{"a", "b"}}, "string", true},
		{&pypool.Hint{Kind: pypool.HintLiteral, Values: []any{int8(1), uint16(300)}}, "int64", true},
		{&pypool.Hint{Kind: pypool.HintLiteral, Values: []any{"a", int8(1)}}, "any", true},
		{ptr(h(pypool.HintIterator, integer)), "any", true}, // an iterator anywhere but a result
		{&item, "Item", false},
		{&pypool.Hint{Kind: pypool.HintUnknown, Repr: "set[int]"}, "any", true},
		{&pypool.Hint{Kind: "a kind of tomorrow"}, "any", true},
	}
	for _, c := range cases {
		m := newMapper()
		got := m.goType(c.hint)
		if got.expr != c.want || (got.note != "") != c.wantNote {
			t.Errorf("%s: %s (note %q), want %s (a note: %v)", c.hint, got.expr, got.note, c.want, c.wantNote)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestClassesByName: a class met twice is one Go type; two classes with
// one Go name are an error; a recursive class's reference (no fields)
// takes the fields from the full description.
func TestClassesByName(t *testing.T) {
	str := h(pypool.HintStr)
	full := pypool.Hint{Kind: pypool.HintTypedDict, Name: "Node", Module: "m", Fields: []pypool.HintField{{Name: "name", Hint: &str, Required: true}}}
	ref := pypool.Hint{Kind: pypool.HintTypedDict, Name: "Node", Module: "m"}
	m := newMapper()
	m.goType(&ref)
	m.goType(&full)
	m.goType(&ref)
	types := m.namedTypes()
	if len(types) != 1 || len(types[0].hint.Fields) != 1 || len(m.errs) > 0 {
		t.Fatalf("types %+v, errors %v", types, m.errs)
	}
	other := pypool.Hint{Kind: pypool.HintDataclass, Name: "Node", Module: "n"}
	m.goType(&other)
	if len(m.errs) != 1 {
		t.Fatalf("no error for two classes named Node: %v", m.errs)
	}
}

// TestNames: Python names as Go identifiers.
func TestNames(t *testing.T) {
	for in, want := range map[string]string{"duplicate_text": "DuplicateText", "user_id": "UserID", "URL": "URL", "x": "X", "_x": "X", "2d": "X2d", "getHTTPUrl": "GetHTTPUrl"} {
		if got := exported(in); got != want {
			t.Errorf("exported(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"text": "text", "user_id": "userID", "id": "id", "url_path": "urlPath", "type": "type_", "c": "c_", "ctx": "ctx_", "opts": "opts_", "args": "args_", "any": "any_", "pypool": "pypool_"} {
		if got := local(in); got != want {
			t.Errorf("local(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGenerateCompiles: a function whose parameters' Go names would
// collide, with every parameter kind, generates code that parses; and
// generate refuses two functions with one Go name.
func TestGenerateCompiles(t *testing.T) {
	integer := h(pypool.HintInt)
	f := pypool.Function{Name: "f", Params: []pypool.Param{
		{Name: "user_id", Kind: pypool.ParamPositionalOrKeyword, Hint: &integer},
		{Name: "userID", Kind: pypool.ParamPositionalOrKeyword, Hint: &integer},
		{Name: "x_y", Kind: pypool.ParamKeywordOnly, HasDefault: true, Default: "1", Hint: &integer},
		{Name: "xY", Kind: pypool.ParamKeywordOnly, HasDefault: true, Default: "2"},
	}, Result: &integer}
	src, err := generate(source{module: "m", pkg: "m", python: "python3", version: "3", command: "pypoolgen"}, []pypool.Function{f})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"func F(ctx context.Context, c pypool.Caller, userID int64, userID_ int64, opts *FOptions) (int64, error)", "\tXY_ any"} {
		if !strings.Contains(string(src), want) {
			t.Errorf("no %q in\n%s", want, src)
		}
	}
	_, err = generate(source{module: "m", pkg: "m"}, []pypool.Function{{Name: "get_url"}, {Name: "GetURL"}})
	if err == nil || !strings.Contains(err.Error(), "would both be the Go name GetURL") {
		t.Errorf("two functions named GetURL: %v", err)
	}
}
