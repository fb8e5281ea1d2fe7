package pypool

// Checkout and checkin: callers waiting for a worker, overflow workers and
// their stop at checkin, TryCall, MaxWaiting (DESIGN invariants 8 and 9).

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWaitingCallerGetsContextErrors(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- pool.Transaction(ctx, func(*Worker) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held

	canceled, cancel := context.WithCancel(ctx)
	go func() {
		awaitPool(t, pool, "a waiter", func(s Stats) bool { return s.Waiting == 1 })
		cancel()
	}()
	_, err := pool.Call(canceled, "echo", 1)
	assert.ErrorIs(t, err, context.Canceled)

	expired, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	_, err = pool.Call(expired, "echo", 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	close(release)
	require.NoError(t, <-done)
}

// Issue 7, finding 10: a Transaction whose context has ended runs nothing.
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
	assert.Zero(t, pool.Stats().CallsSent)
}

func TestOverflowIsCappedAndStoppedOnReturn(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 1, 2
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)

	release := make(chan struct{})
	var holders sync.WaitGroup
	for range 3 {
		holders.Add(1)
		go func() {
			defer holders.Done()
			assert.NoError(t, pool.Transaction(ctx, func(w *Worker) error {
				<-release
				return nil
			}))
		}()
	}
	awaitPool(t, pool, "three workers checked out", func(s Stats) bool { return s.InUse == 3 })
	s := pool.Stats()
	assert.Equal(t, 3, s.Workers)
	assert.Equal(t, 2, s.Overflow)
	assert.Len(t, workerPids(pool), 3, "never more than Size+MaxOverflow processes")

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := pool.Call(short, "echo", 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a full pool makes callers wait until their deadline")
	assert.Len(t, workerPids(pool), 3)

	close(release)
	holders.Wait()
	awaitPool(t, pool, "overflow stopped", func(s Stats) bool {
		return s.Workers == 1 && s.Idle == 1 && len(workerPids(pool)) == 1
	})
}

// Issue 7, finding 1: poolboy stops a worker checked in while overflow
// workers exist and nobody waits, whatever the core workers are doing.
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

// Issue 7, finding 7, stop: checking in a worker that must stop does not
// wait for its stop, however long the stop takes.
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

// TestTryCallDoesNotWait: TryCall takes an idle worker, or starts an
// overflow worker while there is room (poolboy's checkout(Pool, false)), and
// fails at once with ErrPoolExhausted only at Size+MaxOverflow.
func TestTryCallDoesNotWait(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxOverflow = 1
	pool := newTestPool(t, cfg)
	out, err := pool.TryCall(testCtx(t), "echo", "idle worker")
	require.NoError(t, err)
	assert.Equal(t, "idle worker", out)

	release := holdWorkers(t, pool, 1)
	out, err = pool.TryCall(testCtx(t), "echo", "overflow worker")
	require.NoError(t, err, "below Size+MaxOverflow TryCall starts a worker")
	assert.Equal(t, "overflow worker", out)
	awaitPool(t, pool, "the overflow worker stopped on check-in", func(s Stats) bool {
		return s.Workers == 1 && s.Stopping == 0
	})
	release()

	release = holdWorkers(t, pool, 2)
	_, err = pool.TryCall(context.Background(), "echo", 1)
	assert.ErrorIs(t, err, ErrPoolExhausted)
	s := pool.Stats()
	assert.Equal(t, 2, s.Workers)
	assert.Zero(t, s.Starting, "a full pool starts nothing for TryCall")
	release()
}

func TestMaxWaitingShedsLoad(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxWaiting = 1
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 1)

	waiter := make(chan error)
	go func() {
		_, err := pool.Call(testCtx(t), "echo", 1)
		waiter <- err
	}()
	awaitPool(t, pool, "one waiter", func(s Stats) bool { return s.Waiting == 1 })
	_, err := pool.Call(context.Background(), "echo", 2)
	assert.ErrorIs(t, err, ErrPoolExhausted)

	release()
	require.NoError(t, <-waiter, "the admitted waiter is served")
}

// Issue 7, finding 10: MaxWaiting is a hard limit, however many callers
// arrive at once.
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
