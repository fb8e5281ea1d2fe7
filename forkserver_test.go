//go:build linux

package pypool

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/pypool/pypool/internal/osproc"
	"github.com/stretchr/testify/require"
)

func TestForkServerForksWorkers(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	fs := pool.forks.Load()
	require.NotNil(t, fs, "the fork server did not start")
	require.Equal(t, pidsOf(pool), pidsOf(pool))
	for _, pid := range workerPids(pool) {
		require.Equal(t, fs.pid, parentPid(pid), "worker %d was not forked by the template", pid)
		pgid, err := syscall.Getpgid(pid)
		require.NoError(t, err)
		require.Equal(t, pid, pgid, "a forked worker leads its own process group")
	}
	got, err := pool.Call(testCtx(t), "duplicate_text", "fork")
	require.NoError(t, err)
	require.Equal(t, "forkfork", got)
}

func pidsOf(p *Pool) int { return len(workerPids(p)) }

func TestForkServerCrashIsSeenAndReplaced(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	victim := workerPids(pool)[0]
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
	awaitPool(t, pool, "replaced the killed worker", func(s Stats) bool {
		return s.Crashes == 1 && s.Restarts == 1 && s.Workers == 2
	})
	require.NotContains(t, workerPids(pool), victim)
	fs := pool.forks.Load()
	for _, pid := range workerPids(pool) {
		require.Equal(t, fs.pid, parentPid(pid), "the replacement was forked too")
	}

	_, err := pool.Call(testCtx(t), "crash", 3)
	var exitErr *WorkerExitError
	require.ErrorAs(t, err, &exitErr)
	require.ErrorIs(t, err, ErrWorkerCrashed)
	require.Equal(t, 3, exitErr.ExitCode, "the template reports the exit status")
	require.Contains(t, exitErr.Stderr, "about to crash")
}

func TestForkServerDeathKeepsWorkersAndRestarts(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Size = 2
	logs := newLogRecorder()
	cfg.Logger = slogNew(logs)
	pool := newTestPool(t, cfg)
	old := pool.forks.Load()
	require.NoError(t, syscall.Kill(old.pid, syscall.SIGKILL))
	logs.await(t, msgForkServerExited)

	// Its workers serve on: none of them died with it (Crashes stays 0),
	// and calls succeed while the template restarts.
	for range 4 {
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}

	// A new template comes and replaces the orphans, which no parent-death
	// signal ties to the Go process any more, with workers of its own.
	fs := awaitForkServer(t, pool, old)
	awaitPool(t, pool, "the orphans replaced", func(s Stats) bool {
		pids := workerPids(pool)
		return atRest(s, 2) && len(pids) == 2 && parentPid(pids[0]) == fs.pid && parentPid(pids[1]) == fs.pid
	})
	require.Zero(t, pool.Stats().Crashes)
}

func contains(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func TestForkServerFallsBackToExec(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Preload = []string{"pypool_no_such_module"}
	logs := newLogRecorder()
	cfg.Logger = slogNew(logs)
	pool := newTestPool(t, cfg)
	attrs := logs.await(t, msgForkServerFallback)
	require.Contains(t, attrs["error"], "pypool_no_such_module")
	require.Nil(t, pool.forks.Load())
	pid := workerPids(pool)[0]
	require.Equal(t, os.Getpid(), parentPid(pid), "the worker was started by exec")
	_, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
}

// TestForkServerSetUpRunsInEachChild: Config.SetUp runs in every forked
// worker, not in the template, unless Config.PreloadSetUp.
func TestForkServerSetUpRunsInEachChild(t *testing.T) {
	for _, preload := range []bool{false, true} {
		cfg := forkConfig(t)
		cfg.Size = 2
		cfg.SetUp = "note_setup_pid"
		cfg.PreloadSetUp = preload
		pool := newTestPool(t, cfg)
		template := pool.forks.Load().pid
		err := pool.Transaction(testCtx(t), func(a *Worker) error {
			return pool.Transaction(testCtx(t), func(b *Worker) error {
				for _, w := range []*Worker{a, b} {
					out, err := w.Call(testCtx(t), "get_value", "setup_pid")
					require.NoError(t, err)
					want := int64(w.Pid())
					if preload {
						want = int64(template)
					}
					require.Equal(t, want, out, "PreloadSetUp %v: the process that ran the set-up", preload)
				}
				return nil
			})
		})
		require.NoError(t, err)
	}
}

// TestForkServerReseedsRandom: forked workers do not share the template's
// random state.
func TestForkServerReseedsRandom(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Size = 2
	cfg.Preload = []string{"random"} // the template's generator is seeded before the forks
	pool := newTestPool(t, cfg)
	var values []any
	err := pool.Transaction(testCtx(t), func(a *Worker) error {
		return pool.Transaction(testCtx(t), func(b *Worker) error {
			for _, w := range []*Worker{a, b} {
				out, err := w.Call(testCtx(t), "random_value")
				require.NoError(t, err)
				values = append(values, out)
			}
			return nil
		})
	})
	require.NoError(t, err)
	require.NotEqual(t, values[0], values[1], "two forked workers drew the same random number")
}

// TestForkServerConfigIsChecked: PreloadSetUp needs a SetUp, Preload module
// names, StartMethod a known method.
func TestForkServerConfigIsChecked(t *testing.T) {
	for _, tune := range []func(*Config){
		func(c *Config) { c.PreloadSetUp = true },
		func(c *Config) { c.Preload = []string{"not a module"} },
		func(c *Config) { c.StartMethod = StartMethod(7) },
	} {
		cfg := forkConfig(t)
		tune(&cfg)
		_, err := New(testCtx(t), cfg)
		require.Error(t, err)
	}
}

// TestForkedExitBeforeTheWatchIsSeen: a forked worker that died before its
// exit watch began (killed at once) is still seen to exit: the pidfd's
// readiness came before the wait.
func TestForkedExitBeforeTheWatchIsSeen(t *testing.T) {
	pool := newTestPool(t, forkConfig(t))
	fs := pool.forks.Load()
	var child, ours []*os.File
	for range fs.nfds {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		child, ours = append(child, r), append(ours, w)
	}
	proc, err := fs.fork(testCtx(t), child)
	osproc.CloseFiles(child...)
	defer osproc.CloseFiles(ours...)
	require.NoError(t, err)
	forked := proc.(*forkedProcess)
	proc.signal(syscall.SIGKILL)
	st := <-forked.status // the template reaped it: it is gone
	forked.status <- st

	done := make(chan exitStatus, 1)
	go func() { done <- proc.wait() }()
	select {
	case got := <-done:
		require.Equal(t, "killed", got.signal)
	case <-time.After(10 * time.Second):
		t.Fatal("the exit of a worker that died before its watch was never seen")
	}
}

// TestForkServerStuckFallsBack: a template that does not answer a fork
// request (stopped) is killed after forkTimeout, the worker is started by
// exec instead, and a new template comes.
func TestForkServerStuckFallsBack(t *testing.T) {
	saved := forkTimeout
	forkTimeout = 200 * time.Millisecond
	t.Cleanup(func() { forkTimeout = saved })
	cfg := forkConfig(t)
	logs := newLogRecorder()
	cfg.Logger = slogNew(logs)
	pool := newTestPool(t, cfg)
	old := pool.forks.Load()
	require.NoError(t, syscall.Kill(old.pid, syscall.SIGSTOP))
	victim := workerPids(pool)[0]
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))

	logs.await(t, msgForkServerStuck)
	awaitPool(t, pool, "replaced the killed worker", func(s Stats) bool {
		return atRest(s, 1) && !contains(workerPids(pool), victim)
	})
	require.Equal(t, os.Getpid(), parentPid(workerPids(pool)[0]), "the replacement was started by exec")
	awaitForkServer(t, pool, old)
}

// TestForkServerUnderLowOpenFilesLimit (issue 18, finding 4): the template
// starts, and forks working workers, under an RLIMIT_NOFILE far below 64
// (here set by Config.Limits.OpenFiles, which the template applies to itself
// before it arranges its descriptors, as an inherited limit would be).
func TestForkServerUnderLowOpenFilesLimit(t *testing.T) {
	for _, limit := range []int{16, 32} {
		cfg := forkConfig(t)
		cfg.Size = 2
		cfg.Limits.OpenFiles = limit
		pool := newTestPool(t, cfg)
		fs := pool.forks.Load()
		require.NotNil(t, fs, "RLIMIT_NOFILE %d: the fork server did not start", limit)
		for _, pid := range workerPids(pool) {
			require.Equal(t, fs.pid, parentPid(pid), "RLIMIT_NOFILE %d: worker %d was not forked by the template", limit, pid)
		}
		got, err := pool.Call(testCtx(t), "duplicate_text", "low")
		require.NoError(t, err)
		require.Equal(t, "lowlow", got)
	}
}

// TestForkServerFirstWorkerNeedsNoRequest (issue 21): a template started
// by a worker's start (newForkServer: New's first worker when Size is more
// than 1) is given that worker's descriptors and forks it as soon as it
// has imported the module, without a fork request. Its template drops
// every fork request here (pypool_forkmute), so the worker is forked by it
// only if no request was needed (before: the request went unanswered, the
// template was killed after forkTimeout and the worker started by exec).
// The pool (of the default method) only lends its spec.
func TestForkServerFirstWorkerNeedsNoRequest(t *testing.T) {
	saved := forkTimeout
	forkTimeout = 300 * time.Millisecond // an unanswered request is given up on soon
	t.Cleanup(func() { forkTimeout = saved })
	cfg := testConfig(t)
	cfg.StartMethod = StartExec
	cfg.Preload = []string{"pypool_forkmute"}
	logs := newLogRecorder()
	cfg.Logger = slogNew(logs)
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pool.Close(testCtx(t))) })
	pool.spec.logger = cfg.Logger

	fs := newForkServer(pool.spec, func(*forkServer) {})
	proc, err := startProcess(testCtx(t), pool.spec, fs, func(*process) {})
	require.NoError(t, err)
	t.Cleanup(func() {
		proc.kill()
		<-proc.exited
		fs.stop(time.Second)
	})
	require.True(t, fs.ready(), "the template started")
	require.Equal(t, fs.pid, parentPid(proc.pid), "the worker was forked by the template")
	require.Empty(t, logs.matching(msgForkServerStuck), "a fork request was sent for the worker")
}
