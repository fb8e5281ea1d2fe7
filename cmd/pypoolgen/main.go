// Command pypoolgen writes typed Go bindings for a Python module's
// functions, from their type hints: one Go function per Python function,
// with typed parameters and result, and Go structs for the TypedDict,
// dataclass and NamedTuple classes they use.
//
//	go run github.com/pypool/pypool/cmd/pypoolgen -module inventory -out inventory_gen.go
//
// or, in a Go file of the package that uses them:
//
//	//go:generate go run github.com/pypool/pypool/cmd/pypoolgen -module inventory -out inventory_gen.go
//
// It starts one worker of the module through pypool (a Pool of Size 1,
// with -python and -pythonpath as Config.Python and Config.PythonPath) and
// reads the functions' signatures with Pool.Functions. With -check it
// writes nothing and exits with status 1 when the file on disk differs from
// what it would write, printing what changed, function by function: for
// CI. docs/bindings.md describes the Go forms of Python's hints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pypool/pypool"
)

// config is the command line.
type config struct {
	module     string
	out        string
	pkg        string
	python     string
	pythonPath []string
	check      bool
	timeout    time.Duration
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command, with its arguments and output: the exit status.
func run(argv []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(argv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "pypoolgen:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	src, err := bindings(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "pypoolgen:", err)
		return 1
	}
	if cfg.check {
		old, err := os.ReadFile(cfg.out)
		if err != nil {
			fmt.Fprintf(stderr, "pypoolgen: -check: %v\n", err)
			return 1
		}
		if report := compare(cfg.out, old, src); report != "" {
			fmt.Fprint(stdout, report)
			fmt.Fprintf(stdout, "pypoolgen: %s is out of date: regenerate it with %s (in %s)\n", cfg.out, command(cfg), filepath.Dir(cfg.out))
			return 1
		}
		return 0
	}
	if err := os.WriteFile(cfg.out, src, 0o644); err != nil {
		fmt.Fprintln(stderr, "pypoolgen:", err)
		return 1
	}
	return 0
}

// stringList is a flag that may be repeated, each value a list separated
// by commas.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func parseFlags(argv []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("pypoolgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.module, "module", "", "the Python module (required)")
	fs.StringVar(&cfg.out, "out", "", "the Go file to write (default: <module>_gen.go)")
	fs.StringVar(&cfg.pkg, "package", "", "the Go package name (default: $GOPACKAGE, as go generate sets it, else the package of the file -out names, else its directory's name)")
	fs.StringVar(&cfg.python, "python", "", "the Python interpreter (Config.Python; default python3)")
	fs.Var((*stringList)(&cfg.pythonPath), "pythonpath", "directories to put first on sys.path (Config.PythonPath), separated by commas; may be repeated")
	fs.BoolVar(&cfg.check, "check", false, "write nothing; exit 1, printing what changed, if -out differs from what would be written")
	fs.DurationVar(&cfg.timeout, "timeout", 2*time.Minute, "how long to wait for the worker: its start (the module's import) and the whole run")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pypoolgen -module name [-out file.go] [-package name] [-python interpreter] [-pythonpath dirs] [-check]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(argv); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.module == "" {
		return cfg, errors.New("-module is required")
	}
	if cfg.out == "" {
		cfg.out = strings.ReplaceAll(cfg.module, ".", "_") + "_gen.go"
	}
	if cfg.pkg == "" {
		cfg.pkg = os.Getenv("GOPACKAGE")
	}
	if cfg.pkg == "" {
		cfg.pkg = packageOf(cfg.out)
	}
	if cfg.pkg == "" {
		cfg.pkg = packageIn(filepath.Dir(cfg.out))
	}
	if cfg.pkg == "" {
		abs, err := filepath.Abs(filepath.Dir(cfg.out))
		if err != nil {
			return cfg, err
		}
		cfg.pkg = strings.ReplaceAll(filepath.Base(abs), "-", "_")
	}
	if !token.IsIdentifier(cfg.pkg) || cfg.pkg == "_" {
		return cfg, fmt.Errorf("%q is not a Go package name: set -package", cfg.pkg)
	}
	return cfg, nil
}

// packageOf is the package clause of the Go file path, or "" if it
// cannot be read.
func packageOf(path string) string {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly)
	if err != nil {
		return ""
	}
	return f.Name.Name
}

// packageIn is the package of the Go files (tests left out) in the
// directory dir, or "" if it holds none that can be read: run by hand
// beside main.go, the bindings belong to package main, not to one named
// after the directory. The files are those the build takes: a generator
// script beside them (//go:build ignore, package main) is not the
// package's.
func packageIn(dir string) string {
	if pkg, err := build.Default.ImportDir(dir, 0); err == nil && pkg.Name != "" {
		return pkg.Name
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	ctx := build.Default
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		if ok, err := ctx.MatchFile(dir, filepath.Base(file)); err != nil || !ok {
			continue
		}
		if pkg := packageOf(file); pkg != "" {
			return pkg
		}
	}
	return ""
}

// command is the command line that regenerates the file, for its header:
// the flags that change what is written, -check left out. It is run from
// the file's directory (as go generate runs it: -out names the file
// alone), so a relative -pythonpath is written relative to that directory.
func command(cfg config) string {
	// -python is left out: the interpreter line names it, and CI may
	// check with another interpreter.
	parts := []string{"pypoolgen", "-module", cfg.module, "-out", filepath.Base(cfg.out)}
	if len(cfg.pythonPath) > 0 {
		paths := make([]string, len(cfg.pythonPath))
		for i, p := range cfg.pythonPath {
			paths[i] = p
			if !filepath.IsAbs(p) {
				if rel, err := filepath.Rel(filepath.Dir(cfg.out), p); err == nil {
					paths[i] = filepath.ToSlash(rel)
				}
			}
		}
		parts = append(parts, "-pythonpath", strings.Join(paths, ","))
	}
	return strings.Join(parts, " ")
}

// bindings starts a worker of the module, reads its functions and returns
// the Go source of their bindings.
func bindings(ctx context.Context, cfg config) ([]byte, error) {
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     cfg.module,
		Python:     cfg.python,
		PythonPath: cfg.pythonPath,
		Size:       1,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		// -timeout bounds the start too: StartTimeout's default (60 s)
		// would cut off a module slower to import than that.
		StartTimeout: cfg.timeout,
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w (pypoolgen: -timeout %v bounds the module's import (Config.StartTimeout) and the whole run: "+
			"raise it for a module slow to import)", err, cfg.timeout)
	}
	if errors.Is(err, pypool.ErrWorkerStart) {
		// The error's fixes name Config's fields: say which flags set them.
		return nil, fmt.Errorf("%w (pypoolgen: -pythonpath sets Config.PythonPath, -python Config.Python)", err)
	}
	if err != nil {
		return nil, err
	}
	defer pool.Close(context.Background())
	var version string
	err = pool.Transaction(ctx, func(w *pypool.Worker) error {
		version = w.PythonVersion()
		return nil
	})
	if err != nil {
		return nil, err
	}
	functions, err := pool.Functions(ctx)
	if err != nil {
		return nil, err
	}
	python := cfg.python
	if python == "" {
		python = "python3"
	}
	return generate(source{module: cfg.module, pkg: cfg.pkg, python: python, version: version, command: command(cfg)}, functions)
}
