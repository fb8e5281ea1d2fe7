package pypool

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCallTimeoutAppliesWithoutDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.CallTimeout = 100 * time.Millisecond
	pool := newTestPool(t, cfg)
	_, err := pool.Call(context.Background(), "sleep", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// A context with its own deadline is left alone.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := pool.Call(ctx, "sleep", 0.2)
	require.NoError(t, err)
	assert.Equal(t, "slept", out)
}

// TestWorkerStuckInCIsKilled: C code that never checks for signals cannot
// take the KeyboardInterrupt; after InterruptGrace the worker is killed.
func TestWorkerStuckInCIsKilled(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.InterruptGrace = 100 * time.Millisecond
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	before := workerPids(pool)
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		rec.await(t, "entering C")
		cancel()
	}()
	_, err := pool.Call(ctx, "stuck_in_c")
	require.ErrorIs(t, err, context.Canceled)
	killed := rec.await(t, msgWorkerKilled)
	assert.Equal(t, "stuck_in_c", killed["function"])
	// Where it was stuck, taken before the kill: the Python frame that
	// called into C.
	stack := rec.awaitMatch(t, msgPythonStack, "event", dumpKilled)
	assert.Equal(t, "stuck_in_c", stack["function"])
	assert.Contains(t, stack["stack"], testmodLine(t, "stuck_in_c", "hashlib.pbkdf2_hmac("))
	out, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), out)
	assert.NotEqual(t, before, workerPids(pool))
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

func TestCrashRetries(t *testing.T) {
	cfg := testConfig(t)
	cfg.CrashRetries = 2
	pool := newTestPool(t, cfg)
	flag := filepath.Join(t.TempDir(), "crashed")
	out, err := pool.Call(testCtx(t), "crash_once", flag)
	require.NoError(t, err, "the retry ran on a new worker")
	assert.Equal(t, "survived", out)
	assert.Equal(t, uint64(2), pool.Stats().Calls)

	_, err = pool.Call(testCtx(t), "fail", "no retry")
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, uint64(3), pool.Stats().Calls, "Python exceptions are not retried")

	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	_, err = pool.Call(ctx, "sleep", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, uint64(4), pool.Stats().Calls, "ended contexts are not retried")

	noRetry := newTestPool(t, testConfig(t))
	flag2 := filepath.Join(t.TempDir(), "crashed")
	_, err = noRetry.Call(testCtx(t), "crash_once", flag2)
	assert.ErrorIs(t, err, ErrWorkerCrashed, "retries are opt-in")
}

func TestMaxCallsPerWorkerRecycles(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxCallsPerWorker = 3
	pool := newTestPool(t, cfg)
	first := workerPids(pool)
	for range 3 {
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
	awaitPool(t, pool, "recycled and refilled", func(s Stats) bool {
		return s.Recycled == 1 && s.Restarts == 1 && s.Workers == 1 && len(workerPids(pool)) == 1
	})
	assert.NotEqual(t, first, workerPids(pool))
	assert.Zero(t, pool.Stats().Crashes, "recycling is not a crash")
	_, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
}

func TestMaxWorkerLifetimeRecyclesIdleWorkers(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxWorkerLifetime = 200 * time.Millisecond
	pool := newTestPool(t, cfg)
	first := workerPids(pool)[0]
	awaitPool(t, pool, "the old worker replaced", func(s Stats) bool {
		pids := workerPids(pool)
		return s.Recycled >= 1 && s.Workers == 1 && len(pids) == 1 && pids[0] != first
	})
	_, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
}

func TestMaxWorkerMemoryRecyclesAfterTheCall(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	pid := 0
	{
		probe := newTestPool(t, cfg)
		pid = workerPids(probe)[0]
		rss, err := residentBytes(pid)
		require.NoError(t, err)
		cfg.MaxWorkerMemory = rss + 64<<20
	}
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	first := workerPids(pool)
	out, err := pool.Call(testCtx(t), "hog", 128)
	require.NoError(t, err, "the call over the limit completes")
	assert.Equal(t, int64(1), out)
	awaitPool(t, pool, "the hog replaced", func(s Stats) bool {
		return s.Recycled == 1 && s.Restarts == 1 && s.Workers == 1 && len(workerPids(pool)) == 1
	})
	assert.NotEqual(t, first, workerPids(pool))
	// Its stack as it was recycled (idle, between calls), tagged with the
	// call that went over the limit.
	stack := rec.awaitMatch(t, msgPythonStack, "event", dumpRecycled)
	assert.Equal(t, "hog", stack["function"])
	assert.Equal(t, itoa(first[0]), stack["worker"])
	assert.Contains(t, stack["stack"], "in serve")
	assert.Contains(t, rec.await(t, msgWorkerStopped)["cause"], "MaxWorkerMemory")
}

func TestOverflowIdleTimeoutAvoidsChurn(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxOverflow = 2
	cfg.OverflowIdleTimeout = 300 * time.Millisecond
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 3)
	release()
	s := pool.Stats()
	assert.Equal(t, 3, s.Workers, "overflow workers linger after the burst")
	assert.Equal(t, 3, s.Idle)

	// Another burst reuses them: no new process.
	before, restarts := workerPids(pool), pool.Stats().Restarts
	release = holdWorkers(t, pool, 3)
	release()
	assert.ElementsMatch(t, before, workerPids(pool))
	assert.Equal(t, restarts, pool.Stats().Restarts)

	awaitPool(t, pool, "overflow stopped after idling", func(s Stats) bool {
		return s.Workers == 1 && s.Recycled == 2 && len(workerPids(pool)) == 1
	})
}

// TestCrashLoopBacksOffAndHeals breaks the module under a running pool and
// kills its workers: restarts fail, callers get the import error at once
// instead of waiting, and once the module is fixed the pool heals itself.
func TestCrashLoopBacksOffAndHeals(t *testing.T) {
	dir := t.TempDir()
	failFlag, goFlag := filepath.Join(dir, "fail"), filepath.Join(dir, "go")
	require.NoError(t, os.WriteFile(goFlag, nil, 0o644)) // failing starts fail at once
	cfg := testConfig(t)
	cfg.Module = "pypool_gated"
	if testStartMethod() == StartForkServer {
		cfg.SetUp = "gate" // forked workers do not import the module: they run its set-up
	}
	cfg.Size = 2
	cfg.Env = []string{"PYPOOL_FAIL_FLAG=" + failFlag, "PYPOOL_GO_FLAG=" + goFlag}
	pool := newTestPool(t, cfg)

	require.NoError(t, os.WriteFile(failFlag, nil, 0o644))
	for _, pid := range workerPids(pool) {
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	}
	awaitPool(t, pool, "restarts failing", func(s Stats) bool { return s.StartFailures >= 2 && s.Workers == 0 })

	_, err := pool.Call(context.Background(), "echo", 1) // no deadline: must not hang
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Contains(t, pyErr.Traceback, "start refused by the test")

	require.NoError(t, os.Remove(failFlag))
	awaitPool(t, pool, "healed", func(s Stats) bool { return s.Workers == 2 })
	out, err := pool.Call(testCtx(t), "echo", "healed")
	require.NoError(t, err)
	assert.Equal(t, "healed", out)
}

func TestBackoffGrowsAndResets(t *testing.T) {
	var b startBackoff
	assert.Nil(t, b.refusal())
	importErr := &PythonError{Code: "import_failed", Type: "ImportError"}
	var delays []time.Duration
	for range 12 {
		assert.True(t, b.failedStart(importErr, time.Now()), "an import error is fatal")
		delays = append(delays, b.retryAt.Sub(b.bumpedAt)) // the delay as set: no clock read after it
	}
	for i := 1; i < len(delays); i++ {
		assert.GreaterOrEqual(t, delays[i]+time.Millisecond, min(delays[i-1]*2, backoffMax-time.Millisecond), "delay %d", i)
	}
	assert.LessOrEqual(t, delays[len(delays)-1], backoffMax)
	assert.Equal(t, importErr, b.refusal(), "callers get the error at once during the delay")

	b.started()
	assert.Nil(t, b.refusal(), "a successful start ends the refusals")
	b.callSucceeded()
	assert.LessOrEqual(t, b.delay(), time.Duration(0), "a successful call ends the backoff")

	// A worker killed during its handshake says nothing about the module:
	// however often it happens, the pool never turns fail-fast for it.
	died := &WorkerExitError{Signal: "killed", cause: ErrWorkerStart}
	for i := range 5 {
		assert.False(t, b.failedStart(died, time.Now()), "death %d during the handshake is transient", i+1)
	}
	assert.Nil(t, b.refusal())
	assert.Positive(t, b.retryAt.Sub(b.bumpedAt), "but it lengthens the backoff") // as set: no clock read after it
}
