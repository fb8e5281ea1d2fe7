package pypool

// tracer.go is the pool's one hook into its calls, the Tracer (set in
// Config.Tracer, or added to a running pool with Pool.AddTracer, which
// returns its remove func): what it is
// told and when. Spans (the otel subpackage) and metrics (the prometheus
// subpackage) both use it. The one attempt path (Pool.attempt in call.go)
// tells it through a callTrace, whether a Tracer is set or not: without one
// its hooks return at once.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// Tracer is told about every call a pool makes, in the style of pgx's
// QueryTracer, so that spans (see the subpackage
// github.com/pypool/pypool/otel for OpenTelemetry), logs or metrics (the
// subpackage github.com/pypool/pypool/prometheus) can be attached. It is the
// pool's one hook into its calls: set it in Config.Tracer, or add one to a
// running pool with Pool.AddTracer (as a metrics collector built from a pool
// does). None (the default) costs nothing.
//
// Every call is traced: Pool.Call, Pool.TryCall, CallAs and CallBytes on a
// *Pool or a *Worker, Pool.Ping (as a call of the runtime's no-op
// "_pypool_ping" with TraceCallStartData.Probe set), and Worker.Call inside Pool.Transaction; Pool.Stream, StreamAs
// and Worker.Stream as one call that lasts the whole loop (its sizes are
// not counted). The checkout of a Transaction itself is not a call and is
// not traced, nor are the calls made with a callback's context (they run
// inside the traced call that waits for the callback). A Tracer that
// counts calls for metrics should leave probes out (TraceCallEndData.Probe),
// as Stats does (Stats.Pings) and the prometheus subpackage's collector.
//
// For one attempt of a call, the hooks run in the caller's goroutine in this
// order: TraceCallStart, then TraceCallWorker once a worker is checked out
// (not when none was: a rejection, a closed pool, a context that ended while
// waiting), then TraceCallEnd, exactly once. Hooks of different calls run
// concurrently: a Tracer must be safe for concurrent use. The hooks run on
// the call's path: they should be quick and must not call the pool.
//
// Retries (Config.CrashRetries): each attempt is traced on its own, from
// TraceCallStart to TraceCallEnd, with TraceCallStartData.Attempt counting
// from 0, so that every attempt has its own worker, wait and outcome (as
// Stats.CallsSent counts every attempt; CallsStarted counts the call
// once). An attempt after which the pool tries
// again ends with TraceCallEndData.Retry set. The later attempts start from
// the caller's context, not from the context an earlier attempt's
// TraceCallStart returned: their spans are siblings.
type Tracer interface {
	// TraceCallStart is called when an attempt of a call starts, before
	// the pool looks for a worker. The context it returns is the one that
	// TraceCallWorker and TraceCallEnd of this attempt receive, so that a
	// span started here can be ended there; the call itself keeps running
	// on the caller's context (a Tracer can not change its deadline). It
	// must not return nil.
	TraceCallStart(ctx context.Context, pool *Pool, data TraceCallStartData) context.Context

	// TraceCallWorker is called when the attempt has a worker, just before
	// the call is sent to it.
	TraceCallWorker(ctx context.Context, pool *Pool, data TraceCallWorkerData)

	// TraceCallEnd is called when the attempt ended, whatever the outcome;
	// outside a Transaction, after its worker (if any) went back to the
	// pool.
	TraceCallEnd(ctx context.Context, pool *Pool, data TraceCallEndData)
}

// TraceCallStartData is what Tracer.TraceCallStart is told.
type TraceCallStartData struct {
	// Function is the name of the Python function called ("_pypool_ping"
	// for Pool.Ping).
	Function string
	// Args is the number of positional arguments, and Kwargs the number of
	// keyword arguments (the entries of a trailing Kwargs). Their encoded
	// size is known only once the call is encoded for its worker: it is in
	// TraceCallEndData.RequestBytes.
	Args, Kwargs int
	// Attempt is 0 for a call's first attempt and n for its n-th retry
	// under Config.CrashRetries.
	Attempt int
	// Transaction says the call is made through the Worker of a
	// Pool.Transaction: it waits for no worker and is never retried.
	Transaction bool
	// Probe says the call is Pool.Ping's readiness probe, a no-op of the
	// runtime rather than a call of the module: spans may show it, call
	// metrics should leave it out (Stats counts it in Pings).
	Probe bool
}

// TraceCallWorkerData is what Tracer.TraceCallWorker is told.
type TraceCallWorkerData struct {
	// Pid is the worker process's id.
	Pid int
	// Wait is how long the attempt waited for the worker: from the return
	// of TraceCallStart to the checkout (including the start of a worker it
	// waited for). 0 inside a Transaction, whose worker is already checked
	// out.
	Wait time.Duration
}

// TraceCallEndData is what Tracer.TraceCallEnd is told.
type TraceCallEndData struct {
	// Function is the name of the Python function called, as in
	// TraceCallStartData, so that a Tracer that only counts (a metrics
	// collector) needs no state between the hooks.
	Function string
	// Outcome classifies Err; OutcomeOK when Err is nil.
	Outcome Outcome
	// Err is the error the attempt ended with, as the caller gets it (for
	// an attempt that is retried, the caller gets the last attempt's).
	Err error
	// Duration is the attempt's duration from the return of
	// TraceCallStart: waiting for a worker, the round trip to Python and
	// decoding the result (TraceCallStart itself is not counted).
	Duration time.Duration
	// Wait is the time spent waiting for a worker, also when none came
	// (the whole Duration then); 0 inside a Transaction.
	Wait time.Duration
	// Pid is the worker's process id, 0 when the attempt got no worker.
	Pid int
	// RequestBytes is the size of the encoded call (the message as
	// Config.MaxMessageSize counts it: the pipe's bytes plus the values
	// passed through shared memory), and ReplyBytes the size of the reply
	// message read from the pipe (a value passed through shared memory
	// counts by its reference only). Either is 0 when the call did not get
	// that far (no worker, an argument not encodable, a crash before the
	// reply).
	RequestBytes, ReplyBytes int
	// Retry says the pool tries the call again on another worker
	// (Config.CrashRetries) after its start backoff, unless the caller's
	// context ends first; Err is then not (yet) what the caller gets.
	Retry bool
	// Probe is TraceCallStartData.Probe: the call is Pool.Ping's probe.
	Probe bool
}

// AddTracer adds t to the tracers told about every attempt of a call that
// starts from now on, after Config.Tracer and those added before it, each
// with the context its own TraceCallStart returned. It is for what is built
// from a running pool, such as the prometheus subpackage's collector.
//
// The func it returns removes t (that addition of it: t added twice is
// told twice until both are removed); calling it again does nothing. It is
// safe while calls run: an attempt tells the tracers that were there when
// it started, from its TraceCallStart to its TraceCallEnd, so a tracer
// removed (or added) meanwhile still sees (or does not see) the whole of
// it. A nil t is ignored, and its func does nothing.
//
//	remove := pool.AddTracer(t)
//	defer remove()
func (p *Pool) AddTracer(t Tracer) (remove func()) {
	if t == nil {
		return func() {}
	}
	e := &addedTracer{t}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setTracersLocked(append(p.tracerListLocked(), e))
	var once sync.Once
	return func() { once.Do(func() { p.removeTracer(e) }) }
}

// addedTracer is one addition by AddTracer: its identity is what the
// remove func takes away, whatever t's type (it may not be comparable).
type addedTracer struct{ Tracer }

// removeTracer removes e from the pool's tracers.
func (p *Pool) removeTracer(e *addedTracer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var kept tracerList
	for _, t := range p.tracerListLocked() {
		if t != Tracer(e) {
			kept = append(kept, t)
		}
	}
	p.setTracersLocked(kept)
}

// tracerListLocked is a copy of the tracers attempts tell now, as a list.
func (p *Pool) tracerListLocked() tracerList {
	switch cur := p.tracer().(type) {
	case nil:
		return nil
	case tracerList:
		return append(tracerList(nil), cur...)
	default:
		return tracerList{cur}
	}
}

// setTracersLocked makes list the tracers of the attempts that start from
// now on: one Tracer as itself, several as a tracerList, none as nil. The
// lists are never changed once stored: an attempt keeps the one it loaded.
func (p *Pool) setTracersLocked(list tracerList) {
	var next Tracer
	switch len(list) {
	case 0:
	case 1:
		next = list[0]
	default:
		next = list
	}
	p.tracers.Store(&next)
}

// tracer is the Tracer an attempt that starts now tells: Config.Tracer, or
// once AddTracer ran, the tracers it and its remove funcs left; nil when
// there is none.
func (p *Pool) tracer() Tracer {
	if t := p.tracers.Load(); t != nil {
		return *t
	}
	return p.cfg.Tracer
}

// tracerList is several tracers told as one, in order. Each hook after
// TraceCallStart gives each tracer the context its own TraceCallStart
// returned, kept in the context the list returns, which also carries the
// first trace context one of them set (WithTraceContext).
type tracerList []Tracer

// tracerContexts is the key of the contexts of a tracerList's tracers.
type tracerContexts struct{}

// TraceCallStart implements Tracer.
func (l tracerList) TraceCallStart(ctx context.Context, pool *Pool, data TraceCallStartData) context.Context {
	ctxs := make([]context.Context, len(l))
	caller := metaOf(ctx)
	meta := caller
	for i, t := range l {
		if ctxs[i] = t.TraceCallStart(ctx, pool, data); ctxs[i] == nil {
			ctxs[i] = ctx
		} else if meta == caller {
			meta = metaOf(ctxs[i]) // the first trace context a tracer set (WithTraceContext) travels with the call
		}
	}
	if meta != caller {
		ctx = context.WithValue(ctx, callMetaKey{}, meta)
	}
	return context.WithValue(ctx, tracerContexts{}, ctxs)
}

// TraceCallWorker implements Tracer.
func (l tracerList) TraceCallWorker(ctx context.Context, pool *Pool, data TraceCallWorkerData) {
	ctxs := ctx.Value(tracerContexts{}).([]context.Context)
	for i, t := range l {
		t.TraceCallWorker(ctxs[i], pool, data)
	}
}

// TraceCallEnd implements Tracer.
func (l tracerList) TraceCallEnd(ctx context.Context, pool *Pool, data TraceCallEndData) {
	ctxs := ctx.Value(tracerContexts{}).([]context.Context)
	for i, t := range l {
		t.TraceCallEnd(ctxs[i], pool, data)
	}
}

// Outcome classifies how a call ended, for tracing and metrics.
type Outcome int

const (
	// OutcomeOK: the call returned a result.
	OutcomeOK Outcome = iota
	// OutcomePythonError: the function raised, or the Python runtime
	// refused the call; Err holds a *PythonError whose Code says which.
	OutcomePythonError
	// OutcomeCrashed: the worker died during the call (ErrWorkerCrashed).
	OutcomeCrashed
	// OutcomeDeadline: the context's deadline (or Config.CallTimeout)
	// passed, while waiting for a worker or while Python ran.
	OutcomeDeadline
	// OutcomeCanceled: the context was canceled.
	OutcomeCanceled
	// OutcomeRejected: the pool refused the call at once
	// (ErrPoolExhausted: a call with NoWait, or TryCall, with all workers
	// busy, or Config.MaxWaiting callers already waiting).
	OutcomeRejected
	// OutcomeClosed: the pool was closed before or during the call
	// (ErrPoolClosed).
	OutcomeClosed
	// OutcomeStartFailed: no worker could be started for the call
	// (ErrWorkerStart; an import failure also holds a *PythonError).
	OutcomeStartFailed
	// OutcomeError: any other error: an argument not encodable, a result
	// not decodable, a message too large for Go, a protocol violation, a
	// Worker used after its transaction.
	OutcomeError
)

var outcomeNames = [...]string{"ok", "python_error", "crashed", "deadline", "canceled", "rejected", "closed", "start_failed", "error"}

// String returns the outcome's name in snake case ("ok", "python_error",
// "crashed", "deadline", "canceled", "rejected", "closed", "start_failed",
// "error"): a bounded set, fit for metric labels and span attributes.
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// OutcomeOf classifies an error returned by a call of this package: nil is
// OutcomeOK. A Worker.Call whose worker was stopped by Close is
// OutcomeClosed, not OutcomeCrashed.
func OutcomeOf(err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, ErrPoolClosed):
		return OutcomeClosed
	case errors.Is(err, ErrPoolExhausted):
		return OutcomeRejected
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeDeadline
	case errors.Is(err, context.Canceled):
		return OutcomeCanceled
	case errors.Is(err, ErrWorkerStart):
		return OutcomeStartFailed
	case errors.Is(err, ErrWorkerCrashed):
		return OutcomeCrashed
	case isPythonError(err):
		return OutcomePythonError
	}
	return OutcomeError
}

// isPythonError reports whether err holds a *PythonError. (Apart from
// OutcomeOf, so that a call without error does not allocate its target.)
func isPythonError(err error) bool {
	var pyErr *PythonError
	return errors.As(err, &pyErr)
}
