package pypool

// async.go is the pool's side of Config.AsyncCalls: a worker is idle, in
// use by one caller (a sync function's call, a stream, a Transaction, a
// Ping), or in use by 1 to AsyncCalls calls of async functions at once,
// which run as tasks on its event loop (the process's side is mux.go).
// Such a worker is checked out (stateCheckedOut) for as long as any of
// those calls is in flight, and goes through the one check-in
// (Pool.checkin) when the last one ends; asyncCalls counts its calls.
//
// A call of an async function goes through the one attempt (Pool.attempt)
// like any call; its checkout (checkoutShared) takes, in this order: an
// idle worker (but while overflow workers run: a place first); a place on
// a worker that serves such calls and has room, unless callers wait (they are served first); else it waits in the queue
// of checkout like any caller, marked as async (waiter.async), so that a
// place freed on such a worker goes to it (fillLocked) when it is first in
// the queue. A worker serving async calls takes no newcomer while callers
// wait: one waiting for a worker of its own (a sync call) gets it once
// the calls in flight end.

import (
	"context"
	"fmt"
	"slices"
)

// asyncCalls is the accounting of the workers serving calls of async
// functions, guarded by Pool.mu.
type asyncCalls struct {
	shared   map[*pooledWorker]int // the calls in flight on each such worker, those being cancelled included
	inFlight int                   // their sum
	// shrinking holds the workers serving async calls that Resize found
	// beyond the new Size+MaxOverflow (markShrinkingLocked): they take no
	// more calls, so that those in flight end and the check-in decides
	// (offerLocked stops the ones still beyond). Without it a worker whose
	// async calls never all end at once was never checked in, and the
	// pool never shrank under load. A mark ends with the worker's last
	// call in flight.
	shrinking map[*pooledWorker]bool
}

// checkoutShared gives the caller of the async function fn a place on a
// worker (shared): see the file's comment for which. The place is not
// shared, the worker being the caller's alone as for a sync call, when the
// worker does not name fn among its async functions (a worker of other
// code than the pool's first).
func (p *Pool) checkoutShared(ctx context.Context, fn string) (place, error) {
	if err := ctx.Err(); err != nil {
		return place{}, fmt.Errorf("pypool: waiting for a worker: %w", err)
	}
	p.mu.Lock()
	if pw := p.sharedRoomLocked(fn); pw != nil {
		p.takePlaceLocked(pw)
		p.mu.Unlock()
		return place{pw: pw, shared: true}, nil
	}
	wt, pw, err := p.checkoutLocked(noWait(ctx))
	if wt != nil {
		wt.deadline, _ = ctx.Deadline() // before a failed start can read it
		wt.async = true
	}
	p.mu.Unlock()
	if wt != nil {
		pw, _, err = p.awaitGrant(ctx, wt)
	}
	if err != nil {
		return place{}, err
	}
	p.mu.Lock()
	_, shared := p.async.shared[pw] // granted a place by fillLocked
	p.mu.Unlock()
	if shared || !pw.proc.asyncFns[fn] {
		return place{pw: pw, shared: shared}, nil
	}
	// A worker of its own: it serves async calls from now on, and the
	// async callers first in the queue join it.
	pw.proc.beginShared()
	p.mu.Lock()
	if p.async.shared == nil {
		p.async.shared = make(map[*pooledWorker]int)
	}
	p.takePlaceLocked(pw)
	p.fillLocked(pw)
	p.mu.Unlock()
	return place{pw: pw, shared: true}, nil
}

// sharedRoomLocked is the worker serving async calls that takes one more,
// the one with the fewest in flight; nil when a worker is idle (it is
// taken first), when callers wait (they are served first), or when none
// has room for fn.
//
// While overflow workers run (more ready workers than Size), it is the one
// with the most in flight that has room, even when a worker is idle: the
// calls gather on as few workers as hold them, so that the others' calls
// end and they are checked in and stopped (Config.MaxOverflow), or stay
// idle until Config.OverflowIdleTimeout stops them. Spread over every
// worker, a load that one worker holds kept the overflow workers for as
// long as it lasted.
func (p *Pool) sharedRoomLocked(fn string) *pooledWorker {
	overflow := p.readyLocked() > p.cfg.Size
	if p.closed || p.counts[stateIdle] > 0 && !overflow || p.waiters.len() > 0 {
		return nil
	}
	var best *pooledWorker
	for pw, n := range p.async.shared {
		if n < p.cfg.AsyncCalls && pw.state == stateCheckedOut && pw.proc.asyncFns[fn] && !pw.proc.sharedLost() &&
			!p.retiringLocked(pw) && (best == nil || preferPlace(n, p.async.shared[best], overflow)) {
			best = pw
		}
	}
	return best
}

// preferPlace reports whether a worker with n calls in flight is a better
// place for an async call than one with best: fewer in flight, or, while
// overflow workers run, more.
func preferPlace(n, best int, overflow bool) bool {
	if overflow {
		return n > best
	}
	return n < best
}

// retiringLocked reports whether pw is to be retired at its check-in
// (recycleReason: a reload's newer generation, or a limit such as
// Config.MaxWorkerLifetime), or may be stopped then (Resize shrank the pool
// below it), or whether the calls in flight on it reach its
// Config.MaxCallsPerWorker: it takes no more async calls, so that those in
// flight end and it is checked in. Without it a worker whose async calls
// never all end at once was never retired, and Reload never ended; and a
// worker took up to AsyncCalls calls at once whatever its MaxCallsPerWorker,
// which counted a call only once answered. The fork server's stand-in is
// not retiring: it is handed over whenever it is checked in, which
// nothing waits for.
func (p *Pool) retiringLocked(pw *pooledWorker) bool {
	if pw.maxCalls > 0 && pw.proc.served.Load()+pw.carried+int64(p.async.shared[pw]) >= pw.maxCalls {
		return true
	}
	if p.async.shrinking[pw] {
		return true
	}
	why := p.recycleReason(pw).cause
	return why != causeNone && why != causeHandover
}

// markShrinkingLocked marks, after Resize, as many workers serving async
// calls as there are ready workers beyond the new Size+MaxOverflow, those
// with the fewest calls in flight first (asyncCalls.shrinking). A mark is
// a hint: the check-in decides, and a worker no longer beyond serves on.
func (p *Pool) markShrinkingLocked() {
	clear(p.async.shrinking)
	excess := p.readyLocked() - p.cfg.Size - p.cfg.MaxOverflow
	if excess <= 0 || len(p.async.shared) == 0 {
		return
	}
	ws := make([]*pooledWorker, 0, len(p.async.shared))
	for pw := range p.async.shared {
		ws = append(ws, pw)
	}
	slices.SortFunc(ws, func(a, b *pooledWorker) int { return p.async.shared[a] - p.async.shared[b] })
	if p.async.shrinking == nil {
		p.async.shrinking = make(map[*pooledWorker]bool)
	}
	for _, pw := range ws[:min(excess, len(ws))] {
		p.async.shrinking[pw] = true
	}
}

// takePlaceLocked counts one more call in flight on pw.
func (p *Pool) takePlaceLocked(pw *pooledWorker) {
	p.async.shared[pw]++
	p.async.inFlight++
	p.notifyLocked()
}

// fillLocked gives the places left on pw to the async callers first in
// the queue; none on a worker whose stream is lost (process.sharedLost),
// whose calls in flight are failing: the callers wait for the next worker.
func (p *Pool) fillLocked(pw *pooledWorker) {
	for p.async.shared[pw] < p.cfg.AsyncCalls && pw.state == stateCheckedOut && !p.closed && !pw.proc.sharedLost() && !p.retiringLocked(pw) {
		wt := p.waiters.first()
		if wt == nil || !wt.async {
			return
		}
		p.waiters.next()
		p.takePlaceLocked(pw)
		p.grantLocked(wt, grant{pw: pw})
	}
}

// releaseShared frees a place on pw: given to an async caller first in the
// queue, or, when it was the last call in flight, the worker goes through
// the check-in (Pool.checkin) as after any call.
func (p *Pool) releaseShared(pw *pooledWorker) {
	p.mu.Lock()
	p.async.inFlight--
	n := p.async.shared[pw] - 1
	if n > 0 {
		p.async.shared[pw] = n
		p.fillLocked(pw)
		p.notifyLocked()
		p.mu.Unlock()
		return
	}
	delete(p.async.shared, pw)
	delete(p.async.shrinking, pw)
	p.notifyLocked()
	p.mu.Unlock()
	p.checkin(pw)
}

// AsyncCallsByWorker returns the calls of async functions in flight on
// each worker that serves them (Config.AsyncCalls), by the worker's pid,
// those being cancelled included: Stats.AsyncCalls worker by worker. It
// is empty without the mode, and when no such call is in flight.
func (p *Pool) AsyncCallsByWorker() map[int]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[int]int, len(p.async.shared))
	for pw, n := range p.async.shared {
		m[pw.proc.pid] = n
	}
	return m
}
