package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pypool/pypool"
)

// generateFor generates the bindings of functions and parses them: the
// generated file must be Go, whatever the Python names.
func generateFor(t *testing.T, functions ...pypool.Function) (string, *ast.File) {
	t.Helper()
	src, err := generate(source{module: "m", pkg: "m", python: "python3", version: "3", command: "pypoolgen"}, functions)
	if err != nil {
		t.Fatal(err)
	}
	file, err := parser.ParseFile(token.NewFileSet(), "", src, 0)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	return string(src), file
}

// TestNamesGoCannotSpell: Python identifiers (and __all__ names) with
// characters Go does not allow in a name, or that start with a letter
// without case, give valid Go names, exported where they must be (a
// function, an options field, a struct field msgpack must see).
func TestNamesGoCannotSpell(t *testing.T) {
	for _, name := range []string{"名前", "नमस्ते", "x\u00b7y", "a-b", "with space", "Ⅻ_roman", "_", "__", "9lives", "é"} {
		if got := exported(name); !token.IsIdentifier(got) || !token.IsExported(got) {
			t.Errorf("exported(%q) = %q: not an exported Go identifier", name, got)
		}
		if got := local(name); !token.IsIdentifier(got) {
			t.Errorf("local(%q) = %q: not a Go identifier", name, got)
		}
	}
	integer := h(pypool.HintInt)
	str := h(pypool.HintStr)
	class := pypool.Hint{Kind: pypool.HintTypedDict, Name: "クラス", Module: "m", Fields: []pypool.HintField{
		{Name: "名前", Hint: &str, Required: true},
		{Name: "नमस्ते", Hint: &integer, Required: true},
	}}
	_, file := generateFor(t,
		pypool.Function{Name: "名前", Params: []pypool.Param{{Name: "नमस्ते", Kind: pypool.ParamPositionalOrKeyword, Hint: &integer}}, Result: &class},
		pypool.Function{Name: "a-b", Params: []pypool.Param{{Name: "名前", Kind: pypool.ParamKeywordOnly, HasDefault: true, Default: "1", Hint: &integer}}},
	)
	for _, d := range file.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if !d.Name.IsExported() {
				t.Errorf("function %s is not exported", d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if ts, ok := s.(*ast.TypeSpec); ok {
					if !ts.Name.IsExported() {
						t.Errorf("type %s is not exported", ts.Name.Name)
					}
					for _, f := range ts.Type.(*ast.StructType).Fields.List {
						for _, n := range f.Names {
							if !n.IsExported() && n.Name != "_msgpack" {
								t.Errorf("field %s.%s is not exported (msgpack would leave it out)", ts.Name.Name, n.Name)
							}
						}
					}
				}
			}
		}
	}
}

// TestKeysNoTagCanName: a TypedDict key (the functional form takes any
// string) that a msgpack struct tag cannot name is an error naming the
// class and the key; one it can name (a space inside) crosses under its
// own name.
func TestKeysNoTagCanName(t *testing.T) {
	integer := h(pypool.HintInt)
	for _, key := range []string{"a,b", "-", "", "x:y", "it's", `q"`, "back`tick", `back\slash`, " padded", "new\nline"} {
		class := pypool.Hint{Kind: pypool.HintTypedDict, Name: "T", Module: "m", Fields: []pypool.HintField{
			{Name: "ok", Hint: &integer, Required: true},
			{Name: key, Hint: &integer, Required: true},
		}}
		_, err := generate(source{module: "m", pkg: "m"}, []pypool.Function{{Name: "f", Result: &class}})
		if err == nil || !strings.Contains(err.Error(), "m.T") || !strings.Contains(err.Error(), strconv.Quote(key)) || !strings.Contains(err.Error(), "rename") {
			t.Errorf("key %q: error %v, want one naming m.T, the key and the fix", key, err)
		}
	}
	class := pypool.Hint{Kind: pypool.HintTypedDict, Name: "T", Module: "m", Fields: []pypool.HintField{{Name: "first name", Hint: &integer, Required: true}}}
	src, _ := generateFor(t, pypool.Function{Name: "f", Result: &class})
	if !strings.Contains(src, "FirstName int64 `msgpack:\"first name\"`") {
		t.Errorf("no field FirstName tagged \"first name\" in\n%s", src)
	}
}

// TestUnreadableSignature: a function whose signature Python could not
// read (a callable whose __signature__ raises, a builtin without one) has
// no parameters in its description: binding it as a function of none
// would be wrong, so it is an error naming it, why, and the fix. A
// function whose hints did not all resolve is bound (those hints are any).
func TestUnreadableSignature(t *testing.T) {
	for _, why := range []string{"no signature: no signature found for builtin <built-in function print>", "not described (RuntimeError: signature explodes)"} {
		_, err := generate(source{module: "m", pkg: "m"}, []pypool.Function{{Name: "raiser", Module: "m", Error: why}})
		if err == nil || !strings.Contains(err.Error(), "raiser") || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "__all__") {
			t.Errorf("%s: error %v", why, err)
		}
	}
	integer := h(pypool.HintInt)
	src, _ := generateFor(t, pypool.Function{Name: "f", Module: "m", Error: "type hints not resolved (NameError: name 'Nope' is not defined)",
		Params: []pypool.Param{{Name: "x", Kind: pypool.ParamPositionalOrKeyword, Hint: &pypool.Hint{Kind: pypool.HintUnknown, Repr: "Nope"}}, {Name: "y", Kind: pypool.ParamPositionalOrKeyword, Hint: &integer}}})
	if !strings.Contains(src, "func F(ctx context.Context, c pypool.Caller, x any, y int64) (any, error)") {
		t.Errorf("f not bound with its parameters:\n%s", src)
	}
}

// TestNoCodeFromPython: text from Python that ends up in comments (a
// default's repr, which numpy writes on several lines; a class's or an
// __all__ name's) cannot end a comment and write Go code of its own.
func TestNoCodeFromPython(t *testing.T) {
	injected := "1\nfunc init() { panic(\"injected\") }\n//"
	str := h(pypool.HintStr)
	class := pypool.Hint{Kind: pypool.HintTypedDict, Name: "C\nfunc init() { panic(1) }\n//", Module: "m\nfunc init() {}\n//", Fields: []pypool.HintField{{Name: "k", Hint: &str, Required: true}}}
	functions := []pypool.Function{
		{Name: "f", Params: []pypool.Param{
			{Name: "m", Kind: pypool.ParamPositionalOrKeyword, HasDefault: true, Default: "array([[1., 0.],\n       [0., 1.]])"},
			{Name: "e", Kind: pypool.ParamPositionalOrKeyword, HasDefault: true, Default: injected, Hint: &str},
			{Name: "p", Kind: pypool.ParamPositionalOnly, HasDefault: true, Default: injected},
		}, Result: &class},
		{Name: "g\nfunc init() { panic(2) }\n//"},
		{Name: "K\nfunc init() { panic(3) }\n//", Class: true},
	}
	src, err := generate(source{module: "m", pkg: "m", python: "python3", version: "3", command: "pypoolgen"}, functions)
	if err != nil {
		t.Fatal(err)
	}
	file, err := parser.ParseFile(token.NewFileSet(), "", src, 0)
	if err != nil {
		t.Fatalf("%v\n%s", err, src)
	}
	for _, d := range file.Decls {
		if f, ok := d.(*ast.FuncDecl); ok && f.Name.Name == "init" {
			t.Errorf("Python text wrote a func init:\n%s", src)
		}
	}
}

// TestClassHoldsItself: a class whose field is the class itself, or a
// class that holds it (A's field is a B, B's an A), is a Go struct whose
// field is a pointer: by value, Go refuses the type ("invalid recursive
// type").
func TestClassHoldsItself(t *testing.T) {
	integer := h(pypool.HintInt)
	node := pypool.Hint{Kind: pypool.HintTypedDict, Name: "Node", Module: "m", Fields: []pypool.HintField{
		{Name: "value", Hint: &integer, Required: true},
		{Name: "next", Hint: &pypool.Hint{Kind: pypool.HintTypedDict, Name: "Node", Module: "m"}, Required: true},
	}}
	a := pypool.Hint{Kind: pypool.HintTypedDict, Name: "A", Module: "m", Fields: []pypool.HintField{
		{Name: "b", Hint: &pypool.Hint{Kind: pypool.HintDataclass, Name: "B", Module: "m", Fields: []pypool.HintField{
			{Name: "a", Hint: &pypool.Hint{Kind: pypool.HintTypedDict, Name: "A", Module: "m"}, Required: true},
		}}, Required: true},
	}}
	leaf := pypool.Hint{Kind: pypool.HintNamedTuple, Name: "Leaf", Module: "m", Fields: []pypool.HintField{{Name: "x", Hint: &integer, Required: true}}}
	holder := pypool.Hint{Kind: pypool.HintNamedTuple, Name: "Holder", Module: "m", Fields: []pypool.HintField{{Name: "leaf", Hint: &leaf, Required: true}}}
	src, _ := generateFor(t, pypool.Function{Name: "f", Params: []pypool.Param{
		{Name: "n", Kind: pypool.ParamPositionalOrKeyword, Hint: &node},
		{Name: "a", Kind: pypool.ParamPositionalOrKeyword, Hint: &a},
		{Name: "h", Kind: pypool.ParamPositionalOrKeyword, Hint: &holder},
	}})
	for _, want := range []string{"\tNext  *Node `msgpack:\"next\"`", "\tB *B `msgpack:\"b\"`", "\tA *A `msgpack:\"a\"`", "\tLeaf     Leaf     `msgpack:\"leaf\"`"} {
		if !strings.Contains(src, want) {
			t.Errorf("no %q in\n%s", want, src)
		}
	}
}

// TestLiteralOfOneType: a Literal of bools is a bool and one of floats a
// float64, as one of strs is a string; one of several types, or of None,
// is an any whose note says so (it said "several types" of Literal[True,
// False]).
func TestLiteralOfOneType(t *testing.T) {
	for _, c := range []struct {
		values   []any
		want     string
		wantNote string
	}{
		{[]any{true, false}, "bool", "one of true, false"},
		{[]any{1.5, 2.5}, "float64", "one of 1.5, 2.5"},
		{[]any{"a", int8(1)}, "any", "values of several types"},
		{[]any{"a", nil}, "any", "values of several types"},
		{[]any{nil}, "any", "None is its only value"},
	} {
		got := newMapper().goType(&pypool.Hint{Kind: pypool.HintLiteral, Values: c.values})
		if got.expr != c.want || !strings.Contains(got.note, c.wantNote) {
			t.Errorf("Literal%v: %s (%q), want %s (%q)", c.values, got.expr, got.note, c.want, c.wantNote)
		}
	}
}

// TestNoFunctions: a module without public functions (a wrong -module, an
// empty __all__, classes only) is an error that says so: the file it gave
// imported context and pypool without using them, and did not compile.
func TestNoFunctions(t *testing.T) {
	for _, functions := range [][]pypool.Function{nil, {{Name: "T", Class: true}}, {{Name: "other.f", Module: "other"}}} {
		_, err := generate(source{module: "m", pkg: "m"}, functions)
		if err == nil || !strings.Contains(err.Error(), "no public functions") || !strings.Contains(err.Error(), "__all__") {
			t.Errorf("%v: error %v", functions, err)
		}
	}
}

// TestCommentsGoAccepts: a docstring (or a name, a hint's repr) with
// characters Go refuses in a source file (NUL, a byte order mark, bytes
// that are not UTF-8) or that reorder how it reads (bidi overrides) is
// written escaped: the bindings parse, and read as they are.
func TestCommentsGoAccepts(t *testing.T) {
	hostile := "nul \x00 bom \ufeff bidi \u202e rlo \u2066 cr \r bad \xff end"
	src, _ := generateFor(t, pypool.Function{Name: "f", Doc: hostile, Params: []pypool.Param{
		{Name: "x", Kind: pypool.ParamPositionalOrKeyword, HasDefault: true, Default: hostile, Hint: &pypool.Hint{Kind: pypool.HintUnknown, Repr: hostile}},
	}})
	for _, r := range []string{"\x00", "\ufeff", "\u202e", "\u2066", "\r", "\xff"} {
		if strings.Contains(src, r) {
			t.Errorf("%q written as it is", r)
		}
	}
	if !strings.Contains(src, `nul \x00 bom \ufeff bidi \u202e`) {
		t.Errorf("the docstring is not written escaped:\n%s", src)
	}
}

// TestImportsUsed: a hint whose Go form is an any though a part of it has
// a Go form of its own (dict[datetime, int]: no Go map key for a
// time.Time; tuple[datetime, int]: items of several types) imported time
// unused, and the bindings did not compile; likewise a docstring naming
// time.Time does not import it.
func TestImportsUsed(t *testing.T) {
	dt, integer := h(pypool.HintDatetime), h(pypool.HintInt)
	_, file := generateFor(t,
		pypool.Function{Name: "f", Doc: "Returns a time.Time, and an iter.Seq2.", Params: []pypool.Param{
			{Name: "d", Kind: pypool.ParamPositionalOrKeyword, Hint: ptr(h(pypool.HintDict, dt, integer))},
			{Name: "t", Kind: pypool.ParamPositionalOrKeyword, Hint: ptr(h(pypool.HintTuple, dt, integer))},
		}})
	for _, path := range importsUnused(file) {
		t.Errorf("%s imported and not used", path)
	}
}

// importsUnused lists the paths file imports but names in no selector
// (time imported, no time.X): what the compiler refuses. Written apart
// from the generator's own packagesUsed, so that the tests do not take
// its word for it.
func importsUnused(file *ast.File) []string {
	used := map[string]bool{}
	ast.Inspect(file, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok {
				used[id.Name] = true
			}
		}
		return true
	})
	var unused []string
	for _, imp := range file.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if name := path[strings.LastIndex(path, "/")+1:]; !used[name] {
			unused = append(unused, path)
		}
	}
	return unused
}

// TestPackageBlank: -package _ (or a directory named so) is refused as
// any name that is not a Go package's: "package _" does not compile.
func TestPackageBlank(t *testing.T) {
	var stderr strings.Builder
	if _, err := parseFlags([]string{"-module", "m", "-package", "_"}, &stderr); err == nil || !strings.Contains(err.Error(), "set -package") {
		t.Errorf("-package _: %v", err)
	}
}

// TestClassesOneNameOtherFields: two classes of one module with one name
// (nested in two classes, made by one factory) but other fields were one
// Go struct, that of the first met: the second function's binding sent
// and read the wrong keys. It is an error naming the class.
func TestClassesOneNameOtherFields(t *testing.T) {
	integer, str := h(pypool.HintInt), h(pypool.HintStr)
	a := pypool.Hint{Kind: pypool.HintTypedDict, Name: "Item", Module: "m", Fields: []pypool.HintField{{Name: "x", Hint: &integer, Required: true}}}
	b := pypool.Hint{Kind: pypool.HintTypedDict, Name: "Item", Module: "m", Fields: []pypool.HintField{{Name: "y", Hint: &str, Required: true}}}
	_, err := generate(source{module: "m", pkg: "m"}, []pypool.Function{{Name: "fa", Result: &a}, {Name: "fb", Result: &b}})
	if err == nil || !strings.Contains(err.Error(), "m.Item") {
		t.Errorf("two classes m.Item of other fields: error %v", err)
	}
	// The same class met twice, or met again inside itself (no fields),
	// is one.
	ref := pypool.Hint{Kind: pypool.HintTypedDict, Name: "Item", Module: "m"}
	if _, err := generate(source{module: "m", pkg: "m"}, []pypool.Function{{Name: "fa", Result: &a}, {Name: "fb", Result: &a}, {Name: "fc", Result: &ref}}); err != nil {
		t.Error(err)
	}
}

// TestRegenerateCommand: the header's command is run from the file's
// directory (go generate runs there; -out names the file alone), so a
// relative -pythonpath is written relative to that directory too: run
// from the repository's root (as CI's -check is), it said "-out
// inventory_gen.go -pythonpath examples/typed", right from no directory.
func TestRegenerateCommand(t *testing.T) {
	abs, err := filepath.Abs("/opt/py")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		out  string
		path []string
		want string
	}{
		{"examples/typed/inventory_gen.go", []string{"examples/typed"}, "pypoolgen -module m -out inventory_gen.go -pythonpath ."},
		{"examples/typed/inventory_gen.go", []string{"examples/typed/py", abs}, "pypoolgen -module m -out inventory_gen.go -pythonpath py," + abs},
		{"inventory_gen.go", []string{"../../testdata"}, "pypoolgen -module m -out inventory_gen.go -pythonpath ../../testdata"},
		{"a/b_gen.go", []string{"."}, "pypoolgen -module m -out b_gen.go -pythonpath .."},
	} {
		if got := command(config{module: "m", out: c.out, pythonPath: c.path}); got != c.want {
			t.Errorf("-out %s -pythonpath %v: %q, want %q", c.out, c.path, got, c.want)
		}
	}
}

// TestPackageOfDirectory: the package of -out's directory is that of the
// files the build takes: a generator script beside them (//go:build
// ignore, package main, first by name) made the bindings package main in
// a directory of package lib, which does not build.
func TestPackageOfDirectory(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"aaa_gen_script.go": "//go:build ignore\n\npackage main\n\nfunc main() {}\n",
		"lib.go":            "package lib\n",
		"lib_test.go":       "package lib_test\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GOPACKAGE", "")
	cfg, err := parseFlags([]string{"-module", "m", "-out", filepath.Join(dir, "m_gen.go")}, io.Discard)
	if err != nil || cfg.pkg != "lib" {
		t.Errorf("package %q (%v), want lib", cfg.pkg, err)
	}
}

// TestKeyWithJoiner: a key with a zero-width non-joiner (which Persian
// words hold: the functional TypedDict takes any string) is a key a tag
// can name: it was refused with the control characters.
func TestKeyWithJoiner(t *testing.T) {
	integer := h(pypool.HintInt)
	key := "می\u200cخواهم"
	class := pypool.Hint{Kind: pypool.HintTypedDict, Name: "T", Module: "m", Fields: []pypool.HintField{{Name: key, Hint: &integer, Required: true}}}
	src, err := generate(source{module: "m", pkg: "m"}, []pypool.Function{{Name: "f", Result: &class}})
	if err != nil || !strings.Contains(string(src), "`msgpack:\""+key+"\"`") {
		t.Errorf("key %q: %v\n%s", key, err, src)
	}
}
