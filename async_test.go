package pypool

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// asyncPool is a one-worker pool of testdata/pymod/pypool_asyncmod.py that
// logs to rec. Once it is closed, the test fails if the workers wrote
// anything but the lines in expected: no "coroutine ... was never awaited"
// warning, no asyncio complaint about a pending task or an unretrieved
// exception.
func asyncPool(t *testing.T, rec *logRecorder, configure func(*Config), expected ...string) *Pool {
	t.Helper()
	t.Cleanup(func() { // registered first: runs after the pool's Close
		for _, l := range rec.all() {
			if strings.HasPrefix(l.msg, "pypool: ") {
				continue
			}
			assert.Contains(t, expected, l.msg, "a line the worker wrote (attributes %v)", l.attrs)
		}
	})
	cfg := testConfig(t)
	cfg.Module = "pypool_asyncmod"
	cfg.Logger = slogNew(rec)
	if configure != nil {
		configure(&cfg)
	}
	return newTestPool(t, cfg)
}

func TestAsyncFunctionIsAwaited(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), nil)
	out, err := pool.Call(testCtx(t), "double", 21)
	require.NoError(t, err)
	assert.Equal(t, int64(42), out)
	n, err := CallAs[int](testCtx(t), pool, "double", 4)
	require.NoError(t, err)
	assert.Equal(t, 8, n)
	// An awaited result takes the paths of others: a large one goes
	// through the shared memory.
	big, err := CallBytes(testCtx(t), pool, nil, "big_bytes", 1<<20)
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte("x"), 1<<20), big)
}

func TestPlainFunctionReturningCoroutineIsAwaited(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), nil)
	out, err := pool.Call(testCtx(t), "returns_coroutine", "ab")
	require.NoError(t, err)
	assert.Equal(t, "abab", out)
}

// TestAsyncFunctionRaising: the exception of an awaited coroutine is a
// *PythonError whose traceback starts at the user's frames, without the
// runtime's or asyncio's.
func TestAsyncFunctionRaising(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), nil)
	_, err := pool.Call(testCtx(t), "fail", "no luck")
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, "exception", pyErr.Code)
	assert.Equal(t, "ValueError", pyErr.Type)
	assert.Equal(t, "no luck", pyErr.Message)
	assert.Contains(t, pyErr.Traceback, "in fail\n")
	assert.Contains(t, pyErr.Traceback, "in _raise_value_error\n")
	assert.NotContains(t, pyErr.Traceback, "pypool_runtime")
	assert.NotContains(t, pyErr.Traceback, "asyncio")
	assert.NotContains(t, pyErr.Traceback, "During handling", "the codec's refusal of the coroutine is not its context")
}

// TestAsyncDeadlineCancelsTheTask: a call's deadline reaches the awaiting
// coroutine as a cancellation: its except CancelledError and finally blocks
// run, the caller gets DeadlineExceeded at once, and the worker, which
// answered the interrupt, serves the next call.
func TestAsyncDeadlineCancelsTheTask(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), nil)
	pid, err := CallAs[int](testCtx(t), pool, "pid")
	require.NoError(t, err)
	_, err = pool.Call(testCtx(t), "double", 1) // the loop exists: the deadline finds the coroutine awaiting
	require.NoError(t, err)

	const sleep = 30 * time.Second
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	started := time.Now()
	_, err = pool.Call(ctx, "sleep_until_cancelled", sleep.Seconds())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(started), sleep, "the call ended at its deadline, not at the coroutine's end")

	state, err := pool.Call(testCtx(t), "state")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"cancelled": true, "finally ran": true}, state)
	assert.Equal(t, []int{pid}, workerPids(pool), "the worker answered the interrupt and was kept")
	s := pool.Stats()
	assert.Equal(t, uint64(1), s.Interrupts)
	assert.Zero(t, s.StopsKilled)
}

// TestAsyncDeadlineInterruptsSyncCode: a coroutine blocked in synchronous
// code (time.sleep) when its deadline passes gets KeyboardInterrupt there,
// as a sync function would, rather than a cancellation that would wait for
// its next await: the worker answers within InterruptGrace and is kept.
func TestAsyncDeadlineInterruptsSyncCode(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), nil)
	pid, err := CallAs[int](testCtx(t), pool, "pid")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err = pool.Call(ctx, "blocking_sleep", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	state, err := pool.Call(testCtx(t), "state")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"blocking finally ran": true}, state)
	assert.Equal(t, []int{pid}, workerPids(pool), "the worker answered the interrupt and was kept")
	assert.Zero(t, pool.Stats().StopsKilled)
}

// TestAsyncSwallowedCancellationIsKilled: a coroutine that ignores its
// cancellation is handled as a sync function that ignores KeyboardInterrupt:
// killed after InterruptGrace and replaced.
func TestAsyncSwallowedCancellationIsKilled(t *testing.T) {
	rec := newLogRecorder()
	pool := asyncPool(t, rec, func(cfg *Config) { cfg.InterruptGrace = 100 * time.Millisecond }, "awaiting")
	before := workerPids(pool)
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		rec.await(t, "awaiting")
		cancel()
	}()
	_, err := pool.Call(ctx, "swallow_cancellation", 30)
	require.ErrorIs(t, err, context.Canceled)
	killed := rec.await(t, msgWorkerKilled)
	assert.Equal(t, "swallow_cancellation", killed["function"])

	out, err := pool.Call(testCtx(t), "double", 2)
	require.NoError(t, err)
	assert.Equal(t, int64(4), out)
	assert.NotEqual(t, before, workerPids(pool), "the stuck worker was killed and replaced")
}

// TestAsyncLoopKeptAcrossCalls: a server and a connection opened on the
// worker's loop in one call serve the next calls; the server's connection
// handler, a background task, runs while those calls await.
func TestAsyncLoopKeptAcrossCalls(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), nil)
	_, err := pool.Call(testCtx(t), "connect")
	require.NoError(t, err)
	for _, text := range []string{"first", "second"} {
		out, err := pool.Call(testCtx(t), "send_line", text)
		require.NoError(t, err)
		assert.Equal(t, strings.ToUpper(text), out)
	}
}

// TestAsyncSetUp: an async Config.SetUp is awaited before the worker
// serves, on the loop its calls use.
func TestAsyncSetUp(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), func(cfg *Config) { cfg.SetUp = "connect" })
	n, err := CallAs[int](testCtx(t), pool, "connections")
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the set-up ran once")
	out, err := pool.Call(testCtx(t), "send_line", "over the set-up's connection")
	require.NoError(t, err)
	assert.Equal(t, "OVER THE SET-UP'S CONNECTION", out)
}

// TestAsyncSetUpFailure: an async set-up that raises fails the start, with
// the user's frames in the traceback.
func TestAsyncSetUpFailure(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module = "pypool_asyncmod"
	cfg.SetUp = "fail"
	cfg.SetUpArgs = []any{"no database"}
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, "setup_failed", pyErr.Code)
	assert.Equal(t, "ValueError", pyErr.Type)
	assert.Contains(t, pyErr.Traceback, "in _raise_value_error\n")
	assert.NotContains(t, pyErr.Traceback, "pypool_runtime")
	assert.NotContains(t, pyErr.Traceback, "asyncio")
}

// BenchmarkCallAsync is BenchmarkCall for an async function that awaits
// nothing: the cost of awaiting on the worker's loop (compare BenchmarkCall,
// whose function is sync). The sync call's path is unchanged by async
// support: an awaitable is looked for only once the codec refused a result.
func BenchmarkCallAsync(b *testing.B) {
	cfg := testConfig(b)
	cfg.Module = "pypool_asyncmod"
	pool := newTestPool(b, cfg)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pool.Call(ctx, "echo", "testing"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAsyncForkServer: forked workers await as others do, deadlines
// included, and a worker forked from a template whose (preloaded, async)
// set-up made an event loop runs its own loop, not the template's, whose
// selector it would share with the template and its siblings.
func TestAsyncForkServer(t *testing.T) {
	pool := asyncPool(t, newLogRecorder(), func(cfg *Config) {
		cfg.StartMethod = StartForkServer
		cfg.Size = 2
		cfg.SetUp = "remember_setup_loop"
		cfg.PreloadSetUp = true
	})
	err := pool.Transaction(testCtx(t), func(a *Worker) error {
		return pool.Transaction(testCtx(t), func(b *Worker) error {
			for _, w := range []*Worker{a, b} {
				out, err := w.Call(testCtx(t), "own_loop")
				require.NoError(t, err)
				assert.Equal(t, []any{true, true}, out, "worker %d: forked from the set-up's process, on a loop of its own", w.Pid())
			}
			return nil
		})
	})
	require.NoError(t, err)

	pids := workerPids(pool)
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err = pool.Call(ctx, "sleep_until_cancelled", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, pool, "the interrupted worker back in the pool", func(s Stats) bool { return atRest(s, 2) })
	assert.ElementsMatch(t, pids, workerPids(pool), "the interrupted worker answered and was kept")
	assert.Zero(t, pool.Stats().StopsKilled)
}
