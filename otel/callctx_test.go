package pypoolotel_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/pypool/pypool"
	pypoolotel "github.com/pypool/pypool/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceContextReachesPython: the traceparent Python reads names the
// attempt's span (trace id, span id, sampled flag), intact and well formed,
// and the caller's tracestate comes with it; metadata still travels beside it.
func TestTraceContextReachesPython(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_ctxmod",
		PythonPath: []string{filepath.Join("..", "testdata", "pymod")},
		Size:       1,
		Tracer:     pypoolotel.NewTracer(tp),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pool.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})

	// A caller whose trace came from upstream with a tracestate.
	state, err := trace.ParseTraceState("vendor=abc,other=1")
	if err != nil {
		t.Fatal(err)
	}
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: state, Remote: true,
	})
	ctx = trace.ContextWithRemoteSpanContext(ctx, remote)
	ctx, parent := tp.Tracer("test").Start(ctx, "request")
	ctx = pypool.WithMetadata(ctx, map[string]string{"tenant": "acme"})
	got, err := pypool.CallAs[map[string]any](ctx, pool, "context")
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	spans := calls(exp)
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	sc := spans[0].SpanContext
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	if got["traceparent"] != want {
		t.Errorf("Python's traceparent %q, want %q (the attempt's span)", got["traceparent"], want)
	}
	if sc.TraceID() != remote.TraceID() {
		t.Errorf("the span is not in the caller's trace")
	}
	if got["tracestate"] != "vendor=abc,other=1" {
		t.Errorf("Python's tracestate %q", got["tracestate"])
	}
	carrier, _ := got["trace_context"].(map[string]any)
	if carrier["traceparent"] != want || carrier["tracestate"] != "vendor=abc,other=1" {
		t.Errorf("pypool.trace_context() = %v", got["trace_context"])
	}
	if md, _ := got["metadata"].(map[string]any); md["tenant"] != "acme" {
		t.Errorf("metadata %v", got["metadata"])
	}
}
