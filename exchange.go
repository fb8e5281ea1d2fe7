package pypool

// exchange.go is one call's exchange with a worker, for every call form:
// begin, send the CALL or STREAM frame (sendCall), then the one loop that
// reads what the worker sends while the call runs (readReplies): the
// call's reply, a stream's items (with the credit given back, and CLOSE
// when the loop leaves early), callbacks, and the reply that a closed
// stream or a cut-off call still owes.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/pypool/pypool/internal/wire"
)

// A call's exchange: begin, send, the reply loop, end.

// call sends one call and waits for its reply. into decodes a RESULT's value;
// it runs before the read buffer is reused. read (nil: frameReader.next)
// reads the reply loop's frames: CallBytes's reads a large bytes result
// straight from the pipe into the caller's buffer (bytesResult.readFrame).
// A *PythonError is returned for an ERROR reply. Any other error from a call that reached the worker leaves
// the process interrupted or broken (procState). A call made
// with the context of one of this process's callbacks is sent on the
// stream of the call that waits for the callback (callback.go).
func (p *process) call(ctx context.Context, fn string, args []any, kwargs Kwargs, cc callContext, into decodeFunc, read readFunc, sizes *callSizes) error {
	if p.spec.callbacks != nil {
		if s := scopeOf(ctx); s != nil && s.proc == p {
			return s.call(ctx, fn, args, kwargs, cc, into, read, sizes)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.callLocked(ctx, fn, args, kwargs, cc, into, read, sizes, false)
}

// callLocked is call with p.mu held by this call, or (nested) by the call
// whose callback makes this one.
func (p *process) callLocked(ctx context.Context, fn string, args []any, kwargs Kwargs, cc callContext, into decodeFunc, read readFunc, sizes *callSizes, nested bool) error {
	id, cf, err := p.begin(ctx, fn, nested)
	if err != nil {
		return err
	}
	defer p.end(cf)
	stop, err := p.sendCall(ctx, id, fn, args, kwargs, 0, cc, sizes, nested)
	if err != nil {
		return err
	}
	defer stop()
	p.owe(id, nested)
	l := replyLoop{wait: waitCall, id: id, into: into, sizes: sizes}
	return p.readReplies(ctx, fn, &l, nil, read)
}

// stream runs the stream call fn and gives each item to each, on this
// goroutine, until the stream ends or each returns false. As with call, a
// callback's context sends it on the stream of the call that waits for the
// callback.
func (p *process) stream(ctx context.Context, fn string, args []any, kwargs Kwargs, cc callContext, each itemFunc) error {
	if p.spec.callbacks != nil {
		if s := scopeOf(ctx); s != nil && s.proc == p {
			ctx, leave, err := s.enter(ctx)
			if err != nil {
				return err
			}
			defer leave()
			return p.streamLocked(ctx, fn, args, kwargs, cc, each, true)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streamLocked(ctx, fn, args, kwargs, cc, each, false)
}

func (p *process) streamLocked(ctx context.Context, fn string, args []any, kwargs Kwargs, cc callContext, each itemFunc, nested bool) error {
	id, cf, err := p.begin(ctx, fn, nested)
	if err != nil {
		return err
	}
	defer p.end(cf)
	stop, err := p.sendCall(ctx, id, fn, args, kwargs, streamWindow, cc, nil, nested)
	if err != nil {
		return err
	}
	defer stop()
	p.owe(id, nested)
	running := true // Python is still iterating: leaving the loop closes the stream
	defer func() {
		if running {
			p.closeStream(ctx, fn, id)
		}
	}()
	l := replyLoop{wait: waitStream, id: id}
	st := streamItems{each: each}
	err = p.readReplies(ctx, fn, &l, &st, nil)
	running = st.stopped // each stopped the loop: the deferred close ends the stream
	return err
}

// sendCall encodes the call id of fn (a CALL frame; a STREAM frame when
// window > 0), with the call's context cc and the time left before ctx's
// deadline, and writes it (writeCall), the pipes' deadlines following ctx
// (watch): the one send of callLocked and streamLocked. sizes (nil: not
// traced) receives the request's size. On success the caller defers stop,
// which ends the watch; a failure returns the call's error, with the
// process's new state recorded when the worker is not as it was.
func (p *process) sendCall(ctx context.Context, id uint64, fn string, args []any, kwargs Kwargs, window int, cc callContext, sizes *callSizes, nested bool) (stop func(), err error) {
	bound := boundCall
	if nested {
		bound = boundNested
	}
	// A task on the worker's loop (Config.AsyncCalls; never a nested
	// call): its thread does not read the late interrupts, the main
	// thread's next call frame carries them.
	task := false
	if !nested {
		task = p.mux != nil && window == 0 && p.asyncFns[fn]
		p.outerTask = task
	}
	if !task {
		cc.lateInterrupts = p.lateInterrupts
	}
	stop, sent, err := p.writeCall(ctx, id, fn, args, kwargs, window, cc, sizes, bound)
	if sent && !task {
		p.lateInterrupts = 0 // Python has them now
	}
	switch {
	case err == nil:
		return stop, nil
	case sent && errors.Is(err, errUndelivered):
		// The worker no longer reads (it closed its input, or died):
		// it is lost, but the call never reached it.
		return nil, undelivered{p.failed(ctx, fn, err, false)}
	case sent:
		return nil, p.failed(ctx, fn, err, false)
	case errors.Is(err, errSharedClosed):
		// The worker exited before the call: its shared memory went
		// with it. A crash, as if the call had been sent.
		p.setState(evLost, err)
		return nil, p.exitError(ctx)
	case isSharedFault(err):
		// Nothing was sent, but the worker's shared memory is broken.
		return nil, p.failed(ctx, fn, err, false)
	}
	return nil, err // nothing was sent: the worker is fine
}

// A callBound says how far the pipes' deadlines follow a call's context
// (writeCall).
type callBound uint8

const (
	boundCall   callBound = iota // both pipes, for the whole exchange (watch)
	boundNested                  // likewise, for a call made inside a callback (watch)
	boundWrite                   // the write alone, for a call among the async calls in flight (writeAlone)
)

// writeCall encodes the call id of fn (a CALL frame; a STREAM frame when
// window > 0), with the call's context cc and the time left before ctx's
// deadline, and writes it, bounded by ctx as bound says: the one write of
// a call, for sendCall and the async calls' sendShared. sizes (nil: not
// traced) receives the request's size. On success stop ends the watch of
// boundCall and boundNested (nil with boundWrite, whose watch has ended).
// On failure nothing is watched any more. sent is false when the call did
// not reach the worker, which is as it was: err is the caller's error (an
// argument not encodable, the shared memory's, ctx's cause when the write
// could not begin); else err is the write's, wrapped (a frame cut in the
// middle, a worker gone: isEOF still tells it), and the stream is lost.
func (p *process) writeCall(ctx context.Context, id uint64, fn string, args []any, kwargs Kwargs, window int, cc callContext, sizes *callSizes, bound callBound) (stop func(), sent bool, err error) {
	deadline, _ := ctx.Deadline()
	frame, err := p.encoder.encodeCall(id, fn, args, kwargs, window, cc, deadline)
	if err != nil {
		return nil, false, err
	}
	if sizes != nil {
		sizes.request = len(frame) - frameHeaderSize + p.encoder.sharedBytes
	}
	var n int
	if bound == boundWrite {
		n, err = p.writeAlone(ctx, deadline, frame)
	} else {
		stop = p.watch(ctx, bound == boundNested)
		n, err = p.toWorker.Write(frame)
	}
	if err == nil {
		if p.testHookWritten != nil {
			p.testHookWritten()
		}
		return stop, true, nil
	}
	if stop != nil {
		stop()
	}
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		// Nothing reached the worker: it is as healthy as before.
		what := "call to"
		if window > 0 {
			what = "stream of"
		}
		return nil, false, fmt.Errorf("pypool: %s %s: %w", what, fn, p.cutCause(ctx))
	}
	if n == 0 && errors.Is(err, syscall.EPIPE) {
		// The pipe has no reader left: not a byte reached the worker.
		return nil, true, fmt.Errorf("sending the call: %w (%w)", err, errUndelivered)
	}
	return nil, true, fmt.Errorf("sending the call: %w", err)
}

// errUndelivered marks the error of a call whose worker was gone before
// any byte of it was written (its input pipe had no reader): the call
// never reached Python, so Pool.call tries it on another worker
// (Pool.mayRetry), as if its checkout had found that worker dead.
var errUndelivered = errors.New("no byte of the call reached the worker")

// undelivered is the caller's error (the worker's exit, most often) for a
// call that never reached its worker: its text is the error's, and it
// also is errUndelivered.
type undelivered struct{ err error }

// Error is the wrapped error's text.
func (u undelivered) Error() string { return u.err.Error() }

// Unwrap gives the wrapped error and errUndelivered.
func (u undelivered) Unwrap() []error { return []error{u.err, errUndelivered} }

// writeAlone writes frame, the write alone bounded by ctx (deadline is
// its): the pipe's write deadline follows ctx until the write ends, and is
// cleared then. The read deadline is left alone: the reader of the async
// calls in flight (readShared) has none.
func (p *process) writeAlone(ctx context.Context, deadline time.Time, frame []byte) (int, error) {
	p.toWorker.SetWriteDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		p.toWorker.SetWriteDeadline(time.Now())
		close(fired)
	})
	n, err := p.toWorker.Write(frame)
	if !stop() {
		<-fired
	}
	p.toWorker.SetWriteDeadline(time.Time{})
	return n, err
}

// callFrame is what begin set up for one call, for end to undo.
type callFrame struct {
	nested bool
	outer  *string    // nested: the outer call's function
	shared *sharedMem // nested: the encoder's shared memory, off meanwhile
}

// begin starts a call or a stream on the process: it checks that the
// process can take one, gives it its id and records its function. end
// undoes it once the call is over. A nested call (made inside a callback)
// keeps the outer call's record and leaves the shared memory to it: its
// values cross inline.
func (p *process) begin(ctx context.Context, fn string, nested bool) (uint64, callFrame, error) {
	if p.state.stream != streamRunning {
		return 0, callFrame{}, fmt.Errorf("%w: an earlier call on worker %d was cut off", ErrWorkerReleased, p.pid)
	}
	if err := ctx.Err(); err != nil {
		return 0, callFrame{}, fmt.Errorf("pypool: call to %s: %w", fn, err)
	}
	p.nextID++
	id := p.nextID
	if nested {
		cf := callFrame{nested: true, outer: p.current.Load(), shared: p.encoder.shared}
		p.encoder.shared = nil
		p.outputWritten(cf.outer) // the outer call's, up to here
		p.setCurrent(fn)
		return id, cf, nil
	}
	p.outerID = id
	if p.sharedOutput {
		// The output of the async calls before names none of them
		// (docs/async.md), nor this call.
		p.sharedOutput = false
		p.outputWritten(nil)
	}
	p.setCurrent(fn)
	if p.shm != nil {
		p.shm.acquire()
	}
	return id, callFrame{}, nil
}

// end undoes begin.
func (p *process) end(cf callFrame) {
	if cf.nested {
		p.encoder.shared = cf.shared
		p.outputWritten(p.current.Load()) // the nested call's
		p.current.Store(cf.outer)
		return
	}
	if p.shm != nil {
		p.shm.releaseCall()
	}
	p.endCall()
}

// A stream's credit and its close.

// eachItem gives the items of an ITEMS frame to each; false when each
// stopped.
func eachItem(items []byte, codec *valueCodec, each itemFunc) (bool, error) {
	more, _, err := eachItemUntil(context.Background(), items, codec, each)
	return more, err
}

// eachItemUntil is eachItem that gives no item once ctx has ended (cut:
// the frame's other items are dropped): a stream's loop ends with ctx's
// error at its next item, not at its next frame, which may hold 256 more.
func eachItemUntil(ctx context.Context, items []byte, codec *valueCodec, each itemFunc) (more, cut bool, err error) {
	d := wire.NewReader(items)
	n := d.ArrayLen()
	for range n {
		item := d.Skip()
		if d.Err() != nil {
			break
		}
		if ctx.Err() != nil {
			return false, true, nil
		}
		if more, fault := each(item, codec); !more {
			return false, false, fault
		}
	}
	if d.Err() == nil && d.Len() != 0 {
		d.Fail("%d bytes after the items", d.Len())
	}
	if d.Err() != nil {
		return false, false, fmt.Errorf("%w: bad ITEMS frame: %v", ErrProtocol, d.Err())
	}
	return true, false, nil
}

// creditFrame encodes a CREDIT of n frames for stream id.
func (p *process) creditFrame(id uint64, n int) []byte {
	frame, _ := p.encoder.encodeControl(kindCredit, 3, func(e *callEncoder) error {
		return errors.Join(e.enc.EncodeUint(id), e.enc.EncodeUint(uint64(n)))
	})
	return frame
}

// closeStream ends a stream that its loop left early: CLOSE, then the
// items still coming are dropped until Python's reply, which must come
// within InterruptGrace (and ctx). A generator that takes longer is
// interrupted, as a cut-off call, and the pool drains the worker.
func (p *process) closeStream(ctx context.Context, fn string, id uint64) {
	if p.state.stream != streamRunning {
		return
	}
	if ctx.Err() != nil {
		p.failed(ctx, fn, os.ErrDeadlineExceeded, true)
		return
	}
	frame, err := p.encoder.encodeControl(kindClose, 2, func(e *callEncoder) error { return e.enc.EncodeUint(id) })
	if err != nil || p.send(ctx, fn, frame) != nil {
		return
	}
	limit := time.Now().Add(p.spec.interruptGrace)
	if d, ok := ctx.Deadline(); ok && d.Before(limit) {
		limit = d
	}
	p.fromWorker.SetReadDeadline(limit)
	p.deadlineSet = false
	l := replyLoop{wait: waitClose, id: id}
	p.readReplies(ctx, fn, &l, nil, nil)
}

// The one reply loop.

// replyWait is what a reply loop waits for, and so what it does with the
// messages on the way.
type replyWait uint8

const (
	waitCall   replyWait = iota // the reply of a call (callLocked)
	waitStream                  // the items of a stream, then its reply (streamLocked)
	waitClose                   // the reply of a closed stream; its items are dropped (closeStream)
	waitDrain                   // the reply of a cut-off call; all else is dropped (awaitInterrupted)
)

// replyLoop is one run of readReplies: the call id whose reply ends it, and
// what the caller gave it. It holds nothing that escapes (the function's
// name and a stream's items are passed apart), so that a call's into and
// sizes stay on their caller's stack.
type replyLoop struct {
	wait    replyWait
	id      uint64
	into    decodeFunc // waitCall: decodes the RESULT's value
	sizes   *callSizes // waitCall: receives the reply's size; nil: not traced
	replied bool       // waitDrain: the cut-off call's reply was read; nested replies may still be owed
}

// streamItems is what a stream's reply loop does with its items. It holds
// no pointer that each is given (the items' codec is the spec's, without
// shared memory: items cross inline), so that it does not escape, and
// neither does an exchange (Pool.call), whose stream's each it carries
// beside a call's into.
type streamItems struct {
	each     itemFunc // takes each item
	consumed int      // items taken since the last credit
	stopped  bool     // each stopped the loop; Python still iterates
}

// readReplies reads frames from the worker until the reply that ends l
// (of a call to fn; st: a stream's items, else nil; read: how a call
// reads its frames, nil: frameReader.next) and dispatches each message by its kind: CALLBACK (onCallback), ITEMS
// (onItems), and the RESULT or ERROR of a call (onReply). It returns the
// call's outcome, or the first error, which has already recorded the
// process's new state (lost).
func (p *process) readReplies(ctx context.Context, fn string, l *replyLoop, st *streamItems, read readFunc) error {
	for {
		if l.wait == waitStream && ctx.Err() != nil {
			return p.failed(ctx, fn, os.ErrDeadlineExceeded, true)
		}
		var body []byte
		var owned bool
		var elsewhere int
		var err error
		if read != nil {
			body, owned, elsewhere, err = read(p.reader, l.id)
		} else {
			body, owned, err = p.reader.next()
		}
		if err != nil {
			return p.readFailed(ctx, fn, l, err)
		}
		if l.sizes != nil {
			l.sizes.reply = len(body) + elsewhere
		}
		r, err := decodeReply(body)
		if err != nil {
			return p.lost(ctx, fn, l, err)
		}
		var done bool
		switch r.kind {
		case kindCallback:
			err = p.onCallback(ctx, fn, l, r)
		case kindItems:
			done, err = p.onItems(ctx, fn, l, st, r)
		default:
			done, err = p.onReply(ctx, fn, l, r, owned)
		}
		if done || err != nil {
			return err
		}
	}
}

// onCallback handles a CALLBACK: a call or a stream runs it (serveCallback);
// while a stream closes or a cut-off call drains, its caller has gone and
// it is refused.
func (p *process) onCallback(ctx context.Context, fn string, l *replyLoop, r reply) error {
	var err error
	switch l.wait {
	case waitCall, waitStream:
		return p.serveCallback(ctx, fn, r)
	case waitClose:
		err = p.refuseCallback(r, "the stream was closed")
	default:
		// The cut-off call's Python code asks for a callback: it gets an
		// error, not an answer from Go code whose caller has gone.
		err = p.refuseCallback(r, "the call's context ended")
	}
	if err != nil {
		return p.lost(ctx, fn, l, err)
	}
	return nil
}

// onItems handles an ITEMS frame: a stream gives its items to each and
// sends credit for more; a closing stream or a drain drops them; a call
// expects none. done: the loop ends (each stopped it).
func (p *process) onItems(ctx context.Context, fn string, l *replyLoop, st *streamItems, r reply) (done bool, err error) {
	switch l.wait {
	case waitDrain:
		return false, nil // items of a stream being cut off
	case waitCall:
		return false, p.unexpected(ctx, fn, l, r)
	}
	if r.id != l.id {
		return false, p.unexpected(ctx, fn, l, r)
	}
	if l.wait == waitClose {
		return false, nil
	}
	more, cut, err := eachItemUntil(ctx, r.value, &p.spec.codec, st.each)
	switch {
	case err != nil:
		return false, p.lost(ctx, fn, l, err)
	case cut:
		// As readReplies's check before each frame: Python still runs.
		return false, p.failed(ctx, fn, os.ErrDeadlineExceeded, true)
	}
	if !more {
		st.stopped = true
		return true, nil // the caller closes the stream
	}
	if st.consumed++; st.consumed == streamWindow/2 {
		st.consumed = 0
		if err := p.send(ctx, fn, p.creditFrame(l.id, streamWindow/2)); err != nil {
			return true, err
		}
	}
	return false, nil
}

// onReply handles the RESULT or ERROR that ends a call, which ends the loop.
// A drain ends with the cut-off call's reply and the replies of its nested
// calls that were owed (onDrainReply).
func (p *process) onReply(ctx context.Context, fn string, l *replyLoop, r reply, owned bool) (done bool, err error) {
	switch {
	case l.wait == waitDrain:
		return p.onDrainReply(ctx, fn, l, r)
	case r.id != l.id:
		return false, p.unexpected(ctx, fn, l, r)
	}
	p.paid(r.id)
	if l.wait == waitClose {
		// Closed: an exception raised by the generator's clean-up has no
		// one to go to any more.
		p.replied(ctx, fn, r, false, nil)
		return true, nil
	}
	return true, p.replied(ctx, fn, r, owned, l.into) // a stream's into is nil: its reply has no value
}

// onDrainReply handles a reply read while a cut-off call drains: the
// call's own, and those of its nested calls, which are dropped. The drain
// ends once the call's reply has come and no nested call's is owed, in
// whatever order they come: a nested call's reply must not reach the next
// call.
func (p *process) onDrainReply(ctx context.Context, fn string, l *replyLoop, r reply) (done bool, err error) {
	switch {
	case r.id == l.id:
		l.replied = true
	case r.id > l.id:
		p.paid(r.id) // the reply of a nested call
	default:
		return false, p.unexpected(ctx, fn, l, r)
	}
	if r.err != nil && r.err.Code == "interrupted" {
		// The SIGINT was taken: by the cut-off call, or by the nested
		// call it was sent to (the outer call's reply is then its
		// callback's error), in whatever order their replies come.
		p.signalled = false
	}
	if !l.replied || len(p.owed) > 0 {
		return false, nil
	}
	if p.signalled {
		p.lateInterrupts++ // the SIGINT came after the replies, or was swallowed
		p.signalled = false
	}
	p.setState(evDrained, nil)
	return true, nil
}

// owe records that the reply of the nested call id, just sent, is owed
// until its loop (or a drain) reads it. A call that is not nested owes
// nothing here: its own loop or the drain waits for it by its id.
func (p *process) owe(id uint64, nested bool) {
	if nested {
		p.owed = append(p.owed, id)
	}
}

// paid records that the reply of call id was read.
func (p *process) paid(id uint64) {
	for i, o := range p.owed {
		if o == id {
			p.owed = append(p.owed[:i], p.owed[i+1:]...)
			return
		}
	}
}

// unexpected is the protocol error of a message l does not wait for.
func (p *process) unexpected(ctx context.Context, fn string, l *replyLoop, r reply) error {
	var err error
	switch l.wait {
	case waitCall:
		err = fmt.Errorf("%w: message of kind %d for call %d while waiting for the reply to %d", ErrProtocol, r.kind, r.id, l.id)
	case waitStream:
		err = fmt.Errorf("%w: message of kind %d for call %d during the stream %d", ErrProtocol, r.kind, r.id, l.id)
	case waitClose:
		err = fmt.Errorf("%w: message of kind %d for call %d while closing the stream %d", ErrProtocol, r.kind, r.id, l.id)
	default:
		err = fmt.Errorf("%w: unexpected reply while draining", ErrProtocol)
	}
	return p.lost(ctx, fn, l, err)
}

// readFailed handles a failed read. A closing stream whose generator did
// not close in time (its limit, not ctx, ended the read) is interrupted,
// as a cut-off call, and the pool drains the worker.
func (p *process) readFailed(ctx context.Context, fn string, l *replyLoop, err error) error {
	if l.wait == waitClose && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		cause := fmt.Errorf("the generator did not close within Config.InterruptGrace (%v) after the loop ended", p.spec.interruptGrace)
		p.setState(evCutOff, cause)
		p.interrupt()
		return cause
	}
	return p.lost(ctx, fn, l, err)
}

// lost records that the exchange broke with err and returns the caller's
// error: a call's, stream's or closing stream's through failed; a drain's
// leaves the stream broken, for the pool to kill the worker.
func (p *process) lost(ctx context.Context, fn string, l *replyLoop, err error) error {
	if l.wait == waitDrain {
		p.setState(evLost, err)
		return err
	}
	return p.failed(ctx, fn, err, true)
}
