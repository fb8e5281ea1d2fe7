package pypool

// Tests of Config.AsyncCalls (async.go, mux.go; the Python side is
// python/pypool_runtime/aio.py's AsyncServer): calls of async functions
// many at once on one worker, a loop that runs between calls, deadlines
// that cancel one task, crashes that fail every call in flight.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// asyncCallsPool is a pool of testdata/pymod/pypool_asynccalls.py with
// Config.AsyncCalls n.
func asyncCallsPool(t *testing.T, n int, configure func(*Config)) *Pool {
	t.Helper()
	cfg := testConfig(t)
	cfg.Module = "pypool_asynccalls"
	cfg.AsyncCalls = n
	if configure != nil {
		configure(&cfg)
	}
	return newTestPool(t, cfg)
}

// sleepEchoes makes n calls of pypool_asynccalls's sleep_echo(seconds, i)
// at once, each checked to answer i, and returns the wait for all of them.
func sleepEchoes(t *testing.T, pool *Pool, n int, seconds float64) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := pool.Call(testCtx(t), "sleep_echo", seconds, i)
			assert.NoError(t, err)
			assert.Equal(t, int64(i), out)
		}()
	}
	return wg.Wait
}

// TestAsyncCallsRunAtOnce: 50 calls that each return only once all 50 are
// in flight succeed on one worker.
func TestAsyncCallsRunAtOnce(t *testing.T) {
	pool := asyncCallsPool(t, 50, nil)
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = pool.Call(testCtx(t), "barrier", 50, 30)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	s := pool.Stats()
	assert.Equal(t, 0, s.AsyncCalls)
	assert.Equal(t, 0, s.AsyncWorkers)
	assert.Equal(t, 1, s.Idle)
	assert.Equal(t, uint64(50), s.CallsSent)
}

// TestAsyncCallsValuesAndErrors: results, keyword arguments, exceptions,
// CallAs and CallBytes through the calls in flight.
func TestAsyncCallsValuesAndErrors(t *testing.T) {
	pool := asyncCallsPool(t, 8, func(c *Config) { c.Size = 2 })
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 4 {
			case 0:
				out, err := pool.Call(testCtx(t), "sleep_echo", 0.01, i)
				assert.NoError(t, err)
				assert.Equal(t, int64(i), out)
			case 1:
				out, err := CallAs[string](testCtx(t), pool, "greet", "ada", Kwargs{"greeting": fmt.Sprint(i)})
				assert.NoError(t, err)
				assert.Equal(t, fmt.Sprint(i)+" ada", out)
			case 2:
				_, err := pool.Call(testCtx(t), "fail", "bad")
				var pe *PythonError
				if assert.ErrorAs(t, err, &pe) {
					assert.Equal(t, "ValueError", pe.Type)
				}
			default:
				buf, err := CallBytes(testCtx(t), pool, nil, "sleep_echo", 0, []byte("xyz"))
				assert.NoError(t, err)
				assert.Equal(t, []byte("xyz"), buf)
			}
		}()
	}
	wg.Wait()
}

// TestAsyncCallsAtMostN: with AsyncCalls 2 on one worker, 10 calls run two
// at a time, never more; the others wait and are served as places free.
func TestAsyncCallsAtMostN(t *testing.T) {
	pool := asyncCallsPool(t, 2, nil)
	sleepEchoes(t, pool, 10, 0.02)()
	got, err := CallAs[[]int](testCtx(t), pool, "sync_inflight")
	require.NoError(t, err)
	assert.Equal(t, []int{0, 2}, got)
}

// TestAsyncCallsLoopRunsBetweenCalls: a background task started by a call
// runs while no call is in flight.
func TestAsyncCallsLoopRunsBetweenCalls(t *testing.T) {
	pool := asyncCallsPool(t, 4, nil)
	_, err := pool.Call(testCtx(t), "start_ticker")
	require.NoError(t, err)
	first, err := CallAs[int](testCtx(t), pool, "get_ticks")
	require.NoError(t, err)
	for {
		time.Sleep(50 * time.Millisecond) // no call in flight
		now, err := CallAs[int](testCtx(t), pool, "get_ticks")
		require.NoError(t, err)
		if now > first+3 {
			return
		}
		require.NoError(t, testCtx(t).Err())
	}
}

// TestAsyncCallsSyncFunctionsHaveTheWorkerAlone: a sync function's call
// waits until the async calls in flight on the only worker have ended;
// streams, Ping and a Transaction's calls work in the mode.
func TestAsyncCallsSyncFunctionsHaveTheWorkerAlone(t *testing.T) {
	pool := asyncCallsPool(t, 20, nil)
	wait := sleepEchoes(t, pool, 20, 0.3)
	awaitPool(t, pool, "20 async calls in flight", func(s Stats) bool { return s.AsyncCalls == 20 })
	assert.Equal(t, map[int]int{workerPids(pool)[0]: 20}, pool.AsyncCallsByWorker())
	got, err := CallAs[[]int](testCtx(t), pool, "sync_inflight")
	require.NoError(t, err)
	assert.Equal(t, []int{0, 20}, got, "the sync call ran while async calls were in flight")
	wait()
	assert.Empty(t, pool.AsyncCallsByWorker())

	var items []int64
	for v, err := range pool.Stream(testCtx(t), "numbers", 3) {
		require.NoError(t, err)
		items = append(items, v.(int64))
	}
	assert.Equal(t, []int64{0, 1, 2}, items)
	require.NoError(t, pool.Ping(testCtx(t)))
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
		out, err := w.Call(testCtx(t), "sleep_echo", 0, "tx")
		assert.Equal(t, "tx", out)
		return err
	}))
	out, err := pool.Call(testCtx(t), "returns_coroutine", "c")
	require.NoError(t, err)
	assert.Equal(t, "c", out)
}

// TestAsyncCallsDeadlineCancelsOnlyItsTask: among 50 calls in flight on
// one worker, the one whose deadline passes gets its context's error at
// once and its task a CancelledError; the others end normally, on the
// same worker.
func TestAsyncCallsDeadlineCancelsOnlyItsTask(t *testing.T) {
	pool := asyncCallsPool(t, 50, nil)
	pid := workerPids(pool)[0]
	var wg sync.WaitGroup
	for range 49 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := pool.Call(testCtx(t), "wait_cancel", 1.0)
			assert.NoError(t, err)
			assert.Equal(t, "slept", out)
		}()
	}
	awaitPool(t, pool, "49 async calls in flight", func(s Stats) bool { return s.AsyncCalls == 49 })
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := pool.Call(ctx, "wait_cancel", 1.0)
	late := time.Since(began)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, late, 800*time.Millisecond, "the call returned at its deadline, not with its neighbours")
	wg.Wait()
	// Its task got CancelledError, unless its deadline came before the
	// event loop first ran it (a loaded machine): then its body never ran.
	started, err := CallAs[int](testCtx(t), pool, "started_count")
	require.NoError(t, err)
	require.Contains(t, []int{49, 50}, started, "wait_cancel tasks that began to run")
	if started == 49 {
		t.Log("the cut-off call's task was cancelled before it began to run")
	}
	n, err := CallAs[int](testCtx(t), pool, "cancelled_count")
	require.NoError(t, err)
	assert.Equal(t, started-49, n, "cancelled tasks")
	s := pool.Stats()
	assert.Equal(t, uint64(0), s.Crashes+s.StopsKilled)
	assert.Equal(t, uint64(1), s.Interrupts)
	assert.Equal(t, uint64(1), s.DeadlineExceeded)
	assert.Equal(t, []int{pid}, workerPids(pool))
}

// TestAsyncCallsIgnoredCancelKillsTheWorker: a task that ignores its
// cancellation past Config.InterruptGrace gets its worker killed, and the
// calls in flight beside it fail with ErrWorkerCrashed; the pool replaces
// the worker.
func TestAsyncCallsIgnoredCancelKillsTheWorker(t *testing.T) {
	pool := asyncCallsPool(t, 50, func(c *Config) { c.InterruptGrace = 200 * time.Millisecond })
	pid := workerPids(pool)[0]
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := pool.Call(testCtx(t), "sleep_echo", 10, 0)
			assert.ErrorIs(t, err, ErrWorkerCrashed)
		}()
	}
	awaitPool(t, pool, "10 async calls in flight", func(s Stats) bool { return s.AsyncCalls == 10 })
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "ignore_cancel", 10)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	wg.Wait()
	awaitPool(t, pool, "a new worker", func(s Stats) bool { return s.Idle == 1 && s.StopsKilled == 1 })
	out, err := pool.Call(testCtx(t), "sleep_echo", 0, "again")
	require.NoError(t, err)
	assert.Equal(t, "again", out)
	assert.NotEqual(t, []int{pid}, workerPids(pool))
}

// TestAsyncCallsCrashFailsEveryCallInFlight: a worker killed with 50 calls
// in flight fails each of them with ErrWorkerCrashed, once; with
// CrashRetries they succeed on the replacement.
func TestAsyncCallsCrashFailsEveryCallInFlight(t *testing.T) {
	for _, retries := range []int{0, 1} {
		t.Run(fmt.Sprint("CrashRetries=", retries), func(t *testing.T) {
			pool := asyncCallsPool(t, 50, func(c *Config) { c.CrashRetries = retries })
			pid := workerPids(pool)[0]
			var wg sync.WaitGroup
			errs := make([]error, 50)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = pool.Call(testCtx(t), "sleep_echo", 0.5, i)
				}()
			}
			awaitPool(t, pool, "50 async calls in flight", func(s Stats) bool { return s.AsyncCalls == 50 })
			require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
			wg.Wait()
			for _, err := range errs {
				if retries == 0 {
					assert.ErrorIs(t, err, ErrWorkerCrashed)
					var exit *WorkerExitError
					if assert.ErrorAs(t, err, &exit) {
						assert.Equal(t, pid, exit.Pid)
					}
				} else {
					assert.NoError(t, err)
				}
			}
			awaitPool(t, pool, "a new idle worker", func(s Stats) bool { return s.Idle == 1 && s.AsyncCalls == 0 })
			s := pool.Stats()
			assert.Equal(t, uint64(1), s.Crashes)
			assert.Equal(t, s.CallsStarted, s.CallsFinished)
			_, err := pool.Call(testCtx(t), "sleep_echo", 0, 1)
			require.NoError(t, err)
		})
	}
}

// TestAsyncCallsRefusals: Go callbacks from a task are refused with an
// error that names the mode; shared memory cannot be asked for with it.
func TestAsyncCallsRefusals(t *testing.T) {
	pool := asyncCallsPool(t, 4, func(c *Config) {
		c.Callbacks = map[string]Callback{"hello": func(context.Context, []any) (any, error) { return "hi", nil }}
	})
	_, err := pool.Call(testCtx(t), "calls_go")
	var pe *PythonError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "RuntimeError", pe.Type)
	assert.Contains(t, pe.Message, "Config.AsyncCalls")

	for _, c := range []Config{
		{Module: "m", AsyncCalls: -1},
		{Module: "m", AsyncCalls: 2, SharedMemoryThreshold: 1 << 20},
	} {
		_, err := c.withDefaults()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Config.")
	}
	c, err := Config{Module: "m", AsyncCalls: 2}.withDefaults()
	require.NoError(t, err)
	assert.Negative(t, c.SharedMemoryThreshold, "no shared memory in async mode")
}

// TestAsyncCallsClose: Close with calls in flight waits for them.
func TestAsyncCallsClose(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module = "pypool_asynccalls"
	cfg.AsyncCalls = 10
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := pool.Call(testCtx(t), "sleep_echo", 0.2, i)
			if !errors.Is(err, ErrPoolClosed) {
				assert.NoError(t, err)
				assert.Equal(t, int64(i), out)
			}
		}()
	}
	awaitPool(t, pool, "10 async calls in flight", func(s Stats) bool { return s.AsyncCalls == 10 })
	require.NoError(t, pool.Close(testCtx(t)))
	wg.Wait()
}

// TestAsyncCallsChaos is TestChaos in async mode: 32 callers make calls of
// async functions (results, exceptions, deadlines that cancel their task,
// a task that ignores its cancellation), sync calls, streams and
// transactions on a pool with overflow and retries, while workers are
// SIGKILLed every 60 ms. Every call ends with its expected result or a
// typed error, none hangs, the pool's limits hold throughout, and
// afterwards the pool is back at Size with no stray process.
func TestAsyncCallsChaos(t *testing.T) {
	cfg := chaosConfig(t, 2)
	cfg.Module = "pypool_asynccalls"
	cfg.AsyncCalls = 8
	cfg.Logger = slogNew(newLogRecorder())
	pool := newTestPool(t, cfg)
	defer watchInvariants(t, pool)()

	// 2 workers: fewer kills, so that calls are in flight together.
	r := runChaos(pool, cfg.Size, chaosRun{calls: 5000, duration: 5 * time.Second, killEvery: 3 * chaosKillEvery, call: asyncChaosCall})
	t.Logf("async chaos: %d calls, %d workers killed; stats %+v\n%s", r.outcomes.total(), r.kills.Load(), pool.Stats(), r.outcomes)
	assert.Empty(t, r.outcomes.unexpected, "calls that ended in an unexpected way")
	assert.Positive(t, r.kills.Load())
	awaitPool(t, pool, "back at Size, at rest, every killed worker gone", func(s Stats) bool {
		return atRest(s, cfg.Size) && s.AsyncCalls == 0 && s.AsyncWorkers == 0 && !pool.holdsAny(r.killed)
	})
	assert.ElementsMatch(t, workerPids(pool), childProcesses(), "no zombie or orphan: the only children are the workers")
	s := pool.Stats()
	assert.Equal(t, s.CallsStarted, s.CallsFinished)
	assert.NoError(t, pool.Close(context.Background()))
}

// asyncChaosCall makes call i of TestAsyncCallsChaos and checks its
// outcome; it returns the kind of call and nil, or what was wrong.
func asyncChaosCall(pool *Pool, i int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang fails the call
	defer cancel()
	switch kind := i % 100; {
	case kind < 10:
		return "async raises", callRaises(ctx, pool)
	case kind < 20 || kind == 99:
		fn := "wait_cancel"
		if kind == 99 {
			fn = "ignore_cancel" // its worker is killed after the grace
		}
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		_, err := pool.Call(short, fn, 5)
		// Killed before its deadline, its retry may find the deadline gone.
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrWorkerCrashed) {
			return "async past its deadline", nil
		}
		return "async past its deadline", fmt.Errorf("want DeadlineExceeded, got %v", err)
	case kind < 25:
		out, err := pool.Call(ctx, "sync_echo", i)
		if err == nil && out == int64(i) {
			return "sync echo", nil
		}
		return "sync echo", fmt.Errorf("want %d, got %v, %v", i, out, err)
	case kind < 28:
		var items []any
		var err error
		for v, e := range pool.Stream(ctx, "numbers", 3) {
			if err = e; e != nil {
				break
			}
			items = append(items, v)
		}
		if (err == nil && fmt.Sprint(items) == "[0 1 2]") || errors.Is(err, ErrWorkerCrashed) {
			return "async generator streamed", nil
		}
		return "async generator streamed", fmt.Errorf("want [0 1 2] or a crash, got %v, %v", items, err)
	case kind == 28:
		err := pool.Transaction(ctx, func(w *Worker) error {
			out, err := w.Call(ctx, "sleep_echo", 0.001, i)
			if err == nil && out != int64(i) {
				return fmt.Errorf("want %d, got %v", i, out)
			}
			return err
		})
		if err == nil || errors.Is(err, ErrWorkerCrashed) {
			return "async in a transaction", nil
		}
		return "async in a transaction", fmt.Errorf("want %d or a crash, got %v", i, err)
	default:
		out, err := pool.Call(ctx, "sleep_echo", float64(i%20)/1000, i)
		if err == nil && out == int64(i) {
			return "async echo", nil
		}
		return "async echo", fmt.Errorf("want %d, got %v, %v", i, out, err)
	}
}

// TestAsyncCallsOnAWorkerThatDoesNotNameTheFunction: a worker that does
// not name the function among its async functions (one of other code than
// the pool's first worker) serves its calls one at a time, as a sync
// function's.
func TestAsyncCallsOnAWorkerThatDoesNotNameTheFunction(t *testing.T) {
	pool := asyncCallsPool(t, 10, nil)
	pool.serving()[0].proc.asyncFns = map[string]bool{} // before any call: nothing reads it yet
	sleepEchoes(t, pool, 3, 0.05)()
	got, err := CallAs[[]int](testCtx(t), pool, "sync_inflight")
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1}, got)
}

// TestAsyncCallsCarryTheirContext: in async mode each task reads its own
// call's context (docs/call-context.md): 20 calls in flight at once on one
// worker (a barrier of 20), each with its own metadata and deadline, and
// one without any. The calls that carried a context were served one at a
// time by the main thread (the loop thread took only 5-element CALLs), and
// a call without one had no context in its task.
func TestAsyncCallsCarryTheirContext(t *testing.T) {
	pool := asyncCallsPool(t, 32, nil)
	const n = 20
	type answer struct {
		i   int
		out any
		err error
	}
	answers := make(chan answer, n)
	for i := range n {
		go func() {
			ctx, cancel := context.WithTimeout(WithMetadata(testCtx(t), map[string]string{"i": strconv.Itoa(i)}), time.Minute)
			defer cancel()
			out, err := pool.Call(ctx, "call_context", n)
			answers <- answer{i, out, err}
		}()
	}
	for range n {
		a := <-answers
		require.NoError(t, a.err, "call %d", a.i)
		got, ok := a.out.(map[string]any)
		require.True(t, ok, "call %d: %#v, want its context", a.i, a.out)
		assert.Equal(t, "call_context", got["function"])
		assert.Equal(t, int64(1), got["attempt"])
		assert.Equal(t, map[string]any{"i": strconv.Itoa(a.i)}, got["metadata"], "call %d's task saw another call's metadata", a.i)
		left, _ := got["remaining"].(float64)
		assert.True(t, left > 0 && left <= 60, "call %d: remaining() %v, want in (0, 60]", a.i, got["remaining"])
	}
	out, err := pool.Call(context.Background(), "call_context", 0)
	require.NoError(t, err)
	got, _ := out.(map[string]any)
	require.NotNil(t, got, "a call without deadline or metadata has a context too: %#v", out)
	assert.Equal(t, "call_context", got["function"])
	assert.Nil(t, got["remaining"])
	assert.Empty(t, got["metadata"])
}

// TestAsyncCallCutOffBeforeItsFrameLeavesNoReader: an async call whose
// context ends before its CALL is written (nothing sent) leaves the worker
// to its next user alone. The reader of async replies used to be started
// before the write and stayed blocked on the pipe once the worker was
// checked in: it read beside the next Transaction's call (a data race on
// the reader, and a reply taken from its caller). Found by
// TestPoolModel/AsyncCalls in the full suite.
func TestAsyncCallCutOffBeforeItsFrameLeavesNoReader(t *testing.T) {
	pool := asyncCallsPool(t, 4, nil)
	for i := range 300 {
		ctx, cancel := context.WithTimeout(testCtx(t), time.Duration(i%40)*time.Microsecond)
		_, err := pool.Call(ctx, "trivial")
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: the async call: %v, want nil or DeadlineExceeded", i, err)
		}
		err = pool.Transaction(testCtx(t), func(w *Worker) error {
			got, err := w.Call(testCtx(t), "sync_echo", i)
			if err == nil && got != int64(i) {
				err = fmt.Errorf("got %v", got)
			}
			return err
		})
		require.NoError(t, err, "round %d: a Transaction's call after an async call cut off", i)
	}
}

// TestAsyncPlaceIsNotGivenOnALostWorker: when the stream of a worker's
// async calls is lost (its output ended: process.loseShared, as the reader
// calls it), a place freed there by one of the failed calls is not given to
// an async caller waiting in the queue; that caller, which never reached
// the lost worker, is served by the next one. Before, fillLocked gave it
// the place, and the call failed with the lost worker's error (with
// CrashRetries 1, a retry could fail so: a flake of
// TestAsyncCallsCrashFailsEveryCallInFlight under load).
func TestAsyncPlaceIsNotGivenOnALostWorker(t *testing.T) {
	pool := asyncCallsPool(t, 2, func(c *Config) { c.Size, c.MaxOverflow, c.CrashRetries = 1, 0, 0 })
	proc := workerProcess(pool)
	held := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := pool.Call(testCtx(t), "wait_cancel", 60.0)
			held <- err
		}()
	}
	awaitPool(t, pool, "2 async calls in flight", func(s Stats) bool { return s.AsyncCalls == 2 })
	waiting := make(chan error, 1)
	go func() {
		_, err := pool.Call(testCtx(t), "sleep_echo", 0, 1)
		waiting <- err
	}()
	awaitPool(t, pool, "a caller waiting", func(s Stats) bool { return s.Waiting == 1 })
	proc.loseShared(io.EOF) // the stream ends: the worker's output closed
	for range 2 {
		assert.Error(t, <-held, "a call in flight on the lost worker")
	}
	require.NoError(t, <-waiting, "the caller that waited for a place, served by the next worker")
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 1) })
}
