package pypoolotel_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pypool/pypool"
	pypoolotel "github.com/pypool/pypool/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// setup starts a pool of the parent module's test module (or of
// cfg.Module, from the same directory), traced into an in-memory exporter,
// and a parent span for the test's calls.
func setup(t *testing.T, cfg pypool.Config) (*pypool.Pool, *tracetest.InMemoryExporter, context.Context, trace.Span) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	if cfg.Module == "" {
		cfg.Module = "pypool_testmod"
	}
	cfg.PythonPath = []string{filepath.Join("..", "testdata", "pymod")}
	cfg.Size = 1
	cfg.Tracer = pypoolotel.NewTracer(tp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pool, err := pypool.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	ctx, parent := tp.Tracer("test").Start(ctx, "request")
	return pool, exp, ctx, parent
}

// calls returns the exported pypool spans, in the order they ended.
func calls(exp *tracetest.InMemoryExporter) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if strings.HasPrefix(s.Name, "pypool.call ") {
			out = append(out, s)
		}
	}
	return out
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func event(s tracetest.SpanStub, name string) (map[attribute.Key]attribute.Value, bool) {
	for _, e := range s.Events {
		if e.Name == name {
			m := map[attribute.Key]attribute.Value{}
			for _, kv := range e.Attributes {
				m[kv.Key] = kv.Value
			}
			return m, true
		}
	}
	return nil, false
}

func pidOf(t *testing.T, pool *pypool.Pool) int {
	t.Helper()
	pid := 0
	if err := pool.Transaction(context.Background(), func(w *pypool.Worker) error {
		pid = w.Pid()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestSpanOfASuccessfulCall(t *testing.T) {
	pool, exp, ctx, parent := setup(t, pypool.Config{})
	pid := pidOf(t, pool)
	out, err := pool.Call(ctx, "echo", "hello", pypool.Kwargs{})
	if err != nil || out != "hello" {
		t.Fatalf("Call = %v, %v", out, err)
	}
	spans := calls(exp)
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name != "pypool.call echo" || s.SpanKind != trace.SpanKindClient {
		t.Errorf("span %q of kind %v", s.Name, s.SpanKind)
	}
	if s.Parent.SpanID() != parent.SpanContext().SpanID() || s.SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Error("the span is not a child of the caller's span")
	}
	if s.Status.Code != codes.Unset {
		t.Errorf("status %v", s.Status)
	}
	if s.InstrumentationScope.Name != pypoolotel.ScopeName {
		t.Errorf("scope %q", s.InstrumentationScope.Name)
	}
	a := attrs(s)
	for key, want := range map[attribute.Key]attribute.Value{
		pypoolotel.FunctionKey:    attribute.StringValue("echo"),
		pypoolotel.ArgsCountKey:   attribute.IntValue(1),
		pypoolotel.KwargsCountKey: attribute.IntValue(0),
		pypoolotel.AttemptKey:     attribute.IntValue(0),
		pypoolotel.WorkerPidKey:   attribute.IntValue(pid),
		pypoolotel.OutcomeKey:     attribute.StringValue("ok"),
	} {
		if a[key] != want {
			t.Errorf("%s = %v, want %v", key, a[key].String(), want.String())
		}
	}
	if a[pypoolotel.RequestSizeKey].AsInt64() <= 0 || a[pypoolotel.ReplySizeKey].AsInt64() <= 0 {
		t.Errorf("sizes %v and %v", a[pypoolotel.RequestSizeKey].String(), a[pypoolotel.ReplySizeKey].String())
	}
	if w := a[pypoolotel.WaitDurationKey]; w.Type() != attribute.FLOAT64 || w.AsFloat64() < 0 || w.AsFloat64() > 10 {
		t.Errorf("wait %v", w.String())
	}
	for _, key := range []attribute.Key{pypoolotel.TransactionKey, pypoolotel.RetryKey, "error.type"} {
		if _, ok := a[key]; ok {
			t.Errorf("%s set on a plain successful call", key)
		}
	}
	if e, ok := event(s, "pypool.worker.acquired"); !ok || e[pypoolotel.WorkerPidKey] != attribute.IntValue(pid) {
		t.Errorf("worker event %v, %v", e, ok)
	}
	if !s.EndTime.After(s.StartTime) {
		t.Error("the span did not last")
	}

	if err := pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if spans := calls(exp); len(spans) != 2 || spans[1].Name != "pypool.call _pypool_ping" {
		t.Errorf("Ping's span: %v", spans)
	}
}

func TestSpanOfAPythonException(t *testing.T) {
	pool, exp, ctx, _ := setup(t, pypool.Config{})
	if _, err := pool.Call(ctx, "fail", "boom"); err == nil {
		t.Fatal("no error")
	}
	spans := calls(exp)
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Status.Code != codes.Error || !strings.Contains(s.Status.Description, "ValueError: boom") {
		t.Errorf("status %v", s.Status)
	}
	a := attrs(s)
	if a[pypoolotel.OutcomeKey].AsString() != "python_error" || a["error.type"].AsString() != "ValueError" {
		t.Errorf("outcome %v, error.type %v", a[pypoolotel.OutcomeKey].String(), a["error.type"].String())
	}
	e, ok := event(s, "exception")
	if !ok {
		t.Fatal("no exception event")
	}
	if e["exception.type"].AsString() != "ValueError" || e["exception.message"].AsString() != "boom" ||
		!strings.Contains(e["exception.stacktrace"].AsString(), "raise ValueError") {
		t.Errorf("exception event %v", e)
	}
}

func TestSpansOfDeadlineRejectionAndTransaction(t *testing.T) {
	pool, exp, ctx, parent := setup(t, pypool.Config{})
	pid := pidOf(t, pool)

	deadline, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := pool.Call(deadline, "sleep", 30); err == nil {
		t.Fatal("no error")
	}
	err := pool.Transaction(ctx, func(w *pypool.Worker) error {
		if _, err := pool.TryCall(ctx, "echo", 1); err == nil {
			t.Error("TryCall got a worker")
		}
		_, err := w.Call(ctx, "echo", 2)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	spans := calls(exp)
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	for _, s := range spans {
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%s: not a child of the caller's span", s.Name)
		}
	}
	dl, rejected, tx := attrs(spans[0]), attrs(spans[1]), attrs(spans[2])
	if dl[pypoolotel.OutcomeKey].AsString() != "deadline" || dl["error.type"].AsString() != "deadline" ||
		spans[0].Status.Code != codes.Error || dl[pypoolotel.WorkerPidKey].AsInt64() != int64(pid) {
		t.Errorf("deadline span: %v %v", spans[0].Attributes, spans[0].Status)
	}
	if _, ok := event(spans[0], "exception"); !ok {
		t.Error("deadline span: no exception event")
	}
	if rejected[pypoolotel.OutcomeKey].AsString() != "rejected" || spans[1].Status.Code != codes.Error {
		t.Errorf("rejected span: %v %v", spans[1].Attributes, spans[1].Status)
	}
	if _, ok := rejected[pypoolotel.WorkerPidKey]; ok {
		t.Error("rejected span: a worker pid, but it got no worker")
	}
	if _, ok := event(spans[1], "pypool.worker.acquired"); ok {
		t.Error("rejected span: a worker event")
	}
	if !tx[pypoolotel.TransactionKey].AsBool() || tx[pypoolotel.OutcomeKey].AsString() != "ok" ||
		tx[pypoolotel.WaitDurationKey].AsFloat64() != 0 {
		t.Errorf("transaction span: %v", spans[2].Attributes)
	}
}

func TestSpanPerAttemptUnderCrashRetries(t *testing.T) {
	pool, exp, ctx, parent := setup(t, pypool.Config{CrashRetries: 1})
	out, err := pool.Call(ctx, "crash_once", filepath.Join(t.TempDir(), "crashed"))
	if err != nil || out != "survived" {
		t.Fatalf("Call = %v, %v", out, err)
	}
	spans := calls(exp)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want one per attempt", len(spans))
	}
	first, second := attrs(spans[0]), attrs(spans[1])
	if first[pypoolotel.AttemptKey].AsInt64() != 0 || first[pypoolotel.OutcomeKey].AsString() != "crashed" ||
		!first[pypoolotel.RetryKey].AsBool() || spans[0].Status.Code != codes.Error {
		t.Errorf("first attempt: %v %v", spans[0].Attributes, spans[0].Status)
	}
	if second[pypoolotel.AttemptKey].AsInt64() != 1 || second[pypoolotel.OutcomeKey].AsString() != "ok" ||
		spans[1].Status.Code != codes.Unset {
		t.Errorf("second attempt: %v %v", spans[1].Attributes, spans[1].Status)
	}
	if first[pypoolotel.WorkerPidKey] == second[pypoolotel.WorkerPidKey] {
		t.Error("both attempts on one worker")
	}
	for _, s := range spans {
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("%v: attempts are siblings under the caller's span", s.Attributes)
		}
	}
}

// TestConcurrentCalls runs traced calls from several goroutines (for -race).
func TestConcurrentCalls(t *testing.T) {
	pool, exp, ctx, _ := setup(t, pypool.Config{MaxOverflow: 1})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				_, _ = pool.TryCall(ctx, "echo", g*100+i)
			}
		}()
	}
	wg.Wait()
	spans := calls(exp)
	if len(spans) != 40 {
		t.Fatalf("%d spans, want 40", len(spans))
	}
	for _, s := range spans {
		if o := attrs(s)[pypoolotel.OutcomeKey].AsString(); o != "ok" && o != "rejected" {
			t.Errorf("outcome %q", o)
		}
	}
}

func TestNilProviderIsTheGlobalOne(t *testing.T) {
	if pypoolotel.NewTracer(nil) == nil {
		t.Fatal("nil Tracer")
	}
}
