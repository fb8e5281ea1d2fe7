package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite internal/hinted/hinted_gen.go and internal/hostile/hostile_gen.go, the golden bindings")

// goldens are the golden bindings' packages and their go:generate
// arguments (doc.go).
var goldens = []struct {
	dir  string
	args []string
}{
	{"internal/hinted", []string{"-module", "pypool_hinted", "-out", "hinted_gen.go", "-pythonpath", "../../../../testdata/pypoolgen"}},
	{"internal/hostile", []string{"-module", "pypool_hostile", "-out", "hostile_gen.go", "-pythonpath", "../../testdata"}},
}

// TestGolden: the bindings of testdata/pypoolgen/pypool_hinted.py (every
// hint pypoolgen supports) are internal/hinted/hinted_gen.go, and those of
// testdata/pypool_hostile.py (names, signatures and classes that push the
// generator) internal/hostile/hostile_gen.go, on both interpreters (-check
// leaves the interpreter line out). Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	for _, golden := range goldens {
		t.Run(filepath.Base(golden.dir), func(t *testing.T) {
			chdir(t, golden.dir)
			if *update {
				var stderr bytes.Buffer
				if status := run(golden.args, os.Stdout, &stderr); status != 0 {
					t.Fatalf("status %d: %s", status, stderr.String())
				}
			}
			for _, python := range []string{"python3", "/usr/bin/python3"} {
				t.Run(filepath.Base(filepath.Dir(python))+"_"+filepath.Base(python), func(t *testing.T) {
					if _, err := exec.LookPath(python); err != nil {
						t.Skip(err)
					}
					var stdout, stderr bytes.Buffer
					args := append(append([]string{}, golden.args...), "-check", "-python", python)
					if status := run(args, &stdout, &stderr); status != 0 {
						t.Fatalf("status %d (run the test with -update if the change is meant):\n%s%s", status, stdout.String(), stderr.String())
					}
				})
			}
		})
	}
}

// chdir changes the working directory for the rest of the test (testing.T's
// own Chdir needs go1.24; the module says go1.23). No test of this package
// runs in parallel.
func chdir(t *testing.T, dir string) {
	t.Helper()
	was, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chdir(was); err != nil {
			t.Fatal(err)
		}
	})
}

// module writes a Python module named mod_check into dir.
func module(t *testing.T, dir, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "mod_check.py"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheck: -check passes while the module is unchanged, and fails,
// naming the function and the change, when a function is renamed, a
// parameter changes type, a parameter is added (positional or keyword)
// or a function is removed.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "mod_check_gen.go")
	args := []string{"-module", "mod_check", "-pythonpath", dir, "-out", out, "-package", "modcheck"}
	const original = `
def duplicate_text(text: str) -> str:
    return text * 2

def add(a: int, b: int) -> int:
    return a + b

def scale(values: list[float], factor: float = 2.0) -> list[float]:
    return [v * factor for v in values]
`
	module(t, dir, original)
	var stdout, stderr bytes.Buffer
	if status := run(args, &stdout, &stderr); status != 0 {
		t.Fatalf("generate: status %d: %s", status, stderr.String())
	}
	check := func(t *testing.T) (int, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		status := run(append(args, "-check"), &stdout, &stderr)
		t.Logf("-check: status %d\n%s%s", status, stdout.String(), stderr.String())
		return status, stdout.String()
	}
	if status, _ := check(t); status != 0 {
		t.Fatal("-check fails on the file it just wrote")
	}
	for _, c := range []struct {
		name, from, to string
		want           []string
	}{
		{"renamed function", "def duplicate_text(text: str)", "def copy_text(text: str)",
			[]string{"function DuplicateText renamed to CopyText (Python duplicate_text -> copy_text)"}},
		{"changed parameter type", "def add(a: int, b: int)", "def add(a: int, b: float)",
			[]string{"function Add: parameter b changed type int64 -> float64"}},
		{"new parameter", "def add(a: int, b: int)", "def add(a: int, b: int, c: int)",
			[]string{"function Add: new parameter c_ int64"}},
		{"new keyword parameter", "factor: float = 2.0)", "factor: float = 2.0, *, offset: float = 0.0)",
			[]string{"function Scale: new optional parameter Offset *float64"}},
		{"changed result", "-> str:", "-> bytes:", []string{"function DuplicateText: result (string, error) -> ([]byte, error)"}},
		{"removed function", "def add(a: int, b: int) -> int:\n    return a + b\n", "",
			[]string{"function Add removed (Python def add(a: int, b: int) -> int)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			changed := strings.Replace(original, c.from, c.to, 1)
			if changed == original {
				t.Fatalf("%q is not in the module", c.from)
			}
			module(t, dir, changed)
			defer module(t, dir, original)
			status, report := check(t)
			if status != 1 {
				t.Errorf("status %d, want 1", status)
			}
			for _, want := range c.want {
				if !strings.Contains(report, out+": "+want+"\n") {
					t.Errorf("no %q in the report", want)
				}
			}
			if !strings.Contains(report, "--- "+out+" (on disk)") {
				t.Error("no line diff in the report")
			}
		})
	}
}

// TestErrors: a module that does not import, a missing -module, a name
// that two Python names would share.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if status := run([]string{"-out", filepath.Join(dir, "x.go")}, &stdout, &stderr); status != 2 || !strings.Contains(stderr.String(), "-module is required") {
		t.Errorf("no -module: status %d, %s", status, stderr.String())
	}
	module(t, dir, "raise RuntimeError('broken on purpose')\n")
	stderr.Reset()
	status := run([]string{"-module", "mod_check", "-pythonpath", dir, "-out", filepath.Join(dir, "x.go"), "-package", "x", "-timeout", "30s"}, &stdout, &stderr)
	if status != 1 || !strings.Contains(stderr.String(), "broken on purpose") {
		t.Errorf("broken module: status %d, %s", status, stderr.String())
	}
	module(t, dir, "def get_url() -> str:\n    return ''\n\ndef GetURL() -> str:\n    return ''\n")
	stderr.Reset()
	status = run([]string{"-module", "mod_check", "-pythonpath", dir, "-out", filepath.Join(dir, "x.go"), "-package", "x"}, &stdout, &stderr)
	if status != 1 || !strings.Contains(stderr.String(), "would both be the Go name GetURL") {
		t.Errorf("two names for GetURL: status %d, %s", status, stderr.String())
	}
}

// TestCompareIgnoresEnvironment: the interpreter and command lines of the
// header do not make -check fail (another Python version on CI, a check
// run from another directory); any other line does.
func TestCompareIgnoresEnvironment(t *testing.T) {
	old := "// Code generated by pypoolgen from the Python module m; DO NOT EDIT.\n//\n// Interpreter: python3 (Python 3.11.7)\n// Regenerate: pypoolgen -module m -out m_gen.go -pythonpath .\n\npackage m\n"
	same := strings.NewReplacer("3.11.7", "3.13.1", "-pythonpath .", "-pythonpath py").Replace(old)
	if report := compare("m_gen.go", []byte(old), []byte(same)); report != "" {
		t.Errorf("a report for the environment's lines alone:\n%s", report)
	}
	if report := compare("m_gen.go", []byte(old), []byte(strings.Replace(old, "package m", "package n", 1))); report == "" {
		t.Error("no report for another package")
	}
}
