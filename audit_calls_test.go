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
	"runtime"
	"strings"
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
// (made from a goroutine of fn), then cut off by its context, costs the
// next caller nothing: the transaction's end waits for it (and the
// check-in drains the worker) before the worker goes back to the pool.
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
	require.ErrorIs(t, <-straggler, context.DeadlineExceeded)
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
// every call begun has ended (Stats stays honest after the faults). A
// callback whose call gave up on it (the call's context ended) runs on in
// its own goroutine, and a call it makes is in progress until it returns:
// a test whose callbacks call awaits them first.
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

// outcomeTally counts the outcomes of calls as OutcomeOf classifies them.
type outcomeTally struct {
	mu  sync.Mutex
	n   map[Outcome]uint64
	all uint64
}

func (o *outcomeTally) add(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = make(map[Outcome]uint64)
	}
	o.n[OutcomeOf(err)]++
	o.all++
}

// Every call form, with faults (deadlines, cancellations, exceptions,
// crashes, shedding, broken-out streams, nested calls), from several
// goroutines at once: Stats counts exactly the calls the callers saw, by
// outcome, and the pool is back at rest.
func TestAuditStatsCountEveryCallFormThroughFaults(t *testing.T) {
	var tally outcomeTally
	var callbacks sync.WaitGroup
	var pool *Pool
	cfg := auditCallsConfig(t, map[string]Callback{
		"nest": func(ctx context.Context, args []any) (any, error) {
			callbacks.Add(1)
			defer callbacks.Done()
			v, err := pool.Call(ctx, "sleep", args[0])
			tally.add(err)
			return v, err
		},
	})
	cfg.Size = 2
	cfg.MaxOverflow = 1
	cfg.InterruptGrace = 2 * time.Second
	pool = newTestPool(t, cfg)
	before := pool.Stats()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for range 30 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(5+rng.Intn(60))*time.Millisecond)
				var err error
				switch rng.Intn(10) {
				case 0:
					_, err = pool.Call(ctx, "sleep", rng.Float64()/20)
				case 1:
					_, err = pool.TryCall(context.Background(), "echo", 1)
				case 2:
					_, err = CallAs[string](ctx, pool, "fail", "no")
				case 3:
					_, err = CallBytes(ctx, pool, nil, "echo", []byte("abc"))
				case 4:
					n := rng.Intn(5)
					for _, e := range pool.Stream(ctx, "numbers", 100) {
						if err = e; e != nil || n == 0 {
							break
						}
						n--
					}
				case 5:
					for _, e := range StreamAs[int](ctx, pool, "ask_each", "nosuch", 3) {
						err = e
					}
				case 6:
					_, err = pool.Call(ctx, "ask", "nest", rng.Float64()/20)
				case 7:
					if rng.Intn(3) == 0 {
						_, err = pool.Call(context.Background(), "crash")
					} else {
						_, err = pool.Call(ctx, "echo", 2)
					}
				case 8:
					cctx, ccancel := context.WithCancel(context.Background())
					time.AfterFunc(time.Duration(rng.Intn(20))*time.Millisecond, ccancel)
					_, err = pool.Call(cctx, "sleep", 0.05)
					ccancel()
				case 9:
					terr := pool.Transaction(ctx, func(w *Worker) error {
						_, err := w.Call(ctx, "sleep", rng.Float64()/50)
						tally.add(err)
						return nil
					})
					cancel()
					if terr != nil {
						require.ErrorIs(t, terr, context.DeadlineExceeded)
					}
					continue // the transaction is not a call; its Worker.Call is
				}
				cancel()
				tally.add(err)
			}
		}()
	}
	wg.Wait()
	callbacks.Wait()
	settled(t, pool, 2)
	s := pool.Stats()
	tally.mu.Lock()
	defer tally.mu.Unlock()
	assert.Equal(t, tally.all, s.CallsStarted-before.CallsStarted, "calls begun")
	assert.Equal(t, tally.all, s.CallsFinished-before.CallsFinished, "calls ended")
	assert.Equal(t, tally.n[OutcomePythonError], s.PythonExceptions-before.PythonExceptions, "Python errors")
	assert.Equal(t, tally.n[OutcomeRejected], s.Rejections-before.Rejections, "rejections")
	assert.Equal(t, tally.n[OutcomeDeadline], s.DeadlineExceeded-before.DeadlineExceeded, "deadlines")
	assert.Equal(t, tally.n[OutcomeCanceled], s.Canceled-before.Canceled, "cancellations")
	assert.Zero(t, tally.n[OutcomeError], "no call ended with an unclassified error")
	t.Logf("outcomes %v", tally.n)
}

// With Config.AsyncCalls, a call whose frame is cut in the middle by its
// own context (the worker stopped reading: SIGSTOP) loses the worker's
// stream. The caller whose context ended gets its context's error, as a
// call one at a time does; the other call in flight on the worker, whose
// context is fine, gets ErrWorkerCrashed (the pool kills the worker), as
// docs/async.md says of every call in flight on a worker the pool kills.
// Before the fix both got the write's error, "sending the call: ... i/o
// timeout", which errors.Is tells as neither (OutcomeError).
func TestAuditAsyncCallCutMidFrameFailsTheOthersAsACrash(t *testing.T) {
	cfg := auditCallsConfig(t, nil)
	cfg.AsyncCalls = 4
	pool := newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	var err error
	other := make(chan error, 1)
	go func() {
		_, err := pool.Call(testCtx(t), "async_sleep", 30, "other")
		other <- err
	}()
	awaitPool(t, pool, "the other call in flight", func(s Stats) bool { return s.AsyncCalls == 1 })
	require.NoError(t, syscall.Kill(int(pid.(int64)), syscall.SIGSTOP))
	defer syscall.Kill(int(pid.(int64)), syscall.SIGCONT)
	// A deadline long enough that the write has begun, and blocked, before
	// it passes, on a busy machine too: with 300 ms it sometimes passed
	// before the first byte, cutting nothing, and the stopped worker was
	// never lost.
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	_, err = pool.Call(ctx, "async_echo", make([]byte, 3*pipeSize)) // more than the pipe holds
	require.ErrorIs(t, err, context.DeadlineExceeded, "the caller whose context ended")
	select {
	case err := <-other:
		require.ErrorIs(t, err, ErrWorkerCrashed, "the other call in flight")
	case <-time.After(20 * time.Second):
		t.Fatal("the other call in flight was not failed")
	}
	syscall.Kill(int(pid.(int64)), syscall.SIGCONT)
	settled(t, pool, 1)
}

// Config.AsyncCalls with MaxWaiting: two calls fill the one worker, one
// caller waits, the next is refused at once; then the worker is killed:
// the two in flight fail with ErrWorkerCrashed, the waiting caller is
// served by the replacement, and the pool's accounting is back at rest.
func TestAuditAsyncCallsExhaustedThenKilled(t *testing.T) {
	cfg := auditCallsConfig(t, nil)
	cfg.AsyncCalls = 2
	cfg.MaxWaiting = 1
	pool := newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	var err error
	inFlight := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := pool.Call(testCtx(t), "async_sleep", 30, nil)
			inFlight <- err
		}()
	}
	awaitPool(t, pool, "two calls in flight", func(s Stats) bool { return s.AsyncCalls == 2 })
	waiting := make(chan error, 1)
	go func() {
		v, err := pool.Call(testCtx(t), "async_echo", "served")
		if err == nil && v != "served" {
			err = errors.New("wrong answer")
		}
		waiting <- err
	}()
	awaitPool(t, pool, "a caller waiting", func(s Stats) bool { return s.Waiting == 1 })
	_, err = pool.Call(testCtx(t), "async_echo", 1)
	require.ErrorIs(t, err, ErrPoolExhausted, "MaxWaiting callers wait")
	_, err = pool.TryCall(testCtx(t), "async_echo", 1)
	require.ErrorIs(t, err, ErrPoolExhausted, "TryCall")
	require.NoError(t, syscall.Kill(int(pid.(int64)), syscall.SIGKILL))
	for range 2 {
		require.ErrorIs(t, <-inFlight, ErrWorkerCrashed)
	}
	require.NoError(t, <-waiting)
	settled(t, pool, 1)
	assert.Empty(t, pool.AsyncCallsByWorker())
}

// Go calls Python calls Go calls Python calls Go, cancelled at random
// points of the round trips: each call ends with its answer or
// context.Canceled, never another error, the one worker serves the next
// call at once, and it is never killed: Python answers every interrupt.
// Before the fix (the runtime's callback.py), the drain's answer to the
// outer callback was read by the nested call's call_go, which dropped it
// as late; the outer call_go then waited until the pool killed the worker
// after Config.InterruptGrace (in most runs, a few of the 100 calls).
func TestAuditNestedRoundTripsCancelledAnywhere(t *testing.T) {
	var pool *Pool
	var callbacks sync.WaitGroup // the nest that a cut-off call gave up on runs on
	pool = newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"nest": func(ctx context.Context, args []any) (any, error) {
			callbacks.Add(1)
			defer callbacks.Done()
			return pool.Call(ctx, "ask", "leaf", args[0])
		},
		"leaf": func(_ context.Context, args []any) (any, error) { return args[0], nil },
	}))
	pid := pythonPid(t, pool)
	answered := 0
	for i := range 100 {
		ctx, cancel := context.WithCancel(testCtx(t))
		time.AfterFunc(time.Duration(rand.Intn(3000))*time.Microsecond, cancel)
		v, err := pool.Call(ctx, "ask", "nest", i)
		cancel()
		if err == nil {
			answered++
			require.EqualValues(t, i, v)
		} else {
			require.ErrorIs(t, err, context.Canceled, "iteration %d", i)
		}
		v, err = pool.Call(testCtx(t), "echo", i)
		require.NoError(t, err, "the call after iteration %d", i)
		require.EqualValues(t, i, v)
	}
	t.Logf("%d of 100 answered", answered)
	callbacks.Wait()
	settled(t, pool, 1)
	assert.Zero(t, pool.Stats().StopsKilled, "workers killed for not answering their interrupt")
	require.Equal(t, pid, pythonPid(t, pool), "the worker")
}

// A callback that panics in the body of a loop over a nested Stream: the
// stream is closed on the way out, Python gets a GoError with code
// "panic", and the worker serves the next call.
func TestAuditCallbackPanicsInsideANestedStream(t *testing.T) {
	var pool *Pool
	pool = newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"boom": func(ctx context.Context, _ []any) (any, error) {
			for range pool.Stream(ctx, "numbers", 100000) {
				panic("in the loop")
			}
			return nil, nil
		},
	}))
	v, err := pool.Call(testCtx(t), "ask_code", "boom")
	require.NoError(t, err)
	require.Equal(t, "panic", v)
	v, err = pool.Call(testCtx(t), "echo", "next")
	require.NoError(t, err)
	require.Equal(t, "next", v)
	settled(t, pool, 1)
}

// With Config.AsyncCalls, a Transaction's call of an async function cut
// off by its context: it ends with the context's error, the Worker then
// refuses calls (ErrWorkerReleased), and once the transaction ends the
// worker is drained and serves async calls again, several at once.
func TestAuditAsyncModeTransactionCallCutOff(t *testing.T) {
	cfg := auditCallsConfig(t, nil)
	cfg.AsyncCalls = 4
	pool := newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
		ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
		defer cancel()
		_, err := w.Call(ctx, "async_sleep", 30, nil)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		_, err = w.Call(testCtx(t), "async_echo", 1)
		require.ErrorIs(t, err, ErrWorkerReleased)
		return nil
	}))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := pool.Call(testCtx(t), "async_sleep", 0.2, i)
			assert.NoError(t, err)
			assert.EqualValues(t, i, v)
		}()
	}
	wg.Wait()
	require.Equal(t, pid, pythonPid(t, pool), "the worker answered its cancellation and was kept")
	settled(t, pool, 1)
}

// A Stream of callbacks in a Transaction, left by a break or cut off by
// its context at random points: the Worker's next call gets its answer,
// or ErrWorkerReleased once a cut-off left the worker being interrupted;
// never another error, and the pool ends at rest.
func TestAuditWorkerStreamBrokenOrCutAnywhere(t *testing.T) {
	pool := newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"double": func(_ context.Context, args []any) (any, error) { return args[0].(int64) * 2, nil },
	}))
	for i := range 30 {
		require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			time.AfterFunc(time.Duration(rand.Intn(3000))*time.Microsecond, cancel)
			stop := rand.Intn(40)
			n := 0
			for v, err := range StreamAs[int64](ctx, w, "ask_each", "double", 1000) {
				if err != nil {
					require.ErrorIs(t, err, context.Canceled, "iteration %d", i)
					break
				}
				require.EqualValues(t, 2*n, v)
				if n++; n == stop {
					break
				}
			}
			v, err := w.Call(testCtx(t), "echo", i)
			if err != nil {
				require.ErrorIs(t, err, ErrWorkerReleased, "iteration %d", i)
			} else {
				require.EqualValues(t, i, v)
			}
			return nil
		}))
	}
	settled(t, pool, 1)
}

// With Config.AsyncCalls, a sync function's callback calls an async
// function with its context, and the outer call's context ends while it
// runs: the caller gets the context's error, the worker answers its
// interrupt (the nested task is cancelled) and is kept.
func TestAuditAsyncModeNestedAsyncCallCutOff(t *testing.T) {
	var pool *Pool
	started := make(chan struct{}, 1)
	var callbacks sync.WaitGroup // the nest that a cut-off call gave up on runs on
	cfg := auditCallsConfig(t, map[string]Callback{
		"nest": func(ctx context.Context, _ []any) (any, error) {
			callbacks.Add(1)
			defer callbacks.Done()
			started <- struct{}{}
			return pool.Call(ctx, "async_sleep", 30, nil)
		},
	})
	cfg.AsyncCalls = 4
	pool = newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	var err error
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		<-started
		time.Sleep(50 * time.Millisecond) // the nested call is sent; no event says Python awaits it
		cancel()
	}()
	_, err = pool.Call(ctx, "ask", "nest")
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, pid, pythonPid(t, pool), "the worker answered its interrupt and was kept")
	callbacks.Wait()
	settled(t, pool, 1)
}

// hookTracer runs onWorker when an attempt has its worker (the Tracer's
// TraceCallWorker: after a Worker's released check, before the exchange),
// and onStart when an attempt starts.
type hookTracer struct {
	onWorker func(TraceCallWorkerData)
	onStart  func(TraceCallStartData) // nil: nothing
}

func (h hookTracer) TraceCallStart(ctx context.Context, _ *Pool, d TraceCallStartData) context.Context {
	if h.onStart != nil {
		h.onStart(d)
	}
	return ctx
}
func (h hookTracer) TraceCallWorker(_ context.Context, _ *Pool, d TraceCallWorkerData) { h.onWorker(d) }
func (h hookTracer) TraceCallEnd(context.Context, *Pool, TraceCallEndData)             {}

// A Worker's call that begins as its transaction ends (from a goroutine
// of fn) either runs before the worker is checked in or is refused with
// ErrWorkerReleased: never on the worker once it is back in the pool, or
// in another caller's hands. Before the fix, a call that had passed the
// released check when fn returned went on to run on the checked-in
// worker, here inside another caller's transaction.
func TestAuditWorkerCallRacingItsTransactionsEnd(t *testing.T) {
	pool := newTestPool(t, auditCallsConfig(t, nil))
	var straggler *Worker
	inHook, goOn := make(chan struct{}), make(chan struct{})
	var once sync.Once
	remove := pool.AddTracer(hookTracer{onWorker: func(TraceCallWorkerData) {
		once.Do(func() {
			close(inHook)
			<-goOn
		})
	}})
	defer remove()
	result := make(chan error, 1)
	transactionEnded := make(chan struct{})
	go func() {
		require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
			straggler = w
			go func() {
				_, err := w.Call(testCtx(t), "echo", "straggler")
				result <- err
			}()
			<-inHook // the straggler passed the released check
			return nil
		}))
		close(transactionEnded)
	}()
	<-inHook
	select {
	case <-transactionEnded:
	case <-time.After(200 * time.Millisecond): // the fix holds the transaction's end until the call is over
	}
	// Another caller holds the worker meanwhile, if it is back in the pool.
	holder := make(chan struct{})
	held := make(chan struct{})
	go func() {
		pool.Transaction(testCtx(t), func(w *Worker) error {
			close(held)
			<-holder
			return nil
		})
	}()
	heldMeanwhile := false
	select {
	case <-held:
		heldMeanwhile = true
	case <-time.After(200 * time.Millisecond):
	}
	close(goOn)
	err := <-result
	close(holder)
	if heldMeanwhile {
		require.ErrorIs(t, err, ErrWorkerReleased, "the straggler ran on a worker checked out by another caller")
	} else {
		require.NoError(t, err, "the straggler ran before its worker was checked in")
	}
	<-transactionEnded
	_, err = straggler.Call(testCtx(t), "echo", 1)
	require.ErrorIs(t, err, ErrWorkerReleased)
	settled(t, pool, 1)
}

// Every call form tells the documented errors apart with errors.Is and
// errors.As (docs/errors.md): a function that is not found, an argument
// Go cannot encode, an exception (*PythonError), a result Python cannot
// encode, an argument Python cannot decode; on the pool, in a
// transaction, nested in a callback, and as an async call. Each keeps
// the worker.
func TestAuditEveryFormTellsTheErrorsApart(t *testing.T) {
	type form struct {
		name string
		call func(ctx context.Context, c Caller, fn string, args ...any) error
	}
	forms := []form{
		{"Call", func(ctx context.Context, c Caller, fn string, args ...any) error {
			return c.callInto(ctx, fn, args, exchange{into: discardResult})
		}},
		{"CallAs", func(ctx context.Context, c Caller, fn string, args ...any) error {
			_, err := CallAs[any](ctx, c, fn, args...)
			return err
		}},
		{"CallBytes", func(ctx context.Context, c Caller, fn string, args ...any) error {
			_, err := CallBytes(ctx, c, nil, fn, args...)
			if errors.Is(err, ErrResultNotDecodable) {
				return nil // a result, not bytes: the call itself went through
			}
			return err
		}},
		{"StreamAs", func(ctx context.Context, c Caller, fn string, args ...any) error {
			for _, err := range StreamAs[any](ctx, c, fn, args...) {
				if err != nil {
					var pe *PythonError
					if errors.As(err, &pe) && pe.Code == "not_an_iterator" {
						return nil // a result, not an iterator: the call itself went through
					}
					return err
				}
			}
			return nil
		}},
	}
	type want struct {
		fn     string
		args   []any
		is     error
		python bool // a *PythonError too
	}
	sync_ := []want{
		{"nosuch", nil, ErrFunctionNotFound, true},
		{"_private", nil, ErrFunctionNotFound, true},
		{"echo", []any{make(chan int)}, ErrArgNotEncodable, false},
		{"fail", []any{"no"}, nil, true},
		{"unencodable", nil, ErrResultNotEncodable, true},
		{"echo", []any{"\xff"}, ErrBadArguments, true},
	}
	async := []want{
		{"async_fail", []any{"no"}, nil, true},
		{"async_unencodable", nil, ErrResultNotEncodable, true},
		{"async_echo", []any{make(chan int)}, ErrArgNotEncodable, false},
		{"async_echo", []any{"\xff"}, ErrBadArguments, true},
	}
	check := func(t *testing.T, err error, w want, what string) {
		t.Helper()
		if err == nil && w.is == ErrResultNotEncodable && strings.HasPrefix(what, "StreamAs") {
			return // a set is not an iterator: nothing to encode (not_an_iterator)
		}
		require.Error(t, err, what)
		if w.is != nil {
			assert.ErrorIs(t, err, w.is, what)
		}
		var pe *PythonError
		assert.Equal(t, w.python, errors.As(err, &pe), "%s: a *PythonError: %v", what, err)
		assert.NotErrorIs(t, err, ErrWorkerCrashed, what)
	}
	var pool *Pool
	var current struct {
		form form
		w    want
	}
	cfg := auditCallsConfig(t, map[string]Callback{
		"nest": func(ctx context.Context, _ []any) (any, error) {
			check(t, current.form.call(ctx, pool, current.w.fn, current.w.args...), current.w, current.form.name+" "+current.w.fn+" nested")
			return nil, nil
		},
	})
	cfg.AsyncCalls = 2
	pool = newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	for _, f := range forms {
		for _, w := range append(sync_, async...) {
			what := f.name + " " + w.fn
			check(t, f.call(testCtx(t), pool, w.fn, w.args...), w, what)
			require.NoError(t, pool.Transaction(testCtx(t), func(wk *Worker) error {
				check(t, f.call(testCtx(t), wk, w.fn, w.args...), w, what+" on a Worker")
				return nil
			}))
			current.form, current.w = f, w
			_, err := pool.Call(testCtx(t), "ask", "nest")
			require.NoError(t, err, "the call whose callback made the nested call")
		}
	}
	require.Equal(t, pid, pythonPid(t, pool), "the worker was kept")
	settled(t, pool, 1)
}

// With Config.AsyncCalls, a Stream of an async generator (a call of its
// own, on the main thread) broken out of, and one cut off by its
// context: both end as documented, and the worker is kept.
func TestAuditAsyncModeAsyncGeneratorStreamBrokenAndCut(t *testing.T) {
	cfg := auditCallsConfig(t, nil)
	cfg.AsyncCalls = 4
	pool := newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	for v, err := range pool.Stream(testCtx(t), "async_ticks", 1000, 0.01) {
		require.NoError(t, err)
		require.EqualValues(t, 0, v)
		break
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 150*time.Millisecond)
	defer cancel()
	n := 0
	for _, err := range pool.Stream(ctx, "async_ticks", 1000, 0.05) {
		if err != nil {
			require.ErrorIs(t, err, context.DeadlineExceeded)
			break
		}
		n++
	}
	require.Less(t, n, 1000)
	v, err := pool.Call(testCtx(t), "async_echo", "after")
	require.NoError(t, err)
	require.Equal(t, "after", v)
	require.Equal(t, pid, pythonPid(t, pool), "the worker was kept")
	settled(t, pool, 1)
}

// A Worker's Stream whose generator calls Go, whose callback calls the
// Worker with its context: the call runs on the worker that waits for the
// callback, as it does during the Worker's Call, and as Pool.Call with
// that context does (docs/streaming-and-callbacks.md, "Nesting"). Only
// the body of the loop may not call the Worker (ErrWorkerBusy). Before the
// fix the callback's call was refused as one from the body of the loop.
func TestAuditWorkerStreamCallbackCallsTheWorker(t *testing.T) {
	var current *Worker
	pool := newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"via_worker": func(ctx context.Context, args []any) (any, error) {
			return CallAs[int64](ctx, current, "echo", args[0].(int64)*2)
		},
		"stream_via_worker": func(ctx context.Context, args []any) (any, error) {
			var items []int64
			for v, err := range StreamAs[int64](ctx, current, "numbers", args[0]) {
				if err != nil {
					return nil, err
				}
				items = append(items, v)
			}
			return items, nil
		},
	}))
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
		current = w
		v, err := w.Call(testCtx(t), "ask", "via_worker", 4)
		require.NoError(t, err, "during the Worker's Call")
		require.EqualValues(t, 8, v)
		var got []int64
		for v, err := range StreamAs[int64](testCtx(t), w, "ask_each", "via_worker", 3) {
			require.NoError(t, err, "during the Worker's Stream")
			got = append(got, v)
		}
		require.Equal(t, []int64{0, 2, 4}, got)
		var lists [][]int64
		for v, err := range StreamAs[[]int64](testCtx(t), w, "ask_each", "stream_via_worker", 3) {
			require.NoError(t, err, "a Stream during the Worker's Stream")
			lists = append(lists, v)
		}
		require.Equal(t, [][]int64{nil, {0}, {0, 1}}, lists)
		for range w.Stream(testCtx(t), "numbers", 3) {
			_, err := w.Call(testCtx(t), "echo", 1)
			require.ErrorIs(t, err, ErrWorkerBusy, "from the body of the loop")
		}
		return nil
	}))
	settled(t, pool, 1)
}

// A Stream whose items each come from a callback that makes a nested call
// (which calls Go again), cancelled at random points: each loop ends with
// its items in order and at most context.Canceled, and the one worker
// answers every interrupt: it is kept, and serves the next call.
func TestAuditStreamOfNestedCallsCancelledAnywhere(t *testing.T) {
	var pool *Pool
	var callbacks sync.WaitGroup // the nest that a cut-off call gave up on runs on
	pool = newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"nest": func(ctx context.Context, args []any) (any, error) {
			callbacks.Add(1)
			defer callbacks.Done()
			return pool.Call(ctx, "ask", "leaf", args[0])
		},
		"leaf": func(_ context.Context, args []any) (any, error) { return args[0], nil },
	}))
	pid := pythonPid(t, pool)
	for i := range 50 {
		ctx, cancel := context.WithCancel(testCtx(t))
		time.AfterFunc(time.Duration(rand.Intn(5000))*time.Microsecond, cancel)
		next := int64(0)
		for v, err := range StreamAs[int64](ctx, pool, "ask_each", "nest", 1000) {
			if err != nil {
				require.ErrorIs(t, err, context.Canceled, "iteration %d", i)
				break
			}
			require.Equal(t, next, v, "iteration %d", i)
			next++
		}
		cancel()
		v, err := pool.Call(testCtx(t), "echo", i)
		require.NoError(t, err, "the call after iteration %d", i)
		require.EqualValues(t, i, v)
	}
	callbacks.Wait()
	settled(t, pool, 1)
	assert.Zero(t, pool.Stats().StopsKilled, "workers killed for not answering their interrupt")
	require.Equal(t, pid, pythonPid(t, pool), "the worker")
}

// Breaking out of a Stream at its last item, when Python has finished the
// generator and its reply is on the way (or has come): the CLOSE reaches
// a worker between calls, which must not take it for the next call's.
func TestAuditStreamBrokenAtItsLastItem(t *testing.T) {
	pool := newTestPool(t, auditCallsConfig(t, nil))
	pid := pythonPid(t, pool)
	for n := 1; n <= 40; n++ {
		for v, err := range StreamAs[int](testCtx(t), pool, "numbers", n) {
			require.NoError(t, err)
			if v == n-1 {
				break
			}
		}
		for v, err := range StreamAs[int](testCtx(t), pool, "numbers", 2) {
			require.NoError(t, err)
			require.Less(t, v, 2)
		}
		v, err := pool.Call(testCtx(t), "echo", n)
		require.NoError(t, err)
		require.EqualValues(t, n, v)
	}
	require.Equal(t, pid, pythonPid(t, pool))
	settled(t, pool, 1)
}

// Calls nested in callbacks are counted in Stats but not traced
// (docs/streaming-and-callbacks.md): a Worker's nested calls as the
// pool's. Before the fix a Worker's were traced, each as a call of its
// own, inside the traced call that made them.
func TestAuditWorkerNestedCallsAreNotTraced(t *testing.T) {
	var current *Worker
	var pool *Pool
	pool = newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"via_worker": func(ctx context.Context, args []any) (any, error) { return current.Call(ctx, "echo", args[0]) },
		"via_pool":   func(ctx context.Context, args []any) (any, error) { return pool.Call(ctx, "echo", args[0]) },
	}))
	var mu sync.Mutex
	traced := map[string]int{}
	defer pool.AddTracer(hookTracer{onWorker: func(TraceCallWorkerData) {}, onStart: func(d TraceCallStartData) {
		mu.Lock()
		traced[d.Function]++
		mu.Unlock()
	}})()
	before := pool.Stats().CallsStarted
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
		current = w
		for _, cb := range []string{"via_worker", "via_pool"} {
			v, err := w.Call(testCtx(t), "ask", cb, cb)
			require.NoError(t, err)
			require.Equal(t, cb, v)
			for v, err := range w.Stream(testCtx(t), "ask_each", cb, 2) {
				require.NoError(t, err)
				require.NotNil(t, v)
			}
		}
		return nil
	}))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"ask": 2, "ask_each": 2}, traced, "the calls traced")
	assert.EqualValues(t, 4+6, pool.Stats().CallsStarted-before, "the calls counted, nested ones included")
}

// With Config.AsyncCalls, a call whose frame waits for another call's
// write in progress (a large argument, a worker that stopped reading) is
// still answered at its own deadline (invariant 2), not when the other
// write ends. Before the fix it waited for the other caller's context
// (4.8 s past its own deadline when that context had 5 s).
func TestAuditAsyncCallBehindABlockedWriteIsAnsweredAtItsDeadline(t *testing.T) {
	cfg := auditCallsConfig(t, nil)
	cfg.AsyncCalls = 4
	pool := newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	var err error
	proc := workerProcs(pool)[0]
	require.NoError(t, syscall.Kill(int(pid.(int64)), syscall.SIGSTOP))
	defer syscall.Kill(int(pid.(int64)), syscall.SIGCONT)
	big := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
		defer cancel()
		_, err := pool.Call(ctx, "async_echo", make([]byte, 3*pipeSize)) // more than the pipe holds
		big <- err
	}()
	// Its write is in progress once it holds the writes (nothing to await).
	for proc.mux.wmu.TryLock() {
		proc.mux.wmu.Unlock()
		time.Sleep(time.Millisecond)
	}
	due := time.Now().Add(200 * time.Millisecond)
	timerLate := bareTimer(due)
	ctx, cancel := context.WithDeadline(testCtx(t), due)
	defer cancel()
	_, err = pool.Call(ctx, "async_echo", "small")
	late := time.Since(due)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.LessOrEqual(t, late, lateBound(timerLate()), "answered past its deadline")
	require.ErrorIs(t, <-big, context.DeadlineExceeded)
	syscall.Kill(int(pid.(int64)), syscall.SIGCONT)
	settled(t, pool, 1)
}

// workerProcs returns the processes of the pool's serving workers.
func workerProcs(p *Pool) []*process {
	var procs []*process
	for _, pw := range p.serving() {
		procs = append(procs, pw.proc)
	}
	return procs
}

// A Worker's call made while another goroutine's call runs on it waits
// its turn no longer than its own context (invariant 2, for Worker.Call):
// before the fix it waited for the other call to end, here 2 s past its
// deadline.
func TestAuditWorkerCallWaitingItsTurnIsAnsweredAtItsDeadline(t *testing.T) {
	started := make(chan struct{}, 1)
	pool := newTestPool(t, auditCallsConfig(t, map[string]Callback{"started": signalCallback(started)}))
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
		first := make(chan error, 1)
		go func() {
			_, err := w.Call(testCtx(t), "signal_then_sleep", "started", 2)
			first <- err
		}()
		<-started
		due := time.Now().Add(200 * time.Millisecond)
		timerLate := bareTimer(due)
		ctx, cancel := context.WithDeadline(testCtx(t), due)
		defer cancel()
		_, err := w.Call(ctx, "echo", 1)
		late := time.Since(due)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.LessOrEqual(t, late, lateBound(timerLate()), "answered past its deadline")
		require.NoError(t, <-first, "the call that had the worker")
		v, err := w.Call(testCtx(t), "echo", 2)
		require.NoError(t, err, "the worker is the transaction's still")
		require.EqualValues(t, 2, v)
		return nil
	}))
	settled(t, pool, 1)
}

// A Stream whose generator calls a Go callback that ignores its context:
// the loop ends at its deadline with the context's error (invariant 2 for
// a stream's callback), and the worker, whose call_go is answered by the
// drain, is kept.
func TestAuditStreamCallbackIgnoringItsContext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	pool := newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"stuck": func(_ context.Context, args []any) (any, error) {
			if args[0].(int64) == 2 {
				<-release // ignores its context
			}
			return args[0], nil
		},
	}))
	pid := pythonPid(t, pool)
	due := time.Now().Add(300 * time.Millisecond)
	timerLate := bareTimer(due)
	ctx, cancel := context.WithDeadline(testCtx(t), due)
	defer cancel()
	var items []int64
	var end error
	for v, err := range StreamAs[int64](ctx, pool, "ask_each", "stuck", 5) {
		if err != nil {
			end = err
			break
		}
		items = append(items, v)
	}
	late := time.Since(due)
	require.ErrorIs(t, end, context.DeadlineExceeded)
	require.Equal(t, []int64{0, 1}, items)
	require.LessOrEqual(t, late, lateBound(timerLate()), "the loop ended past its deadline")
	require.Equal(t, pid, pythonPid(t, pool), "the worker was drained and kept")
	settled(t, pool, 1)
}

// With Config.AsyncCalls, a Transaction's calls of async functions cut
// off at random points (before Python reads the call, while its task
// awaits, as it replies), each followed by shared async calls: every call
// ends with its answer or the context's error, and the worker answers
// every cancellation: it is kept.
func TestAuditAsyncModeTransactionCallsCutAnywhere(t *testing.T) {
	cfg := auditCallsConfig(t, nil)
	cfg.AsyncCalls = 4
	pool := newTestPool(t, cfg)
	pid := pythonPid(t, pool)
	for i := range 40 {
		require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
			ctx, cancel := context.WithTimeout(testCtx(t), time.Duration(rand.Intn(4000))*time.Microsecond)
			defer cancel()
			v, err := w.Call(ctx, "async_sleep", 0.002, i)
			if err != nil {
				require.ErrorIs(t, err, context.DeadlineExceeded, "iteration %d", i)
			} else {
				require.EqualValues(t, i, v)
			}
			return nil
		}))
		var wg sync.WaitGroup
		for j := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := pool.Call(testCtx(t), "async_echo", j)
				assert.NoError(t, err)
				assert.EqualValues(t, j, v)
			}()
		}
		wg.Wait()
	}
	settled(t, pool, 1)
	assert.Zero(t, pool.Stats().StopsKilled, "workers killed for not answering their cancellation")
	require.Equal(t, pid, pythonPid(t, pool), "the worker")
}

// pythonPid asks the pool's worker for its process id (the module's pid()),
// so that a test can tell whether the worker it met later is the same.
func pythonPid(t *testing.T, pool *Pool) any {
	t.Helper()
	pid, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	return pid
}

// TestAuditNestedCallAfterTheOuterGaveUpIsCanceled: docs/errors.md, a call
// whose context ends is context.Canceled or DeadlineExceeded (OutcomeOf),
// and docs/streaming-and-callbacks.md, a callback's context ends with the
// call that waits for it. A callback that goes on after its call gave up
// (the caller cancelled) and then makes a nested call with its context is
// refused with that context's end, Canceled: before, once the scope had
// ended, the refusal was ErrWorkerReleased's "the callback whose context
// this is has returned", which OutcomeOf counts as an error of its own
// although the callback had not returned (a flaky count in
// Stats.Canceled).
func TestAuditNestedCallAfterTheOuterGaveUpIsCanceled(t *testing.T) {
	nested := make(chan error, 1)
	running := make(chan struct{}, 1)
	var pool *Pool
	pool = newTestPool(t, auditCallsConfig(t, map[string]Callback{
		"late": func(ctx context.Context, _ []any) (any, error) {
			running <- struct{}{}
			<-ctx.Done()
			for !scopeOf(ctx).ended.Load() { // the outer call has ended the scope
				runtime.Gosched()
			}
			_, err := pool.Call(ctx, "echo", 1)
			nested <- err
			return nil, err
		},
	}))
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		<-running
		cancel()
	}()
	_, err := pool.Call(ctx, "ask", "late")
	require.ErrorIs(t, err, context.Canceled)
	err = <-nested
	require.ErrorIs(t, err, context.Canceled, "the nested call is refused with its context's end")
	assert.Equal(t, OutcomeCanceled, OutcomeOf(err))
}
