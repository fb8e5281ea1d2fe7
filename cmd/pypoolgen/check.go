package main

// check.go: -check's comparison of the bindings on disk with those that
// would be written, told function by function (a function removed,
// renamed or added; a parameter added, removed or of another type; a
// result of another type; a class's field), then as a line diff.

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"sort"
	"strings"
)

// compare returns "" when old and new are the same bindings (the
// interpreter and command lines of their headers, and CRLF line ends,
// aside), else a report of what changed.
func compare(name string, old, new []byte) string {
	// A file checked out with CRLF line ends (git's autocrlf) is the same
	// file.
	old = bytes.ReplaceAll(old, []byte("\r\n"), []byte("\n"))
	if bytes.Equal(withoutEnvironment(old), withoutEnvironment(new)) {
		return ""
	}
	var b strings.Builder
	oldDecls, errOld := declarations(old)
	newDecls, errNew := declarations(new)
	if errOld != nil {
		fmt.Fprintf(&b, "%s does not parse (%v): it is not what pypoolgen writes\n", name, errOld)
	} else if errNew == nil {
		for _, change := range changes(oldDecls, newDecls) {
			fmt.Fprintf(&b, "%s: %s\n", name, change)
		}
	}
	b.WriteString(lineDiff(name, string(old), string(new)))
	return b.String()
}

// withoutEnvironment is src without its header's interpreter and command
// lines: those before the package clause only, so that a docstring line
// that reads the same ("Regenerate: ...") is compared as any other.
func withoutEnvironment(src []byte) []byte {
	var out [][]byte
	header := true
	for _, line := range bytes.Split(src, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("package ")) {
			header = false
		}
		if !header || (!bytes.HasPrefix(line, []byte(interpreterLine)) && !bytes.HasPrefix(line, []byte(regenerateLine))) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// decl is a generated function or type as check compares it.
type decl struct {
	python string   // the Python signature or class the doc comment names
	params []field  // a function's parameters after ctx and c; a struct's fields
	result string   // a function's results
	order  []string // the names of params, in order
}

// field is a parameter or a struct field: its name and Go type.
type field struct{ name, typ string }

// declarations returns the file's functions (by name) and types (by name,
// prefixed with "type ").
func declarations(src []byte) (map[string]*decl, error) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "", src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	text := func(n ast.Node) string {
		var b bytes.Buffer
		printer.Fprint(&b, fset, n)
		return b.String()
	}
	out := map[string]*decl{}
	for _, d := range file.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			x := &decl{python: pythonOf(d.Doc.Text())}
			for i, f := range d.Type.Params.List {
				if i < 2 {
					continue // ctx, c
				}
				for _, n := range f.Names {
					x.params = append(x.params, field{n.Name, text(f.Type)})
				}
			}
			if d.Type.Results != nil {
				var results []string
				for _, f := range d.Type.Results.List {
					results = append(results, text(f.Type))
				}
				x.result = strings.Join(results, ", ")
				if len(results) > 1 {
					x.result = "(" + x.result + ")"
				}
			}
			out[d.Name.Name] = x
		case *ast.GenDecl:
			for _, s := range d.Specs {
				ts, ok := s.(*ast.TypeSpec)
				if !ok {
					continue
				}
				x := &decl{python: strings.TrimSpace(d.Doc.Text())}
				if st, ok := ts.Type.(*ast.StructType); ok {
					for _, f := range st.Fields.List {
						for _, n := range f.Names {
							if n.Name != "_msgpack" {
								x.params = append(x.params, field{n.Name, text(f.Type)})
							}
						}
					}
				}
				out["type "+ts.Name.Name] = x
			}
		}
	}
	return out, nil
}

// pythonOf is the Python signature that a generated function's doc
// comment shows ("def f(x: int) -> str", in a code block).
func pythonOf(doc string) string {
	for _, line := range strings.Split(doc, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "def ") || strings.HasPrefix(line, "async def ") {
			return line
		}
	}
	return ""
}

// pythonName is the function's name in a Python signature.
func pythonName(sig string) string {
	sig = strings.TrimPrefix(strings.TrimPrefix(sig, "async "), "def ")
	name, _, _ := strings.Cut(sig, "(")
	return name
}

func (x *decl) signature() string {
	var types []string
	for _, p := range x.params {
		types = append(types, p.typ)
	}
	return "(" + strings.Join(types, ", ") + ") " + x.result
}

// changes lists what differs between the old and new declarations, by
// function and type.
func changes(old, new map[string]*decl) []string {
	var out []string
	var removed, added []string
	for name := range old {
		if _, ok := new[name]; !ok {
			removed = append(removed, name)
		}
	}
	for name := range new {
		if _, ok := old[name]; !ok {
			added = append(added, name)
		}
	}
	sort.Strings(removed)
	sort.Strings(added)
	renamedTo := map[string]bool{}
	for _, name := range removed {
		o := old[name]
		if strings.HasPrefix(name, "type ") {
			if isOptions(name, old) {
				continue // told with its function
			}
			out = append(out, fmt.Sprintf("%s removed", name))
			continue
		}
		// A function removed while one of the same Go signature appeared:
		// renamed in Python.
		to := ""
		for _, a := range added {
			if !strings.HasPrefix(a, "type ") && !renamedTo[a] && new[a].signature() == o.signature() {
				to = a
				break
			}
		}
		if to != "" {
			renamedTo[to] = true
			out = append(out, fmt.Sprintf("function %s renamed to %s (Python %s -> %s)", name, to, pythonName(o.python), pythonName(new[to].python)))
			continue
		}
		out = append(out, fmt.Sprintf("function %s removed (Python %s)", name, o.python))
	}
	for _, name := range added {
		if renamedTo[name] || (strings.HasPrefix(name, "type ") && isOptions(name, new)) {
			continue
		}
		if strings.HasPrefix(name, "type ") {
			out = append(out, fmt.Sprintf("new %s", name))
			continue
		}
		out = append(out, fmt.Sprintf("new function %s (Python %s)", name, new[name].python))
	}
	var both []string
	for name := range old {
		if _, ok := new[name]; ok {
			both = append(both, name)
		}
	}
	sort.Strings(both)
	for _, name := range both {
		o, n := old[name], new[name]
		what := "function " + name
		paramWord := "parameter"
		if strings.HasPrefix(name, "type ") {
			what, paramWord = name, "field"
			if fn := strings.TrimSuffix(strings.TrimPrefix(name, "type "), "Options"); isOptions(name, old) {
				what, paramWord = "function "+fn, "optional parameter"
			}
		}
		found := fieldChanges(what, paramWord, o.params, n.params)
		if o.result != n.result {
			found = append(found, fmt.Sprintf("%s: result %s -> %s", what, o.result, n.result))
		}
		if !strings.HasPrefix(name, "type ") && o.python != n.python && len(found) == 0 {
			found = append(found, fmt.Sprintf("%s: Python signature %s -> %s", what, o.python, n.python))
		}
		out = append(out, found...)
	}
	return out
}

// isOptions says whether the type name ("type FOptions") is the options
// struct of a function F of decls.
func isOptions(name string, decls map[string]*decl) bool {
	fn, ok := strings.CutSuffix(strings.TrimPrefix(name, "type "), "Options")
	if !ok {
		return false
	}
	_, isFunc := decls[fn]
	return isFunc
}

// fieldChanges tells the parameters (or fields) added, removed and of
// another type.
func fieldChanges(what, word string, old, new []field) []string {
	var out []string
	index := func(fs []field) map[string]string {
		m := map[string]string{}
		for _, f := range fs {
			m[f.name] = f.typ
		}
		return m
	}
	o, n := index(old), index(new)
	for _, f := range old {
		typ, ok := n[f.name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: %s %s removed", what, word, f.name))
		case typ != f.typ:
			out = append(out, fmt.Sprintf("%s: %s %s changed type %s -> %s", what, word, f.name, f.typ, typ))
		}
	}
	for _, f := range new {
		if _, ok := o[f.name]; !ok {
			out = append(out, fmt.Sprintf("%s: new %s %s %s", what, word, f.name, f.typ))
		}
	}
	return out
}

// lineDiff is a unified diff of old and new, by lines, with two lines of
// context. The lines the files start and end with in common are set aside
// first; those between are compared with a plain longest-common-subsequence
// table when it is small (a module of thousands of functions, one of them
// changed, would ask for gigabytes), else shown as removed, then added.
func lineDiff(name, old, new string) string {
	a := strings.Split(strings.TrimSuffix(old, "\n"), "\n")
	b := strings.Split(strings.TrimSuffix(new, "\n"), "\n")
	type op struct {
		kind byte // ' ', '-', '+'
		text string
	}
	var ops []op
	prefix := 0
	for prefix < len(a) && prefix < len(b) && a[prefix] == b[prefix] {
		ops = append(ops, op{' ', a[prefix]})
		prefix++
	}
	suffix := 0
	for suffix < len(a)-prefix && suffix < len(b)-prefix && a[len(a)-1-suffix] == b[len(b)-1-suffix] {
		suffix++
	}
	a, b, common := a[prefix:len(a)-suffix], b[prefix:len(b)-suffix], a[len(a)-suffix:]
	n, m := len(a), len(b)
	const maxTable = 1 << 22 // cells: 32 MB
	if n*m > maxTable {
		for _, line := range a {
			ops = append(ops, op{'-', line})
		}
		for _, line := range b {
			ops = append(ops, op{'+', line})
		}
	} else {
		lcs := make([][]int, n+1)
		for i := range lcs {
			lcs[i] = make([]int, m+1)
		}
		for i := n - 1; i >= 0; i-- {
			for j := m - 1; j >= 0; j-- {
				if a[i] == b[j] {
					lcs[i][j] = lcs[i+1][j+1] + 1
				} else {
					lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
				}
			}
		}
		i, j := 0, 0
		for i < n || j < m {
			switch {
			case i < n && j < m && a[i] == b[j]:
				ops = append(ops, op{' ', a[i]})
				i, j = i+1, j+1
			case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
				ops = append(ops, op{'-', a[i]})
				i++
			default:
				ops = append(ops, op{'+', b[j]})
				j++
			}
		}
	}
	for _, line := range common {
		ops = append(ops, op{' ', line})
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s (on disk)\n+++ %s (as generated now)\n", name, name)
	const context = 2
	show := make([]bool, len(ops))
	for k, o := range ops {
		if o.kind != ' ' {
			for c := max(k-context, 0); c <= min(k+context, len(ops)-1); c++ {
				show[c] = true
			}
		}
	}
	last := -1
	for k, o := range ops {
		if !show[k] {
			continue
		}
		if last >= 0 && k > last+1 {
			out.WriteString("...\n")
		}
		fmt.Fprintf(&out, "%c%s\n", o.kind, o.text)
		last = k
	}
	return out.String()
}
