// deprecated.go keeps public names that were replaced before 1.0, so that
// code written against them still compiles and runs. Each says what
// replaces it; nothing inside the package uses them.

package pypool

import (
	"context"
	"time"
)

// CallInfo describes one call attempt that ended, for a CallObserver.
//
// Deprecated: use a Tracer (Config.Tracer or Pool.AddTracer), whose
// TraceCallEndData carries the same facts and more.
type CallInfo struct {
	Function string        // the Python function's name
	Wait     time.Duration // time spent waiting for a worker; 0 for a Worker.Call (the Transaction waited)
	Duration time.Duration // from the attempt's start to its end, Wait included
	Outcome  Outcome       // how it ended: OutcomeOf(Err)
	Err      error         // what the attempt ended with
}

// CallObserver is told about every call attempt that ends.
//
// Deprecated: use a Tracer; ObserveCall is its TraceCallEnd.
type CallObserver interface {
	ObserveCall(CallInfo)
}

// Observe adds o to the hooks told about every call attempt that ends from
// now on, as a Tracer whose TraceCallEnd calls o.ObserveCall. A call
// retried after a crash (Config.CrashRetries) is told once per attempt.
// It cannot be undone.
//
// Deprecated: use Pool.AddTracer, whose returned func removes the tracer.
func (p *Pool) Observe(o CallObserver) {
	if o != nil {
		p.AddTracer(observerTracer{o})
	}
}

// observerTracer is the Tracer that Observe adds for a CallObserver.
type observerTracer struct{ o CallObserver }

// TraceCallStart lets the call run on its own context.
func (observerTracer) TraceCallStart(ctx context.Context, _ *Pool, _ TraceCallStartData) context.Context {
	return ctx
}

// TraceCallWorker does nothing: an observer is told of the end only.
func (observerTracer) TraceCallWorker(context.Context, *Pool, TraceCallWorkerData) {}

// TraceCallEnd tells the observer of the attempt that ended.
func (t observerTracer) TraceCallEnd(_ context.Context, _ *Pool, d TraceCallEndData) {
	t.o.ObserveCall(CallInfo{Function: d.Function, Wait: d.Wait, Duration: d.Duration, Outcome: d.Outcome, Err: d.Err})
}
