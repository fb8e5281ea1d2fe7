package pypool

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// callbackPool is a one-worker pool of the stream module with callbacks.
func callbackPool(t *testing.T, callbacks map[string]Callback) *Pool {
	cfg := streamConfig(t)
	cfg.Callbacks = callbacks
	return newTestPool(t, cfg)
}

type lookupError struct{ id int64 }

func (e *lookupError) Error() string { return fmt.Sprintf("user %d not found", e.id) }

func TestCallbackResult(t *testing.T) {
	type user struct {
		ID   int64  `msgpack:"id"`
		Name string `msgpack:"name"`
	}
	pool := callbackPool(t, map[string]Callback{
		"echo": func(ctx context.Context, args []any) (any, error) { return args, nil },
		"lookup_user": CallbackFunc(func(ctx context.Context, id int64) (user, error) {
			return user{ID: id, Name: "Ada"}, nil
		}),
	})
	ctx := testCtx(t)
	v, err := pool.Call(ctx, "asks_go", "echo", "a", 1, []byte{2})
	require.NoError(t, err)
	require.Equal(t, []any{"a", int64(1), []byte{2}}, v)
	v, err = pool.Call(ctx, "asks_go", "lookup_user", 42)
	require.NoError(t, err)
	require.Equal(t, map[string]any{"id": int64(42), "name": "Ada"}, v)
	// The typed helper's argument checks are Python exceptions.
	v, err = pool.Call(ctx, "go_error", "lookup_user", "x")
	require.NoError(t, err)
	require.Equal(t, callbackFailed, v.([]any)[0])
	require.Contains(t, v.([]any)[2], "does not fit")
	v, err = pool.Call(ctx, "go_error", "lookup_user", 1, 2)
	require.NoError(t, err)
	require.Contains(t, v.([]any)[2], "exactly one argument")
}

func TestCallbackError(t *testing.T) {
	pool := callbackPool(t, map[string]Callback{
		"fails": func(ctx context.Context, args []any) (any, error) {
			return nil, &lookupError{id: args[0].(int64)}
		},
		"channel": func(ctx context.Context, args []any) (any, error) { return make(chan int), nil },
	})
	ctx := testCtx(t)
	v, err := pool.Call(ctx, "go_error", "channel")
	require.NoError(t, err)
	require.Equal(t, callbackNotEncoded, v.([]any)[0])
	require.Contains(t, v.([]any)[2], "chan int")
	v, err = pool.Call(ctx, "go_error", "fails", 7)
	require.NoError(t, err)
	require.Equal(t, []any{"error", "*pypool.lookupError", "user 7 not found", "user 7 not found (Go *pypool.lookupError)"}, v)
	// Uncaught, it is the call's *PythonError.
	_, err = pool.Call(ctx, "asks_go", "fails", 8)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	require.Equal(t, "pypool.GoError", pyErr.Type)
	require.Contains(t, pyErr.Message, "user 8 not found")
}

func TestCallbackPanic(t *testing.T) {
	pool := callbackPool(t, map[string]Callback{
		"panics": func(ctx context.Context, args []any) (any, error) { panic("no way") },
	})
	ctx := testCtx(t)
	v, err := pool.Call(ctx, "go_error", "panics")
	require.NoError(t, err)
	require.Equal(t, callbackPanicked, v.([]any)[0])
	require.Equal(t, "string", v.([]any)[1])
	require.Contains(t, v.([]any)[2], "panicked: no way")
	require.Zero(t, pool.Stats().Crashes)
}

func TestCallbackUnregistered(t *testing.T) {
	pool := callbackPool(t, map[string]Callback{
		"b": func(ctx context.Context, args []any) (any, error) { return nil, nil },
		"a": func(ctx context.Context, args []any) (any, error) { return nil, nil },
	})
	v, err := pool.Call(testCtx(t), "go_error", "nope")
	require.NoError(t, err)
	require.Equal(t, callbackNotFound, v.([]any)[0])
	require.Equal(t, `no Go callback named "nope"; registered (Config.Callbacks): a, b`, v.([]any)[2])
	// A pool without callbacks says so too.
	plain := newTestPool(t, streamConfig(t))
	v, err = plain.Call(testCtx(t), "go_error", "nope")
	require.NoError(t, err)
	require.Contains(t, v.([]any)[2], "registered (Config.Callbacks): (none)")
}

func TestCallbackOutsideCall(t *testing.T) {
	pool := callbackPool(t, map[string]Callback{
		"echo": func(ctx context.Context, args []any) (any, error) { return args, nil },
	})
	v, err := pool.Call(testCtx(t), "outside_call")
	require.NoError(t, err)
	require.Contains(t, v, "other than the worker's main thread")
}

// TestCallbackNested: Go calls Python calls Go calls Python ... three
// deep, all on the one worker of the pool.
func TestCallbackNested(t *testing.T) {
	var pool *Pool
	pool = callbackPool(t, map[string]Callback{
		"deeper": func(ctx context.Context, args []any) (any, error) {
			return pool.Call(ctx, "depth", args[0])
		},
	})
	ctx := testCtx(t)
	v, err := pool.Call(ctx, "depth", 3)
	require.NoError(t, err)
	pids := v.([]any)
	require.Len(t, pids, 4)
	for _, pid := range pids {
		require.Equal(t, int64(workerPids(pool)[0]), pid)
	}
	v, err = pool.Call(ctx, "asks_go", "deeper", 0)
	require.NoError(t, err)
	require.Len(t, v, 1)
	require.True(t, atRest(pool.Stats(), 1))
}

func TestCallbackNestedStream(t *testing.T) {
	var pool *Pool
	pool = callbackPool(t, map[string]Callback{
		"sum_stream": func(ctx context.Context, args []any) (any, error) {
			var sum int64
			for n, err := range StreamAs[int64](ctx, pool, "numbers", args[0]) {
				if err != nil {
					return nil, err
				}
				if n == 2 {
					// One call at a time on the waiting worker.
					_, err := pool.Call(ctx, "pid")
					if !errors.Is(err, ErrWorkerBusy) {
						return nil, fmt.Errorf("a call from the loop's body: %v, want ErrWorkerBusy", err)
					}
				}
				sum += n
			}
			return sum, nil
		},
		"double": func(ctx context.Context, args []any) (any, error) { return args[0].(int64) * 2, nil },
	})
	ctx := testCtx(t)
	v, err := pool.Call(ctx, "asks_go", "sum_stream", 100)
	require.NoError(t, err)
	require.Equal(t, int64(4950), v)
	// A generator that calls Go for each item.
	items, err := collect(t, pool.Stream(ctx, "streams_callbacks", 5))
	require.NoError(t, err)
	require.Equal(t, []any{int64(0), int64(2), int64(4), int64(6), int64(8)}, items)
}

// TestCallbackAfterDeadline: a call cut off by its deadline asks for a
// callback while the pool drains it: Python gets an error, the worker
// comes back.
func TestCallbackAfterDeadline(t *testing.T) {
	ran := make(chan struct{}, 1)
	pool := callbackPool(t, map[string]Callback{
		"echo": func(ctx context.Context, args []any) (any, error) { ran <- struct{}{}; return args, nil },
	})
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "late_callback", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, pool, "the worker back after its drain", func(s Stats) bool { return atRest(s, 1) })
	v, err := pool.Call(testCtx(t), "events_seen")
	require.NoError(t, err)
	require.Equal(t, []any{callbackCallEnded}, v)
	require.Empty(t, ran, "the Go function of a callback of a cut-off call ran")
	require.Zero(t, pool.Stats().Crashes)
}

// TestCallbackContextEnds: the Go function's context ends with the call's.
func TestCallbackContextEnds(t *testing.T) {
	pool := callbackPool(t, map[string]Callback{
		"echo": func(ctx context.Context, args []any) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	ctx, cancel := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "asks_go", "echo")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, pool, "the worker back after its drain", func(s Stats) bool { return atRest(s, 1) })
	_, err = pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
}

func TestCallbackWorkerKilled(t *testing.T) {
	var pool *Pool
	pool = callbackPool(t, map[string]Callback{
		"crash_me": func(ctx context.Context, args []any) (any, error) {
			pid := workerPids(pool)[0]
			return nil, syscall.Kill(pid, syscall.SIGKILL)
		},
	})
	_, err := pool.Call(testCtx(t), "callback_then_sleep")
	require.ErrorIs(t, err, ErrWorkerCrashed)
	awaitPool(t, pool, "a replacement", func(s Stats) bool { return atRest(s, 1) })
	_, err = pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
}

// TestCallbackNestedDeadline: a nested call cut off by its own, shorter
// deadline cuts off the outer call too; the worker is drained and comes back.
func TestCallbackNestedDeadline(t *testing.T) {
	var pool *Pool
	nestedErr := make(chan error, 1)
	pool = callbackPool(t, map[string]Callback{
		"echo": func(ctx context.Context, args []any) (any, error) {
			ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			_, err := pool.Call(ctx, "sleep", 30)
			nestedErr <- err
			return nil, err
		},
	})
	pid := workerPids(pool)[0]
	_, err := pool.Call(testCtx(t), "asks_go", "echo")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "inside Go callback echo was cut off")
	require.ErrorIs(t, <-nestedErr, context.DeadlineExceeded)
	awaitPool(t, pool, "the worker back after its drain", func(s Stats) bool { return atRest(s, 1) })
	v, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	require.Equal(t, int64(pid), v, "the same worker, drained, not replaced")
	require.Zero(t, pool.Stats().Crashes)
}

// TestDrainReadsTheRepliesOfNestedCalls: a nested call that Python had
// not read when the interrupt reached call_go is answered after the outer
// call's reply (testdata/fakeworker.py answers in that order, as the
// runtime did before it learned to refuse such calls first). The drain
// reads that reply too, so the next call gets its own reply. Before, the
// drain ended at the outer call's reply, the worker went back to the
// pool, and its next call failed with "protocol violation: message of
// kind 3 for call 2 while waiting for the reply to 3" (one run of
// TestDeadlineInvariant in 30 on a busy machine: behave_nested, then
// CallBytes on the same worker).
func TestDrainReadsTheRepliesOfNestedCalls(t *testing.T) {
	cfg := testConfig(t)
	rec := newLogRecorder()
	cfg.Logger = slogNew(rec)
	defer dumpLogOnFailure(t, rec)
	var pool *Pool
	nestedErr := make(chan error, 1)
	cfg.Callbacks = map[string]Callback{
		"nested": func(ctx context.Context, args []any) (any, error) {
			_, err := pool.Call(ctx, "echo", args...) // the fake worker reads it only after the interrupt
			nestedErr <- err
			return nil, err
		},
	}
	pool, err := fakePoolConfig(t, cfg, "ok", 1)
	require.NoError(t, err)
	pid := workerPids(pool)[0]

	// Cancelled once the fake worker has the nested call unread: a 300 ms
	// deadline could pass, on a busy machine, before it had sent the
	// callback; the nested call never came, and the test waited for it.
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	go cancelOnRecord(ctx, cancel, rec, "interrupted_in_call_go: nested call sent")
	_, err = pool.Call(ctx, "interrupted_in_call_go")
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, <-nestedErr, context.Canceled)
	awaitPool(t, pool, "the worker back after its drain", func(s Stats) bool { return atRest(s, 1) })

	v, err := pool.Call(testCtx(t), "echo", "after")
	require.NoError(t, err, "the next call's reply, not the nested call's")
	require.Equal(t, "after", v)
	require.Equal(t, []int{pid}, workerPids(pool), "the same worker, drained, not replaced")
	require.Zero(t, pool.Stats().Crashes)
}

// TestCallbackFromAsync: an async def function calls Go.
func TestCallbackFromAsync(t *testing.T) {
	pool := callbackPool(t, map[string]Callback{
		"echo": func(ctx context.Context, args []any) (any, error) { return args, nil },
	})
	v, err := pool.Call(testCtx(t), "async_asks_go", "echo", "from a coroutine")
	require.NoError(t, err)
	require.Equal(t, []any{"from a coroutine"}, v)
}

func TestCallbacksConfig(t *testing.T) {
	cfg := streamConfig(t)
	cfg.Callbacks = map[string]Callback{"nil": nil}
	_, err := New(testCtx(t), cfg)
	require.ErrorContains(t, err, "Config.Callbacks")
	// The pool keeps its own copy: changing the map later changes nothing.
	callbacks := map[string]Callback{"echo": func(ctx context.Context, args []any) (any, error) { return args, nil }}
	pool := callbackPool(t, callbacks)
	delete(callbacks, "echo")
	v, err := pool.Call(testCtx(t), "asks_go", "echo", 1)
	require.NoError(t, err)
	require.Equal(t, []any{int64(1)}, v)
}

// TestCallbackIgnoringContextDoesNotMakeTheCallerLate (issue 18, finding 9):
// a Go callback that blocks past the call's deadline without looking at its
// context does not hold the caller: the call returns at its deadline, as
// late as lateBound of a bare timer started with it, with
// context.DeadlineExceeded; the worker is drained (or replaced) and serves
// the next call; the callback runs on until it returns.
func TestCallbackIgnoringContextDoesNotMakeTheCallerLate(t *testing.T) {
	const deadline, blocks = 200 * time.Millisecond, 2 * time.Second
	returned := make(chan struct{})
	pool := callbackPool(t, map[string]Callback{
		"stubborn": func(ctx context.Context, args []any) (any, error) {
			defer close(returned)
			time.Sleep(blocks) // the behaviour under test: it ignores ctx
			return "too late", nil
		},
	})
	defer func() { <-returned }() // for the leak check: the goroutine ends
	ctx, cancel := context.WithTimeout(testCtx(t), deadline)
	defer cancel()
	due, _ := ctx.Deadline()
	bare := bareTimer(due)
	_, err := pool.Call(ctx, "asks_go", "stubborn")
	late := time.Since(due)
	timerLate := bare()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	t.Logf("the call returned %v after its deadline, a bare timer %v", late, timerLate)
	require.LessOrEqual(t, late, lateBound(timerLate),
		"the call returned %v after its deadline; a bare timer due then was %v late", late, timerLate)
	awaitPool(t, pool, "the worker back after its drain", func(s Stats) bool { return atRest(s, 1) })
	v, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	require.Contains(t, workerPids(pool), int(v.(int64)))
}

// TestCallbackDetachedNestedCallDoesNotMakeTheCallerLate (issue 18, finding
// 9): a nested call made, after the call's deadline, with the callback's
// context detached from its cancellation (context.WithoutCancel) does not
// hold the call that waits for the callback: the caller is answered at its
// deadline, and the nested call fails (refused, or at once cut off).
func TestCallbackDetachedNestedCallDoesNotMakeTheCallerLate(t *testing.T) {
	const deadline = 200 * time.Millisecond
	var pool *Pool
	nestedErr := make(chan error, 1)
	pool = callbackPool(t, map[string]Callback{
		"detached": func(ctx context.Context, args []any) (any, error) {
			<-ctx.Done()
			_, err := pool.Call(context.WithoutCancel(ctx), "sleep", 2)
			nestedErr <- err
			return nil, err
		},
	})
	ctx, cancel := context.WithTimeout(testCtx(t), deadline)
	defer cancel()
	due, _ := ctx.Deadline()
	bare := bareTimer(due)
	_, err := pool.Call(ctx, "asks_go", "detached")
	late, timerLate := time.Since(due), bare()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.LessOrEqual(t, late, lateBound(timerLate),
		"the call returned %v after its deadline; a bare timer due then was %v late", late, timerLate)
	nested := <-nestedErr
	require.True(t, errors.Is(nested, context.DeadlineExceeded) || errors.Is(nested, ErrWorkerReleased),
		"the nested call: %v, want DeadlineExceeded or ErrWorkerReleased", nested)
	awaitPool(t, pool, "the worker back after its drain", func(s Stats) bool { return atRest(s, 1) })
	_, err = pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
}

// TestCloseDoesNotWaitForACallbackPastItsCall (issue 18, finding 9): a Go
// callback still running after its call was cut off is not waited for by
// Close, which returns once the worker has exited; the callback goes on
// until it returns.
func TestCloseDoesNotWaitForACallbackPastItsCall(t *testing.T) {
	release, returned := make(chan struct{}), make(chan struct{})
	pool := callbackPool(t, map[string]Callback{
		"blocks": func(ctx context.Context, args []any) (any, error) {
			defer close(returned)
			<-release // ignores ctx until the test lets it go
			return nil, nil
		},
	})
	defer func() { <-returned }()
	defer close(release)
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "asks_go", "blocks")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, pool.Close(testCtx(t)))
	require.Empty(t, workerPids(pool))
	select {
	case <-returned:
		t.Fatal("the callback returned before the test let it")
	default:
	}
}

// TestCallbackScopeEndIsNotBusy: a nested call made with a callback's
// context while the scope is ending is refused as released
// (ErrWorkerReleased); it is never told that another nested call is in
// flight (ErrWorkerBusy) when none is. enter used to TryLock the mutex that
// end holds for an instant, and took end's instant for a call in flight:
// the full suite saw ErrWorkerBusy in
// TestCallbackDetachedNestedCallDoesNotMakeTheCallerLate. The hook holds
// that instant open; a loop of ends racing enters checks the same without it.
func TestCallbackScopeEndIsNotBusy(t *testing.T) {
	ctx := testCtx(t)
	var during error
	s := &callbackScope{ctx: ctx, endHook: func(s *callbackScope) { _, _, during = s.enter(ctx) }}
	s.end()
	require.ErrorIs(t, during, ErrWorkerReleased, "a nested call while the scope ends")

	for i := range 5000 {
		s := &callbackScope{ctx: ctx}
		ended := make(chan struct{})
		go func() { s.end(); close(ended) }()
		_, leave, err := s.enter(ctx)
		if err == nil {
			leave()
		}
		<-ended
		if err != nil && !errors.Is(err, ErrWorkerReleased) {
			t.Fatalf("round %d: enter as the scope ended: %v, want nil or ErrWorkerReleased", i, err)
		}
	}
}
