package pypool

// Crashes and their replacement: a worker that dies, idle or in a call, is
// replaced at once and its caller answered at once (DESIGN invariants 1, 3
// and 8); CrashRetries.

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCrashMidCallIsReplaced(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)

	_, err := pool.Call(ctx, "crash", 3)
	require.ErrorIs(t, err, ErrWorkerCrashed)
	var exitErr *WorkerExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 3, exitErr.ExitCode)
	assert.Contains(t, exitErr.Stderr, "about to crash")

	awaitPool(t, pool, "back at Size, the crash counted", func(s Stats) bool {
		return s.Workers == 2 && s.Restarts == 1 && s.Crashes == 1
	})
	out, err := pool.Call(ctx, "echo", "after")
	require.NoError(t, err)
	assert.Equal(t, "after", out)
}

func TestIdleWorkerDeathIsReplacedWithoutCalls(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	victim := workerPids(pool)[0]
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))

	awaitPool(t, pool, "replaced the killed worker", func(s Stats) bool {
		return s.Crashes == 1 && s.Restarts == 1 && s.Workers == 2
	})
	assert.NotContains(t, workerPids(pool), victim)
	for range 4 { // every worker handed out is alive
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
}

func TestCrashRetries(t *testing.T) {
	cfg := testConfig(t)
	cfg.CrashRetries = 2
	pool := newTestPool(t, cfg)
	flag := filepath.Join(t.TempDir(), "crashed")
	out, err := pool.Call(testCtx(t), "crash_once", flag)
	require.NoError(t, err, "the retry ran on a new worker")
	assert.Equal(t, "survived", out)
	assert.Equal(t, uint64(2), pool.Stats().CallsSent)

	_, err = pool.Call(testCtx(t), "fail", "no retry")
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, uint64(3), pool.Stats().CallsSent, "Python exceptions are not retried")

	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	_, err = pool.Call(ctx, "sleep", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, uint64(4), pool.Stats().CallsSent, "ended contexts are not retried")

	noRetry := newTestPool(t, testConfig(t))
	flag2 := filepath.Join(t.TempDir(), "crashed")
	_, err = noRetry.Call(testCtx(t), "crash_once", flag2)
	assert.ErrorIs(t, err, ErrWorkerCrashed, "retries are opt-in")
}

// Issue 7, finding 3: a worker that dies while checked out, between the
// calls of a transaction, frees its slot at once: it is replaced and a
// waiting caller is served while the transaction still holds the dead
// worker.
func TestDeadCheckedOutWorkerFreesItsSlotAtOnce(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	pids := make(chan int)
	callAgain := make(chan struct{})
	result := make(chan error)
	go func() {
		result <- pool.Transaction(ctx, func(w *Worker) error {
			pids <- w.Pid()
			<-callAgain
			_, err := w.Call(ctx, "echo", 1)
			return err
		})
	}()
	require.NoError(t, syscall.Kill(<-pids, syscall.SIGKILL))

	short, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := pool.Call(short, "echo", "served meanwhile")
	require.NoError(t, err, "the dead worker's slot was freed and refilled")
	assert.Equal(t, "served meanwhile", out)
	s := pool.Stats()
	assert.Equal(t, uint64(1), s.Crashes)
	assert.Equal(t, uint64(1), s.Restarts)

	close(callAgain)
	assert.ErrorIs(t, <-result, ErrWorkerCrashed, "the transaction learns of the death at its next call")
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 1) })
	assert.Equal(t, uint64(1), pool.Stats().Restarts, "checking the dead worker in started nothing")
}

// Issue 7, finding 7, crash: a caller whose worker crashed is answered at
// once, not after the replacement's start (here held until the test releases
// it).
func TestCrashedCallDoesNotWaitForTheReplacement(t *testing.T) {
	h := newHeldStarts(t, 1, 0, nil)
	h.hold(t)
	_, err := h.pool.Call(testCtx(t), "crash", 3)
	require.ErrorIs(t, err, ErrWorkerCrashed)
	assert.Zero(t, h.pool.Stats().Workers, "the caller was answered while the replacement was still starting")
	h.nextHeld(t)
	h.release(t)
	awaitPool(t, h.pool, "replaced", func(s Stats) bool { return atRest(s, 1) })
}

// Issue 7, finding 6: starts are counted from the moment they are decided,
// so replacing workers killed under load never leaves an extra worker.
func TestNoExtraWorkerAfterKillsUnderLoad(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 3, 3
	cfg.CrashRetries = 10
	pool := newTestPool(t, cfg)
	defer watchInvariants(t, pool)()
	stop := make(chan struct{})
	ctx := testCtx(t)
	var callers sync.WaitGroup
	for range 6 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, err := pool.Call(ctx, "echo", i)
				if err != nil && !errors.Is(err, ErrWorkerCrashed) && !errors.Is(err, ErrWorkerStart) {
					t.Errorf("call: %v", err)
				}
			}
		}()
	}
	killed := 0
	for round := range 3 {
		awaitPool(t, pool, "workers to kill", func(s Stats) bool { return s.Workers >= 3 })
		for _, pid := range workerPids(pool) {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		awaitPool(t, pool, "the kills noticed", func(s Stats) bool { return s.Crashes == uint64(killed) })
		t.Logf("round %d: %+v", round, pool.Stats())
	}
	close(stop)
	callers.Wait()
	awaitPool(t, pool, "at rest", func(s Stats) bool {
		return s.Starting == 0 && s.Stopping == 0 && s.InUse == 0 && s.Waiting == 0
	})
	s := pool.Stats()
	assert.Equal(t, 3, s.Workers, "exactly Size workers at rest: %+v", s)
	assert.Equal(t, 3, s.Idle)
	assert.ElementsMatch(t, workerPids(pool), childProcesses())
}
