//go:build linux

package pypool

// The fork server's first worker with Size 1 (issue 21): started by exec
// before the template (the stand-in), handed over to a forked worker at its
// first check-in once the template runs. These pools are made with New, not
// newTestPool, which hands the stand-in over before a test begins.

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// newStandInPool starts a pool of the fork server with Size 1, closed when
// the test ends, and checks that its worker was started by exec.
func newStandInPool(t *testing.T, cfg Config) (pool *Pool, standIn int) {
	t.Helper()
	cfg.StartMethod, cfg.Size = StartForkServer, 1
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pool.Close(testCtx(t))) })
	pids := workerPids(pool)
	require.Len(t, pids, 1)
	require.Equal(t, os.Getpid(), parentPid(pids[0]), "the first worker was started by exec")
	return pool, pids[0]
}

// awaitTemplate waits until the pool's template runs, and returns it.
func awaitTemplate(t *testing.T, pool *Pool) *forkServer {
	t.Helper()
	ctx := testCtx(t)
	for {
		if fs := pool.forks.Load(); fs != nil && fs.ready() {
			return fs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the template never ran: %+v", pool.Stats())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// TestForkServerStandInIsHandedOver: the first worker is started by exec,
// serves the first call, and at its check-in (the template runs) is
// stopped and replaced by a forked worker, counted as a handover, not as a
// restart or a recycle. Config.MaxCallsPerWorker counts the calls the
// stand-in served. Before, the first worker was forked by the template
// (its parent was not the Go process).
func TestForkServerStandInIsHandedOver(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxCallsPerWorker, cfg.MaxCallsJitter = 3, 0
	logs := newLogRecorder()
	cfg.Logger = slogNew(logs)
	pool, standIn := newStandInPool(t, cfg)
	fs := awaitTemplate(t, pool)

	out, err := pool.Call(testCtx(t), "duplicate_text", "a")
	require.NoError(t, err)
	require.Equal(t, "aa", out)
	awaitPool(t, pool, "handed over", func(s Stats) bool {
		return s.StopsHandover == 1 && s.StartsHandover == 1 && atRest(s, 1)
	})
	pid := workerPids(pool)[0]
	require.NotEqual(t, standIn, pid)
	require.Equal(t, fs.pid, parentPid(pid), "the successor was forked by the template")
	s := pool.Stats()
	require.Equal(t, uint64(1), s.StartsInitial)
	require.Zero(t, s.Restarts, "a handover is not a restart")
	require.Zero(t, s.Recycled, "nor a recycle")
	require.Zero(t, s.Crashes)
	require.Equal(t, itoa(standIn), logs.await(t, msgHandedOver)["worker"])
	require.Empty(t, logs.matching(msgWorkerStopped), "the stand-in's end is logged as a handover")

	// Two more calls make three since New: the successor is recycled.
	for range 2 {
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
	awaitPool(t, pool, "recycled after 3 calls", func(s Stats) bool {
		return s.StopsMaxCalls == 1 && s.StartsRecycle == 1 && atRest(s, 1)
	})
	require.Equal(t, fs.pid, parentPid(workerPids(pool)[0]))
	require.Equal(t, uint64(1), pool.Stats().StopsHandover, "one handover per pool")
}

// TestForkServerStandInTemplateKilledDuringHandover: the template is
// killed as the stand-in is handed over: the successor is started by exec
// (its fork request fails or was never sent), no call fails, nothing
// crashes, and nothing is left after Close.
func TestForkServerStandInTemplateKilledDuringHandover(t *testing.T) {
	pool, _ := newStandInPool(t, testConfig(t))
	fs := awaitTemplate(t, pool)
	_, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(fs.pid, syscall.SIGKILL)) // the stand-in is stopping
	awaitPool(t, pool, "back at Size", func(s Stats) bool {
		return s.StopsHandover == 1 && s.StartsHandover == 1 && atRest(s, 1)
	})
	for range 3 {
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
	require.Zero(t, pool.Stats().Crashes)
	awaitForkServer(t, pool, fs)
	require.NoError(t, pool.Close(testCtx(t)))
	require.Empty(t, forkServerLeftovers(), "processes of the pool's templates left after Close")
	require.Empty(t, childProcesses(), "workers left after Close")
}

// TestForkServerStandInCloseDuringHandover: Close while the stand-in is
// being handed over (its successor about to be forked), and Close while
// the template is still starting, leave no process and log no fallback.
func TestForkServerStandInCloseDuringHandover(t *testing.T) {
	t.Run("handover", func(t *testing.T) {
		pool, standIn := newStandInPool(t, testConfig(t))
		awaitTemplate(t, pool)
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
		require.NoError(t, pool.Close(testCtx(t)))
		require.ErrorIs(t, syscall.Kill(standIn, 0), syscall.ESRCH)
		require.Empty(t, forkServerLeftovers())
		require.Empty(t, childProcesses())
	})
	t.Run("template starting", func(t *testing.T) {
		cfg := testConfig(t)
		logs := newLogRecorder()
		cfg.Logger = slogNew(logs)
		pool, _ := newStandInPool(t, cfg)
		require.NoError(t, pool.Close(testCtx(t)))
		require.Empty(t, forkServerLeftovers())
		require.Empty(t, childProcesses())
		require.Empty(t, logs.matching(msgForkServerFallback), "Close is not a failed start")
	})
}

// TestForkServerStandInServesWhenTheTemplateFails: a template that cannot
// start (a Preload that does not exist) is reported as before, and the
// stand-in serves on, not handed over.
func TestForkServerStandInServesWhenTheTemplateFails(t *testing.T) {
	cfg := testConfig(t)
	cfg.Preload = []string{"pypool_no_such_module"}
	logs := newLogRecorder()
	cfg.Logger = slogNew(logs)
	pool, standIn := newStandInPool(t, cfg)
	require.Contains(t, logs.await(t, msgForkServerFallback)["error"], "pypool_no_such_module")
	for range 3 {
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
	require.Equal(t, []int{standIn}, workerPids(pool))
	require.Zero(t, pool.Stats().StopsHandover)
	require.Nil(t, pool.forks.Load())
}

// TestForkServerStandInReload: a Reload before the template of New has
// started replaces the stand-in by a worker of the reload's template; the
// template of New, which forked nothing, is stopped.
func TestForkServerStandInReload(t *testing.T) {
	pool, standIn := newStandInPool(t, testConfig(t))
	require.NoError(t, pool.Reload(testCtx(t)))
	fs := awaitTemplate(t, pool)
	pid := workerPids(pool)[0]
	require.NotEqual(t, standIn, pid)
	require.Equal(t, fs.pid, parentPid(pid))
	deadline := time.Now().Add(30 * time.Second)
	for len(forkServerTemplates()) > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, []int{fs.pid}, forkServerTemplates(), "one template left")
}
