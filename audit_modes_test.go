package pypool

// audit_modes_test.go: the third audit's attacks on the documented promises
// of the non-default modes: the fork server's start method, Config.AsyncCalls,
// shared memory on and off, Limits and Credential, against recycling,
// deadlines, Close, Resize, Reload, backoff, MaxWaiting and the overflow's
// idle timeout. Its Python module is testdata/pymod/pypool_auditmodes.py.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// auditModesConfig is a pool of pypool_auditmodes with one worker.
func auditModesConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_auditmodes"
	return cfg
}

// TestAuditModesAsyncMaxCallsPerWorker: MaxCallsPerWorker ("replace a worker
// after it served this many calls") holds with Config.AsyncCalls: calls of
// async functions placed at once on one worker count before they are
// answered, so that no worker serves more than its limit.
func TestAuditModesAsyncMaxCallsPerWorker(t *testing.T) {
	t.Parallel()
	cfg := auditModesConfig(t)
	cfg.AsyncCalls, cfg.MaxCallsPerWorker = 8, 2
	pool := newTestPool(t, cfg)
	const calls = 8
	pids := make([]int64, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := pool.Call(testCtx(t), "apid", 0.2)
			if assert.NoError(t, err) {
				pids[i] = out.(int64)
			}
		}()
	}
	wg.Wait()
	served := map[int64]int{}
	for _, pid := range pids {
		served[pid]++
	}
	for pid, n := range served {
		assert.LessOrEqual(t, n, 2, "worker %d served %d calls with MaxCallsPerWorker 2", pid, n)
	}
}

// TestAuditModesAsyncResizeShrinksUnderSustainedLoad: Resize stops busy
// workers beyond the new size as their callers check them in; with
// Config.AsyncCalls a worker serving async calls under sustained load is
// never checked in unless it stops taking new calls.
func TestAuditModesAsyncResizeShrinksUnderSustainedLoad(t *testing.T) {
	t.Parallel()
	cfg := auditModesConfig(t)
	cfg.Size, cfg.AsyncCalls = 2, 4
	pool := newTestPool(t, cfg)
	ctx, stop := context.WithCancel(testCtx(t))
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_, err := pool.Call(ctx, "apid", 0.05)
				if ctx.Err() == nil {
					assert.NoError(t, err)
				}
			}
		}()
	}
	defer wg.Wait()
	defer stop()
	awaitPool(t, pool, "both workers serving async calls", func(s Stats) bool { return s.AsyncWorkers == 2 })
	require.NoError(t, pool.Resize(1, 0))
	awaitPoolWithin(t, pool, 15*time.Second, "one worker left under load", func(s Stats) bool { return s.Workers == 1 && s.Stopping == 0 })
}

// awaitPoolWithin is awaitPool with a bound of its own, for a condition
// that a broken promise never reaches: the test fails at d instead of
// testCtx's minute.
func awaitPoolWithin(t testing.TB, p *Pool, d time.Duration, what string, cond func(Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), d)
	defer cancel()
	awaitPoolUntil(t, ctx, p, fmt.Sprintf("%s (within %v)", what, d), cond)
}

// TestAuditModesAsyncOverflowStopsOnceNotNeeded: "a worker checked in while
// overflow workers exist and no caller waits is stopped" (Config.MaxOverflow),
// or stopped once idle for Config.OverflowIdleTimeout, holds with
// Config.AsyncCalls: after a burst, a steady load that one worker holds
// lets the overflow worker's calls end, so that it is checked in and
// stopped, instead of spreading onto it for as long as the load lasts.
func TestAuditModesAsyncOverflowStopsOnceNotNeeded(t *testing.T) {
	t.Parallel()
	for _, idle := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run("OverflowIdleTimeout="+idle.String(), func(t *testing.T) {
			t.Parallel()
			cfg := auditModesConfig(t)
			cfg.Size, cfg.MaxOverflow, cfg.AsyncCalls, cfg.OverflowIdleTimeout = 1, 1, 8, idle
			pool := newTestPool(t, cfg)
			ctx, stop := context.WithCancel(testCtx(t))
			var wg sync.WaitGroup
			defer wg.Wait()
			defer stop()
			for i := range 14 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i >= 6 { // the burst
						_, err := pool.Call(testCtx(t), "apid", 0.5)
						assert.NoError(t, err)
						return
					}
					for ctx.Err() == nil { // the steady load: 6 calls at most, one worker holds 8
						_, err := pool.Call(ctx, "apid", 0.02*float64(i+1))
						if ctx.Err() == nil {
							assert.NoError(t, err)
						}
					}
				}()
			}
			awaitPool(t, pool, "the overflow worker started", func(s Stats) bool { return s.StartsOverflow == 1 })
			awaitPoolWithin(t, pool, 15*time.Second, "the overflow worker stopped under the steady load",
				func(s Stats) bool { return s.Workers == 1 && s.StopsOverflow+s.StopsOverflowIdle == 1 })
		})
	}
}

// TestAuditModesSharedMemoryBeyondTheAddressSpaceLimit: under
// Limits.AddressSpace, a value too large to map is "MemoryError in Python, a
// *PythonError for the caller; the worker serves on" (docs/security.md) with
// shared memory too: its hint names the limit, and the worker's later
// calls through the shared memory still work.
func TestAuditModesSharedMemoryBeyondTheAddressSpaceLimit(t *testing.T) {
	t.Parallel()
	if !sharedMemorySupported() {
		t.Skip("no shared memory on this platform")
	}
	cfg := auditModesConfig(t)
	cfg.Limits.AddressSpace = 64 << 20 // a worker maps about 30 MiB
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	small := make([]byte, 1<<20)
	out, err := pool.Call(ctx, "size", small)
	require.NoError(t, err)
	require.EqualValues(t, len(small), out)
	_, err = pool.Call(ctx, "size", make([]byte, 48<<20))
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	require.Equal(t, "MemoryError", pyErr.Type, "the large value: %v", err)
	assert.Contains(t, pyErr.Hint, "Config.Limits.AddressSpace is 67108864 bytes", "the hint names the limit")
	for range 3 {
		out, err = pool.Call(ctx, "size", small)
		require.NoError(t, err, "a call after the one that did not fit")
		require.EqualValues(t, len(small), out)
	}
	require.Zero(t, pool.Stats().Crashes)
}

// TestAuditModesForkServerLimits: Limits are "applied in each worker" on
// the fork server's start method too: a forked worker holds them, and one
// past Limits.CPUTime is killed by the kernel and replaced.
func TestAuditModesForkServerLimits(t *testing.T) {
	t.Parallel()
	cfg := auditModesConfig(t)
	cfg.StartMethod, cfg.Size = StartForkServer, 2
	cfg.Limits = Limits{AddressSpace: 1 << 30, CPUTime: time.Second, OpenFiles: 64}
	pool := newTestPool(t, cfg)
	if pool.forks.Load() == nil {
		t.Skip("the fork server does not run here")
	}
	ctx := testCtx(t)
	out, err := pool.Call(ctx, "rlimits")
	require.NoError(t, err)
	require.Equal(t, []any{int64(1 << 30), int64(1), int64(64)}, out)
	_, err = pool.Call(ctx, "spin")
	require.ErrorIs(t, err, ErrWorkerCrashed)
	awaitPool(t, pool, "the worker replaced", func(s Stats) bool { return s.Idle == 2 && s.StartsCrash == 1 })
	out, err = pool.Call(ctx, "echo", "again")
	require.NoError(t, err)
	require.Equal(t, "again", out)
}

// TestAuditModesAsyncSyncCallPastItsDeadline: with Config.AsyncCalls, a sync
// function's call "runs on the worker's main thread (where SIGINT
// interrupts it, as without the mode)": past its deadline it is
// interrupted and the worker kept; one that ignores the interrupt for
// InterruptGrace gets its worker killed and replaced.
func TestAuditModesAsyncSyncCallPastItsDeadline(t *testing.T) {
	t.Parallel()
	cfg := auditModesConfig(t)
	cfg.AsyncCalls, cfg.InterruptGrace = 4, 300*time.Millisecond
	pool := newTestPool(t, cfg)
	before := workerPids(pool)
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "sleep", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, pool, "the worker back", func(s Stats) bool { return s.Idle == 1 && s.Interrupts == 1 })
	require.Equal(t, before, workerPids(pool), "a worker that took its interrupt is kept")
	out, err := pool.Call(testCtx(t), "apid", 0)
	require.NoError(t, err)
	require.EqualValues(t, before[0], out)

	ctx, cancel = context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err = pool.Call(ctx, "swallow", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, pool, "the worker killed and replaced", func(s Stats) bool { return s.Idle == 1 && s.StopsKilled == 1 })
	out, err = pool.Call(testCtx(t), "apid", 0)
	require.NoError(t, err)
	require.NotEqualValues(t, before[0], out)
}

// TestAuditModesAsyncLoopStuckInSyncCode: "a task that ignores the
// cancellation (or a loop stuck in synchronous code) for
// Config.InterruptGrace gets its worker killed by the pool; the other calls
// in flight on it fail with ErrWorkerCrashed" (docs/async.md): a task that
// holds the loop in time.sleep, whose CANCEL the worker cannot even read.
func TestAuditModesAsyncLoopStuckInSyncCode(t *testing.T) {
	t.Parallel()
	cfg := auditModesConfig(t)
	cfg.AsyncCalls, cfg.InterruptGrace = 4, 300*time.Millisecond
	pool := newTestPool(t, cfg)
	before := workerPids(pool)
	other := make(chan error, 1)
	go func() {
		_, err := pool.Call(testCtx(t), "apid", 30)
		other <- err
	}()
	awaitPool(t, pool, "the other call in flight", func(s Stats) bool { return s.AsyncCalls == 1 })
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "block_loop", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, <-other, ErrWorkerCrashed)
	awaitPool(t, pool, "the worker killed and replaced", func(s Stats) bool { return s.Idle == 1 && s.StopsKilled == 1 })
	out, err := pool.Call(testCtx(t), "apid", 0)
	require.NoError(t, err)
	require.NotEqualValues(t, before[0], out)
}

// TestAuditModesPreloadedAsyncSetUpTasksAreNamed: "an async Config.SetUp
// runs before, on the same loop, and the tasks it starts keep running"
// (docs/async.md) cannot hold when the fork server's template runs the
// set-up (PreloadSetUp): its loop never runs again, and each forked worker
// runs one of its own. The template says so in the log instead of the
// tasks silently never running.
func TestAuditModesPreloadedAsyncSetUpTasksAreNamed(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Module, cfg.AsyncCalls, cfg.SetUp, cfg.Logger = "pypool_asynccalls", 4, "start_ticker", slogNew(rec)
	cfg.StartMethod, cfg.PreloadSetUp, cfg.Size = StartForkServer, true, 2
	pool := newTestPool(t, cfg)
	if pool.forks.Load() == nil {
		t.Skip("the fork server does not run here")
	}
	const warning = "pypool: the set-up run once in the fork server's template (Config.PreloadSetUp) left 1 asyncio task(s) " +
		"that no worker runs: each forked worker runs an event loop of its own; start background tasks in a " +
		"set-up that each worker runs (PreloadSetUp false)"
	logged := rec.await(t, warning)
	assert.Equal(t, "WARN", logged["level"])
	assert.Equal(t, "stderr", logged["stream"])
	assert.NotEmpty(t, logged["forkserver"])
}
