package pypool

// docs_test.go keeps the documentation honest (issue 19): the README and the
// manual in docs/ (and bench/README.md), and the comments of this package.
//
// TestDocSnippets compiles every ```go block of those files:
//
//   - A block that starts with "package" is a complete program. It is built
//     as a user would build it: in a fresh directory of its own, with a
//     go.mod that requires github.com/pypool/pypool (replaced by this
//     checkout) and this module's go.sum. The ```python blocks right
//     before and right after it that start with a "# name.py" line are
//     written beside it. If the next block after those is a ```text block introduced by a paragraph
//     ending in "prints:", the program is run there (as `go run .` would,
//     with its own install directory) and must print exactly that block.
//   - Any other block is a fragment: its leading import declarations become
//     the imports of a file of its own, and the rest becomes the body of a
//     function in one package with all the other fragments. The names that
//     fragments use without declaring them (ctx, pool, features, ...) are
//     declared once, in snippetPreamble; a new fragment that needs another
//     such name adds it there. Every file also imports snippetImports. The
//     package is type-checked with go/types, which reports what the
//     compiler reports; only "declared and not used" and "imported and not
//     used" are ignored, since a fragment shows values it does not use.
//     Fragments that import the nested modules (prometheus/, otel/) are
//     checked in a package of that module; when its dependencies cannot be
//     had (offline, empty module cache), those fragments are skipped with
//     the reason.
//
// TestDocLinks checks that every relative link of those files resolves: the
// file exists and, for a link with #anchor into a Markdown file, a heading
// of that file has that anchor.
//
// TestDocCommentNames checks the comments of this package's Go files (not
// the tests): the identifiers they name in backticks, in [doc links] or as
// camelCase words (and Type.member) exist in the package, or are listed in
// commentNamesElsewhere with the reason; and the doc comment of each
// declaration starts with the declared name (optionally after A, An, The).
//
// The test skips, saying so, only when the go command is not on PATH.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// docFiles are the Markdown files whose snippets and links are checked.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("docs/*.md")
	require.NoError(t, err)
	return append([]string{"README.md", "bench/README.md"}, files...)
}

// mdBlock is one fenced code block of a Markdown file.
type mdBlock struct {
	file   string
	line   int    // of the block's first line of code
	lang   string // the info string: go, python, text, ...
	code   string // without the fence's indentation
	before string // the text between the previous block and this one
}

var fenceRE = regexp.MustCompile("^([ \t]*)```(\\S*)")

// mdBlocks returns the fenced code blocks of a Markdown file.
func mdBlocks(t *testing.T, file string) []mdBlock {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var blocks []mdBlock
	var cur *mdBlock
	var indent string
	var prose strings.Builder
	for i, line := range strings.Split(string(data), "\n") {
		if cur == nil {
			if m := fenceRE.FindStringSubmatch(line); m != nil {
				cur = &mdBlock{file: file, line: i + 2, lang: m[2], before: prose.String()}
				indent = m[1]
				prose.Reset()
				continue
			}
			prose.WriteString(line + "\n")
			continue
		}
		if strings.TrimSpace(line) == "```" {
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		cur.code += strings.TrimPrefix(line, indent) + "\n"
	}
	require.Nil(t, cur, "%s: a code block is not closed", file)
	return blocks
}

// goCommand returns the path of the go command, or skips the test.
func goCommand(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH (%v): the documentation's Go snippets cannot be compiled", err)
	}
	return gobin
}

func TestDocSnippets(t *testing.T) {
	gobin := goCommand(t)
	var programs [][]mdBlock // a program, its Python files, its output
	groups := map[string][]mdBlock{}
	for _, file := range docFiles(t) {
		blocks := mdBlocks(t, file)
		for i := 0; i < len(blocks); i++ {
			b := blocks[i]
			if b.lang != "go" {
				continue
			}
			if strings.HasPrefix(b.code, "package ") {
				prog := []mdBlock{b}
				for j := i - 1; j >= 0 && blocks[j].lang == "python" && pythonFileName(blocks[j]) != ""; j-- {
					prog = append(prog, blocks[j])
				}
				for i+1 < len(blocks) && blocks[i+1].lang == "python" && pythonFileName(blocks[i+1]) != "" {
					i++
					prog = append(prog, blocks[i])
				}
				if i+1 < len(blocks) && blocks[i+1].lang == "text" && strings.HasSuffix(strings.TrimSpace(blocks[i+1].before), "prints:") {
					i++
					prog = append(prog, blocks[i])
				}
				programs = append(programs, prog)
				continue
			}
			groups[snippetModule(b.code)] = append(groups[snippetModule(b.code)], b)
		}
	}
	require.NotEmpty(t, programs, "the README's first program")
	for _, prog := range programs {
		t.Run(fmt.Sprintf("program %s:%d", prog[0].file, prog[0].line), func(t *testing.T) {
			runProgram(t, gobin, prog)
		})
	}
	mods := make([]string, 0, len(groups))
	for mod := range groups {
		mods = append(mods, mod)
	}
	sort.Strings(mods)
	for _, mod := range mods {
		t.Run("fragments in module "+mod, func(t *testing.T) {
			checkFragments(t, gobin, mod, groups[mod])
		})
	}
}

// pythonFileName returns the name a ```python block gives itself on its
// first line ("# my_module.py"), or "".
func pythonFileName(b mdBlock) string {
	first, _, _ := strings.Cut(b.code, "\n")
	if name, ok := strings.CutPrefix(first, "# "); ok && strings.HasSuffix(name, ".py") && !strings.ContainsAny(name, " /") {
		return name
	}
	return ""
}

// snippetModule returns the directory of the module a fragment is checked
// in: a nested module when the fragment imports it, else the root.
func snippetModule(code string) string {
	for _, nested := range []string{"prometheus", "otel"} {
		if strings.Contains(code, `"github.com/pypool/pypool/`+nested+`"`) {
			return nested
		}
	}
	return "."
}

// runProgram builds a complete program in a fresh module of its own, as a
// user would after `go mod init` and `go get github.com/pypool/pypool`, and
// runs it if its output is shown.
func runProgram(t *testing.T, gobin string, prog []mdBlock) {
	repo, err := filepath.Abs(".")
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog[0].code), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), userGoMod(t, repo), 0o644))
	sum, err := os.ReadFile("go.sum")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))
	var want *mdBlock
	for _, b := range prog[1:] {
		if b.lang == "python" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, pythonFileName(b)), []byte(b.code), 0o644))
		} else {
			want = &b
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	build := exec.CommandContext(ctx, gobin, "build", "-o", "program", ".")
	build.Dir = dir
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s:%d does not build:\n%s", prog[0].file, prog[0].line, out)
	if want == nil {
		return
	}
	run := exec.CommandContext(ctx, filepath.Join(dir, "program"))
	run.Dir = dir
	// Its own install directory, so that the test writes nothing in the
	// user's cache.
	run.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir())
	var stderr bytes.Buffer
	run.Stderr = &stderr
	stdout, err := run.Output()
	require.NoError(t, err, "%s:%d: running it: %s", prog[0].file, prog[0].line, stderr.String())
	assert.Equal(t, want.code, string(stdout), "%s:%d: the output shown at line %d", prog[0].file, prog[0].line, want.line)
}

// userGoMod is the go.mod of a user's module that requires this one (at
// repo) with the requirements of this module's go.mod.
func userGoMod(t *testing.T, repo string) []byte {
	t.Helper()
	ours, err := os.ReadFile("go.mod")
	require.NoError(t, err)
	var mod bytes.Buffer
	mod.WriteString("module hello\n\n")
	sc := bufio.NewScanner(bytes.NewReader(ours))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "module ") {
			mod.WriteString(line + "\n")
		}
	}
	fmt.Fprintf(&mod, "\nrequire github.com/pypool/pypool v0.0.0\n\nreplace github.com/pypool/pypool => %s\n", repo)
	return mod.Bytes()
}

// snippetImports are imported by every fragment's file.
var snippetImports = []string{
	"context", "embed", "errors", "fmt", "log", "net/http", "os",
	"path/filepath", "time", "github.com/pypool/pypool",
}

// snippetPreamble declares the names fragments use without declaring them:
// what the text around them describes in words.
const snippetPreamble = `
var (
	ctx                                         context.Context
	pool                                        *pypool.Pool
	features, img, x, item, scene, path, points any
	pixels                                      []float32
	scenes                                      []any
	w                                           http.ResponseWriter
	r                                           *http.Request
	users                                       interface{ Get(context.Context, int64) (User, error) }
)

type User struct{ Name string }

type Row struct {
	ID   int64  ` + "`msgpack:\"id\"`" + `
	Line string ` + "`msgpack:\"line\"`" + `
}

func done(Row) bool { return false }

func use([]byte) {}
`

// importDeclRE matches the import declarations a fragment starts with.
var importDeclRE = regexp.MustCompile(`^\s*(import\s*\((?s:.*?)\)|import\s+(\w+\s+)?"[^"]+")\s*\n`)

// checkFragments type-checks the fragments of one module as one package.
func checkFragments(t *testing.T, gobin, mod string, blocks []mdBlock) {
	fset := token.NewFileSet()
	var files []*ast.File
	imports := map[string]bool{}
	for _, p := range snippetImports {
		imports[p] = true
	}
	src := "package snippets\n\nimport (\n" + quoteAll(snippetImports) + ")\n" + snippetPreamble
	f, err := parser.ParseFile(fset, "preamble.go", src, 0)
	require.NoError(t, err)
	files = append(files, f)
	for i, b := range blocks {
		abs, err := filepath.Abs(b.file)
		require.NoError(t, err)
		code, own := b.code, ""
		for {
			m := importDeclRE.FindStringIndex(code)
			if m == nil {
				break
			}
			own += code[m[0]:m[1]]
			code = code[m[1]:]
		}
		skipped := strings.Count(b.code, "\n") - strings.Count(code, "\n")
		src := fmt.Sprintf("package snippets\n\nimport (\n%s)\n\nfunc snippet%d() error {\n//line %s:%d\n%s\nreturn nil\n}\n",
			fragmentImports(t, own), i, abs, b.line+skipped, code)
		f, err := parser.ParseFile(fset, fmt.Sprintf("snippet%d.go", i), src, parser.ParseComments)
		if !assert.NoError(t, err, "a Go snippet does not parse") {
			continue
		}
		for _, im := range f.Imports {
			imports[strings.Trim(im.Path.Value, `"`)] = true
		}
		files = append(files, f)
	}
	exports, err := exportData(gobin, mod, imports)
	if err != nil {
		if mod == "." {
			require.NoError(t, err)
		}
		t.Skipf("the dependencies of module %s cannot be had, so its %d fragments are not checked: %v", mod, len(blocks), err)
	}
	conf := types.Config{
		Importer: importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
			if file, ok := exports[path]; ok && file != "" {
				return os.Open(file)
			}
			return nil, fmt.Errorf("no export data for %q", path)
		}),
		Error: func(err error) {
			msg := err.Error()
			if strings.Contains(msg, "declared and not used") || strings.Contains(msg, "imported and not used") {
				return
			}
			t.Errorf("a Go snippet does not compile: %s", msg)
		},
	}
	_, _ = conf.Check("snippets", fset, files, nil)
}

// fragmentImports returns the import specs of a fragment's file:
// snippetImports, and the imports the fragment declares (own).
func fragmentImports(t *testing.T, own string) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "imports.go", "package p\n"+own, parser.ImportsOnly)
	require.NoError(t, err, "the imports of a Go snippet do not parse")
	specs := quoteAll(slices.DeleteFunc(slices.Clone(snippetImports), func(p string) bool {
		for _, im := range f.Imports {
			if strings.Trim(im.Path.Value, `"`) == p {
				return true
			}
		}
		return false
	}))
	for _, im := range f.Imports {
		name := ""
		if im.Name != nil {
			name = im.Name.Name + " "
		}
		specs += "\t" + name + im.Path.Value + "\n"
	}
	return specs
}

func quoteAll(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "\t%q\n", p)
	}
	return b.String()
}

// exportData builds the packages imports names, and what they import, in
// module mod, and returns the files of their export data by import path.
func exportData(gobin, mod string, imports map[string]bool) (map[string]string, error) {
	paths := make([]string, 0, len(imports))
	for p := range imports {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, append([]string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}, paths...)...)
	cmd.Dir = mod
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list -export in %s: %w: %s", mod, err, stderr.String())
	}
	exports := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, file, _ := strings.Cut(line, "\t")
		exports[path] = file
	}
	return exports, nil
}

// mdLinkRE matches an inline link or image: [text](target).
var mdLinkRE = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)

func TestDocLinks(t *testing.T) {
	for _, file := range docFiles(t) {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		inFence := false
		for i, line := range strings.Split(string(data), "\n") {
			if fenceRE.MatchString(line) {
				inFence = !inFence
				continue
			}
			if inFence {
				continue
			}
			for _, m := range mdLinkRE.FindAllStringSubmatch(withoutCodeSpans(line), -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				if err := checkLink(file, target); err != nil {
					t.Errorf("%s:%d: link %s: %v", file, i+1, target, err)
				}
			}
		}
	}
}

// withoutCodeSpans blanks the `code spans` of a line of Markdown, where
// brackets are not links.
func withoutCodeSpans(line string) string {
	parts := strings.Split(line, "`")
	for i := 1; i < len(parts); i += 2 {
		parts[i] = strings.Repeat(" ", len(parts[i]))
	}
	return strings.Join(parts, "`")
}

// checkLink reports whether target, a link in file, resolves.
func checkLink(file, target string) error {
	path, anchor, _ := strings.Cut(target, "#")
	if path == "" {
		path = file
	} else {
		path = filepath.Join(filepath.Dir(file), path)
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	if anchor == "" {
		return nil
	}
	if !strings.HasSuffix(path, ".md") {
		return fmt.Errorf("an anchor into a file that is not Markdown")
	}
	anchors, err := mdAnchors(path)
	if err != nil {
		return err
	}
	if !anchors[anchor] {
		return fmt.Errorf("%s has no heading with the anchor #%s", path, anchor)
	}
	return nil
}

// mdAnchors returns the anchors GitHub gives the headings of a Markdown
// file: lower case, punctuation dropped, spaces as dashes, a -1, -2, ...
// suffix on repeats.
func mdAnchors(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	anchors := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(data), "\n") {
		if fenceRE.MatchString(line) {
			inFence = !inFence
			continue
		}
		heading := strings.TrimLeft(line, "#")
		if inFence || heading == line || !strings.HasPrefix(heading, " ") {
			continue
		}
		var slug strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
			switch {
			case r == ' ':
				slug.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		s := slug.String()
		if n := seen[s]; n > 0 {
			anchors[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			anchors[s] = true
		}
		seen[s]++
	}
	return anchors, nil
}

// commentNamesElsewhere are names the package's comments may use that are
// not identifiers of the package, with the reason.
var commentNamesElsewhere = map[string]string{
	// Python's names: exceptions, and the runtime's names on its side.
	"KeyboardInterrupt": "Python exception", "ValueError": "Python exception",
	"TypeError": "Python exception", "MemoryError": "Python exception",
	"GeneratorExit": "Python exception", "CancelledError": "Python (asyncio) exception",
	"GoError":        "the Python runtime's exception for a Go error (callback.py)",
	"pypool_runtime": "the Python runtime's package (python/pypool_runtime)",
	"TypedDict":      "Python (typing) class", "NamedTuple": "Python (typing) class", "NotRequired": "Python (typing) name",
	"typing":       "Python's typing module",
	"current_call": "the Python runtime's call context (callctx.py)", "trace_context": "the Python runtime's call context (callctx.py)",
	"W3C": "a standards body (its Trace Context: traceparent, tracestate)",
	// Other Go code the comments compare with or describe.
	"AcquireFunc": "pgx's Pool.AcquireFunc", "QueryTracer": "pgx's tracer",
	"driverConn": "database/sql's driverConn", "ExitError": "os/exec's ExitError",
	"ObjectPool": "go-commons-pool", "BorrowObject": "go-commons-pool",
	"MakeObject": "go-commons-pool", "InvalidateObject": "go-commons-pool",
	"ReturnObject": "go-commons-pool", "MaxTotal": "go-commons-pool",
	"TimeoutCond": "go-commons-pool",
	"StateName":   "poolboy's status/1",
	// Words that look like identifiers.
	"OpenTelemetry": "a product", "ErlPort": "a product", "VmPeak": "a field of /proc/PID/status",
	"KiB": "a unit", "MiB": "a unit", "NaN": "a float value",
	"traceback.py": "a user's file that would shadow a standard module",
	"checkedOut":   "state.go's diagram names the states without their state prefix",
}

var (
	backtickRE  = regexp.MustCompile("`([A-Za-z_][A-Za-z0-9_]*(?:\\.[A-Za-z_][A-Za-z0-9_]*)*)(?:\\(\\))?`")
	docLinkRE   = regexp.MustCompile(`\[\*?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\]`)
	camelWordRE = regexp.MustCompile(`\b((?:[A-Za-z_][A-Za-z0-9_]*\.)*(?:[a-z]+[A-Z][A-Za-z0-9]*|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*)(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\b`)
	typeDotRE   = regexp.MustCompile(`\b([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\b`)
)

// pkgNames is what the package declares, read from its syntax.
type pkgNames struct {
	all     map[string]bool            // every identifier in the package's files
	types   map[string]map[string]bool // each type's fields and methods
	imports map[string]bool            // the names of imported packages
}

func TestDocCommentNames(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	require.NoError(t, err)
	pkg := pkgs["pypool"]
	require.NotNil(t, pkg)
	names := collectNames(pkg)
	files := make([]string, 0, len(pkg.Files))
	for name := range pkg.Files {
		files = append(files, name)
	}
	sort.Strings(files)
	for _, name := range files {
		f := pkg.Files[name]
		for _, cg := range f.Comments {
			for _, c := range cg.List {
				for _, ref := range commentRefs(c.Text) {
					if why := names.missing(ref); why != "" {
						t.Errorf("%s: the comment names %s: %s", fset.Position(c.Pos()), ref.name, why)
					}
				}
			}
		}
		for _, d := range docDecls(f) {
			if !startsWithName(d.doc.Text(), d.name) {
				t.Errorf("%s: the doc comment of %s does not start with its name: %q", fset.Position(d.doc.Pos()), d.name, firstWords(d.doc.Text(), 6))
			}
		}
	}
}

// commentRef is a name a comment gives: strict when it is marked as an
// identifier (backticks, a doc link), which must then exist; a word in
// camelCase or Type.member form is checked where it can only be one.
type commentRef struct {
	name   string
	strict bool
}

// commentRefs returns the identifiers a comment names, outside the
// comment's indented code.
func commentRefs(comment string) []commentRef {
	var refs []commentRef
	for _, line := range strings.Split(comment, "\n") {
		line = strings.TrimPrefix(strings.TrimPrefix(line, "//"), "/*")
		if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "   ") {
			continue // code in a doc comment: a user's program, not ours
		}
		for _, re := range []*regexp.Regexp{backtickRE, docLinkRE, camelWordRE, typeDotRE} {
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				name := m[1]
				if re == typeDotRE {
					name = m[0]
				}
				refs = append(refs, commentRef{name, re == backtickRE || re == docLinkRE})
			}
		}
	}
	slices.SortFunc(refs, func(a, b commentRef) int { return strings.Compare(a.name, b.name) })
	return slices.Compact(refs)
}

func collectNames(pkg *ast.Package) pkgNames {
	n := pkgNames{all: map[string]bool{}, types: map[string]map[string]bool{}, imports: map[string]bool{}}
	member := func(typ, name string) {
		if n.types[typ] == nil {
			n.types[typ] = map[string]bool{}
		}
		n.types[typ][name] = true
	}
	for _, f := range pkg.Files {
		for _, im := range f.Imports {
			path := strings.Trim(im.Path.Value, `"`)
			name := filepath.Base(path)
			if strings.HasPrefix(name, "v") && strings.Trim(name[1:], "0123456789") == "" {
				name = filepath.Base(filepath.Dir(path)) // .../msgpack/v5
			}
			if im.Name != nil {
				name = im.Name.Name
			}
			n.imports[name] = true
		}
		ast.Inspect(f, func(node ast.Node) bool {
			switch node := node.(type) {
			case *ast.Ident:
				n.all[node.Name] = true
			case *ast.TypeSpec:
				member(node.Name.Name, "")
				switch typ := node.Type.(type) {
				case *ast.StructType:
					for _, field := range typ.Fields.List {
						for _, name := range field.Names {
							member(node.Name.Name, name.Name)
						}
						if len(field.Names) == 0 { // embedded
							member(node.Name.Name, strings.TrimPrefix(types.ExprString(field.Type), "*"))
						}
					}
				case *ast.InterfaceType:
					for _, m := range typ.Methods.List {
						for _, name := range m.Names {
							member(node.Name.Name, name.Name)
						}
					}
				}
			case *ast.FuncDecl:
				if node.Recv != nil && len(node.Recv.List) == 1 {
					recv := types.ExprString(node.Recv.List[0].Type)
					recv = strings.TrimPrefix(recv, "*")
					recv, _, _ = strings.Cut(recv, "[")
					member(recv, node.Name.Name)
				}
			}
			return true
		})
	}
	return n
}

// missing says why ref names nothing known, or returns "".
func (n pkgNames) missing(r commentRef) string {
	ref := r.name
	if _, ok := commentNamesElsewhere[ref]; ok {
		return ""
	}
	if ext := filepath.Ext(ref); ext == ".go" || ext == ".py" || ext == ".sh" {
		return missingFile(ref)
	}
	parts := strings.Split(ref, ".")
	if parts[0] == "pypool" && len(parts) > 1 {
		parts = parts[1:]
	}
	if _, ok := commentNamesElsewhere[parts[0]]; ok {
		return ""
	}
	if len(parts) > 1 && n.imports[parts[0]] {
		return "" // another package's: not checked here
	}
	if members, isType := n.types[parts[0]]; isType {
		if len(parts) > 1 && !members[parts[1]] {
			return fmt.Sprintf("%s has no field or method %s", parts[0], parts[1])
		}
		return ""
	}
	for _, p := range parts {
		if !n.all[p] && (r.strict || !isPlainWord(p)) {
			return fmt.Sprintf("no identifier %s in the package", p)
		}
	}
	return ""
}

// missingFile says why a file a comment names (process.go, worker.py) is
// not in the repository, or returns "".
func missingFile(name string) string {
	for _, dir := range []string{".", "python/pypool_runtime", "python"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return ""
		}
	}
	return "no such file here nor in python/pypool_runtime"
}

// isPlainWord reports whether s is a word, not an identifier (lower case,
// or capitalised, without an inner capital): a part of a dotted name that
// the camelCase rule did not pick.
func isPlainWord(s string) bool { return !camelWordRE.MatchString(s) && !strings.Contains(s, "_") }

// docDecl is a declaration with its doc comment.
type docDecl struct {
	name string
	doc  *ast.CommentGroup
}

// docDecls returns the declarations of f that have a doc comment of their
// own: functions, methods, and types, variables and constants declared one
// per declaration or with a comment of their own in a group.
func docDecls(f *ast.File) []docDecl {
	var out []docDecl
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Doc != nil {
				out = append(out, docDecl{d.Name.Name, d.Doc})
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				doc, name := (*ast.CommentGroup)(nil), ""
				switch s := s.(type) {
				case *ast.TypeSpec:
					doc, name = s.Doc, s.Name.Name
				case *ast.ValueSpec:
					if len(s.Names) != 1 {
						continue
					}
					doc, name = s.Doc, s.Names[0].Name
				default:
					continue
				}
				if doc == nil && len(d.Specs) == 1 {
					doc = d.Doc
				}
				if doc != nil {
					out = append(out, docDecl{name, doc})
				}
			}
		}
	}
	return out
}

// startsWithName reports whether a doc comment starts with name, possibly
// after an article: "Foo does", "A Foo is", "Foo's", "Foo, Bar: ...".
func startsWithName(text, name string) bool {
	words := strings.Fields(text)
	if len(words) > 1 && (words[0] == "A" || words[0] == "An" || words[0] == "The") {
		words = words[1:]
	}
	if len(words) == 0 {
		return true
	}
	w := strings.TrimRight(strings.TrimSuffix(words[0], "'s"), ",:;.")
	return w == name || strings.TrimPrefix(w, "*") == name
}

func firstWords(text string, n int) string {
	words := strings.Fields(text)
	return strings.Join(words[:min(n, len(words))], " ")
}

// TestDocCommentsOnEveryExportedName: in the root package and in every
// internal package, every exported function, method and type has a doc
// comment, and every doc comment starts with its declaration's name.
func TestDocCommentsOnEveryExportedName(t *testing.T) {
	dirs, err := filepath.Glob("internal/*")
	require.NoError(t, err)
	fset := token.NewFileSet()
	for _, dir := range append([]string{"."}, dirs...) {
		pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
		require.NoError(t, err)
		for _, pkg := range pkgs {
			for _, f := range pkg.Files {
				for _, name := range undocumented(f) {
					t.Errorf("%s: %s has no doc comment", fset.Position(f.Package), name)
				}
				for _, d := range docDecls(f) {
					if !startsWithName(d.doc.Text(), d.name) {
						t.Errorf("%s: the doc comment of %s does not start with its name: %q", fset.Position(d.doc.Pos()), d.name, firstWords(d.doc.Text(), 6))
					}
				}
			}
		}
	}
}

// undocumented returns the exported functions, methods and types of f
// that have no doc comment.
func undocumented(f *ast.File) []string {
	var out []string
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Doc == nil && d.Name.IsExported() {
				out = append(out, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if ts, ok := s.(*ast.TypeSpec); ok && ts.Name.IsExported() && ts.Doc == nil && (d.Doc == nil || len(d.Specs) > 1) {
					out = append(out, ts.Name.Name)
				}
			}
		}
	}
	return out
}
