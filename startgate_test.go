package pypool

// startgate_test.go: New starts its first workers' interpreters beside its
// install check (after its guardian), their bootstraps held until the
// check is done (startGate, bootstrapHold), and a held worker runs
// nothing of the runtime or the module before then.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// heldModule records each import of it in the file PYPOOL_TEST_MARK names.
const heldModule = `import os
with open(os.environ["PYPOOL_TEST_MARK"], "a") as f:
    f.write("imported\n")

def one():
    return 1
`

// The bootstrap reads nothing of the runtime's directory until it is
// given that directory on its stdin (runtimeDirFrame), and then no byte
// past the frame: an end of stdin first, even within the frame, ends the
// interpreter having imported nothing.
func TestHeldBootstrapImportsNothingBeforeItsDirectory(t *testing.T) {
	runtime := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(runtime, "pypool_runtime"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(runtime, "pypool_runtime", "__init__.py"), nil, 0o644))
	// The stand-in runtime records its arguments and what is left on stdin.
	require.NoError(t, os.WriteFile(filepath.Join(runtime, "pypool_runtime", "worker.py"), []byte(`import os, sys
def main(args):
    with open(os.environ["PYPOOL_TEST_MARK"], "w") as f:
        f.write(repr((args, sys.stdin.buffer.read())))
`), 0o644))
	frame := runtimeDirFrame(runtime)
	for _, tc := range []struct {
		name  string
		stdin []byte
		want  string // what the runtime recorded; "": not imported
	}{
		{"end of stdin", nil, ""},
		{"within the length", frame[:2], ""},
		{"within the directory", frame[:len(frame)-1], ""},
		{"the directory", frame, "(['--flag'], b'')"},
		{"the directory, then the protocol", append(frame, "\x00\x00\x00\x01x"...), "(['--flag'], b'\\x00\\x00\\x00\\x01x')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "mark")
			cmd := exec.Command("python3", "-I", "-c", bootstrap, "--flag")
			cmd.Env = append(os.Environ(), "PYPOOL_TEST_MARK="+mark)
			cmd.Stdin = bytes.NewReader(tc.stdin)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			got, err := os.ReadFile(mark)
			if tc.want == "" {
				require.ErrorIs(t, err, fs.ErrNotExist, "the runtime was imported")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
		})
	}
}

// New execs its first workers before its install check has returned, and
// they import the runtime and the module only once it has. When the check
// fails, or New's context ends, while they wait, New fails with that
// error and ends them, the module never imported; a worker killed while
// it waits fails New with its exit; a guardian that cannot start fails
// New before any worker starts.
func TestNewStartsItsWorkersBesideTheInstallCheck(t *testing.T) {
	checkFailed := errors.New("the install check failed")
	for _, tc := range []struct {
		name      string
		guardian  string // the guardian's shell: "" is the real one
		check     func(cancel context.CancelFunc, real func() error) error
		want      error // nil: New succeeds
		killFirst bool  // SIGKILL the first worker before the check
	}{
		{name: "checked", check: func(_ context.CancelFunc, real func() error) error { return real() }},
		{name: "check failed", check: func(context.CancelFunc, func() error) error { return checkFailed }, want: checkFailed},
		{name: "guardian failed", guardian: "/nonexistent/sh",
			check: func(_ context.CancelFunc, real func() error) error { return real() }, want: ErrWorkerStart},
		{name: "context ended", want: context.Canceled, check: func(cancel context.CancelFunc, real func() error) error {
			cancel()
			return real()
		}},
		{name: "a worker killed while held", want: ErrWorkerStart, killFirst: true,
			check: func(_ context.CancelFunc, real func() error) error { return real() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mark := filepath.Join(dir, "mark")
			require.NoError(t, os.WriteFile(filepath.Join(dir, "held_module.py"), []byte(heldModule), 0o644))
			cfg := testConfig(t)
			// Workers started by exec, whatever -pypool.start says: with the
			// fork server none is, and the check would wait for them forever.
			cfg.StartMethod = StartExec
			cfg.Size, cfg.Module, cfg.PythonPath = 2, "held_module", []string{dir}
			cfg.Env = []string{"PYPOOL_TEST_MARK=" + mark}
			cfg, err := cfg.withDefaults()
			require.NoError(t, err)
			execd := make(chan int, cfg.Size)
			workerExecuted = func(pid int) { execd <- pid }
			t.Cleanup(func() { workerExecuted = nil })

			spec, real, err := cfg.newSpec()
			require.NoError(t, err)
			spec.guard = newGuardian(cfg.Logger)
			if tc.guardian != "" {
				spec.guard.shell = tc.guardian
			}
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			var pids []int
			pool, err := newPool(ctx, cfg, spec, func() error {
				for range cfg.Size {
					pids = append(pids, <-execd) // started before the check returned
				}
				_, statErr := os.Stat(mark)
				require.ErrorIs(t, statErr, fs.ErrNotExist, "the module was imported before the check returned")
				if tc.killFirst {
					require.NoError(t, syscall.Kill(pids[0], syscall.SIGKILL))
				}
				return tc.check(cancel, real)
			})
			if tc.want == nil {
				require.NoError(t, err)
				defer pool.Close(testCtx(t))
				require.ElementsMatch(t, pids, workerPids(pool), "the workers started beside the check serve")
				v, err := CallAs[int](testCtx(t), pool, "one")
				require.NoError(t, err)
				require.Equal(t, 1, v)
				return
			}
			require.ErrorIs(t, err, tc.want)
			if tc.killFirst {
				var exitErr *WorkerExitError
				require.ErrorAs(t, err, &exitErr, "the killed worker's exit is New's error")
			}
			for _, pid := range pids {
				_, statErr := os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
				require.ErrorIs(t, statErr, fs.ErrNotExist, "worker %d is gone, reaped", pid)
			}
			if !tc.killFirst { // there, the other worker was let go, and imported it
				_, statErr := os.Stat(mark)
				require.ErrorIs(t, statErr, fs.ErrNotExist, "a held worker imported the module")
			}
		})
	}
}

// A New whose install check fails starts no process after it (its one
// guardian started before its workers), and, with the fork server, no
// worker by exec in place of the template that never ran, and it logs no
// fallback to exec (with Size above 1 the template's exec is what waited
// at the gate).
func TestFailedGateStartsNothingMore(t *testing.T) {
	checkFailed := errors.New("the install check failed")
	for _, tc := range []struct {
		name   string
		method StartMethod
		size   int
	}{
		{"exec", StartExec, 2},
		{"fork server, stand-in", StartForkServer, 1},
		{"fork server, all forked", StartForkServer, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mark := filepath.Join(dir, "mark")
			require.NoError(t, os.WriteFile(filepath.Join(dir, "held_module.py"), []byte(heldModule), 0o644))
			cfg := testConfig(t)
			rec := newLogRecorder()
			cfg.Logger = slogNew(rec)
			cfg.StartMethod, cfg.Size = tc.method, tc.size
			cfg.Module, cfg.PythonPath = "held_module", []string{dir}
			cfg.Env = []string{"PYPOOL_TEST_MARK=" + mark}
			cfg, err := cfg.withDefaults()
			require.NoError(t, err)
			spec, _, err := cfg.newSpec()
			require.NoError(t, err)
			spec.guard = newGuardian(cfg.Logger)
			execd := make(chan int, 2*cfg.Size) // the workers started by exec once the gate had failed
			workerExecuted = func(pid int) {
				select {
				case <-spec.ready.done:
					execd <- pid
				default:
				}
			}
			t.Cleanup(func() { workerExecuted = nil })
			_, err = newPool(testCtx(t), cfg, spec, func() error { return checkFailed })
			require.ErrorIs(t, err, checkFailed)
			if tc.method == StartForkServer && tc.size > 1 {
				// No worker was started by exec before the gate: the
				// first's start waited there to start the template.
				require.Empty(t, execd, "workers were started by exec after the install check failed")
			}
			require.Len(t, rec.matching(msgGuardianStarted), 1, "guardians started: the one before the workers")
			require.Empty(t, rec.matching(msgForkServerFallback), "a template that never ran was logged as failed, and workers as started by exec")
			_, statErr := os.Stat(mark)
			require.ErrorIs(t, statErr, os.ErrNotExist, "the module was imported")
		})
	}
}

// A held worker whose start's context has ended is not released, even at
// an open gate: it would import the runtime and the module for a start
// that is given up (New's context ended as its check returned).
func TestHeldWorkerOfAnEndedStartIsNotReleased(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	spec := &workerSpec{ready: newStartGate(nil), runtimeDir: t.TempDir()} // open
	p := &process{spec: spec, held: true, toWorker: w}
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	err = p.release(ctx)
	w.Close()
	require.ErrorIs(t, err, context.Canceled)
	written, readErr := io.ReadAll(r)
	require.NoError(t, readErr)
	require.Empty(t, written, "the worker was given the runtime's directory")
}

// A New whose context ends while its fork server's template waits at the
// gate (Size above 1: the template forks every worker) fails with the
// context's error, and logs no fallback to exec: no worker is started by
// exec, New fails.
func TestEndedNewLogsNoForkServerFallback(t *testing.T) {
	cfg := testConfig(t)
	rec := newLogRecorder()
	cfg.Logger = slogNew(rec)
	cfg.StartMethod, cfg.Size = StartForkServer, 2
	cfg, err := cfg.withDefaults()
	require.NoError(t, err)
	spec, real, err := cfg.newSpec()
	require.NoError(t, err)
	spec.guard = newGuardian(cfg.Logger)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	_, err = newPool(ctx, cfg, spec, func() error {
		cancel() // New's context ends as the install check runs
		return real()
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Empty(t, rec.matching(msgForkServerFallback), "a template given up with New was logged as failed, and workers as started by exec")
}

// New's first worker SIGKILLed, or SIGSTOPped, at a random point of its
// start (before its hold, held, as it imports, after its HELLO): New
// returns a start error, or a pool that serves (a worker killed after its
// HELLO replaced); either way nothing of it is left once the pool is
// closed (TestMain's leak check), and a stopped worker costs New no more
// than Config.StartTimeout.
func TestNewFirstWorkerKilledOrStoppedAnywhere(t *testing.T) {
	for round := range 12 {
		sig := syscall.SIGKILL
		if round%4 == 3 {
			sig = syscall.SIGSTOP
		}
		cfg := testConfig(t)
		cfg.Size, cfg.StartMethod = 2, StartExec // whatever -pypool.start says: its workers are exec'd
		cfg.StartTimeout = time.Second
		execd := make(chan int, 2*cfg.Size)
		workerExecuted = func(pid int) { execd <- pid }
		at := time.Duration(rand.Intn(30_000)) * time.Microsecond // New takes about 10–30 ms here
		type strike struct {
			pid   int
			timer *time.Timer
			fired chan struct{} // closed once the signal was sent
		}
		struck := make(chan strike, 1)
		go func() {
			s := strike{pid: <-execd, fired: make(chan struct{})}
			s.timer = time.AfterFunc(at, func() {
				_ = syscall.Kill(s.pid, sig)
				close(s.fired)
			})
			struck <- s
		}()
		pool, err := New(testCtx(t), cfg)
		workerExecuted = nil
		s := <-struck
		fired := !s.timer.Stop()
		if fired {
			<-s.fired
		}
		t.Logf("round %d: %v after %v: sent %v, New: %v", round, sig, at, fired, err)
		if err != nil {
			require.ErrorIs(t, err, ErrWorkerStart, "round %d: %v after %v", round, sig, at)
			continue
		}
		switch {
		case fired && sig == syscall.SIGSTOP: // after its HELLO: let it serve
			require.NoError(t, syscall.Kill(s.pid, syscall.SIGCONT))
		case fired: // after its HELLO: the pool replaces it
			awaitPool(t, pool, "the killed worker replaced", func(st Stats) bool { return st.Restarts >= 1 && atRest(st, cfg.Size) })
		}
		v, err := pool.Call(testCtx(t), "echo", round)
		require.NoError(t, err, "round %d: %v after %v: the pool serves", round, sig, at)
		require.EqualValues(t, round, v)
		require.NoError(t, pool.Close(testCtx(t)))
	}
}
