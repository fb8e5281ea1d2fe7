package pypool

// call.go is every way to call Python: Pool.Call, TryCall (Call with
// NoWait, the context option with which any call sheds load), CallAs,
// CallBytes, Ping (a probe, counted apart), Worker.Call, Pool.Stream, Worker.Stream, StreamAs and
// the calls made with a callback's context all go through Pool.call, the
// one attempt path: it records and observes the call, checks a worker out
// (or uses the transaction's, or the one that waits for the callback),
// traces the attempt, runs the exchange (a call or a stream) on the
// worker's process, retries per Config.CrashRetries and checks the worker
// back in.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pypool/pypool/internal/wire"
)

// Kwargs holds Python keyword arguments. Passed as the last argument of a
// call, it becomes the function's **kwargs (anywhere else it is an error
// wrapping ErrArgNotEncodable):
//
//	pool.Call(ctx, "greet", "Ada", pypool.Kwargs{"greeting": "Hello"})
type Kwargs map[string]any

// splitKwargs separates a trailing Kwargs from the positional arguments.
func splitKwargs(args []any) ([]any, Kwargs) {
	if n := len(args); n > 0 {
		if kw, ok := args[n-1].(Kwargs); ok {
			return args[:n-1], kw
		}
	}
	return args, nil
}

// decodeFunc decodes a RESULT's value before the read buffer is reused;
// owned says the value may keep b (see frameReader.next), codec holds the
// pool's struct tag and extensions.
type decodeFunc func(b []byte, owned bool, codec *valueCodec) error

// readFunc reads a call's next frame from f, as frameReader.next does,
// for the call id; elsewhere counts the bytes of the frame it put
// somewhere other than body (bytesResult.readFrame: into CallBytes's
// buffer), for the Tracer's sizes.
type readFunc func(f *frameReader, id uint64) (body []byte, owned bool, elsewhere int, err error)

// Call runs the public function fn of the pool's module with args and returns
// its result, decoded as the type table of docs/types.md says: a numpy.ndarray
// becomes an Array, a value of Config.Extensions its Go type. A Kwargs
// value as the last argument becomes Python keyword arguments.
//
// Call waits for a free worker until ctx ends (or Config.CallTimeout, when
// ctx has no deadline), unless ctx carries NoWait or Config.MaxWaiting is
// NoWaiting: then it sheds load instead of queueing (see NoWait). If ctx
// ends while Python runs the function, Call returns ctx's error at once;
// the worker is interrupted (KeyboardInterrupt) and goes back to the pool
// if it answers within Config.InterruptGrace, otherwise it is replaced. With Config.CrashRetries, a call whose worker
// crashed is tried again on another worker.
func (p *Pool) Call(ctx context.Context, fn string, args ...any) (any, error) {
	var r valueResult
	err := p.call(ctx, nil, fn, args, exchange{into: r.decode})
	return r.v, err
}

// TryCall is Call with NoWait, poolboy's non-blocking checkout, kept as
// the shorthand of
//
//	pool.Call(pypool.NoWait(ctx), fn, args...)
//
// It takes an idle worker; if none is idle and fewer than Size+MaxOverflow
// workers serve or start, it has one started and waits for that start only
// (bounded by ctx; when the free slot is still held by a worker being
// stopped, the start waits for its exit, at most Config.StopTimeout);
// otherwise it fails at once with ErrPoolExhausted, so that a saturated
// service can shed load. On a pool shared with callers that wait, they are
// served first (see NoWait).
func (p *Pool) TryCall(ctx context.Context, fn string, args ...any) (any, error) {
	return p.Call(NoWait(ctx), fn, args...)
}

// NoWait returns a context with which a call on a Pool sheds load instead
// of queueing behind other callers, whatever its form: Pool.Call, CallAs,
// CallBytes, Pool.Stream, StreamAs, Pool.Transaction (its checkout) and
// Pool.Ping. Such a call takes an idle worker; if none is idle and fewer
// than Size+MaxOverflow workers serve or start, it has one started and
// waits for that start only (bounded by ctx); otherwise it fails at once
// with ErrPoolExhausted. Config.MaxWaiting set to NoWaiting makes every
// call on the pool behave so.
//
// The option is read where a worker is checked out, once per attempt (a
// retry after a crash, Config.CrashRetries, sheds too): the calls through
// a Worker inside a Transaction, and the calls made with a callback's
// context (they run on the worker that waits for the callback), check
// nothing out and are not affected. Like a deadline, it passes on to the
// contexts derived from ctx.
//
// A call with NoWait does not go ahead of callers that wait: a worker
// checked in goes to the caller waiting longest (first come, first
// served), so on a pool shared with waiting callers, calls with NoWait are
// refused for as long as a queue exists, which under load is most of the
// time. Give sheddable calls a pool of their own, or let every caller wait
// in a bounded queue (Config.MaxWaiting and deadlines): docs/operating.md,
// "Deadlines and shedding in a service", measures both.
func NoWait(ctx context.Context) context.Context {
	if noWait(ctx) {
		return ctx
	}
	return context.WithValue(ctx, noWaitKey{}, true)
}

// noWaitKey is the context key of NoWait.
type noWaitKey struct{}

// noWait reports whether ctx carries NoWait.
func noWait(ctx context.Context) bool {
	v, _ := ctx.Value(noWaitKey{}).(bool)
	return v
}

// valueResult receives the result of a Call, TryCall or Worker.Call,
// decoded as Call documents.
type valueResult struct{ v any }

// decode is valueResult's decodeFunc.
func (r *valueResult) decode(b []byte, owned bool, codec *valueCodec) (err error) {
	r.v, err = decodeValue(b, owned, codec)
	return err
}

// Caller is what CallAs and StreamAs call through: a *Pool, or a *Worker inside a
// transaction.
type Caller interface {
	callInto(ctx context.Context, fn string, args []any, x exchange) error
	streamInto(ctx context.Context, fn string, args []any, each itemFunc) error
}

// CallAs is Call with the result decoded straight into a T: a struct (fields
// matched by their `msgpack:"name"` tags, else by Config.StructTag, else by
// name), a slice, a map or a scalar. A result that does not fit T gives an
// error wrapping ErrResultNotDecodable that says where and what:
//
//	result["items"][3]["score"]: a Python float does not fit Go int64 (field Item.Score)
//
// numpy arrays: an ndarray returned as a whole decodes into an Array as it
// is, and a 1-d one into a []E of its own element type (a []float64 for
// float64, ...) without an element-by-element copy; another dtype is an
// error wrapping ErrDType. Inside T, an Array (field, element or map value)
// takes an ndarray as it is; where a part of T needs numbers (a
// [][]float64, an int64 field), ndarrays are decoded as nested lists of
// their elements instead, in all of T (an Array field then holds the
// elements with the dtype inferred from the list). Values of
// Config.Extensions fill the parts of T of their Go type.
//
//	type Point struct{ X, Y float64 }
//	pt, err := pypool.CallAs[Point](ctx, pool, "centroid", points)
func CallAs[T any](ctx context.Context, c Caller, fn string, args ...any) (T, error) {
	var out T
	err := c.callInto(ctx, fn, args, exchange{into: func(b []byte, _ bool, codec *valueCodec) error {
		return decodeValueInto(b, &out, codec)
	}})
	return out, err
}

// CallBytes calls fn, whose result must be bytes (or a bytearray or a
// memoryview), and appends the result to buf, returning the extended
// slice: like strconv.AppendInt, it lets a loop of calls with large
// results reuse one buffer (pass buf[:0]) instead of allocating one per
// call, which for results of a MiB or more costs Go's allocator and
// collector more than the call itself. A result of another type gives an
// error wrapping ErrResultNotDecodable that says how to fix it.
//
//	buf, err = pypool.CallBytes(ctx, pool, buf[:0], "render_png", scene)
//
// Through the pipes, a large result is read from the pipe straight into
// buf's spare capacity (grown as append grows it), with no copy.
func CallBytes(ctx context.Context, c Caller, buf []byte, fn string, args ...any) ([]byte, error) {
	r := &bytesResult{buf: buf}
	err := c.callInto(ctx, fn, args, exchange{into: r.decode, read: r.readFrame})
	return r.buf, err
}

// bytesResult is CallBytes's result: the buffer a bytes result is appended
// to. The reply loop reads a large RESULT's bytes from the pipe straight
// into its spare capacity (readFrame); decode then only extends buf over
// them.
type bytesResult struct {
	buf  []byte
	read int // bytes of the result the reply loop read after buf (readReplies), not yet taken
}

// readFrame is the readFunc of a CallBytes call's reply loop: the
// call's RESULT (call id), when its value is bytes, has them read from the
// pipe straight into the spare capacity of the caller's buffer, with no
// copy and no body of the reader's (resultBytesHead). A read cut off on
// the way leaves the buffer alone from then on
// (wire.FrameReader.NextSplit), whatever the drain reads later.
func (r *bytesResult) readFrame(f *frameReader, id uint64) (body []byte, owned bool, elsewhere int, err error) {
	body, owned, out, err := f.nextSplit(resultBytesHead, id, r.buf)
	if out == nil {
		return body, owned, 0, err
	}
	r.read = len(out) - len(r.buf)
	r.buf = out[:len(r.buf)]
	return body, owned, r.read, err
}

// decode is bytesResult's decodeFunc: b is the whole value, or, when the
// bytes were read after buf (readFrame), the header of the bin only.
func (r *bytesResult) decode(b []byte, _ bool, codec *valueCodec) error {
	if n := r.read; n > 0 {
		r.read = 0
		if binHeaderOf(b) != n {
			return fmt.Errorf("%w: a RESULT read into the buffer does not hold its %d bytes", ErrProtocol, n)
		}
		r.buf = r.buf[:len(r.buf)+n]
		return nil
	}
	var err error
	r.buf, err = appendBytesResult(r.buf, b, codec)
	return err
}

// appendBytesResult appends the bytes that the msgpack value b holds (a
// bin, or a reference to the shared memory) to buf.
func appendBytesResult(buf, b []byte, codec *valueCodec) ([]byte, error) {
	d := wire.NewReader(b)
	c := d.Byte()
	switch {
	case c >= 0xc4 && c <= 0xc6: // bin 8/16/32
		p := d.Take(d.Size(1 << (c - 0xc4)))
		if d.Err() == nil && d.Len() == 0 {
			return append(buf, p...), nil
		}
	case wire.IsExt(c):
		code, payload := d.ExtBody(c)
		if d.Err() == nil && d.Len() == 0 && code == extShmBytes && codec != nil && codec.shared != nil {
			return newSharedReader(codec.shared, len(b)).appendBytes(buf, payload)
		}
	}
	got, err := decodeValue(b, false, codec)
	if err != nil {
		return buf, err
	}
	return buf, fmt.Errorf("%w: the result is a Python %s, not bytes: %s", ErrResultNotDecodable, pythonType(got), bytesFix(got))
}

// bytesFix says how to fix a CallBytes whose function returned got, which
// is not bytes.
func bytesFix(got any) string {
	const use = "CallBytes takes a bytes, bytearray or memoryview result"
	switch got.(type) {
	case string:
		return use + ": return text.encode() from Python, or call the function with CallAs[string]"
	case Array:
		return use + ": return array.tobytes() from Python, or call the function with CallAs[pypool.Array]"
	}
	return use + ": return one from Python, or call the function with Call or CallAs"
}

func (p *Pool) callInto(ctx context.Context, fn string, args []any, x exchange) error {
	return p.call(ctx, nil, fn, args, x)
}

func (p *Pool) streamInto(ctx context.Context, fn string, args []any, each itemFunc) error {
	return p.call(ctx, nil, fn, args, exchange{each: each})
}

func (w *Worker) callInto(ctx context.Context, fn string, args []any, x exchange) error {
	return w.pool.call(ctx, w, fn, args, x)
}

func (w *Worker) streamInto(ctx context.Context, fn string, args []any, each itemFunc) error {
	return w.pool.call(ctx, w, fn, args, exchange{each: each})
}

// An exchange says what one attempt runs on a worker's process (see
// Pool.exchange): a call, whose result goes to into, or a stream (each
// set), whose items go to each. It holds only these functions (a call's
// into and, for CallBytes, read; a stream's each), which the process side
// does not keep, so that it costs no allocation: the function's name and arguments travel beside it
// (escape analysis does not tell a struct's fields apart, and arguments
// do escape).
type exchange struct {
	into  decodeFunc // a call's
	read  readFunc   // a call's way of reading its frames (CallBytes's); nil: the reader's
	each  itemFunc   // a stream's
	probe bool       // a readiness probe (Pool.Ping), not a call of the module
}

// kind names the exchange in errors.
func (x exchange) kind() string {
	if x.each != nil {
		return "stream"
	}
	return "call"
}

// call is the one path of every call to Python: it records the call
// (Stats), applies Config.CallTimeout, and runs x (fn with
// args, which may end with Kwargs) in attempts until one succeeds or may not be retried (Config.CrashRetries:
// calls outside a transaction only; a stream never is, its loop has seen
// items). w is the transaction's worker, nil for a call on the pool, which
// checks one out (waiting behind other callers unless ctx carries NoWait
// or Config.MaxWaiting is NoWaiting: Pool.checkout). A call on
// the pool made with the context of one of its workers' callbacks runs on
// that worker, which waits for the callback, without a checkout, a trace
// or a retry (the worker is the outer call's); so does a call on a
// transaction's w made with the context of a callback that w waits for
// (from a Call or a Stream on it: not a call from the loop's body).
func (p *Pool) call(ctx context.Context, w *Worker, fn string, args []any, x exchange) (err error) {
	rec := p.callBegin(fn, x.probe)
	defer func() { p.callEnd(&rec, err) }()
	ctx, cancel, timed := p.withCallTimeout(ctx)
	defer cancel()
	if timed {
		defer func() { err = p.callTimedOut(ctx, err) }() // before callEnd: what its caller sees
	}
	if m := metaOf(ctx); m != nil && m.err != nil {
		return m.err // before any worker is used
	}
	if p.spec.callbacks != nil {
		if s := scopeOf(ctx); s != nil && s.proc.spec == p.spec && (w == nil || s.proc == w.pw.proc) {
			cc, _ := callContextOf(ctx, nil, 0)
			return p.exchange(ctx, s.proc, nil, fn, args, x, cc, nil)
		}
	}
	for attempt := 0; ; attempt++ {
		err = p.attempt(ctx, &rec, w, args, x, attempt)
		if err == nil || !p.mayRetry(w, x, err, attempt) || !p.awaitBackoff(ctx, &p.backoff) {
			return err
		}
		p.log.Debug("pypool: retrying a call whose worker failed", "function", fn, "attempt", attempt+1, "error", err)
	}
}

// attempt is one attempt of the call rec: it gets a worker (checkoutPlace:
// checked out, or a place among the async calls in flight on one; or the
// transaction's w), runs x on it between the tracer's hooks (Config.Tracer
// and Pool.AddTracer's; without one they do nothing) and gives the worker
// back (leave) before the attempt's trace ends. The attempt's number
// (attempt+1) and the metadata and trace context of its ctx (or of the
// Tracer's context of the attempt: callContextOf) travel with the call to
// Python.
func (p *Pool) attempt(ctx context.Context, rec *callRecord, w *Worker, args []any, x exchange, attempt int) (err error) {
	ct := p.startTrace(ctx, rec, args, attempt, w != nil)
	defer func() { ct.end(err, err != nil && p.mayRetry(w, x, err, attempt)) }() // after the check-in
	cc, err := callContextOf(ctx, ct.ctx, attempt)
	if err != nil {
		return err // before any worker is used
	}
	var pl place
	if w == nil {
		pl, err = p.checkoutPlace(ctx, rec.fn, x)
		if err != nil {
			return err
		}
		defer p.leave(&pl, rec)
		ct.gotWorker(pl.pw)
	} else {
		if err := w.enter(); err != nil {
			return err
		}
		defer w.leave()
		pl.pw = w.pw
		ct.gotWorker(pl.pw)
		switch {
		case x.each == nil && w.streaming.Load():
			return fmt.Errorf("%w: worker %d: a call from the body of a loop over its Stream", ErrWorkerBusy, w.Pid())
		case x.each != nil && !w.streaming.CompareAndSwap(false, true):
			return fmt.Errorf("%w: worker %d: a Stream from the body of a loop over its Stream", ErrWorkerBusy, w.Pid())
		case x.each != nil:
			defer w.streaming.Store(false)
		}
		if !pl.pw.proc.turn.lockBy(ctx) { // another goroutine's call runs on it
			return fmt.Errorf("pypool: call to %s: waiting for worker %d: %w", rec.fn, w.Pid(), contextCause(ctx))
		}
		defer pl.pw.proc.turn.Unlock()
	}
	return p.exchange(ctx, pl.pw.proc, &pl, rec.fn, args, x, cc, ct.callSizes())
}

// A place is what one attempt holds of its worker: the worker to itself
// (checked out, or a transaction's), or, for a call of an async function
// with Config.AsyncCalls, one place among the calls in flight on it
// (shared; async.go).
type place struct {
	pw      *pooledWorker
	shared  bool
	release placeRelease // shared: who frees the place, once process.callShared has returned
}

// placeRelease says who frees the place of a call of an async function
// on its worker once process.callShared has returned (Pool.leave).
type placeRelease bool

const (
	// releaseNow: the caller, now; the call has ended on the worker, or
	// never reached it.
	releaseNow placeRelease = false
	// releaseLater: the process, through the release it was given, once
	// the call's reply has been read or the worker is gone; the caller
	// gave up (its context ended) and the call's task is being cancelled
	// (cancelShared).
	releaseLater placeRelease = true
)

// checkoutPlace gets an attempt of x (fn with its arguments) its worker:
// a call of an async function on a pool with Config.AsyncCalls, a place
// on one (checkoutShared); any other exchange, a worker of its own
// (checkout).
func (p *Pool) checkoutPlace(ctx context.Context, fn string, x exchange) (place, error) {
	if x.each == nil && !x.probe && p.cfg.AsyncCalls > 0 && p.spec.isAsync(fn) {
		return p.checkoutShared(ctx, fn)
	}
	pw, _, err := p.checkout(ctx)
	return place{pw: pw}, err
}

// leave gives back what an attempt got from checkoutPlace: a worker of its
// own goes through the one check-in (Pool.checkin); a shared place is
// freed (releaseShared), unless the caller gave up on its call, whose
// place is then freed once its task has answered the cancellation
// (releaseLater). A call cut off while Python ran it (its worker is being
// interrupted, or its task cancelled) is recorded in rec, for callEnd to
// count in Stats.Interrupts after its outcome.
func (p *Pool) leave(pl *place, rec *callRecord) {
	switch {
	case !pl.shared:
		if p.checkinCut(pl.pw) {
			rec.interrupts++
		}
	case pl.release == releaseLater:
		rec.interrupts++
	default:
		p.releaseShared(pl.pw)
	}
}

// exchange runs x, fn with args and the call's context cc, on proc (the
// process side: process.call, process.stream, or process.callShared for a
// shared place pl, which learns who frees it; pl is nil for a call made
// with a callback's context) and counts it as sent (Stats.CallsSent; not
// Ping's probe); sizes (nil: not traced) receives a call's encoded sizes
// (a stream's are not counted). A success ends the start backoff (the
// workers work); a probe, which runs none of the module's code, neither
// ends it nor counts as a call the worker served (MaxCallsPerWorker, and
// a worker that dies young: supervise.go's processExited). The end of a
// worker that Close stopped under the exchange is no crash: it is a
// *closedError, which wraps ErrPoolClosed only.
func (p *Pool) exchange(ctx context.Context, proc *process, pl *place, fn string, args []any, x exchange, cc callContext, sizes *callSizes) error {
	var err error
	args, kwargs := splitKwargs(args)
	switch {
	case x.each != nil:
		err = proc.stream(ctx, fn, args, kwargs, cc, x.each)
	case pl != nil && pl.shared:
		pw := pl.pw
		pl.release, err = proc.callShared(ctx, fn, args, kwargs, cc, x.into, sizes, func() { p.releaseShared(pw) })
	default:
		err = proc.call(ctx, fn, args, kwargs, cc, x.into, x.read, sizes)
	}
	if !x.probe {
		p.calls.Add(1)
	} else if err == nil {
		// Its reply counted it as served (process.replied), as the
		// runtime's no-op: not one of MaxCallsPerWorker's calls. Read
		// before and after, served would also count another call's
		// reply in the async mode, where calls share the worker.
		proc.served.Add(-1)
	}
	switch {
	case err == nil && !x.probe:
		p.backoff.callSucceeded()
	case errors.Is(err, ErrWorkerCrashed) && proc.askedToEnd() && p.isClosed():
		return &closedError{pid: proc.pid, fn: fn, kind: x.kind(), probe: x.probe}
	}
	return err
}

// callRecord follows one call through the call path, from callBegin to
// callEnd (one of each per call). It is the one internal hook of the call
// path: the counters of Stats and any other per-call instrument read it.
type callRecord struct {
	fn         string
	probe      bool   // Pool.Ping's: counted in Stats.Pings, not as a call
	interrupts uint64 // its attempts cut off while Python ran them (leave)
}

// callBegin records a call's start (a probe's in Stats.Pings).
func (p *Pool) callBegin(fn string, probe bool) callRecord {
	if probe {
		p.callStats.pings.Add(1)
	} else {
		p.callStats.started.Add(1)
	}
	return callRecord{fn: fn, probe: probe}
}

// callEnd records a call's end with err, its one outcome (a probe's: in
// Stats.PingFailures when it failed).
func (p *Pool) callEnd(rec *callRecord, err error) {
	c := &p.callStats
	if rec.probe {
		if err != nil {
			c.pingFailures.Add(1)
		}
		return
	}
	// finished before its outcome, and its outcome before its interrupt,
	// the reverse of the order Stats reads them in: a snapshot never
	// shows more outcomes than calls finished, nor an interrupt whose
	// call's outcome (its context's end) it does not show.
	c.finished.Add(1)
	outcome := OutcomeOf(err)
	switch outcome {
	case OutcomePythonError:
		c.byOutcome[countPython].Add(1)
	case OutcomeRejected:
		c.byOutcome[countRejected].Add(1)
	case OutcomeDeadline:
		c.byOutcome[countDeadline].Add(1)
	case OutcomeCanceled:
		c.byOutcome[countCanceled].Add(1)
	}
	if rec.interrupts > 0 {
		c.interrupts.Add(rec.interrupts)
	}
}

// ping is Pool.Ping's probe: the runtime's no-op through the one attempt
// path (checkout, exchange, checkin), counted in Stats.Pings and
// PingFailures instead of the call counters, and traced with Probe set.
func (p *Pool) ping(ctx context.Context) error {
	return p.call(ctx, nil, pingFunction, nil, exchange{into: discardResult, probe: true})
}

// discardResult is the decodeFunc of a result nobody reads.
func discardResult([]byte, bool, *valueCodec) error { return nil }

// callSizes receives the encoded sizes of a traced call from process.call.
type callSizes struct {
	request, reply int
}

// callTrace follows one traced attempt from its start to its end; its zero
// value, an attempt without a tracer, does nothing.
type callTrace struct {
	pool   *Pool
	tracer Tracer          // the pool's when the attempt started
	fn     string          // the function called
	probe  bool            // Pool.Ping's probe
	ctx    context.Context // what TraceCallStart returned
	start  time.Time
	wait   time.Duration
	pid    int
	sizes  callSizes
	waited bool // wait is set
}

// startTrace tells the tracer that an attempt of the call rec starts.
// Without a tracer it returns a zero callTrace, whose hooks do nothing.
func (p *Pool) startTrace(ctx context.Context, rec *callRecord, args []any, attempt int, tx bool) callTrace {
	tracer := p.tracer()
	if tracer == nil {
		return callTrace{}
	}
	pos, kwargs := splitKwargs(args)
	tctx := tracer.TraceCallStart(ctx, p, TraceCallStartData{
		Function: rec.fn, Args: len(pos), Kwargs: len(kwargs), Attempt: attempt, Transaction: tx, Probe: rec.probe,
	})
	if tctx == nil {
		tctx = ctx
	}
	return callTrace{pool: p, tracer: tracer, fn: rec.fn, probe: rec.probe, ctx: tctx, start: time.Now(), waited: tx}
}

// gotWorker tells the tracer that the attempt has its worker.
func (ct *callTrace) gotWorker(pw *pooledWorker) {
	if ct.pool == nil {
		return
	}
	if !ct.waited {
		ct.wait, ct.waited = time.Since(ct.start), true
	}
	ct.pid = pw.proc.pid
	ct.tracer.TraceCallWorker(ct.ctx, ct.pool, TraceCallWorkerData{Pid: ct.pid, Wait: ct.wait})
}

// end tells the tracer that the attempt ended with err.
func (ct *callTrace) end(err error, retry bool) {
	if ct.pool == nil {
		return
	}
	d := time.Since(ct.start)
	if !ct.waited {
		ct.wait = d // no worker came
	}
	ct.tracer.TraceCallEnd(ct.ctx, ct.pool, TraceCallEndData{
		Function: ct.fn, Outcome: OutcomeOf(err), Err: err, Duration: d, Wait: ct.wait, Pid: ct.pid,
		RequestBytes: ct.sizes.request, ReplyBytes: ct.sizes.reply, Retry: retry, Probe: ct.probe,
	})
}

// callSizes is where process.call writes the sizes of a traced attempt;
// nil when the attempt is not traced (then they are not computed).
func (ct *callTrace) callSizes() *callSizes {
	if ct.pool == nil {
		return nil
	}
	return &ct.sizes
}

// mayRetry reports whether attempt of x, which failed with err, is tried
// again (Config.CrashRetries): only a call on the pool, not a stream nor a
// call inside a transaction. A call or stream on the pool that never
// reached its worker (errUndelivered: the worker was gone) is tried again
// on another one whatever CrashRetries says, undeliveredRetries times more.
func (p *Pool) mayRetry(w *Worker, x exchange, err error, attempt int) bool {
	if w == nil && attempt < p.cfg.CrashRetries+undeliveredRetries && errors.Is(err, errUndelivered) {
		return true
	}
	return w == nil && x.each == nil && attempt < p.cfg.CrashRetries && retryable(err)
}

// undeliveredRetries bounds the attempts of a call that found its worker
// gone each time, beyond Config.CrashRetries.
const undeliveredRetries = 2

// retryable reports whether a call may be tried again on another worker
// (Config.CrashRetries): its worker crashed or failed to start for a reason
// that may not repeat. Python exceptions and ended contexts never are.
func retryable(err error) bool {
	switch {
	case errors.Is(err, ErrPoolClosed):
		return false
	case errors.Is(err, ErrWorkerCrashed):
		return true
	case errors.Is(err, ErrWorkerStart):
		return !isFatalStart(err)
	}
	return false
}

// withCallTimeout applies Config.CallTimeout to a context without deadline
// (timed: it did).
func (p *Pool) withCallTimeout(ctx context.Context) (_ context.Context, _ context.CancelFunc, timed bool) {
	if p.cfg.CallTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			ctx, cancel := context.WithTimeout(ctx, p.cfg.CallTimeout)
			return ctx, cancel, true
		}
	}
	return ctx, func() {}, false
}

// callTimedOut is err, the error of a call whose context was given
// Config.CallTimeout (ctx), saying so when that deadline ended the call:
// its caller's context has no deadline, so that "context deadline
// exceeded" alone names none it knows of. A stream's whole loop counts.
// The deadline is read from the clock: a pipe's deadline set from ctx's
// may fire a moment before ctx itself ends (contextCause).
func (p *Pool) callTimedOut(ctx context.Context, err error) error {
	deadline, _ := ctx.Deadline()
	if err == nil || time.Until(deadline) > 0 || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrWorkerStart) {
		return err
	}
	return fmt.Errorf("%w (Config.CallTimeout, %v, bounds a call, or a stream's whole loop, whose context has no deadline: "+
		"raise it, or give the call a context with a deadline of its own)", err, p.cfg.CallTimeout)
}
