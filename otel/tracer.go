// Package pypoolotel traces pypool calls with OpenTelemetry: set the Tracer
// it returns as pypool.Config.Tracer (or add it to a running pool with
// pypool.Pool.AddTracer) and every call gets a client span.
//
//	pool, err := pypool.New(ctx, pypool.Config{
//		Module: "my_module",
//		Tracer: pypoolotel.NewTracer(otel.GetTracerProvider()),
//	})
//
// It is a module of its own (github.com/pypool/pypool/otel), so that
// pypool itself does not depend on OpenTelemetry.
//
// Each attempt of a call is one span named "pypool.call <function>", of
// kind client, a child of the span in the caller's context. Its attributes:
//
//	pypool.function        the Python function's name
//	pypool.args.count      positional arguments
//	pypool.kwargs.count    keyword arguments
//	pypool.attempt         0, or n for the n-th retry under Config.CrashRetries
//	pypool.transaction     true for a Worker.Call inside Pool.Transaction
//	pypool.worker.pid      the worker's process id (absent when none was checked out)
//	pypool.wait.duration   seconds spent waiting for a worker
//	pypool.request.size    bytes of the encoded call
//	pypool.reply.size      bytes of the reply message
//	pypool.outcome         pypool.Outcome's name: "ok", "python_error", "crashed", ...
//	pypool.retry           true when the pool tries the call again
//	error.type             on failure: the Python exception's type, else the outcome
//
// plus an event "pypool.worker.acquired" when the attempt gets its worker.
//
// The span's W3C trace context (traceparent, and tracestate when there is
// one) travels with the call (pypool.WithTraceContext): Python code reads
// it with pypool.trace_context(), a carrier for
// opentelemetry.propagate.extract, so that its spans are children of the
// attempt's span (docs/call-context.md).
// A failed attempt has the status Error with the error's text and an
// "exception" event; for a Python exception, that event carries its Python
// type, message and traceback (exception.type, exception.message,
// exception.stacktrace).
package pypoolotel

import (
	"context"
	"errors"

	"github.com/pypool/pypool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/pypool/pypool/otel"

// Attribute keys of the spans (see the package documentation).
const (
	FunctionKey     = attribute.Key("pypool.function")
	ArgsCountKey    = attribute.Key("pypool.args.count")
	KwargsCountKey  = attribute.Key("pypool.kwargs.count")
	AttemptKey      = attribute.Key("pypool.attempt")
	TransactionKey  = attribute.Key("pypool.transaction")
	WorkerPidKey    = attribute.Key("pypool.worker.pid")
	WaitDurationKey = attribute.Key("pypool.wait.duration")
	RequestSizeKey  = attribute.Key("pypool.request.size")
	ReplySizeKey    = attribute.Key("pypool.reply.size")
	OutcomeKey      = attribute.Key("pypool.outcome")
	RetryKey        = attribute.Key("pypool.retry")
)

// Tracer is a pypool.Tracer that makes an OpenTelemetry span per attempt
// of a call. It is safe for concurrent use.
type Tracer struct {
	tracer trace.Tracer
}

var _ pypool.Tracer = (*Tracer)(nil)

// NewTracer returns a Tracer whose spans come from tp; nil means the global
// provider (otel.GetTracerProvider) at the time of the call.
func NewTracer(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &Tracer{tracer: tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))}
}

// TraceCallStart starts the attempt's span.
func (t *Tracer) TraceCallStart(ctx context.Context, _ *pypool.Pool, data pypool.TraceCallStartData) context.Context {
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs,
		FunctionKey.String(data.Function),
		ArgsCountKey.Int(data.Args),
		KwargsCountKey.Int(data.Kwargs),
		AttemptKey.Int(data.Attempt),
	)
	if data.Transaction {
		attrs = append(attrs, TransactionKey.Bool(true))
	}
	ctx, span := t.tracer.Start(ctx, "pypool.call "+data.Function,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if sc := span.SpanContext(); sc.IsValid() {
		// The span travels with the call: Python's spans can be its children.
		ctx = pypool.WithTraceContext(ctx, traceparent(sc), sc.TraceState().String())
	}
	return ctx
}

// traceparent is sc as a W3C traceparent header (version 00).
func traceparent(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// TraceCallWorker records the worker and the wait on the span.
func (t *Tracer) TraceCallWorker(ctx context.Context, _ *pypool.Pool, data pypool.TraceCallWorkerData) {
	span := trace.SpanFromContext(ctx)
	attrs := []attribute.KeyValue{WorkerPidKey.Int(data.Pid), WaitDurationKey.Float64(data.Wait.Seconds())}
	span.SetAttributes(attrs...)
	span.AddEvent("pypool.worker.acquired", trace.WithAttributes(attrs...))
}

// TraceCallEnd records the outcome and ends the span.
func (t *Tracer) TraceCallEnd(ctx context.Context, _ *pypool.Pool, data pypool.TraceCallEndData) {
	span := trace.SpanFromContext(ctx)
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		OutcomeKey.String(data.Outcome.String()),
		WaitDurationKey.Float64(data.Wait.Seconds()),
	)
	if data.RequestBytes > 0 {
		attrs = append(attrs, RequestSizeKey.Int(data.RequestBytes))
	}
	if data.ReplyBytes > 0 {
		attrs = append(attrs, ReplySizeKey.Int(data.ReplyBytes))
	}
	if data.Retry {
		attrs = append(attrs, RetryKey.Bool(true))
	}
	if data.Err != nil {
		var pyErr *pypool.PythonError
		if data.Outcome == pypool.OutcomePythonError && errors.As(data.Err, &pyErr) {
			attrs = append(attrs, semconv.ErrorTypeKey.String(pyErr.Type))
			span.AddEvent(semconv.ExceptionEventName, trace.WithAttributes(
				semconv.ExceptionTypeKey.String(pyErr.Type),
				semconv.ExceptionMessageKey.String(pyErr.Message),
				semconv.ExceptionStacktraceKey.String(pyErr.Traceback),
			))
		} else {
			attrs = append(attrs, semconv.ErrorTypeKey.String(data.Outcome.String()))
			span.RecordError(data.Err)
		}
		span.SetStatus(codes.Error, data.Err.Error())
	}
	span.SetAttributes(attrs...)
	span.End()
}
