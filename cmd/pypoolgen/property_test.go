package main

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"strings"
	"sync"
	"testing"

	"github.com/pypool/pypool"
	"pgregory.net/rapid"
)

// hostileName draws a Python-ish name from pieces that push the Go name
// rules: keywords, the generated code's own names, unicode, separators.
func hostileName(t *rapid.T, label string) string {
	pieces := []string{"type", "func", "f", "node", "item", "Options", "ctx", "c", "opts", "args", "kw", "err", "v", "k", "len", "nil", "time", "iter", "pypool",
		"_", "__", "x", "X", "id", "url", "名前", "café", "नमस्ते", "a-b", "x·y", "9", "Options", "user", "ID", "ǅ", "ß"}
	n := rapid.IntRange(1, 3).Draw(t, label+"_len")
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(rapid.SampledFrom(pieces).Draw(t, label))
	}
	return b.String()
}

func hostileHint(t *rapid.T, depth int) *pypool.Hint {
	simple := []pypool.HintKind{pypool.HintAny, pypool.HintNone, pypool.HintBool, pypool.HintInt, pypool.HintFloat, pypool.HintStr,
		pypool.HintBytes, pypool.HintDatetime, pypool.HintNDArray, pypool.HintUnknown}
	if depth > 2 || rapid.Bool().Draw(t, "leaf") {
		if rapid.IntRange(0, 9).Draw(t, "nil") == 0 {
			return nil
		}
		return &pypool.Hint{Kind: rapid.SampledFrom(simple).Draw(t, "kind"), Repr: "r\nx"}
	}
	inner := func() pypool.Hint {
		if h := hostileHint(t, depth+1); h != nil {
			return *h
		}
		return pypool.Hint{Kind: pypool.HintAny}
	}
	switch rapid.IntRange(0, 7).Draw(t, "composite") {
	case 0:
		return &pypool.Hint{Kind: pypool.HintList, Args: []pypool.Hint{inner()}}
	case 1:
		return &pypool.Hint{Kind: pypool.HintDict, Args: []pypool.Hint{inner(), inner()}}
	case 2:
		return &pypool.Hint{Kind: pypool.HintTuple, Args: []pypool.Hint{inner(), inner()}}
	case 3:
		return &pypool.Hint{Kind: pypool.HintOptional, Args: []pypool.Hint{inner()}}
	case 4:
		return &pypool.Hint{Kind: pypool.HintIterator, Args: []pypool.Hint{inner()}}
	case 5:
		return &pypool.Hint{Kind: pypool.HintLiteral, Values: []any{"a", int8(1), true, nil}[:rapid.IntRange(1, 4).Draw(t, "values")]}
	default:
		kind := rapid.SampledFrom([]pypool.HintKind{pypool.HintTypedDict, pypool.HintDataclass, pypool.HintNamedTuple}).Draw(t, "class")
		name := rapid.SampledFrom([]string{"Node", "Item", "名前", "node", "F", "FOptions", "type", "a-b"}).Draw(t, "className")
		h := &pypool.Hint{Kind: kind, Name: name, Module: "m"}
		if rapid.Bool().Draw(t, "fields") {
			for i := rapid.IntRange(0, 3).Draw(t, "nfields"); i > 0; i-- {
				h.Fields = append(h.Fields, pypool.HintField{Name: hostileName(t, "field"), Hint: hostileHint(t, depth+1), Required: rapid.Bool().Draw(t, "required")})
			}
		}
		return h
	}
}

var (
	importerOnce sync.Once
	importer_    types.Importer
)

// sourceImporter type-checks imports (pypool, context, iter, time) from
// their source, once for the whole test.
func sourceImporter(fset *token.FileSet) types.Importer {
	importerOnce.Do(func() { importer_ = importer.ForCompiler(fset, "source", nil) })
	return importer_
}

// TestGenerateProperty: for any functions with hostile names, parameter
// kinds and hints, generate either refuses them with an error or writes Go
// that type-checks, whose functions are exported.
func TestGenerateProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var functions []pypool.Function
		for i := rapid.IntRange(1, 3).Draw(t, "functions"); i > 0; i-- {
			f := pypool.Function{Name: hostileName(t, "function"), Module: "m", Generator: rapid.Bool().Draw(t, "generator"), Result: hostileHint(t, 0)}
			kind := pypool.ParamPositionalOnly
			for j := rapid.IntRange(0, 5).Draw(t, "params"); j > 0; j-- {
				kind = rapid.SampledFrom([]pypool.ParamKind{kind, pypool.ParamPositionalOrKeyword, pypool.ParamVarPositional, pypool.ParamKeywordOnly, pypool.ParamVarKeyword}).Draw(t, "kind")
				p := pypool.Param{Name: hostileName(t, "param"), Kind: kind, Hint: hostileHint(t, 0)}
				if kind != pypool.ParamVarPositional && kind != pypool.ParamVarKeyword && rapid.Bool().Draw(t, "default") {
					p.HasDefault, p.Default = true, rapid.SampledFrom([]string{"None", "'a\nb'", "<object object>", "\x00"}).Draw(t, "defaultRepr")
				}
				f.Params = append(f.Params, p)
			}
			functions = append(functions, f)
		}
		src, err := generate(source{module: "m", pkg: "m", python: "python3", version: "3", command: "pypoolgen"}, functions)
		if err != nil {
			if strings.Contains(err.Error(), "a bug in pypoolgen") {
				t.Fatal(err)
			}
			return
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, "", src, 0)
		if err != nil {
			t.Fatalf("%v\n%s", err, src)
		}
		conf := types.Config{Importer: sourceImporter(fset)}
		if _, err := conf.Check("m", fset, []*ast.File{file}, nil); err != nil {
			t.Fatalf("%v\n%s", err, src)
		}
		if unused := importsUnused(file); len(unused) > 0 {
			t.Fatalf("%s imported and not used:\n%s", unused[0], src)
		}
		for _, d := range file.Decls {
			if f, ok := d.(*ast.FuncDecl); ok && !f.Name.IsExported() {
				t.Fatalf("function %s not exported:\n%s", f.Name.Name, src)
			}
		}
	})
}
