package pypool

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exampleBinary builds examples/duplicate, whose Python module is embedded
// (Config.PythonFS), once per test run.
var exampleBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "pypool-example-")
	if err != nil {
		return "", err
	}
	exampleBinaryDir = dir
	bin := filepath.Join(dir, "duplicate")
	out, err := exec.Command("go", "build", "-o", bin, "./examples/duplicate").CombinedOutput()
	if err != nil {
		return "", &exec.ExitError{Stderr: out}
	}
	return bin, nil
})

// removeExampleBinary removes what exampleBinary built; TestMain calls it.
func removeExampleBinary() {
	if exampleBinaryDir != "" {
		_ = os.RemoveAll(exampleBinaryDir)
	}
}

// exampleBinaryDir is the directory exampleBinary built in, if it ran.
var exampleBinaryDir string

// runExample runs the example binary from an empty directory with no HOME
// nor XDG_CACHE_HOME (the usual service or bare container) and TMPDIR=tmp,
// and returns its output.
func runExample(t *testing.T, tmp string, extraEnv ...string) (string, error) {
	t.Helper()
	bin, err := exampleBinary()
	require.NoError(t, err, "building examples/duplicate")
	return runIn(t, exec.Command(bin), tmp, extraEnv...)
}

func runIn(t *testing.T, cmd *exec.Cmd, tmp string, extraEnv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	cmd.Dir = t.TempDir() // no my_module.py here
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "HOME" && k != "XDG_CACHE_HOME" && k != "TMPDIR" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, append([]string{"TMPDIR=" + tmp}, extraEnv...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// installed returns the one path matching pattern under the example's
// install base in tmp (whatever its layout: the test must also fail on
// the code before the fix, which used tmp/pypool).
func installed(t *testing.T, tmp, pattern string) string {
	t.Helper()
	found, err := filepath.Glob(filepath.Join(tmp, "pypool*", pattern))
	require.NoError(t, err)
	require.Len(t, found, 1, "%s under %s", pattern, tmp)
	return found[0]
}

// TestExampleBinaryRunsAnywhere: the built example, whose module is
// embedded, runs from a directory without its source, with HOME unset.
func TestExampleBinaryRunsAnywhere(t *testing.T) {
	tmp := t.TempDir()
	out, err := runExample(t, tmp)
	require.NoError(t, err, out)
	assert.Equal(t, "testingtesting\n", out)
	base := filepath.Join(tmp, "pypool-"+strconv.Itoa(os.Geteuid()))
	assert.FileExists(t, installed(t, tmp, "python-*/my_module.py"))
	assert.Equal(t, base, filepath.Dir(installed(t, tmp, "runtime-*")), "a per-user base in the temp directory")
}

// TestExampleBinaryWithReadOnlyHome: with a home it cannot write in, the
// install falls back to the temp directory.
func TestExampleBinaryWithReadOnlyHome(t *testing.T) {
	bin, err := exampleBinary()
	require.NoError(t, err)
	home, tmp := t.TempDir(), t.TempDir()
	cmd := exec.Command(bin)
	if os.Geteuid() == 0 {
		// Root writes through permission bits: a read-only bind mount in
		// a mount namespace of the program's own.
		if err := exec.Command("unshare", "-m", "true").Run(); err != nil {
			t.Skipf("running as root without mount namespaces (unshare -m: %v): cannot make a read-only home", err)
		}
		cmd = exec.Command("unshare", "-m", "sh", "-c", `mount -o bind,ro "$0" "$0" && exec "$1"`, home, bin)
	} else {
		require.NoError(t, os.Chmod(home, 0o555))
		t.Cleanup(func() { _ = os.Chmod(home, 0o755) })
	}
	out, err := runIn(t, cmd, tmp, "HOME="+home)
	require.NoError(t, err, out)
	// The example's output, and the one record (slog's default logger, at
	// Info) that says why the install is not in the home.
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 2, out)
	assert.Contains(t, lines, "testingtesting")
	assert.Contains(t, out, "INFO "+msgInstallFallback)
	installed(t, tmp, "runtime-*")
	entries, err := os.ReadDir(home)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// TestPlantedRuntimeCodeDoesNotRun is issue 13's reproduction: code appended
// to the installed runtime (or to the installed user module) by whoever
// could write there does not run in the next process's workers; the files
// are rewritten as the binary holds them.
func TestPlantedRuntimeCodeDoesNotRun(t *testing.T) {
	tmp := t.TempDir()
	out, err := runExample(t, tmp)
	require.NoError(t, err, out)
	marker := filepath.Join(t.TempDir(), "planted-code-ran")
	plant := "\nopen(" + strconv.Quote(marker) + ", 'w').close()\n"
	modules, err := filepath.Glob(filepath.Join(tmp, "pypool*", "python-*", "my_module.py"))
	require.NoError(t, err)
	for _, file := range append(modules, installed(t, tmp, "runtime-*/pypool_runtime/__init__.py")) {
		f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString(plant)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}

	out, err = runExample(t, tmp)
	require.NoError(t, err, out)
	assert.Equal(t, "testingtesting\n", out)
	assert.NoFileExists(t, marker, "the planted code ran")
	want, err := runtimeFiles.ReadFile("python/pypool_runtime/__init__.py")
	require.NoError(t, err)
	got, err := os.ReadFile(installed(t, tmp, "runtime-*/pypool_runtime/__init__.py"))
	require.NoError(t, err)
	assert.Equal(t, string(want), string(got), "rewritten")
}

// TestCorruptedRuntimeIsRewritten: a truncated install (a full disk, an
// interrupted copy) is rewritten, not used.
func TestCorruptedRuntimeIsRewritten(t *testing.T) {
	tmp := t.TempDir()
	out, err := runExample(t, tmp)
	require.NoError(t, err, out)
	worker := installed(t, tmp, "runtime-*/pypool_runtime/worker.py")
	require.NoError(t, os.Truncate(worker, 100))
	out, err = runExample(t, tmp)
	require.NoError(t, err, out)
	assert.Equal(t, "testingtesting\n", out)
	want, err := runtimeFiles.ReadFile("python/pypool_runtime/worker.py")
	require.NoError(t, err)
	got, err := os.ReadFile(installed(t, tmp, "runtime-*/pypool_runtime/worker.py"))
	require.NoError(t, err)
	assert.Equal(t, len(want), len(got))
}

// plantPyc writes, for source, bytecode that also creates marker, with the
// header (source mtime and size) CPython checks, so that CPython would run
// it in place of source.
func plantPyc(t *testing.T, source, marker string) string {
	t.Helper()
	const script = `import importlib.util, importlib._bootstrap_external as be, os, sys
src, marker = sys.argv[1:]
st = os.stat(src)
code = compile(open(src).read() + "\nopen(%r, 'w').close()\n" % marker, src, "exec")
pyc = importlib.util.cache_from_source(src)
with open(pyc, "wb") as f:
    f.write(be._code_to_timestamp_pyc(code, st.st_mtime, st.st_size))
print(pyc)
`
	out, err := exec.Command("python3", "-c", script, source, marker).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(string(out))
}

// TestPlantedBytecodeDoesNotRun: a .pyc that CPython would accept for a
// runtime module, planted by another user, does not run: the tree is
// rewritten without it. The control shows the planted file is one CPython
// runs when its owner is trusted (this same user, who could as well edit
// the binary: outside the threat model).
func TestPlantedBytecodeDoesNotRun(t *testing.T) {
	for _, c := range []struct {
		name      string
		otherUser bool
	}{{"control: this user's pyc", false}, {"another user's pyc", true}} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			out, err := runExample(t, tmp)
			require.NoError(t, err, out)
			marker := filepath.Join(t.TempDir(), "planted-bytecode-ran")
			pyc := plantPyc(t, installed(t, tmp, "runtime-*/pypool_runtime/__init__.py"), marker)
			if c.otherUser {
				require.NoError(t, skipIfNotPermitted(t, os.Chown(pyc, otherUID, otherUID)))
			}
			out, err = runExample(t, tmp)
			require.NoError(t, err, out)
			assert.Equal(t, "testingtesting\n", out)
			if c.otherUser {
				assert.NoFileExists(t, marker, "the planted bytecode ran")
			} else {
				assert.FileExists(t, marker, "the control's bytecode is one CPython runs")
			}
		})
	}
}

// TestTwoProcessesInstallAtOnce: two programs starting at once with nothing
// installed both run, and share one copy of each tree.
func TestTwoProcessesInstallAtOnce(t *testing.T) {
	tmp := t.TempDir()
	var wg sync.WaitGroup
	outs, errs := make([]string, 2), make([]error, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = runExample(t, tmp)
		}()
	}
	wg.Wait()
	for i := range outs {
		require.NoError(t, errs[i], outs[i])
		assert.Equal(t, "testingtesting\n", outs[i])
	}
	installed(t, tmp, "runtime-*")
	installed(t, tmp, "python-*")
	leftovers, err := filepath.Glob(filepath.Join(tmp, "pypool*", ".*"))
	require.NoError(t, err)
	assert.Empty(t, leftovers, "no temporary directory left behind")
}
