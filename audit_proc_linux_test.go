//go:build linux

package pypool

// audit_proc_linux_test.go holds the hostile audit of the processes on the
// exec start path (issue 21e): what a worker's Python code starts (forks
// that return, children in sessions of their own, multiprocessing), a
// worker that exits 0 mid-call, closes its output or stops itself,
// Config.Limits and Config.Credential as docs/security.md promises them
// (DESIGN invariants 10, 11 and 12; docs/security.md, docs/operating.md).
// audit_fork_linux_test.go holds the fork server's.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// procConfig is a pool of pypool_procmod with one worker started by exec.
func procConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Module, cfg.StartMethod = "pypool_procmod", StartExec
	return cfg
}

// TestAuditProcForkedChildThatReturnsLeavesTheChannel: user code forks
// (os.fork) and its child forgets os._exit: it returns from the function
// into the runtime's serve loop, as the worker does. "User Python code
// cannot corrupt the channel" (invariant 5), and a fault costs at most the
// calls it touched (invariant 11): the child must not answer on the
// worker's pipes (a second reply; a reader of the next calls' requests)
// nor write into its shared memory; it must end, and the worker serve on.
func TestAuditProcForkedChildThatReturnsLeavesTheChannel(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, procConfig(t))
	for round := range 3 {
		size := []int{8, DefaultSharedMemoryThreshold * 4, 1}[round] // inline, shared memory, inline
		res, err := pool.Call(testCtx(t), "fork_returns", size)
		require.NoError(t, err, "round %d", round)
		child := int(res.([]any)[0].(int64))
		require.NotZero(t, child)
		got := res.([]any)[1].([]byte)
		require.Equal(t, bytes.Repeat([]byte{byte(child)}, size), got, "round %d: the worker's result", round)
		exited := openPidfd(t, child)
		for i := range 8 {
			ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
			v, err := pool.Call(ctx, "echo", i)
			cancel()
			require.NoError(t, err, "round %d, call %d after the fork", round, i)
			require.Equal(t, int64(i), v)
		}
		requireExited(t, map[int]*os.File{child: exited}, "the forked child that returned into the serve loop")
	}
	s := pool.Stats()
	require.Zero(t, s.StopsKilled+s.Crashes, "the worker was lost: %+v", s)
}

// TestAuditProcDescriptorShortageCostsTheCallNotTheWorker: a worker whose
// Python code holds every descriptor Limits.OpenFiles allows. "When it is
// exceeded: OSError (EMFILE, "Too many open files")" (docs/security.md);
// "a descriptor shortage ... costs at most the calls it touched"
// (invariant 11): the runtime's first stream, first awaitable and first
// result it cannot encode (which load a module of the runtime then) must
// each fail with that OSError as a *PythonError, not end the worker; once
// the descriptors are released, the same worker serves them.
func TestAuditProcDescriptorShortageCostsTheCallNotTheWorker(t *testing.T) {
	t.Parallel()
	cfg := procConfig(t)
	cfg.Limits.OpenFiles = 32
	pool := newTestPool(t, cfg)
	_, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	pid := workerPids(pool)
	_, err = pool.Call(testCtx(t), "hold_fds_quietly")
	require.NoError(t, err)
	kinds := []struct {
		name string
		call func(ctx context.Context) (any, error)
	}{
		{"async", func(ctx context.Context) (any, error) { return pool.Call(ctx, "async_echo", 3) }},
		{"stream", func(ctx context.Context) (any, error) {
			var items []any
			for v, err := range pool.Stream(ctx, "numbers", 3) {
				if err != nil {
					return nil, err
				}
				items = append(items, v)
			}
			return items, nil
		}},
		{"unencodable", func(ctx context.Context) (any, error) { return pool.Call(ctx, "unencodable") }},
	}
	for _, kind := range kinds {
		_, err := kind.call(testCtx(t))
		var pyErr *PythonError
		require.ErrorAs(t, err, &pyErr, "%s: with no descriptor left", kind.name)
		require.Contains(t, pyErr.Message, "Too many open files", kind.name)
	}
	require.Equal(t, pid, workerPids(pool), "the worker was replaced: %+v", pool.Stats())
	_, err = pool.Call(testCtx(t), "release_fds")
	require.NoError(t, err)
	v, err := kinds[0].call(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, int64(3), v)
	v, err = kinds[1].call(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, []any{int64(0), int64(1), int64(2)}, v)
	require.Zero(t, pool.Stats().Crashes)
}

// TestAuditProcCredentialWorkerCannotReachTheHost: with Credential, a
// worker is "an unprivileged user that owns nothing and cannot read the
// service's files or /proc/<pid> of the Go process", and its Limits are
// set "both soft and hard (so that the Python code cannot raise them
// again)" (docs/security.md): as nobody, the worker can neither signal
// the Go process nor the pool's guardian (both root's), nor read the Go
// process's environment, nor raise its limit. Nothing tested these.
func TestAuditProcCredentialWorkerCannotReachTheHost(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	if whyNot := runAsNobody(t, &cfg); whyNot != "" {
		t.Skip(whyNot)
	}
	src, err := os.ReadFile("testdata/pymod/pypool_procmod.py")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(cfg.PythonPath[0], "pypool_procmod.py"), src, 0o644))
	cfg.Module, cfg.StartMethod, cfg.Limits.OpenFiles = "pypool_procmod", StartExec, 64
	pool := newTestPool(t, cfg)
	guardian := runningGuardian(pool)
	require.NotNil(t, guardian)
	for what, pid := range map[string]int{"the Go process": os.Getpid(), "the guardian": guardian.pid} {
		errno, err := pool.Call(testCtx(t), "signal_pid", pid, 0)
		require.NoError(t, err)
		require.Equal(t, int64(syscall.EPERM), errno, "the worker may signal %s", what)
	}
	environ := "/proc/" + strconv.Itoa(os.Getpid()) + "/environ"
	read, err := pool.Call(testCtx(t), "read_file", environ)
	require.NoError(t, err)
	require.Equal(t, int64(syscall.EACCES), read, "the worker read %s", environ)
	res, err := pool.Call(testCtx(t), "raise_limit")
	require.NoError(t, err)
	require.Equal(t, int64(64), res.([]any)[0])
	require.NotEmpty(t, res.([]any)[1], "the worker raised its hard limit of open files")
}

// maskedPython writes an interpreter wrapper that starts python3 with sigs
// blocked, as every worker starts when the Go process inherited them
// blocked (a service started from a thread that blocks them: the signal
// mask passes through fork and exec, Go's own children included).
func maskedPython(t *testing.T, sigs string) string {
	python, err := realPython()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "python3")
	require.NoError(t, os.WriteFile(path, []byte("#!"+python+` -I
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {`+sigs+`})
os.execv(`+strconv.Quote(python)+`, [sys.argv[0]] + sys.argv[1:])
`), 0o755))
	return path
}

// TestAuditProcInheritedSignalMaskDoesNotReachTheWorker: a worker "holds
// only what it was given ... Nothing the host inherited reaches it"
// (invariant 12), and a deadline "interrupts Python (KeyboardInterrupt)
// and frees the worker" (docs/operating.md). With SIGINT and SIGUSR1
// blocked in the process that starts the worker, the call past its
// deadline must be interrupted, and the worker serve on, not be killed
// after InterruptGrace with its SIGINT pending for ever.
func TestAuditProcInheritedSignalMaskDoesNotReachTheWorker(t *testing.T) {
	t.Parallel()
	cfg := procConfig(t)
	cfg.Python = maskedPython(t, "signal.SIGINT, signal.SIGUSR1")
	cfg.InterruptGrace = 2 * time.Second
	pool := newTestPool(t, cfg)
	pid := workerPids(pool)
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "slow_echo", 1, 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, pool, "the call's worker back", func(s Stats) bool { return atRest(s, 1) })
	s := pool.Stats()
	require.Zero(t, s.StopsKilled, "the worker was killed, not interrupted: %+v", s)
	require.Equal(t, pid, workerPids(pool), "the worker was replaced")
	v, err := pool.Call(testCtx(t), "echo", 2)
	require.NoError(t, err)
	require.Equal(t, int64(2), v)
}

// TestAuditProcOpenFilesTooLowToStartSaysSo: Limits.OpenFiles below what
// the runtime needs before it imports the module (a handful). "New returns
// ... with the import's traceback if it fails" (docs/operating.md), and
// an error names its cause and fix: New must fail with a *PythonError
// that says "Too many open files" and names Config.Limits.OpenFiles, not
// with a bare "exited with status 1" whose reason is only in the log.
func TestAuditProcOpenFilesTooLowToStartSaysSo(t *testing.T) {
	t.Parallel()
	cfg := procConfig(t)
	cfg.Limits.OpenFiles = 4
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.True(t, errors.As(err, &pyErr), "New's error has no *PythonError: %v", err)
	require.Contains(t, err.Error(), "Too many open files")
	require.Contains(t, err.Error(), "Config.Limits.OpenFiles")
}

// descendantsOf lists the processes below pid (its children, theirs...).
func descendantsOf(pid int) []int {
	parents := parentPids()
	var found []int
	for child := range parents {
		for p, depth := child, 0; depth < 64 && p > 1; p, depth = parents[p], depth+1 {
			if parents[p] == pid {
				found = append(found, child)
				break
			}
		}
	}
	return found
}

// TestAuditProcMultiprocessingHelpersDieWithTheWorker: multiprocessing
// inside a worker (its fork, spawn and forkserver methods) works, and
// leaves processes the user never started by name: the resource tracker
// and multiprocessing's own fork server, which outlive the call. "Every
// process a worker makes is owned: when a worker ends, however it ends
// ... nothing of its process group is left" (invariant 10): after the
// worker exits 0 in the middle of a call (ErrWorkerCrashed), none is left.
func TestAuditProcMultiprocessingHelpersDieWithTheWorker(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, procConfig(t))
	pidfds := map[int]*os.File{}
	err := pool.Transaction(testCtx(t), func(w *Worker) error {
		for _, method := range []string{"fork", "spawn", "forkserver"} {
			v, err := w.Call(testCtx(t), "mp_map", method, 3)
			require.NoError(t, err, method)
			require.Equal(t, []any{int64(3), int64(2), int64(1)}, v, method)
		}
		helpers := descendantsOf(w.Pid())
		require.GreaterOrEqual(t, len(helpers), 2, "multiprocessing's resource tracker and fork server")
		for _, pid := range helpers {
			pidfds[pid] = openPidfd(t, pid)
		}
		_, err := w.Call(testCtx(t), "exit_now", 0)
		require.ErrorIs(t, err, ErrWorkerCrashed)
		return nil
	})
	require.NoError(t, err)
	requireExited(t, pidfds, "multiprocessing's helpers of a worker that exited")
	awaitPool(t, pool, "the worker replaced", func(s Stats) bool { return s.Crashes == 1 && atRest(s, 1) })
}

// TestAuditProcDaemonChildDoesNotHoldTheWorker: a child that the worker's
// Python code started in a session of its own (out of the pool's reach,
// docs/errors.md's limits) holds the worker's stdout and stderr (spawn:
// subprocess), or every descriptor a forked child keeps (fork). The
// worker's crash must still end its call with ErrWorkerCrashed and be
// replaced, and Close must return ("Close returns once every worker was
// reaped"), on the exec start path (audit_fork_linux_test.go tried the
// template's import children only).
func TestAuditProcDaemonChildDoesNotHoldTheWorker(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"spawn", "fork"} {
		pool, err := New(testCtx(t), procConfig(t))
		require.NoError(t, err)
		var daemons []int
		for range 2 {
			res, err := pool.Call(testCtx(t), "daemon_child", how)
			require.NoError(t, err, how)
			daemons = append(daemons, int(res.(int64)))
		}
		pidfds := map[int]*os.File{}
		for _, pid := range daemons {
			pidfds[pid] = openPidfd(t, pid)
		}
		_, err = pool.Call(testCtx(t), "exit_now", 3)
		require.ErrorIs(t, err, ErrWorkerCrashed, how)
		res, err := pool.Call(testCtx(t), "daemon_child", how) // on the replacement
		require.NoError(t, err, how)
		daemons = append(daemons, int(res.(int64)))
		pidfds[daemons[2]] = openPidfd(t, daemons[2])
		closed := make(chan error, 1)
		go func() { closed <- pool.Close(testCtx(t)) }()
		select {
		case err := <-closed:
			require.NoError(t, err)
		case <-time.After(ownedExitBound):
			for _, pid := range daemons {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			<-closed
			t.Fatalf("%s: Close still ran %v after it began: the daemons %v hold it", how, ownedExitBound, daemons)
		}
		for _, pid := range daemons { // out of the pool's reach: the test's to end
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		requireExited(t, pidfds, "the daemons, killed by the test")
	}
}
