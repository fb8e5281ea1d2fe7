package pypool

// callback.go is Python calling Go during a call: the Go functions of
// Config.Callbacks, run when the worker sends a CALLBACK frame
// (call_go(name, *args) in Python), and the calls made back into the same
// worker with a callback's context (nested calls).
//
// The goroutine that waits for a call's reply runs the callback in a
// goroutine of its own and waits, with the process's lock held, for its
// answer or for the end of the call's context, whichever comes first: the
// worker is waiting in call_go, so the stream is the callback's. A call made
// with the callback's context is recognised by the callbackScope that
// context carries and is sent on the same stream without taking the lock
// again: Python handles it while it waits in call_go, and its reply comes
// before the callback's answer. That is how Go calls Python calls Go calls
// Python on one worker (Size 1 included) without deadlock.
//
// A callback that is still running when the call's context ends does not
// hold the caller: the call is cut off as any call past its deadline (the
// worker is interrupted, then drained or killed by the pool, and the drain
// answers the callback's CALLBACK with "not_answered"). A nested call that
// Python had not read when the interrupt reached call_go is answered
// "interrupted" without running; the drain reads its reply too, in any
// order (process.owed). The callback's
// goroutine runs on until the Go function returns; its result is dropped,
// its context has ended, and calls made with that context fail. Neither the
// caller nor Pool.Close waits for it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Callback is a Go function that Python code can call during a call, with
// call_go(name, *args) (see Config.Callbacks). args are the Python
// arguments, decoded as a call's result is (docs/types.md); the
// result is encoded as a call's argument. ctx ends when the call that runs
// the Python code ends (its deadline or cancellation) and when the callback
// returns; calls made with ctx (Pool.Call, Pool.Stream, CallAs, ...) on the
// same pool run on the worker that waits for this callback. A returned
// error, or a panic, is raised in Python as pypool.GoError. The call does
// not wait for a callback past its context: one still running then goes on
// in its own goroutine until it returns, its result dropped (nothing,
// Pool.Close included, waits for it).
type Callback func(ctx context.Context, args []any) (any, error)

// CallbackFunc adapts a function of one typed argument to a Callback:
// Python passes exactly one argument, which is decoded into A as CallAs
// decodes a result (a struct from a dict, a []float64 from a list, ...),
// and the R it returns is sent back. Another number of arguments, or an
// argument that does not fit A, is a GoError in Python.
//
//	Callbacks: map[string]pypool.Callback{
//		"lookup_user": pypool.CallbackFunc(func(ctx context.Context, id int64) (User, error) {
//			return users.Get(ctx, id)
//		}),
//	}
func CallbackFunc[A, R any](fn func(ctx context.Context, arg A) (R, error)) Callback {
	return func(ctx context.Context, args []any) (any, error) {
		if len(args) != 1 {
			return nil, fmt.Errorf("pypool: this Go callback takes exactly one argument, not %d", len(args))
		}
		var a A
		if err := convertValue(args[0], &a, callbackCodec(ctx)); err != nil {
			return nil, err
		}
		return fn(ctx, a)
	}
}

// convertValue decodes the decoded value v into *out, through msgpack.
func convertValue(v any, out any, codec *valueCodec) error {
	e := newCallEncoder(DefaultMaxMessageSize, codec)
	if err := e.value(v); err != nil {
		return fmt.Errorf("pypool: the argument (%T) does not encode: %w", v, err)
	}
	if err := decodeValueInto(e.buf.Bytes(), out, codec); err != nil {
		return fmt.Errorf("the argument of the callback: %w", err)
	}
	return nil
}

// callbackScope is what a callback's context carries: the process whose
// call runs the callback. Calls made with the context go to that process.
type callbackScope struct {
	proc   *process
	ctx    context.Context       // the callback's: a nested call ends with it
	mu     sync.Mutex            // held by the one nested call in flight (TryLock), and by end
	ended  atomic.Bool           // the callback returned, or its call gave up on it; set before end takes mu
	gaveUp atomic.Pointer[error] // why its call gave up on it (a context's end), if it did; stored before ended

	endHook func(*callbackScope) // set by a test: runs while end holds mu
}

type scopeKey struct{}

// scopeOf returns the callback scope ctx carries, if any.
func scopeOf(ctx context.Context) *callbackScope {
	s, _ := ctx.Value(scopeKey{}).(*callbackScope)
	return s
}

// callbackCodec is the codec of the pool whose callback ctx belongs to.
func callbackCodec(ctx context.Context) *valueCodec {
	if s := scopeOf(ctx); s != nil {
		return &s.proc.spec.codec
	}
	return nil
}

// enter takes the scope for one nested call or stream made with ctx; leave
// gives it back. The returned context is ctx bounded by the callback's
// context, even when ctx was detached from it (context.WithoutCancel): the
// call that waits for the callback may have to wait for the nested call
// (end), and must not wait past its own deadline.
func (s *callbackScope) enter(ctx context.Context) (context.Context, func(), error) {
	if !s.mu.TryLock() {
		if s.ended.Load() { // end holds mu, or waits for the call in flight
			return nil, nil, s.endedError()
		}
		return nil, nil, fmt.Errorf("%w: a call with a callback's context while another call with it is in flight", ErrWorkerBusy)
	}
	if s.ended.Load() {
		s.mu.Unlock()
		return nil, nil, s.endedError()
	}
	cancelDeadline := context.CancelFunc(func() {})
	if d, ok := s.ctx.Deadline(); ok {
		ctx, cancelDeadline = context.WithDeadline(ctx, d)
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, func() {
		if errors.Is(s.ctx.Err(), context.Canceled) {
			cancel() // the deadline is ctx's own: it ends with DeadlineExceeded
		}
	})
	return ctx, func() {
		stop()
		cancel()
		cancelDeadline()
		s.mu.Unlock()
	}, nil
}

// errScopeEnded refuses a call made with the context of a callback that
// has returned.
var errScopeEnded = fmt.Errorf("%w: the callback whose context this is has returned", ErrWorkerReleased)

// endedError refuses a call made with the scope's context once it ended:
// errScopeEnded if the callback returned; if its call gave up on it first,
// that call's end (its context's error), as the callback's own context
// says, so that OutcomeOf counts the refusal as the cancellation it is.
func (s *callbackScope) endedError() error {
	if cause := s.gaveUp.Load(); cause != nil {
		return fmt.Errorf("pypool: a nested call from a callback whose call gave up on it: %w", *cause)
	}
	return errScopeEnded
}

// end marks the scope ended, then waits for the nested call in flight, if
// any, to leave it: later calls with the callback's context are refused.
// ended is set first, so that enter tells end's hold on mu apart from a
// nested call's.
func (s *callbackScope) end() {
	s.ended.Store(true)
	s.mu.Lock()
	if s.endHook != nil {
		s.endHook(s)
	}
	s.mu.Unlock()
}

// call makes a call with a callback's context on the process that waits
// for the callback.
func (s *callbackScope) call(ctx context.Context, fn string, args []any, kwargs Kwargs, cc callContext, into decodeFunc, read readFunc, sizes *callSizes) error {
	ctx, leave, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer leave()
	return s.proc.callLocked(ctx, fn, args, kwargs, cc, into, read, sizes, true)
}

// Callback error codes, the GoError.code seen in Python.
const (
	callbackFailed      = "error"                // the Go function returned an error
	callbackPanicked    = "panic"                // it panicked
	callbackNotFound    = "not_found"            // no such name in Config.Callbacks
	callbackBadArgs     = "bad_arguments"        // the arguments did not decode
	callbackNotEncoded  = "result_not_encodable" // its result did not encode
	callbackCallEnded   = "call_ended"           // the call's context ended, or the stream was closed
	callbackNotAnswered = "not_answered"         // the worker was cut off while the callback ran
)

// callbackError is a callback's failure, as sent to Python.
type callbackError struct {
	code, goType, message string
}

// serveCallback runs the callback r asked for and sends its answer. fn is
// the Python function whose code made it. An error return means the call
// cannot go on (the stream is lost, the worker was cut off, or the call's
// context ended while the callback ran); the process's condition says which.
func (p *process) serveCallback(ctx context.Context, fn string, r reply) error {
	p.pendingCallbacks = append(p.pendingCallbacks, r.id)
	value, cbErr, err := p.awaitCallback(ctx, fn, r)
	if err != nil {
		return err
	}
	if p.state.stream != streamRunning {
		// A call made inside the callback was cut off: the worker is in
		// an unknown state, the pool drains or kills it.
		return p.cutOffInside(ctx, fn, r.name)
	}
	frame, err := p.callbackAnswer(r.id, value, cbErr)
	if err != nil {
		frame, _ = p.callbackAnswer(r.id, nil, &callbackError{callbackNotEncoded, fmt.Sprintf("%T", err), err.Error()})
	}
	if err := p.send(ctx, fn, frame); err != nil {
		return err
	}
	p.pendingCallbacks = p.pendingCallbacks[:len(p.pendingCallbacks)-1]
	return nil
}

// callbackOutcome is what a callback's goroutine hands to the call that
// waits for it.
type callbackOutcome struct {
	value any
	cbErr *callbackError
}

// awaitCallback runs the Go function of a CALLBACK in a goroutine of its
// own and waits for its outcome, for the end of ctx, or for the worker's
// exit, whichever comes first. In the last two cases the callback's
// outcome is dropped and the error is the call's: the worker is
// interrupted (ctx ended), or the call failed as a crash.
func (p *process) awaitCallback(ctx context.Context, fn string, r reply) (any, *callbackError, error) {
	cb, args, cbErr, fault := p.findCallback(ctx, r)
	switch {
	case fault != nil:
		return nil, nil, p.failed(ctx, fn, fault, true) // the worker broke the protocol: it is lost
	case cbErr != nil:
		return nil, cbErr, nil
	}
	scope := &callbackScope{proc: p}
	cctx, cancel := context.WithCancel(context.WithValue(ctx, scopeKey{}, scope))
	scope.ctx = cctx
	done := make(chan callbackOutcome, 1) // never blocks the callback's goroutine
	go func() {
		value, cbErr := p.runCallback(cctx, r.name, cb, args)
		cancel()    // ends a nested call the function left in flight
		scope.end() // once it has left the stream
		done <- callbackOutcome{value, cbErr}
	}()
	var gaveUp error
	select {
	case out := <-done:
		return out.value, out.cbErr, nil
	case <-ctx.Done():
		gaveUp = os.ErrDeadlineExceeded
	case <-p.exited:
		gaveUp = io.EOF
	}
	cancel()
	cause := ctx.Err()
	if cause == nil {
		cause = context.Canceled // the worker is gone: the callback's context is cancelled
	}
	scope.gaveUp.Store(&cause)
	scope.end() // waits for a nested call in flight: its context has just ended
	if p.state.stream != streamRunning {
		return nil, nil, p.cutOffInside(ctx, fn, r.name)
	}
	// Python waits in call_go: the call is cut off (the pool's drain
	// answers the callback, see answerPending) or the worker is gone.
	return nil, nil, p.failed(ctx, fn, gaveUp, true)
}

// findCallback finds the Go function of a CALLBACK and decodes its
// arguments; a callbackError says why it cannot run, and fault that the
// worker broke the protocol (a shared-memory reference among them).
func (p *process) findCallback(ctx context.Context, r reply) (Callback, []any, *callbackError, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, &callbackError{callbackCallEnded, fmt.Sprintf("%T", err),
			fmt.Sprintf("Go callback %s: the call's context ended: %v", r.name, err)}, nil
	}
	cb, ok := p.spec.callbacks[r.name]
	if !ok {
		return nil, nil, &callbackError{callbackNotFound, "", p.unknownCallback(r.name)}, nil
	}
	codec := p.codec
	codec.shared = nil // Python sends call_go's arguments inline
	decoded, err := decodeValue(r.value, false, &codec)
	args, _ := decoded.([]any)
	switch {
	case isSharedFault(err):
		return nil, nil, nil, err // a shared-memory reference: the runtime never sends one here
	case err != nil:
		return nil, nil, &callbackError{callbackBadArgs, fmt.Sprintf("%T", err),
			fmt.Sprintf("Go callback %s: its arguments do not decode: %v", r.name, err)}, nil
	}
	return cb, args, nil, nil
}

// runCallback runs the Go function cb with the callback's context ctx. A
// panic is recovered and becomes a callbackError.
func (p *process) runCallback(ctx context.Context, name string, cb Callback, args []any) (result any, cbErr *callbackError) {
	defer func() {
		if v := recover(); v != nil {
			p.spec.logger.Error(msgCallbackPanic, slog.Int("worker", p.pid), p.function(false),
				slog.String("callback", name), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			result, cbErr = nil, &callbackError{callbackPanicked, fmt.Sprintf("%T", v),
				fmt.Sprintf("Go callback %s panicked: %v", name, v)}
		}
	}()
	result, err := cb(ctx, args)
	if err != nil {
		return nil, &callbackError{callbackFailed, fmt.Sprintf("%T", err), err.Error()}
	}
	return result, nil
}

// unknownCallback says that name is not registered, and what is.
func (p *process) unknownCallback(name string) string {
	names := make([]string, 0, len(p.spec.callbacks))
	for n := range p.spec.callbacks {
		names = append(names, n)
	}
	sort.Strings(names)
	registered := strings.Join(names, ", ")
	if registered == "" {
		registered = "(none)"
	}
	return fmt.Sprintf("no Go callback named %q; registered (Config.Callbacks): %s", name, registered)
}

// callbackAnswer encodes the CB_RESULT or CB_ERROR frame for seq.
func (p *process) callbackAnswer(seq uint64, value any, cbErr *callbackError) ([]byte, error) {
	if cbErr != nil {
		return p.encoder.encodeControl(kindCallbackError, 5, func(e *callEncoder) error {
			return errors.Join(e.enc.EncodeUint(seq), e.enc.EncodeString(cbErr.code),
				e.enc.EncodeString(cbErr.goType), e.enc.EncodeString(cbErr.message))
		})
	}
	return p.encoder.encodeControl(kindCallbackResult, 3, func(e *callEncoder) error {
		if err := e.enc.EncodeUint(seq); err != nil {
			return err
		}
		if err := e.value(value); err != nil {
			return fmt.Errorf("%w: the result (%T) of a Go callback: %w", ErrArgNotEncodable, value, err)
		}
		return nil
	})
}

// answerPending answers the callbacks that were read but not answered
// (the call was cut off while they ran) with an error, so that Python,
// waiting in call_go, does not wait for them any more. It is part of a
// drain: the caller has set the write deadline.
func (p *process) answerPending() error {
	for _, seq := range p.pendingCallbacks {
		frame, err := p.callbackAnswer(seq, nil, &callbackError{callbackNotAnswered, "",
			"the Go callback was not answered: the call was cut off while it ran"})
		if err == nil {
			_, err = p.toWorker.Write(frame)
		}
		if err != nil {
			return err
		}
	}
	p.pendingCallbacks = p.pendingCallbacks[:0]
	return nil
}

// refuseCallback answers a callback that arrives while the call it belongs
// to is being closed or drained.
func (p *process) refuseCallback(r reply, why string) error {
	frame, err := p.callbackAnswer(r.id, nil, &callbackError{callbackCallEnded, "",
		fmt.Sprintf("Go callback %s: %s", r.name, why)})
	if err == nil {
		_, err = p.toWorker.Write(frame)
	}
	return err
}

// cutOffInside is the error of a call whose worker was cut off by a call
// made inside one of its callbacks.
func (p *process) cutOffInside(ctx context.Context, fn, callback string) error {
	if p.state.stream == streamBroken && isEOF(p.streamErr) {
		return p.exitError(ctx)
	}
	cause := p.cutOff
	if cause == nil {
		cause = p.streamErr
	}
	return fmt.Errorf("pypool: call to %s: a call made inside Go callback %s was cut off: %w", fn, callback, cause)
}
