package pypool

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// traceEvent is one hook call seen by a recordingTracer.
type traceEvent struct {
	hook   string    // "start", "worker", "end"
	at     time.Time // when the hook was called
	id     int       // the attempt's id, from the context TraceCallStart returned
	parent int       // at "start": the id already in the context (0: none)
	start  TraceCallStartData
	worker TraceCallWorkerData
	end    TraceCallEndData
}

// recordingTracer records the hooks' calls, and threads an attempt id
// through the context as a span would be.
type recordingTracer struct {
	mu     sync.Mutex
	events []traceEvent
	nextID int
}

type traceIDKey struct{}

func traceID(ctx context.Context) int {
	id, _ := ctx.Value(traceIDKey{}).(int)
	return id
}

func (r *recordingTracer) TraceCallStart(ctx context.Context, pool *Pool, data TraceCallStartData) context.Context {
	if pool == nil {
		panic("TraceCallStart without pool")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	r.events = append(r.events, traceEvent{hook: "start", at: time.Now(), id: r.nextID, parent: traceID(ctx), start: data})
	return context.WithValue(ctx, traceIDKey{}, r.nextID)
}

func (r *recordingTracer) TraceCallWorker(ctx context.Context, pool *Pool, data TraceCallWorkerData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, traceEvent{hook: "worker", at: time.Now(), id: traceID(ctx), worker: data})
}

func (r *recordingTracer) TraceCallEnd(ctx context.Context, pool *Pool, data TraceCallEndData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, traceEvent{hook: "end", at: time.Now(), id: traceID(ctx), end: data})
}

// take returns the events recorded since the last take.
func (r *recordingTracer) take() []traceEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events = nil
	return ev
}

// hooks lists the events as "hook:id" for order checks.
func hooks(ev []traceEvent) []string {
	out := make([]string, len(ev))
	for i, e := range ev {
		out[i] = fmt.Sprintf("%s:%d", e.hook, e.id)
	}
	return out
}

func tracedPool(t *testing.T, cfg Config) (*Pool, *recordingTracer) {
	rec := &recordingTracer{}
	cfg.Tracer = rec
	return newTestPool(t, cfg), rec
}

// checkEnd checks what every TraceCallEnd must satisfy.
func checkEnd(t *testing.T, e traceEvent) {
	t.Helper()
	require.Equal(t, "end", e.hook)
	assert.Equal(t, OutcomeOf(e.end.Err), e.end.Outcome)
	assert.LessOrEqual(t, e.end.Wait, e.end.Duration)
	assert.GreaterOrEqual(t, e.end.Wait, time.Duration(0))
}

func TestTracerSuccessfulCall(t *testing.T) {
	pool, rec := tracedPool(t, testConfig(t))
	pid := workerPids(pool)[0]
	ctx := context.WithValue(testCtx(t), traceIDKey{}, -1) // the caller's own span

	out, err := pool.Call(ctx, "describe", 1, 2, 3, Kwargs{"x": 1, "y": "z"})
	require.NoError(t, err)
	require.NotNil(t, out)
	ev := rec.take()
	require.Equal(t, []string{"start:1", "worker:1", "end:1"}, hooks(ev), "the later hooks get the context TraceCallStart returned")
	assert.Equal(t, TraceCallStartData{Function: "describe", Args: 3, Kwargs: 2}, ev[0].start)
	assert.Equal(t, -1, ev[0].parent, "TraceCallStart gets the caller's context")
	assert.Equal(t, pid, ev[1].worker.Pid)
	checkEnd(t, ev[2])
	end := ev[2].end
	assert.Equal(t, OutcomeOK, end.Outcome)
	assert.NoError(t, end.Err)
	assert.Equal(t, pid, end.Pid)
	assert.Equal(t, ev[1].worker.Wait, end.Wait)
	assert.False(t, end.Retry)
	assert.Greater(t, end.RequestBytes, len("describe"), "the encoded call holds at least the name")
	assert.Greater(t, end.ReplyBytes, 0)

	// Every entry point is traced, once per call.
	_, err = CallAs[string](ctx, pool, "echo", "as")
	require.NoError(t, err)
	_, err = CallBytes(ctx, pool, nil, "echo", []byte("bytes"))
	require.NoError(t, err)
	_, err = pool.TryCall(ctx, "echo", "try")
	require.NoError(t, err)
	require.NoError(t, pool.Ping(ctx))
	ev = rec.take()
	require.Len(t, ev, 12)
	var fns []string
	for i := 0; i < len(ev); i += 3 {
		require.Equal(t, []string{"start", "worker", "end"}, []string{ev[i].hook, ev[i+1].hook, ev[i+2].hook})
		fns = append(fns, ev[i].start.Function)
		assert.Equal(t, OutcomeOK, ev[i+2].end.Outcome, ev[i].start.Function)
	}
	assert.Equal(t, []string{"echo", "echo", "echo", pingFunction}, fns)
	assert.Equal(t, 4, ev[3+2].end.RequestBytes-ev[0+2].end.RequestBytes,
		"the bin of 5 bytes takes 4 more than the str of 2 (7 and 3 with their headers)")
}

func TestTracerPythonException(t *testing.T) {
	pool, rec := tracedPool(t, testConfig(t))
	_, err := pool.Call(testCtx(t), "fail", "boom")
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	ev := rec.take()
	require.Equal(t, []string{"start:1", "worker:1", "end:1"}, hooks(ev))
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomePythonError, ev[2].end.Outcome)
	assert.Same(t, err, ev[2].end.Err, "the tracer sees the caller's error")
	assert.False(t, ev[2].end.Retry, "Python exceptions are never retried")
	assert.Greater(t, ev[2].end.ReplyBytes, 0)
}

func TestTracerDeadline(t *testing.T) {
	pool, rec := tracedPool(t, testConfig(t))

	// The deadline passes while Python runs. No fixed minimum for the
	// span (a loaded machine may start the call late in its 100 ms): it
	// starts before the worker hook and ends after the deadline, so it
	// lasts at least from that hook to the deadline, and it lies within
	// the start and end hooks.
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	due, _ := ctx.Deadline()
	_, err := pool.Call(ctx, "sleep", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	ev := rec.take()
	require.Equal(t, []string{"start:1", "worker:1", "end:1"}, hooks(ev))
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomeDeadline, ev[2].end.Outcome)
	assert.False(t, ev[2].at.Before(due), "the end is traced after the deadline")
	assert.GreaterOrEqual(t, ev[2].end.Duration, due.Sub(ev[1].at), "the span runs from before the worker came to the deadline")
	assert.LessOrEqual(t, ev[2].end.Duration, ev[2].at.Sub(ev[0].at), "the span lies within its hooks")
	assert.Greater(t, ev[2].end.RequestBytes, 0)
	assert.Zero(t, ev[2].end.ReplyBytes, "no reply came")

	// The deadline passes while waiting for a worker: no TraceCallWorker.
	awaitPool(t, pool, "the interrupted worker is back", func(s Stats) bool { return s.Idle == 1 })
	// The wait starts before the pool counts the caller as waiting, which
	// the test sees at seen, and ends after the deadline: it lasts at least
	// from seen to the deadline (no fixed minimum, as above).
	var seen time.Time
	err = pool.Transaction(testCtx(t), func(*Worker) error {
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		defer cancel()
		due, _ = ctx.Deadline()
		called := make(chan error, 1)
		go func() {
			_, err := pool.Call(ctx, "echo", 1)
			called <- err
		}()
		for {
			changed := pool.awaitChange()
			if pool.Stats().Waiting == 1 {
				seen = time.Now()
				return <-called
			}
			select {
			case <-changed:
			case err := <-called: // gone before the test saw it wait
				seen = time.Now()
				return err
			}
		}
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	ev = rec.take()
	require.Equal(t, []string{"start:2", "end:2"}, hooks(ev))
	checkEnd(t, ev[1])
	assert.Equal(t, OutcomeDeadline, ev[1].end.Outcome)
	assert.Zero(t, ev[1].end.Pid)
	assert.Equal(t, ev[1].end.Duration, ev[1].end.Wait, "all of it was waiting")
	assert.GreaterOrEqual(t, ev[1].end.Wait, due.Sub(seen), "the wait runs from before the test saw it to the deadline")
	assert.LessOrEqual(t, ev[1].end.Wait, ev[1].at.Sub(ev[0].at), "the wait lies within the hooks")
	assert.Zero(t, ev[1].end.RequestBytes)

	// A canceled context.
	ctx, cancel = context.WithCancel(testCtx(t))
	cancel()
	_, err = pool.Call(ctx, "echo", 1)
	require.ErrorIs(t, err, context.Canceled)
	ev = rec.take()
	require.Equal(t, []string{"start:3", "end:3"}, hooks(ev))
	assert.Equal(t, OutcomeCanceled, ev[1].end.Outcome)
}

func TestTracerTryCallRejected(t *testing.T) {
	pool, rec := tracedPool(t, testConfig(t))
	err := pool.Transaction(testCtx(t), func(*Worker) error {
		_, err := pool.TryCall(testCtx(t), "echo", 1)
		return err
	})
	require.ErrorIs(t, err, ErrPoolExhausted)
	ev := rec.take()
	require.Equal(t, []string{"start:1", "end:1"}, hooks(ev), "a rejected call gets no worker")
	assert.Equal(t, "echo", ev[0].start.Function)
	checkEnd(t, ev[1])
	assert.Equal(t, OutcomeRejected, ev[1].end.Outcome)
	assert.ErrorIs(t, ev[1].end.Err, ErrPoolExhausted)
	assert.Zero(t, ev[1].end.Pid)
	assert.False(t, ev[1].end.Retry)

	require.NoError(t, pool.Close(testCtx(t)))
	_, err = pool.Call(testCtx(t), "echo", 1)
	require.ErrorIs(t, err, ErrPoolClosed)
	ev = rec.take()
	require.Equal(t, []string{"start:2", "end:2"}, hooks(ev))
	assert.Equal(t, OutcomeClosed, ev[1].end.Outcome)
}

func TestTracerCrashRetries(t *testing.T) {
	cfg := testConfig(t)
	cfg.CrashRetries = 2
	pool, rec := tracedPool(t, cfg)
	first := workerPids(pool)[0]
	ctx := context.WithValue(testCtx(t), traceIDKey{}, -1)
	out, err := pool.Call(ctx, "crash_once", filepath.Join(t.TempDir(), "crashed"))
	require.NoError(t, err)
	assert.Equal(t, "survived", out)

	ev := rec.take()
	require.Equal(t, []string{"start:1", "worker:1", "end:1", "start:2", "worker:2", "end:2"}, hooks(ev),
		"one start..end per attempt")
	assert.Equal(t, 0, ev[0].start.Attempt)
	assert.Equal(t, 1, ev[3].start.Attempt)
	assert.Equal(t, -1, ev[0].parent)
	assert.Equal(t, -1, ev[3].parent, "a retry starts from the caller's context: the attempts are siblings")

	assert.Equal(t, first, ev[1].worker.Pid)
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomeCrashed, ev[2].end.Outcome)
	assert.ErrorIs(t, ev[2].end.Err, ErrWorkerCrashed)
	assert.True(t, ev[2].end.Retry, "the pool tries again")
	assert.Equal(t, first, ev[2].end.Pid)

	assert.NotEqual(t, first, ev[4].worker.Pid, "the retry ran on another worker")
	checkEnd(t, ev[5])
	assert.Equal(t, OutcomeOK, ev[5].end.Outcome)
	assert.False(t, ev[5].end.Retry)

	// Without retries left, a crash ends the call: Retry is false.
	cfg = testConfig(t)
	noRetry, rec2 := tracedPool(t, cfg)
	_, err = noRetry.Call(testCtx(t), "crash_once", filepath.Join(t.TempDir(), "crashed"))
	require.ErrorIs(t, err, ErrWorkerCrashed)
	ev = rec2.take()
	require.Equal(t, []string{"start:1", "worker:1", "end:1"}, hooks(ev))
	assert.Equal(t, OutcomeCrashed, ev[2].end.Outcome)
	assert.False(t, ev[2].end.Retry)
}

func TestTracerTransaction(t *testing.T) {
	pool, rec := tracedPool(t, testConfig(t))
	var kept *Worker
	err := pool.Transaction(testCtx(t), func(w *Worker) error {
		kept = w
		if _, err := w.Call(testCtx(t), "set_value", "k", 1); err != nil {
			return err
		}
		if _, err := CallAs[int](testCtx(t), w, "get_value", "k"); err != nil {
			return err
		}
		_, err := w.Call(testCtx(t), "fail", "inside")
		return err
	})
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	ev := rec.take()
	require.Equal(t, []string{"start:1", "worker:1", "end:1", "start:2", "worker:2", "end:2", "start:3", "worker:3", "end:3"},
		hooks(ev), "the transaction's checkout is not traced, its calls are")
	for i := 0; i < len(ev); i += 3 {
		assert.True(t, ev[i].start.Transaction)
		assert.Equal(t, kept.Pid(), ev[i+1].worker.Pid)
		assert.Zero(t, ev[i+1].worker.Wait, "the worker was already checked out")
		checkEnd(t, ev[i+2])
		assert.Zero(t, ev[i+2].end.Wait)
	}
	assert.Equal(t, []string{"set_value", "get_value", "fail"}, []string{ev[0].start.Function, ev[3].start.Function, ev[6].start.Function})
	assert.Equal(t, OutcomeOK, ev[5].end.Outcome)
	assert.Equal(t, OutcomePythonError, ev[8].end.Outcome)

	// A Worker used after its transaction: traced, with no worker.
	_, err = kept.Call(testCtx(t), "echo", 1)
	require.ErrorIs(t, err, ErrWorkerReleased)
	ev = rec.take()
	require.Equal(t, []string{"start:4", "end:4"}, hooks(ev))
	assert.Equal(t, OutcomeError, ev[1].end.Outcome)
}

// TestTracerConcurrentCalls checks, under -race, that every attempt of
// concurrent callers gets its hooks in order with its own context.
func TestTracerConcurrentCalls(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 2, 1
	pool, rec := tracedPool(t, cfg)
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				if g%2 == 0 {
					_, _ = pool.TryCall(testCtx(t), "echo", i)
				} else {
					_, _ = pool.Call(testCtx(t), "echo", i)
				}
			}
		}()
	}
	wg.Wait()
	seen := map[int][]string{}
	for _, e := range rec.take() {
		seen[e.id] = append(seen[e.id], e.hook)
		if e.hook == "end" {
			checkEnd(t, e)
			if e.end.Outcome != OutcomeOK {
				assert.Equal(t, OutcomeRejected, e.end.Outcome, "%v", e.end.Err)
			}
		}
	}
	require.Len(t, seen, 60)
	for id, hs := range seen {
		if len(hs) == 2 {
			assert.Equal(t, []string{"start", "end"}, hs, "attempt %d", id)
		} else {
			assert.Equal(t, []string{"start", "worker", "end"}, hs, "attempt %d", id)
		}
	}
}

func TestOutcomeOf(t *testing.T) {
	crash := &WorkerExitError{Pid: 1, cause: ErrWorkerCrashed}
	for _, c := range []struct {
		err  error
		want Outcome
	}{
		{nil, OutcomeOK},
		{&PythonError{Code: "exception", Type: "ValueError"}, OutcomePythonError},
		{&PythonError{Code: "function_not_found"}, OutcomePythonError},
		{crash, OutcomeCrashed},
		{fmt.Errorf("pypool: call to f: %w", context.DeadlineExceeded), OutcomeDeadline},
		{fmt.Errorf("pypool: waiting for a worker: %w", context.Canceled), OutcomeCanceled},
		{fmt.Errorf("%w: busy", ErrPoolExhausted), OutcomeRejected},
		{ErrPoolClosed, OutcomeClosed},
		{fmt.Errorf("%w: the worker was stopped while the call ran: %w", ErrPoolClosed, crash), OutcomeClosed},
		{&importError{module: "m", err: &PythonError{Type: "ImportError"}}, OutcomeStartFailed},
		{fmt.Errorf("%w: argument 0", ErrArgNotEncodable), OutcomeError},
		{errors.New("other"), OutcomeError},
	} {
		assert.Equal(t, c.want, OutcomeOf(c.err), "%v", c.err)
	}
	assert.Equal(t, "python_error", OutcomePythonError.String())
	assert.Equal(t, "error", OutcomeError.String())
	assert.Equal(t, "Outcome(42)", Outcome(42).String())
}

// nopTracer is a Tracer that does nothing: BenchmarkCallTraced measures
// what the hooks cost the pool itself.
type nopTracer struct{}

func (nopTracer) TraceCallStart(ctx context.Context, _ *Pool, _ TraceCallStartData) context.Context {
	return ctx
}
func (nopTracer) TraceCallWorker(context.Context, *Pool, TraceCallWorkerData) {}
func (nopTracer) TraceCallEnd(context.Context, *Pool, TraceCallEndData)       {}

// BenchmarkCallTraced is BenchmarkCall with a Tracer that does nothing.
func BenchmarkCallTraced(b *testing.B) {
	cfg := duplicateConfig(b)
	cfg.Tracer = nopTracer{}
	pool := newTestPool(b, cfg)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pool.Call(ctx, "duplicate_text", "testing"); err != nil {
			b.Fatal(err)
		}
	}
}
