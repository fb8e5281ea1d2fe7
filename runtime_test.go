package pypool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// launches counts the lines a shim script appended to its log.
func launches(t *testing.T, log string) int {
	data, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	require.NoError(t, err)
	return strings.Count(string(data), "\n")
}

// TestInterpreterLearnedFromTheHandshake: New runs no extra interpreter to
// find the real executable behind a launcher shim (pyenv's costs about 90 ms
// a launch): its first workers go through the shim and say in their
// handshake which executable they are; later starts, in this pool and in
// later pools of this process, run it directly.
func TestInterpreterLearnedFromTheHandshake(t *testing.T) {
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	require.NoError(t, err)
	real := strings.TrimSpace(string(out))
	dir := t.TempDir()
	shim, log := filepath.Join(dir, "python3"), filepath.Join(dir, "launches")
	writeScript(t, shim, fmt.Sprintf("echo launch >> %q\nexec %q \"$@\"\n", log, real))

	cfg := testConfig(t)
	cfg.Python, cfg.Size = shim, 2
	pool := newTestPool(t, cfg)
	want := 2 // one launch per worker
	if testStartMethod() == StartForkServer {
		want = 1 // the template's: the workers are forked
	}
	// The pool's guardian is a shell (guardian.sh): it never runs the shim.
	assert.Equal(t, want, launches(t, log), "one launch per worker, none to ask the interpreter or for the guardian")
	assert.Equal(t, real, pool.spec.python.path())

	require.NoError(t, syscall.Kill(workerPids(pool)[0], syscall.SIGKILL))
	awaitPool(t, pool, "replaced", func(s Stats) bool { return s.Restarts == 1 && atRest(s, 2) })
	second := newTestPool(t, cfg)
	_, err = second.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	assert.Equal(t, want, launches(t, log), "the replacement and the second pool ran the executable directly")
}

// TestOldPythonIsRefused: an interpreter older than 3.8 (here a stand-in
// that answers as the bootstrap's first line does on one) fails New at once
// with a message that says so, as a fatal start failure.
func TestOldPythonIsRefused(t *testing.T) {
	old := filepath.Join(t.TempDir(), "python2")
	writeScript(t, old, "echo 'pypool needs Python 3.8 or newer, this is Python 2.7.18' >&2\nexit 86\n")
	cfg := testConfig(t)
	cfg.Python = old
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	assert.Contains(t, err.Error(), "pypool needs Python 3.8 or newer, this is Python 2.7.18")
	assert.True(t, isFatalStart(err), "a restart cannot help: %v", err)
}

// TestEnvironmentCannotBreakTheRuntime sets the PYTHON* variables that would
// break a naive worker: a PYTHONPATH that shadows the runtime and msgpack, a
// PYTHONSTARTUP that raises, an ASCII-only PYTHONIOENCODING, and no
// PYTHONUNBUFFERED (which the development machines export).
func TestEnvironmentCannotBreakTheRuntime(t *testing.T) {
	evil := t.TempDir()
	for _, name := range []string{"msgpack.py", "pypool_runtime.py", "pypool_testmod.py"} {
		require.NoError(t, os.WriteFile(filepath.Join(evil, name), []byte("raise ImportError('shadowed')\n"), 0o644))
	}
	startup := filepath.Join(evil, "startup.py")
	require.NoError(t, os.WriteFile(startup, []byte("raise SystemExit('startup ran')\n"), 0o644))
	t.Setenv("PYTHONPATH", evil)
	t.Setenv("PYTHONSTARTUP", startup)
	t.Setenv("PYTHONIOENCODING", "ascii")
	t.Setenv("PYTHONUNBUFFERED", "")
	os.Unsetenv("PYTHONUNBUFFERED")

	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	out, err := pool.Call(testCtx(t), "echo", "héllo ☃")
	require.NoError(t, err)
	assert.Equal(t, "héllo ☃", out)
	_, err = pool.Call(testCtx(t), "chatty")
	require.NoError(t, err)
	rec.await(t, "line from print") // line-buffered without PYTHONUNBUFFERED
}
