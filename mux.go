package pypool

// mux.go is a process's side of Config.AsyncCalls: the calls of the
// module's async functions, many in flight at once on one worker, whose
// replies come back tagged by their ids in the order their tasks end.
// While a worker serves such calls (the pool's side is async.go), each
// caller writes its CALL frame (callShared, through sendShared: the one
// write of a call, writeCall, one at a time under mux.wmu, bounded by the
// caller's context), and one reader goroutine (readShared) reads every reply
// and hands it to the caller that waits for its id. The reader runs only
// while calls are in flight: once the last reply is read it ends, and the
// worker may go back to serving one call at a time on the one reply loop
// (exchange.go), which reads the same pipe.
//
// A caller whose context ends returns its context's error at once: its
// call's task is cancelled (CANCEL), the reply it still owes is read and
// dropped by the reader, and only then is its place on the worker freed
// (release, releaseLater). A reply not come within Config.InterruptGrace gets the worker
// reported to its supervisor (broke), which kills it. A lost stream (the
// worker died, or broke the protocol) fails every call in flight, each
// with the same error.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// asyncFunctionsFunction is the runtime's own list of the modules' async
// functions (async_functions in the runtime's aio.py), which a worker started with
// Config.AsyncCalls is asked for after its handshake.
const asyncFunctionsFunction = "_pypool_async_functions"

// mux is the state of a process's calls of async functions in flight.
type mux struct {
	wmu ctxMutex // held for each frame written, and for the encoder

	mu      sync.Mutex
	calls   map[uint64]*muxCall // in flight, by id
	nextID  uint64
	reading bool  // readShared runs
	lost    error // the stream broke: every call fails with it

	// cutOff counts the calls whose caller gave up (callShared returned
	// releaseLater) and whose place is not released yet: Pool.Close does
	// not count a worker holding only those as a call it cut off.
	cutOff atomic.Int64
}

// ctxMutex is a mutex whose wait a caller can give up when its context
// ends (lockBy): mux's lock of the writes, a process's turn among the
// calls of the Worker that holds it.
type ctxMutex chan struct{}

// Lock takes the lock, waiting as long as it takes.
func (l ctxMutex) Lock() { l <- struct{}{} }

// Unlock gives the lock back.
func (l ctxMutex) Unlock() { <-l }

// TryLock takes the lock if it is free.
func (l ctxMutex) TryLock() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

// lockBy takes the lock, unless ctx ends first (false).
func (l ctxMutex) lockBy(ctx context.Context) bool {
	select {
	case l <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// muxCall is one call of an async function in flight.
type muxCall struct {
	done chan struct{} // closed, under mux.mu, once r or err is set
	r    reply         // its reply; r.value owned by the call
	size int           // the reply's size, for the Tracer
	err  error         // the stream was lost first
	sent bool          // its CALL was written: its reply is awaited

	// Set when its caller gave up (ctx ended), under mux.mu: the grace
	// timer and the release of its caller's place, once the reply came.
	abandoned bool
	timer     *time.Timer
	release   func()
}

// learnAsync asks a worker started with Config.AsyncCalls for its async
// functions (asyncFunctionsFunction), right after its handshake.
func (p *process) learnAsync(ctx context.Context) error {
	var names []string
	err := p.call(ctx, asyncFunctionsFunction, nil, nil, callContext{}, func(b []byte, _ bool, codec *valueCodec) error {
		return decodeValueInto(b, &names, codec)
	}, nil, nil)
	if err != nil {
		return fmt.Errorf("%w: worker %d did not list its async functions (Config.AsyncCalls): %w", ErrWorkerStart, p.pid, err)
	}
	p.served.Add(-1) // a call of the runtime's own, not the module's
	p.asyncFns = make(map[string]bool, len(names))
	for _, name := range names {
		p.asyncFns[name] = true
	}
	p.mux = &mux{calls: make(map[uint64]*muxCall), wmu: make(ctxMutex, 1)}
	p.spec.learnAsync(p.asyncFns)
	return nil
}

// learnAsync records a worker's async functions as the pool's (isAsync):
// every worker of a pool runs the same modules.
func (spec *workerSpec) learnAsync(fns map[string]bool) {
	spec.asyncFns.Store(&fns)
}

// isAsync reports whether the pool's workers named fn as an async
// function (Config.AsyncCalls); false before the first one did.
func (spec *workerSpec) isAsync(fn string) bool {
	fns := spec.asyncFns.Load()
	return fns != nil && (*fns)[fn]
}

// beginShared readies the process for calls of async functions, from
// calls one at a time: the pipes' deadlines, which the reply loop of the
// last call may have left, are cleared (the reader of readShared has
// none; each write sets its own). No call runs on the process.
func (p *process) beginShared() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sharedOutput = true
	p.deadlineSet = false
	p.fromWorker.SetReadDeadline(time.Time{})
	p.toWorker.SetWriteDeadline(time.Time{})
}

// callShared runs fn, an async function, as one of the calls in flight on
// the process: it sends the call and waits for its reply, which into
// decodes (sizes, nil: not traced, receives the sizes). When ctx ends
// first, it returns ctx's error at once with releaseLater, and cancels
// the call's task (cancelShared), which calls release once the call's
// reply has been read, or the process is gone; otherwise the caller frees
// the place (releaseNow). A stream lost on the way fails the call with
// the error of every call in flight.
func (p *process) callShared(ctx context.Context, fn string, args []any, kwargs Kwargs, cc callContext, into decodeFunc,
	sizes *callSizes, release func()) (placeRelease, error) {
	if err := ctx.Err(); err != nil {
		return releaseNow, fmt.Errorf("pypool: call to %s: %w", fn, err)
	}
	m := p.mux
	m.mu.Lock()
	if m.lost != nil {
		lost := m.lost
		m.mu.Unlock()
		return releaseNow, p.sharedError(ctx, fn, lost)
	}
	m.nextID++
	id := m.nextID
	c := &muxCall{done: make(chan struct{})}
	m.calls[id] = c
	m.mu.Unlock()

	sent, err := p.sendShared(ctx, id, fn, args, kwargs, cc, sizes)
	if !sent {
		m.mu.Lock()
		if m.calls[id] == c {
			delete(m.calls, id)
		}
		m.mu.Unlock()
		return releaseNow, err
	}
	if err != nil {
		p.loseShared(err)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// ctx cut the frame in the middle: its caller gets ctx's
			// error, as a call one at a time does (process.failed).
			return releaseNow, fmt.Errorf("pypool: call to %s: %w", fn, contextCause(ctx))
		}
	}
	// The reader reads only while a sent call awaits its reply: one
	// started for a call that was never sent stayed blocked on the pipe
	// after the worker was checked in, beside its next user's reads (the
	// race detector saw it in the pool model test).
	m.mu.Lock()
	c.sent = true
	if !m.reading {
		m.reading = true
		go p.readShared()
	}
	m.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		if p.spec.stacks.policy == StackDumpsAll {
			p.dumps.requestLimited(p, fn, dumpInterrupted) // before the cancellation changes the stacks
		}
		// The caller goes at once; its place is released later
		// (cancelShared), whether the reply came meanwhile or not.
		m.cutOff.Add(1)
		go p.cancelShared(fn, id, c, func() {
			release()
			m.cutOff.Add(-1) // after: the place is never counted as a call's in between
		})
		return releaseLater, fmt.Errorf("pypool: call to %s: %w", fn, contextCause(ctx))
	}
	if c.err != nil {
		return releaseNow, p.sharedError(ctx, fn, c.err)
	}
	if sizes != nil {
		sizes.reply = c.size
	}
	p.served.Add(1)
	if c.r.err != nil {
		return releaseNow, c.r.err
	}
	if into == nil {
		return releaseNow, nil
	}
	return releaseNow, into(c.r.value, true, &p.codec)
}

// sendShared writes the CALL of id as writeCall does, its write alone
// bounded by ctx (the reader of the calls in flight has no deadline), one
// frame at a time (mux.wmu). sent is false when the call did not reach
// the worker: err says why (an argument not encodable, ctx), and the
// worker is as it was. With sent, err is the loss of the stream (a frame
// cut in the middle, a worker gone), for the caller to record with
// loseShared once the writes are let go; the call then waits for its
// reply like the others, which fail.
func (p *process) sendShared(ctx context.Context, id uint64, fn string, args []any, kwargs Kwargs, cc callContext, sizes *callSizes) (sent bool, err error) {
	// Behind another call's write in progress (a large argument, a worker
	// that stopped reading), the caller waits no longer than ctx.
	if !p.mux.wmu.lockBy(ctx) {
		return false, fmt.Errorf("pypool: call to %s: %w", fn, contextCause(ctx))
	}
	defer p.mux.wmu.Unlock()
	_, sent, err = p.writeCall(ctx, id, fn, args, kwargs, 0, cc, sizes, boundWrite)
	return sent, err
}

// cancelShared cancels the call id, c, whose caller gave up: unless its
// reply has come (then release is called at once), it is marked abandoned
// and CANCEL is written, with the writes held from before the mark, so that
// its release (readShared, loseShared, which wait for the writes) never
// hands the worker on while this frame is being written.
func (p *process) cancelShared(fn string, id uint64, c *muxCall, release func()) {
	m := p.mux
	m.wmu.Lock()
	m.mu.Lock()
	select {
	case <-c.done: // the reply came, or the stream was lost, meanwhile
		m.mu.Unlock()
		m.wmu.Unlock()
		release()
		return
	default:
	}
	c.abandoned, c.release = true, release
	c.timer = time.AfterFunc(p.spec.interruptGrace, func() { p.cancelExpired(fn, id) })
	m.mu.Unlock()
	p.writeCancel(id)
	m.wmu.Unlock()
}

// writeCancel writes CANCEL for the call id, whose caller gave up, with
// mux.wmu held; a write that fails is left to the grace timer
// (cancelExpired).
func (p *process) writeCancel(id uint64) {
	frame, err := p.encoder.encodeControl(kindCancel, 2, func(e *callEncoder) error { return e.enc.EncodeUint(id) })
	if err != nil {
		return
	}
	p.toWorker.SetWriteDeadline(time.Now().Add(p.spec.interruptGrace))
	p.toWorker.Write(frame)
	p.toWorker.SetWriteDeadline(time.Time{})
}

// cancelExpired runs when the call id, cancelled, did not answer within
// Config.InterruptGrace: its task ignores the cancellation (or the loop is
// stuck in synchronous code). The worker is reported to its supervisor,
// which kills it; the calls in flight on it fail as a crash. Its record
// and stacks are those of a worker that ignored its interrupt.
func (p *process) cancelExpired(fn string, id uint64) {
	m := p.mux
	m.mu.Lock()
	c := m.calls[id]
	late := c != nil && c.abandoned
	m.mu.Unlock()
	if !late {
		return
	}
	// Logged as a worker that ignored its interrupt (drainInterrupted).
	p.logKilled(fn, []any{"worker", p.pid, "function", fn,
		"cause", "its task did not end within Config.InterruptGrace after it was cancelled", "grace", p.spec.interruptGrace}, 0)
	p.broke()
}

// readShared is the reader of the replies of the calls in flight: it
// hands each to the call of its id, and ends once no sent call awaits its
// reply, or the stream is lost (loseShared).
func (p *process) readShared() {
	m := p.mux
	for {
		m.mu.Lock()
		if !m.awaitingLocked() {
			m.reading = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		body, owned, err := p.reader.next()
		if err != nil {
			p.loseShared(err)
			return
		}
		r, err := decodeReply(body)
		if err == nil && r.kind != kindResult && r.kind != kindError {
			err = fmt.Errorf("%w: message of kind %d for call %d from a worker serving async calls (Config.AsyncCalls)", ErrProtocol, r.kind, r.id)
		}
		if err != nil {
			p.loseShared(err)
			return
		}
		if !owned {
			r.value = bytes.Clone(r.value) // the reader's buffer is reused at the next read
		}
		m.mu.Lock()
		c := m.calls[r.id]
		if c == nil {
			m.mu.Unlock()
			p.loseShared(fmt.Errorf("%w: a reply for call %d, which is not in flight", ErrProtocol, r.id))
			return
		}
		delete(m.calls, r.id)
		c.r, c.size = r, len(body)
		close(c.done)
		var release func()
		if c.abandoned {
			c.timer.Stop()
			release = c.release
		}
		m.mu.Unlock()
		if release != nil {
			m.wmu.Lock() // its CANCEL is written (cancelShared)
			m.wmu.Unlock()
			release()
		}
	}
}

// awaitingLocked reports whether a call in flight was sent and awaits its
// reply: the reader reads only then.
func (m *mux) awaitingLocked() bool {
	for _, c := range m.calls {
		if c.sent {
			return true
		}
	}
	return false
}

// loseShared records that the stream of the calls in flight is lost with
// err, and fails each of them with it; the releases of the calls whose
// callers gave up are called. A protocol error is reported to the
// supervisor (broke), which kills the worker; end of file means it died.
func (p *process) loseShared(err error) {
	p.mu.Lock()
	p.setState(evLost, err)
	p.mu.Unlock()
	if !isEOF(err) {
		p.broke()
	}
	m := p.mux
	var releases []func()
	m.mu.Lock()
	if m.lost == nil {
		m.lost = err
	}
	for id, c := range m.calls {
		delete(m.calls, id)
		c.err = err
		close(c.done)
		if c.abandoned {
			c.timer.Stop()
			releases = append(releases, c.release)
		}
	}
	m.mu.Unlock()
	if len(releases) > 0 {
		m.wmu.Lock() // their CANCELs are written (cancelShared)
		m.wmu.Unlock()
	}
	for _, release := range releases {
		release()
	}
}

// sharedError is the caller's error of a call whose stream was lost with
// err: the worker's exit (ErrWorkerCrashed) when it died, or when another
// call's frame was cut in the middle by that call's context (the pool
// kills the worker: loseShared), else the protocol error.
func (p *process) sharedError(ctx context.Context, fn string, err error) error {
	if isEOF(err) || errors.Is(err, os.ErrDeadlineExceeded) {
		return p.exitError(ctx)
	}
	return fmt.Errorf("pypool: call to %s on worker %d: %w", fn, p.pid, err)
}

// sharedCutOff is how many of the calls in flight on the process were
// given up by their callers and are being cancelled (mux.cutOff); 0
// without Config.AsyncCalls.
func (p *process) sharedCutOff() int64 {
	if p.mux == nil {
		return 0
	}
	return p.mux.cutOff.Load()
}

// sharedLost reports whether the stream of the calls in flight is lost:
// the worker takes no more of them.
func (p *process) sharedLost() bool {
	m := p.mux
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lost != nil
}
