package pypoolotel_test

// audit_test.go: the observability audit (round 3) of the spans: every
// call form, on its fault paths.

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/pypool/pypool"
	pypoolotel "github.com/pypool/pypool/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// auditSetup is setup with the observability audit's module and cfg's
// other fields.
func auditSetup(t *testing.T, cfg pypool.Config) (*pypool.Pool, *tracetest.InMemoryExporter, context.Context, trace.Span) {
	t.Helper()
	cfg.Module = "pypool_auditobs"
	return setup(t, cfg)
}

// checkFailed checks the span of a failed attempt: outcome, error.type,
// status Error, and the exception event (with the Python type for a
// Python exception).
func checkFailed(t *testing.T, s tracetest.SpanStub, outcome, errorType string) {
	t.Helper()
	a := attrs(s)
	if got := a[pypoolotel.OutcomeKey].AsString(); got != outcome {
		t.Errorf("%s: outcome %q, want %q", s.Name, got, outcome)
	}
	if got := a["error.type"].AsString(); got != errorType {
		t.Errorf("%s: error.type %q, want %q", s.Name, got, errorType)
	}
	if s.Status.Code != codes.Error {
		t.Errorf("%s: status %v", s.Name, s.Status)
	}
	ev, ok := event(s, "exception")
	if !ok {
		t.Errorf("%s: no exception event", s.Name)
	} else if outcome == "python_error" && ev["exception.type"].AsString() != errorType {
		t.Errorf("%s: exception event %v", s.Name, ev)
	}
	if _, ok := a[pypoolotel.WorkerPidKey]; !ok {
		t.Errorf("%s: no worker pid", s.Name)
	}
}

// Promise (the package documentation, and pypool.Tracer's): a stream is
// one call, so one span, whose failure (a Python exception raised in the
// middle of the stream, its worker dying) is recorded as any call's.
// (Passed; no span of a stream was checked before.)
func TestAuditStreamSpans(t *testing.T) {
	pool, exp, ctx, parent := auditSetup(t, pypool.Config{})
	n := 0
	var serr error
	for _, err := range pool.Stream(ctx, "items", 5, 2) {
		if err != nil {
			serr = err
			break
		}
		n++
	}
	var pe *pypool.PythonError
	if n != 2 || !errors.As(serr, &pe) {
		t.Fatalf("stream: %d items, %v", n, serr)
	}
	for _, err := range pool.Stream(ctx, "items_then_crash", 2) {
		if err != nil {
			serr = err
		}
	}
	if !errors.Is(serr, pypool.ErrWorkerCrashed) {
		t.Fatalf("stream: %v", serr)
	}
	spans := calls(exp)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want one per stream", len(spans))
	}
	checkFailed(t, spans[0], "python_error", "ValueError")
	checkFailed(t, spans[1], "crashed", "crashed")
	for _, s := range spans {
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: not a child of the caller's span", s.Name)
		}
	}
}

// Promise (the package documentation, docs/async.md): calls of async
// functions (Config.AsyncCalls) get their spans as any call: a Python
// exception, a call cut off by its context (the task cancelled), a crash
// of the worker.
// (Passed; the async mode's spans were not checked before.)
func TestAuditAsyncSpans(t *testing.T) {
	cutOff, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The call below is cut off once its task printed its line.
	logger := slog.New(cancelOn{"cut-off", cancel})
	pool, exp, ctx, parent := auditSetup(t, pypool.Config{AsyncCalls: 4, Logger: logger})
	if _, err := pool.Call(ctx, "async_fail", "boom"); err == nil {
		t.Fatal("no error")
	}
	if _, err := pool.Call(joinCancel(ctx, cutOff), "async_print", "cut-off", 30); !errors.Is(err, context.Canceled) {
		t.Fatalf("cut off: %v", err)
	}
	if _, err := pool.Call(ctx, "async_crash", 3); !errors.Is(err, pypool.ErrWorkerCrashed) {
		t.Fatalf("crash: %v", err)
	}
	spans := calls(exp)
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	checkFailed(t, spans[0], "python_error", "ValueError")
	checkFailed(t, spans[1], "canceled", "canceled")
	checkFailed(t, spans[2], "crashed", "crashed")
	for _, s := range spans {
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: not a child of the caller's span", s.Name)
		}
	}
}

// cancelOn is a slog.Handler that calls cancel when a record's message is
// msg, and drops every record.
type cancelOn struct {
	msg    string
	cancel context.CancelFunc
}

func (h cancelOn) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOn) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h cancelOn) WithGroup(string) slog.Handler            { return h }

func (h cancelOn) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.cancel()
	}
	return nil
}

// joinCancel returns ctx, also canceled when other is.
func joinCancel(ctx, other context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(other, cancel)
	return ctx
}
