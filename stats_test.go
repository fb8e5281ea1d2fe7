package pypool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// observed records the ends of calls a Tracer added with Pool.AddTracer is
// told (one attempt per call: these tests set no CrashRetries).
type observed struct {
	mu    sync.Mutex
	calls []TraceCallEndData
}

func (o *observed) TraceCallStart(ctx context.Context, _ *Pool, _ TraceCallStartData) context.Context {
	return ctx
}

func (o *observed) TraceCallWorker(context.Context, *Pool, TraceCallWorkerData) {}

func (o *observed) TraceCallEnd(_ context.Context, _ *Pool, c TraceCallEndData) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, c)
}

func (o *observed) outcomes() map[Outcome]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[Outcome]int{}
	for _, c := range o.calls {
		m[c.Outcome]++
	}
	return m
}

// TestStatsCountsWhatHappened does, one after the other, each thing that
// Stats counts, and checks every counter against what the test did: N
// calls, a Python exception, rejections by TryCall, an overflow start and
// stop, a recycle by MaxCallsPerWorker, a crash, a deadline and a
// cancellation that interrupt Python, and Close.
func TestStatsCountsWhatHappened(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 1, 1
	cfg.MaxCallsPerWorker, cfg.MaxCallsJitter = 4, 0
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	obs := &observed{}
	pool.AddTracer(obs)
	ctx := testCtx(t)
	rest := func(what string) {
		t.Helper()
		awaitPool(t, pool, what, func(s Stats) bool { return atRest(s, 1) })
	}

	s := pool.Stats()
	assert.Equal(t, Stats{Size: 1, MaxOverflow: 1, Workers: 1, Idle: 1, StartsInitial: 1}, s, "a new pool")

	// 3 results and 1 exception: the worker served its 4 calls and is
	// recycled at check-in.
	for i := range 3 {
		_, err := pool.Call(ctx, "echo", i)
		require.NoError(t, err)
	}
	_, err = pool.Call(ctx, "fail", "on purpose")
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	rest("recycled after 4 calls")
	s = pool.Stats()
	assert.Equal(t, uint64(1), s.StopsMaxCalls)
	assert.Equal(t, uint64(1), s.StartsRecycle)
	assert.Equal(t, uint64(1), s.Recycled)

	// Two checkouts: the second waits for an overflow worker; TryCall is
	// then refused 3 times. At check-in the overflow worker is stopped.
	holding := make(chan struct{})
	release := make(chan struct{})
	var holders sync.WaitGroup
	for range 2 {
		holders.Add(1)
		go func() {
			defer holders.Done()
			assert.NoError(t, pool.Transaction(ctx, func(*Worker) error {
				holding <- struct{}{}
				<-release
				return nil
			}))
		}()
	}
	<-holding
	<-holding
	s = pool.Stats()
	assert.Equal(t, 2, s.InUse)
	assert.Equal(t, 1, s.Overflow)
	assert.Equal(t, 1, s.OverflowInUse)
	assert.Equal(t, "full", s.Status())
	for range 3 {
		_, err := pool.TryCall(ctx, "echo", 1)
		require.ErrorIs(t, err, ErrPoolExhausted)
	}
	close(release)
	holders.Wait()
	rest("the overflow worker stopped")

	// A crash, then a deadline and a cancellation while Python sleeps.
	_, err = pool.Call(ctx, "crash", 3)
	require.ErrorIs(t, err, ErrWorkerCrashed)
	rest("the crashed worker replaced")
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = pool.Call(short, "sleep", 30)
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	rest("the interrupted worker drained")
	canceled, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err = pool.Call(canceled, "sleep", 30)
	require.ErrorIs(t, err, context.Canceled)
	rest("the interrupted worker drained again")

	s = pool.Stats()
	want := Stats{
		Size: 1, MaxOverflow: 1, Workers: 1, Idle: 1,
		CallsStarted:     3 + 1 + 3 + 1 + 2,
		CallsFinished:    3 + 1 + 3 + 1 + 2,
		CallsSent:        3 + 1 + 1 + 2, // not the rejections
		Calls:            3 + 1 + 1 + 2, // deprecated: CallsSent
		PythonExceptions: 1,
		Rejections:       3,
		DeadlineExceeded: 1,
		Canceled:         1,
		Interrupts:       2,
		WaitCount:        1, // the second Transaction
		WaitDuration:     s.WaitDuration,
		StartsInitial:    1,
		StartsCrash:      1,
		StartsRecycle:    1,
		StartsOverflow:   1,
		Restarts:         3,
		Crashes:          1,
		Recycled:         1,
		StopsOverflow:    1,
		StopsMaxCalls:    1,
	}
	assert.Equal(t, want, s)
	assert.Positive(t, s.WaitDuration, "the wait for the overflow worker took time")
	assert.Equal(t, map[Outcome]int{
		OutcomeOK: 3, OutcomePythonError: 1, OutcomeRejected: 3, OutcomeCrashed: 1,
		OutcomeDeadline: 1, OutcomeCanceled: 1,
	}, obs.outcomes())
	obs.mu.Lock()
	for _, c := range obs.calls {
		assert.NotEmpty(t, c.Function)
		assert.GreaterOrEqual(t, c.Duration, c.Wait, "%+v", c)
		assert.Equal(t, OutcomeOf(c.Err), c.Outcome)
	}
	obs.mu.Unlock()

	require.NoError(t, pool.Close(context.Background()))
	s = pool.Stats()
	assert.Equal(t, uint64(1), s.StopsClose)
	assert.Equal(t, 0, s.Workers+s.Stopping+s.Starting)
}

// TestStatsExactUnderConcurrency runs many callers at once, with
// exceptions, rejections, deadlines and overflow, and checks that the
// counters add up exactly: every call started finished, each outcome was
// counted once, and the starts less the stops are the workers left.
func TestStatsExactUnderConcurrency(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 2, 2
	cfg.MaxCallsPerWorker, cfg.MaxCallsJitter = 7, 3
	pool := newTestPool(t, cfg)
	obs := &observed{}
	pool.AddTracer(obs)
	ctx := testCtx(t)

	const callers, each = 8, 12
	var (
		mu                           sync.Mutex
		oks, pyErrs, rejected, ended int
	)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var err error
				switch (c + i) % 4 {
				case 0:
					_, err = pool.Call(ctx, "echo", i)
				case 1:
					_, err = pool.Call(ctx, "fail", "x")
				case 2:
					_, err = pool.TryCall(ctx, "sleep", 0.01)
				case 3:
					short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
					_, err = pool.Call(short, "sleep", 0.05)
					cancel()
				}
				var pyErr *PythonError
				mu.Lock()
				switch {
				case err == nil:
					oks++
				case errors.As(err, &pyErr):
					pyErrs++
				case errors.Is(err, ErrPoolExhausted):
					rejected++
				case errors.Is(err, context.DeadlineExceeded):
					ended++
				default:
					t.Errorf("unexpected error: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 2) })

	s := pool.Stats()
	total := uint64(callers * each)
	assert.Equal(t, total, s.CallsStarted)
	assert.Equal(t, total, s.CallsFinished)
	assert.Equal(t, uint64(pyErrs), s.PythonExceptions)
	assert.Equal(t, uint64(rejected), s.Rejections)
	assert.Equal(t, uint64(ended), s.DeadlineExceeded)
	assert.LessOrEqual(t, s.CallsSent, total-uint64(rejected), "rejected calls reached no worker")
	assert.GreaterOrEqual(t, s.CallsSent, total-uint64(rejected+ended), "every call that did not end early reached a worker")
	assert.Zero(t, s.Crashes)
	assert.Zero(t, s.StartFailures)
	assert.Equal(t, s.Restarts, s.StartsCrash+s.StartsRecycle+s.StartsOverflow)
	assert.Equal(t, s.Recycled, s.StopsMaxCalls, "no idle timeout, lifetime or memory limit")
	stops := s.Crashes + s.StopsOverflow + s.StopsMaxCalls + s.StopsMaxMemory + s.StopsMaxLifetime + s.StopsKilled + s.StopsClose
	assert.Equal(t, uint64(s.Workers), s.StartsInitial+s.Restarts-stops, "starts less stops are the workers: %+v", s)
	assert.LessOrEqual(t, s.StartsRecycle, s.StopsMaxCalls, "a replacement for each recycled worker the pool needed")
	assert.LessOrEqual(t, s.Interrupts, uint64(ended))
	obs.mu.Lock()
	assert.Len(t, obs.calls, int(total), "the observer saw every call")
	obs.mu.Unlock()
	o := obs.outcomes()
	assert.Equal(t, oks, o[OutcomeOK])
	assert.Equal(t, pyErrs, o[OutcomePythonError])
	assert.Equal(t, rejected, o[OutcomeRejected])
	assert.Equal(t, ended, o[OutcomeDeadline])
	t.Logf("%+v", s)
}

func TestOutcomeOfStats(t *testing.T) {
	for err, want := range map[error]Outcome{
		nil:                                      OutcomeOK,
		fmt.Errorf("x: %w", ErrPoolClosed):       OutcomeClosed,
		fmt.Errorf("%w: busy", ErrPoolExhausted): OutcomeRejected,
		fmt.Errorf("pypool: call to f: %w", context.DeadlineExceeded):    OutcomeDeadline,
		fmt.Errorf("pypool: waiting for a worker: %w", context.Canceled): OutcomeCanceled,
		&WorkerExitError{cause: ErrWorkerCrashed}:                        OutcomeCrashed,
		&WorkerExitError{cause: ErrWorkerStart}:                          OutcomeStartFailed,
		&PythonError{Code: "exception", Type: "ValueError"}:              OutcomePythonError,
		&PythonError{Code: "function_not_found"}:                         OutcomePythonError,
		fmt.Errorf("%w: chan", ErrArgNotEncodable):                       OutcomeError,
	} {
		assert.Equal(t, want, OutcomeOf(err), "%v", err)
	}
}

// TestStatsCountsTransactionCalls: calls through a Worker count as calls
// (with no wait of their own), also one made after the transaction ended.
func TestStatsCountsTransactionCalls(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	obs := &observed{}
	pool.AddTracer(obs)
	ctx := testCtx(t)
	var kept *Worker
	require.NoError(t, pool.Transaction(ctx, func(w *Worker) error {
		kept = w
		if _, err := w.Call(ctx, "echo", 1); err != nil {
			return err
		}
		_, err := w.Call(ctx, "fail", "inside")
		var pyErr *PythonError
		require.ErrorAs(t, err, &pyErr)
		return nil
	}))
	_, err := kept.Call(ctx, "echo", 2)
	require.ErrorIs(t, err, ErrWorkerReleased)

	s := pool.Stats()
	assert.Equal(t, uint64(3), s.CallsStarted)
	assert.Equal(t, uint64(3), s.CallsFinished)
	assert.Equal(t, uint64(2), s.CallsSent, "the released worker was not called")
	assert.Equal(t, uint64(1), s.PythonExceptions)
	assert.Zero(t, s.WaitCount, "a worker was idle")
	assert.Equal(t, map[Outcome]int{OutcomeOK: 1, OutcomePythonError: 1, OutcomeError: 1}, obs.outcomes())
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for _, c := range obs.calls {
		assert.Zero(t, c.Wait, "%+v", c)
	}
}

// TestStatsCountsKilledWorker: a worker that does not answer its interrupt
// within InterruptGrace is killed (not a crash) and replaced.
func TestStatsCountsKilledWorker(t *testing.T) {
	cfg := testConfig(t)
	cfg.InterruptGrace = 100 * time.Millisecond
	pool := newTestPool(t, cfg)
	short, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	_, err := pool.Call(short, "swallow_interrupt", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, pool, "the killed worker replaced", func(s Stats) bool { return atRest(s, 1) && s.StopsKilled == 1 })
	s := pool.Stats()
	assert.Equal(t, uint64(1), s.Interrupts)
	assert.Equal(t, uint64(1), s.StartsCrash, "a killed worker is replaced as a crashed one")
	assert.Zero(t, s.Crashes, "the pool killed it: not a crash")
	assert.Equal(t, uint64(1), s.DeadlineExceeded)
}
