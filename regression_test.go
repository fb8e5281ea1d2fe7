package pypool

// Regression tests for the pool-accounting findings of issue 7, one test
// per finding, each named after what must hold. Finding 2 (TryCall uses
// overflow capacity) is TestTryCallDoesNotWait; findings 4 and 5 under load
// are also TestDeadlineStorm and TestDeadlineStormSize1; finding 11 (the test
// command's time) is measured, not tested.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Finding 1: poolboy stops a worker checked in while overflow workers exist
// and nobody waits, whatever the core workers are doing.
func TestOverflowWorkerStopsAtCheckinWhileCoreWorkersBusy(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 3, 3
	pool := newTestPool(t, cfg)
	releaseCore := holdWorkers(t, pool, 3)
	releaseExtra := holdWorkers(t, pool, 2)
	s := pool.Stats()
	assert.Equal(t, 5, s.InUse)
	assert.Equal(t, 2, s.Overflow)

	releaseExtra()
	awaitPool(t, pool, "the two checked-in workers stopped", func(s Stats) bool {
		return s.Workers == 3 && s.InUse == 3 && s.Stopping == 0
	})
	s = pool.Stats()
	assert.Zero(t, s.Idle)
	assert.Zero(t, s.Overflow)
	assert.Equal(t, "overflow", s.Status(), "poolboy: Size workers in use is the overflow state")
	assert.Len(t, workerPids(pool), 3)

	releaseCore()
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 3) })
	assert.ElementsMatch(t, workerPids(pool), childProcesses())
}

// Finding 3: a worker that dies while checked out, between the calls of a
// transaction, frees its slot at once: it is replaced and a waiting caller
// is served while the transaction still holds the dead worker.
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

// pastDeadline is a context whose deadline has passed but which has not
// noticed yet: every deadline context is in this state for an instant, and a
// call can pass its check of ctx.Err in that instant and fail its write.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
func (pastDeadline) Done() <-chan struct{}       { return nil }
func (pastDeadline) Err() error                  { return nil }

// Finding 4: a call whose deadline passed before its frame was written never
// reached Python, and must not cost the worker.
func TestCallThatNeverReachedPythonKeepsTheWorker(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	before := workerPids(pool)
	_, err := pool.Call(pastDeadline{context.Background()}, "echo", 1)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	out, err := pool.Call(testCtx(t), "echo", "same worker")
	require.NoError(t, err)
	assert.Equal(t, "same worker", out)
	assert.Equal(t, before, workerPids(pool))
	s := pool.Stats()
	assert.Zero(t, s.Restarts)
	assert.Zero(t, s.Crashes)
}

// tinyDeadlineCalls makes n calls of echo from 8 goroutines, each with a
// deadline of 0 to 59 µs, and returns when all have ended.
func tinyDeadlineCalls(t *testing.T, pool *Pool, n int) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%60)*time.Microsecond)
				_, err := pool.Call(ctx, "echo", i)
				cancel()
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("call %d: want success or DeadlineExceeded, got %v", i, err)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// Finding 5: after a storm of tiny deadlines, with and without recycling,
// the pool comes back to Size by itself: no start is left to a caller that
// gave up.
func TestPoolReturnsToSizeAfterTinyDeadlines(t *testing.T) {
	for _, maxCalls := range []int{0, 1} {
		t.Run("MaxCallsPerWorker="+strconv.Itoa(maxCalls), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.MaxCallsPerWorker = maxCalls
			pool := newTestPool(t, cfg)
			tinyDeadlineCalls(t, pool, 300)
			awaitPool(t, pool, "back at Size, at rest", func(s Stats) bool { return atRest(s, 1) })
			s := pool.Stats()
			assert.Zero(t, s.Crashes)
			assert.Zero(t, s.StartFailures)
			if maxCalls == 0 {
				assert.Zero(t, s.Restarts, "no worker was lost to a deadline")
			} else {
				assert.Equal(t, s.Recycled, s.Restarts, "every restart replaced a recycled worker")
			}
		})
	}
}

// Finding 6: starts are counted from the moment they are decided, so
// replacing workers killed under load never leaves an extra worker.
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

// Finding 7, crash: a caller whose worker crashed is answered at once, not
// after the replacement's start (here held until the test releases it).
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

// Finding 7, stop: checking in a worker that must stop does not wait for
// its stop, however long the stop takes.
func TestCheckinDoesNotWaitForTheStop(t *testing.T) {
	h := newHeldStarts(t, 1, 1, func(c *Config) { c.StopTimeout = 2 * time.Second })
	ctx := testCtx(t)
	releaseCore := holdWorkers(t, h.pool, 1)
	var lingering int
	err := h.pool.Transaction(ctx, func(w *Worker) error {
		lingering = w.Pid()
		_, err := w.Call(ctx, "linger", 60) // its interpreter cannot exit at end of input
		return err
	})
	require.NoError(t, err)
	s := h.pool.Stats()
	assert.Equal(t, 1, s.Stopping, "the overflow worker is stopping while its caller is already back")
	assert.NoError(t, syscall.Kill(lingering, 0), "and its process still runs")

	out, err := h.pool.Call(ctx, "echo", "not queued behind the stop")
	require.NoError(t, err)
	assert.Equal(t, "not queued behind the stop", out)
	releaseCore()
	awaitPool(t, h.pool, "at rest", func(s Stats) bool { return atRest(s, 1) })
}

// Finding 8: worker starts run on the pool's context, not on callers': five
// callers that give up while a start is in flight cost one start, which
// still completes, fails nothing, and is stopped as an overflow worker
// nobody waits for.
func TestStartOutlivesTheCallersThatGaveUp(t *testing.T) {
	h := newHeldStarts(t, 1, 1, nil)
	release := holdWorkers(t, h.pool, 1)
	defer release()
	h.hold(t)
	for range 5 {
		ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
		_, err := h.pool.Call(ctx, "echo", 1)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	h.nextHeld(t)
	s := h.pool.Stats()
	assert.Equal(t, 1, s.Starting, "one start for five callers")
	h.release(t)
	awaitPool(t, h.pool, "the start completed and the overflow worker stopped", func(s Stats) bool {
		return s.Starting == 0 && s.Stopping == 0 && s.Workers == 1
	})
	s = h.pool.Stats()
	assert.Equal(t, uint64(1), s.Restarts)
	assert.Zero(t, s.StartFailures)
}

// Findings 9 and 12: a start killed from outside is no module failure:
// however often it happens the pool never turns fail-fast. Since issue 18
// (finding 5) it fails no waiter either while the retry can still serve
// it: both waiters wait on, and are served by the retry.
func TestKilledStartFailsNoWaiterAndNeverFailFast(t *testing.T) {
	h := newHeldStarts(t, 1, 0, nil)
	h.hold(t)
	require.NoError(t, syscall.Kill(workerPids(h.pool)[0], syscall.SIGKILL))
	for range 3 { // kill the replacement in its handshake, three times
		require.NoError(t, syscall.Kill(h.nextHeld(t), syscall.SIGKILL))
	}
	awaitPool(t, h.pool, "three failed starts", func(s Stats) bool { return s.StartFailures == 3 })

	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := h.pool.Call(context.Background(), "echo", "served") // no deadline
			errs <- err
		}()
	}
	awaitPool(t, h.pool, "two waiters", func(s Stats) bool { return s.Waiting == 2 })
	require.NoError(t, syscall.Kill(h.nextHeld(t), syscall.SIGKILL))
	awaitPool(t, h.pool, "four failed starts", func(s Stats) bool { return s.StartFailures == 4 })
	assert.Equal(t, 2, h.pool.Stats().Waiting, "both wait for the retry")

	h.nextHeld(t)
	h.release(t)
	for range 2 {
		require.NoError(t, <-errs, "the retry serves the waiters")
	}
	s := h.pool.Stats()
	assert.Equal(t, uint64(4), s.StartFailures)
	assert.Equal(t, uint64(1), s.Crashes, "only the first kill was of a running worker")
}

// Finding 10: MaxWaiting is a hard limit, however many callers arrive at
// once.
func TestMaxWaitingIsAHardLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxWaiting = 2
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 1)

	const callers = 20
	errs := make(chan error, callers)
	start := make(chan struct{})
	for range callers {
		go func() {
			<-start
			_, err := pool.Call(context.Background(), "echo", 1)
			errs <- err
		}()
	}
	close(start)
	for range callers - 2 {
		require.ErrorIs(t, <-errs, ErrPoolExhausted)
	}
	assert.Equal(t, 2, pool.Stats().Waiting)
	release()
	for range 2 {
		require.NoError(t, <-errs, "the admitted waiters are served")
	}
}

// Finding 10: a Transaction whose context has ended runs nothing.
func TestTransactionWithEndedContextRunsNothing(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	ran := false
	err := pool.Transaction(ctx, func(*Worker) error { ran = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, ran)
	_, err = pool.Call(ctx, "echo", 1)
	require.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, pool.Stats().Calls)
}
