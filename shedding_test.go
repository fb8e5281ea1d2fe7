package pypool

// Shedding (issue 20): NoWait sheds load on every call form, MaxWaiting
// NoWaiting on every call of the pool, the refusals are counted and traced
// and say which rule refused, and the documented starvation of calls with
// NoWait on a pool shared with waiting callers (docs/operating.md).

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// shedConfig is a one-worker pool of the stream module (generators, call_go)
// that also exposes the test module (echo, for bytes).
func shedConfig(t testing.TB) Config {
	cfg := streamConfig(t)
	cfg.Modules = []string{"pypool_testmod"}
	return cfg
}

// callForm is one way to call a pool: it runs the call with ctx and
// returns its error, after checking its result when it succeeded.
type callForm struct {
	name string
	call func(t *testing.T, ctx context.Context, p *Pool) error
}

// callForms are every way to check a worker out of a pool: the call forms,
// Transaction and Ping.
var callForms = []callForm{
	{"Call", func(t *testing.T, ctx context.Context, p *Pool) error {
		v, err := p.Call(ctx, "pypool_testmod.echo", "x")
		if err == nil {
			assert.Equal(t, "x", v)
		}
		return err
	}},
	{"TryCall", func(t *testing.T, ctx context.Context, p *Pool) error {
		v, err := p.TryCall(ctx, "pypool_testmod.echo", "x")
		if err == nil {
			assert.Equal(t, "x", v)
		}
		return err
	}},
	{"CallAs", func(t *testing.T, ctx context.Context, p *Pool) error {
		v, err := CallAs[int](ctx, p, "pypool_testmod.add", 2, 3)
		if err == nil {
			assert.Equal(t, 5, v)
		}
		return err
	}},
	{"CallBytes", func(t *testing.T, ctx context.Context, p *Pool) error {
		v, err := CallBytes(ctx, p, []byte("<"), "pypool_testmod.echo", []byte("b"))
		if err == nil {
			assert.Equal(t, []byte("<b"), v)
		}
		return err
	}},
	{"Stream", func(t *testing.T, ctx context.Context, p *Pool) error {
		items, err := collect(t, p.Stream(ctx, "numbers", 3))
		if err == nil {
			assert.Equal(t, []any{int64(0), int64(1), int64(2)}, items, "a stream that got a worker streams normally")
		}
		return err
	}},
	{"StreamAs", func(t *testing.T, ctx context.Context, p *Pool) error {
		var items []int
		for n, err := range StreamAs[int](ctx, p, "numbers", 3) {
			if err != nil {
				return err
			}
			items = append(items, n)
		}
		assert.Equal(t, []int{0, 1, 2}, items, "a stream that got a worker streams normally")
		return nil
	}},
	{"Transaction", func(t *testing.T, ctx context.Context, p *Pool) error {
		ran := false
		err := p.Transaction(ctx, func(w *Worker) error {
			ran = true
			v, err := w.Call(ctx, "pypool_testmod.echo", "in tx")
			assert.Equal(t, "in tx", v)
			return err
		})
		assert.Equal(t, err == nil, ran, "the function runs if and only if a worker was checked out")
		return err
	}},
	{"Ping", func(t *testing.T, ctx context.Context, p *Pool) error {
		return p.Ping(ctx)
	}},
}

// requireShedAtOnce runs call and requires that it fails with
// ErrPoolExhausted without queueing: it fails the test as soon as the pool
// has one more waiting caller than before (an event, not a timer). ctx
// has no deadline, so a call that queued would wait until the test
// cancels it.
func requireShedAtOnce(t *testing.T, p *Pool, call func(ctx context.Context) error) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waiting := p.Stats().Waiting
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	queued := make(chan struct{})
	go func() {
		if awaitUntil(p, ctx.Done(), func(s Stats) bool { return s.Waiting > waiting }) {
			close(queued)
		}
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrPoolExhausted)
		return err
	case <-queued:
		cancel()
		t.Fatalf("the call queued for a worker (stats %+v); it returned %v", p.Stats(), <-done)
	}
	return nil
}

// awaitUntil waits until cond holds for the pool (true) or stop is closed
// (false), re-checking at every change of the pool's state.
func awaitUntil(p *Pool, stop <-chan struct{}, cond func(Stats) bool) bool {
	for {
		changed := p.awaitChange()
		if cond(p.Stats()) {
			return true
		}
		select {
		case <-changed:
		case <-stop:
			return false
		}
	}
}

// TestNoWaitShedsEveryCallForm: with every worker busy and no room for
// another, every call form (and Transaction, and Ping) with NoWait fails at
// once with ErrPoolExhausted, starts nothing, and says which rule refused.
// Before NoWait only TryCall could: the test did not compile (undefined:
// NoWait), and with a NoWait that left ctx as it was, every form but
// TryCall queued.
func TestNoWaitShedsEveryCallForm(t *testing.T) {
	pool := newTestPool(t, shedConfig(t))
	release := holdWorkers(t, pool, 1)
	defer release()
	for _, f := range callForms {
		t.Run(f.name, func(t *testing.T) {
			err := requireShedAtOnce(t, pool, func(ctx context.Context) error { return f.call(t, NoWait(ctx), pool) })
			assert.Contains(t, err.Error(), "all 1 workers are busy (Size+MaxOverflow) and the call does not wait (NoWait or TryCall)")
			assert.Contains(t, err.Error(), "raise Size or MaxOverflow", "the message names the fix")
			s := pool.Stats()
			assert.Zero(t, s.Starting, "a full pool starts nothing")
			assert.Equal(t, 1, s.Workers)
		})
	}
}

// TestNoWaitStartsAWorkerWhenThereIsRoom: below Size+MaxOverflow, a call
// with NoWait has a worker started for itself and is served by it (a
// stream streams normally), as TryCall is.
func TestNoWaitStartsAWorkerWhenThereIsRoom(t *testing.T) {
	cfg := shedConfig(t)
	cfg.MaxOverflow = 1
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 1)
	defer release()
	for _, f := range callForms {
		t.Run(f.name, func(t *testing.T) {
			before := pool.Stats().StartsOverflow
			require.NoError(t, f.call(t, NoWait(testCtx(t)), pool))
			assert.Equal(t, before+1, pool.Stats().StartsOverflow, "an overflow worker was started for the call")
			awaitPool(t, pool, "the overflow worker stopped at its check-in", func(s Stats) bool {
				return s.Workers == 1 && s.Stopping == 0 && s.Starting == 0
			})
		})
	}
}

// TestMaxWaitingNoWaiting: with Config.MaxWaiting = NoWaiting, calls made
// without NoWait shed as if they had it, and say that MaxWaiting refused
// them. Before, NoWaiting was undefined and a negative MaxWaiting refused.
func TestMaxWaitingNoWaiting(t *testing.T) {
	cfg := shedConfig(t)
	cfg.MaxWaiting = NoWaiting
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 1)
	for _, f := range callForms {
		t.Run(f.name, func(t *testing.T) {
			err := requireShedAtOnce(t, pool, func(ctx context.Context) error { return f.call(t, ctx, pool) })
			if f.name == "TryCall" {
				return // NoWait's own message
			}
			assert.Contains(t, err.Error(), "Config.MaxWaiting is NoWaiting")
		})
	}
	release()
	require.NoError(t, callForms[0].call(t, testCtx(t), pool), "an idle worker serves")
}

// TestMaxWaitingNoWaitingWithRoom: with room, MaxWaiting NoWaiting lets a
// plain call have a worker started for it.
func TestMaxWaitingNoWaitingWithRoom(t *testing.T) {
	cfg := shedConfig(t)
	cfg.MaxWaiting, cfg.MaxOverflow = NoWaiting, 1
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 1)
	defer release()
	v, err := pool.Call(testCtx(t), "pypool_testmod.echo", "room")
	require.NoError(t, err)
	assert.Equal(t, "room", v)
	assert.Equal(t, uint64(1), pool.Stats().StartsOverflow)
}

// TestMaxWaitingValues: NoWaiting is accepted, other negative values are
// refused with an error that names the valid ones.
func TestMaxWaitingValues(t *testing.T) {
	for _, n := range []int{NoWaiting, 0, 1} {
		_, err := Config{Module: "m", MaxWaiting: n}.withDefaults()
		assert.NoError(t, err, "MaxWaiting %d", n)
	}
	_, err := Config{Module: "m", MaxWaiting: -2}.withDefaults()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Config.MaxWaiting is -2: use a limit above 0, 0 (no limit) or pypool.NoWaiting")
}

// TestMaxWaitingRefusalNamesTheRule: a refusal by a MaxWaiting limit says
// so, with the limit and the fix.
func TestMaxWaitingRefusalNamesTheRule(t *testing.T) {
	cfg := shedConfig(t)
	cfg.MaxWaiting = 1
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 1)
	waiter := make(chan error)
	go func() {
		_, err := pool.Call(testCtx(t), "pypool_testmod.echo", 1)
		waiter <- err
	}()
	awaitPool(t, pool, "one waiter", func(s Stats) bool { return s.Waiting == 1 })
	_, err := pool.Call(testCtx(t), "pypool_testmod.echo", 2)
	require.ErrorIs(t, err, ErrPoolExhausted)
	assert.Contains(t, err.Error(), "1 callers are already waiting for one of the 1 workers (Config.MaxWaiting is 1)")
	assert.Contains(t, err.Error(), "raise MaxWaiting, Size or MaxOverflow")
	release()
	require.NoError(t, <-waiter)
}

// TestNoWaitRejectionsCountedAndTraced: a call refused under NoWait counts
// in Stats.Rejections and ends its trace with OutcomeRejected, without a
// worker; a refused Transaction is not a call and counts in neither.
func TestNoWaitRejectionsCountedAndTraced(t *testing.T) {
	pool, rec := tracedPool(t, shedConfig(t))
	release := holdWorkers(t, pool, 1)
	defer release()
	rec.take()
	before := pool.Stats()
	calls := 0
	for _, f := range callForms {
		if f.name == "Transaction" || f.name == "Ping" {
			continue
		}
		calls++
		requireShedAtOnce(t, pool, func(ctx context.Context) error { return f.call(t, NoWait(ctx), pool) })
	}
	requireShedAtOnce(t, pool, func(ctx context.Context) error {
		return pool.Transaction(NoWait(ctx), func(*Worker) error { return nil })
	})
	s := pool.Stats()
	assert.Equal(t, before.Rejections+uint64(calls), s.Rejections)
	assert.Equal(t, before.CallsStarted+uint64(calls), s.CallsStarted)
	assert.Equal(t, before.CallsSent, s.CallsSent, "a refused call is not sent")
	ev := rec.take()
	require.Len(t, ev, 2*calls, "a start and an end per call, no worker")
	for i := 0; i < len(ev); i += 2 {
		assert.Equal(t, "start", ev[i].hook)
		checkEnd(t, ev[i+1])
		assert.Equal(t, OutcomeRejected, ev[i+1].end.Outcome)
		assert.ErrorIs(t, ev[i+1].end.Err, ErrPoolExhausted)
		assert.Zero(t, ev[i+1].end.Pid)
	}
}

// TestNoWaitOnCallbackContext: a call with NoWait made with a callback's
// context runs on the worker that waits for the callback, as any call on
// that context does: it checks nothing out, so it is not refused while
// that worker (the pool's only one) is busy with the outer call.
func TestNoWaitOnCallbackContext(t *testing.T) {
	type result struct {
		n   int
		err error
	}
	inner := make(chan result, 1)
	var pool *Pool
	cfg := shedConfig(t)
	cfg.Callbacks = map[string]Callback{
		"nested": func(ctx context.Context, args []any) (any, error) {
			n, err := CallAs[int](NoWait(ctx), pool, "pypool_testmod.add", 20, 22)
			inner <- result{n, err}
			return "done", nil
		},
	}
	pool = newTestPool(t, cfg)
	v, err := pool.Call(NoWait(testCtx(t)), "asks_go", "nested")
	require.NoError(t, err)
	assert.Equal(t, "done", v)
	r := <-inner
	require.NoError(t, r.err)
	assert.Equal(t, 42, r.n)
	assert.Zero(t, pool.Stats().Rejections)
}

// TestWaitingCallersAreServedFirst is the starvation that docs/operating.md
// describes: a worker checked in goes to the caller that waits for one,
// never to the idle set, so a call with NoWait arriving after it is refused
// for as long as waiting callers keep the worker busy, however often
// workers are checked in. The claim held before NoWait too (with TryCall);
// the test makes the docs' statement a checked one.
func TestWaitingCallersAreServedFirst(t *testing.T) {
	pool := newTestPool(t, shedConfig(t))
	ctx := testCtx(t)
	stopWatch := watchInvariants(t, pool)
	defer stopWatch()

	// A chain of waiting callers, each holding the worker until the next
	// one waits behind it: the worker is checked in three times, each time
	// with a caller waiting.
	const rounds = 3
	got := make(chan int, rounds+1)
	release := make([]chan struct{}, rounds+1)
	for i := range release {
		release[i] = make(chan struct{})
	}
	errs := make(chan error, rounds+1)
	hold := func(i int) {
		errs <- pool.Transaction(ctx, func(*Worker) error {
			got <- i
			<-release[i]
			return nil
		})
	}
	go hold(0)
	require.Equal(t, 0, <-got)
	for i := 1; i <= rounds; i++ {
		go hold(i)
		awaitPool(t, pool, "a caller waits", func(s Stats) bool { return s.Waiting == 1 })
		err := requireShedAtOnce(t, pool, func(ctx context.Context) error {
			return callForms[0].call(t, NoWait(ctx), pool)
		})
		require.ErrorIs(t, err, ErrPoolExhausted, "round %d: a caller holds the worker, one waits", i)
		close(release[i-1]) // check the worker in: it goes to the waiting caller
		require.Equal(t, i, <-got, "round %d: the waiting caller got the checked-in worker", i)
		assert.Zero(t, pool.Stats().Idle, "the worker was never idle")
		err = requireShedAtOnce(t, pool, func(ctx context.Context) error {
			return callForms[0].call(t, NoWait(ctx), pool)
		})
		require.ErrorIs(t, err, ErrPoolExhausted, "round %d: the NoWait call arriving after the check-in is refused", i)
	}
	close(release[rounds])
	for range release {
		require.NoError(t, <-errs)
	}
	require.NoError(t, callForms[0].call(t, NoWait(ctx), pool), "with nobody waiting, the checked-in worker is idle and serves")
	assert.Equal(t, uint64(2*rounds), pool.Stats().Rejections)
}

// TestNoWaitIsReadOnce: NoWait of a context that has it is that context,
// and contexts derived from one keep the option.
func TestNoWaitIsReadOnce(t *testing.T) {
	ctx := NoWait(context.Background())
	assert.True(t, ctx == NoWait(ctx))
	derived, cancel := context.WithCancel(ctx)
	defer cancel()
	assert.True(t, noWait(derived))
	assert.False(t, noWait(context.Background()))
}
