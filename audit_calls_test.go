package pypool

// audit_calls_test.go is a hostile tester's attacks on the call forms'
// fault paths (Call, TryCall, CallAs, CallBytes, Stream, StreamAs,
// Transaction, callbacks and nested calls, async calls, the call's
// context): each test strikes at a known point of a call (the module
// tells Go through a callback that it runs) and checks the one outcome
// of every call touched, and that no healthy caller pays for it.

import (
	"context"
	"errors"
	"math/rand"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// auditCallsConfig is a pool of one worker of pypool_auditcalls with
// callbacks.
func auditCallsConfig(t testing.TB, callbacks map[string]Callback) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_auditcalls"
	cfg.Callbacks = callbacks
	return cfg
}

// signalCallback is a callback that sends on ch each time Python calls it.
func signalCallback(ch chan<- struct{}) Callback {
	return func(context.Context, []any) (any, error) {
		ch <- struct{}{}
		return nil, nil
	}
}

// A call on a Transaction's Worker that is still in flight when fn returns
// (made from a goroutine of fn) must not leave the worker in the pool
// under it: before, the worker was checked in at once, the next caller
// got it, waited for the straggler, and then failed with
// ErrWorkerReleased when the straggler was cut off.
func TestAuditTransactionStragglerCostsNoHealthyCaller(t *testing.T) {
	started := make(chan struct{}, 1)
	pool := newTestPool(t, auditCallsConfig(t, map[string]Callback{"started": signalCallback(started)}))
	straggler := make(chan error, 1)
	err := pool.Transaction(testCtx(t), func(w *Worker) error {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := w.Call(ctx, "signal_then_sleep", "started", 30)
			straggler <- err
		}()
		<-started // Python runs the call
		return nil
	})
	require.NoError(t, err)
	select {
	case err := <-straggler:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	default:
		t.Error("Transaction returned while a call on its Worker was in flight")
	}
	v, err := pool.Call(testCtx(t), "echo", 7)
	require.NoError(t, err, "a healthy caller after the transaction")
	require.EqualValues(t, 7, v)
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 1) })
}

// A call on a Worker after its transaction ended, from a goroutine that
// outlives it, is refused: never run on the worker's next user's turn.
func TestAuditWorkerCallAfterTransactionIsReleased(t *testing.T) {
	pool := newTestPool(t, auditCallsConfig(t, nil))
	var kept *Worker
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error { kept = w; return nil }))
	_, err := kept.Call(testCtx(t), "echo", 1)
	require.ErrorIs(t, err, ErrWorkerReleased)
	for _, err := range kept.Stream(testCtx(t), "numbers", 3) {
		require.ErrorIs(t, err, ErrWorkerReleased)
	}
	_, err = CallBytes(testCtx(t), kept, nil, "echo", []byte("x"))
	require.ErrorIs(t, err, ErrWorkerReleased)
}

// settled waits for the pool at rest with size workers and checks that
// every call begun has ended (Stats stays honest after the faults).
func settled(t *testing.T, pool *Pool, size int) {
	t.Helper()
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, size) })
	s := pool.Stats()
	assert.Equal(t, s.CallsStarted, s.CallsFinished, "calls begun and ended")
	assert.Zero(t, s.AsyncCalls, "async calls in flight")
}

// A stream whose items each make a callback, cancelled at random points
// (in Python, in the callback, in the loop's body): each loop ends with
// its items in order and at most one error, context.Canceled, and the
// worker serves the next call.
func TestAuditStreamOfCallbacksCancelledAnywhere(t *testing.T) {
	pool := newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"double": func(ctx context.Context, args []any) (any, error) {
			if rand.Intn(4) == 0 {
				<-ctx.Done() // a callback that waits for the call's end
				return nil, ctx.Err()
			}
			return args[0].(int64) * 2, nil
		},
	}))
	for i := range 40 {
		ctx, cancel := context.WithCancel(testCtx(t))
		time.AfterFunc(time.Duration(rand.Intn(3000))*time.Microsecond, cancel)
		next, errs := int64(0), 0
		for v, err := range pool.Stream(ctx, "ask_each", "double", 1000) {
			if err != nil {
				errs++
				require.ErrorIs(t, err, context.Canceled, "iteration %d", i)
				continue
			}
			require.Equal(t, next*2, v, "iteration %d", i)
			next++
		}
		require.LessOrEqual(t, errs, 1)
		cancel()
		v, err := pool.Call(testCtx(t), "echo", i)
		require.NoError(t, err, "the call after iteration %d", i)
		require.EqualValues(t, i, v)
	}
	settled(t, pool, 1)
}

// The worker is SIGKILLed while a callback's nested call runs in Python:
// the nested call and the outer call each end with ErrWorkerCrashed, and
// the pool is back at its size, every call counted as ended.
func TestAuditWorkerKilledDuringNestedCall(t *testing.T) {
	started := make(chan struct{}, 1)
	nested := make(chan error, 1)
	var pool *Pool
	pool = newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"started": signalCallback(started),
		"nest": func(ctx context.Context, _ []any) (any, error) {
			_, err := pool.Call(ctx, "signal_then_sleep", "started", 30)
			nested <- err
			return nil, err
		},
	}))
	pid := workerPids(pool)[0]
	go func() {
		<-started
		syscall.Kill(pid, syscall.SIGKILL)
	}()
	_, err := pool.Call(testCtx(t), "ask", "nest")
	require.ErrorIs(t, err, ErrWorkerCrashed)
	require.ErrorIs(t, <-nested, ErrWorkerCrashed)
	settled(t, pool, 1)
	v, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	require.NotEqualValues(t, pid, v)
}

// A nested Stream abandoned by a break inside a callback closes its
// generator; the outer call goes on and gets the callback's answer, and
// the worker serves the next call.
func TestAuditNestedStreamBrokenOutOf(t *testing.T) {
	var pool *Pool
	pool = newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"first": func(ctx context.Context, _ []any) (any, error) {
			for v, err := range pool.Stream(ctx, "numbers", 100000) {
				return v, err
			}
			return nil, errors.New("no item")
		},
	}))
	for range 3 {
		ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
		v, err := pool.Call(ctx, "ask", "first")
		cancel()
		require.NoError(t, err)
		require.EqualValues(t, 0, v)
	}
	v, err := pool.Call(testCtx(t), "echo", "after")
	require.NoError(t, err)
	require.Equal(t, "after", v)
	settled(t, pool, 1)
}

// A callback that closes the pool: Close (bounded) stops the worker that
// waits for the callback, and the call that made it ends with
// ErrPoolClosed only, never as a crash.
func TestAuditCallbackClosesThePool(t *testing.T) {
	var pool *Pool
	closed := make(chan error, 1)
	cfg := auditCallsConfig(t, map[string]Callback{
		"close": func(ctx context.Context, _ []any) (any, error) {
			cctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := pool.Close(cctx)
			closed <- err
			return nil, err
		},
	})
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	_, err = pool.Call(testCtx(t), "ask", "close")
	require.ErrorIs(t, err, ErrPoolClosed)
	require.NotErrorIs(t, err, ErrWorkerCrashed)
	require.ErrorIs(t, <-closed, context.DeadlineExceeded)
	require.NoError(t, pool.Close(testCtx(t)))
	_, err = pool.Call(testCtx(t), "echo", 1)
	require.ErrorIs(t, err, ErrPoolClosed)
}

// With Config.AsyncCalls, a sync function's callback may call an async
// function with its context: the nested call runs on the waiting worker.
func TestAuditAsyncModeNestedCallOfAsyncFunction(t *testing.T) {
	var pool *Pool
	cfg := auditCallsConfig(t, map[string]Callback{
		"nest": func(ctx context.Context, args []any) (any, error) {
			return pool.Call(ctx, "async_echo", args[0])
		},
	})
	cfg.AsyncCalls = 4
	pool = newTestPool(t, cfg)
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
	defer cancel()
	v, err := pool.Call(ctx, "ask", "nest", "deep")
	require.NoError(t, err)
	require.Equal(t, "deep", v)
	v, err = pool.Call(ctx, "async_echo", 5)
	require.NoError(t, err)
	require.EqualValues(t, 5, v)
	settled(t, pool, 1)
}

// var keeps the imports of the attacks below in use.
var _ = sync.Mutex{}

// Close's promise (pool.go): it returns ctx's error only if it had to cut
// off a worker still checked out; "a call already cut off by its own
// caller (being interrupted) does not count". With Config.AsyncCalls, a
// worker whose only call was cut off by its caller (its task still
// cleaning up after the CANCEL) is such a worker: before the fix, Close
// counted it as a call still running and returned its context's error.
func TestAuditCloseDoesNotCountAnAsyncCallCutOffByItsCaller(t *testing.T) {
	cfg := auditCallsConfig(t, nil)
	cfg.AsyncCalls = 4
	cfg.InterruptGrace = 20 * time.Second
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err = pool.Call(ctx, "slow_to_cancel", 10)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	cctx, ccancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer ccancel()
	require.NoError(t, pool.Close(cctx), "no call was running: its caller had cut it off")
}
