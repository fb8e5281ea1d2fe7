package pypool

// state.go is the pool's accounting: the states of a pooled worker, the
// callers waiting for one, every transition between them, and the two
// collections that hold the idle workers and the waiting callers (the only
// use of go-commons-pool). Everything here runs with Pool.mu held (a
// method of Pool's name ends in Locked) and decides; the slow work it
// decides (a start, a stop, a drain) runs in a goroutine of the supervisor
// (supervise.go), never on the caller's.
//
// A worker's life (the function that makes each move in brackets):
//
//	start in flight (Pool.starting) --joins [started]--> starting
//	starting, or back from a caller --[offerLocked]--> checkedOut (to a waiter)
//	                                                 | idle (nobody waits)
//	                                                 | stopping (an overflow worker nobody waits for)
//	idle       --[checkoutLocked]--> checkedOut
//	checkedOut --[checkinLocked]-->  offerLocked, draining (its call was cut off),
//	                                 or stopping (broken, or due for recycling)
//	draining   --[drainedLocked]-->  offerLocked, or stopping (no answer in time)
//	idle       --[sweepOnce, Close]--> stopping
//	any        --[processExited: the process was reaped]--> exited
//
// A worker in stopping or exited is never handed out again. A worker in
// stopping still holds its slot of Size+MaxOverflow until its process has
// exited and been reaped (processExited): the start of its replacement waits
// for that exit, so that no more than Size+MaxOverflow worker processes ever
// run at once. The wait is bounded: a stop kills after Config.StopTimeout,
// and a kill is reaped within milliseconds.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jolestar/go-commons-pool/v2/collections"
)

// workerState is where a pooled worker is in its life.
type workerState int

const (
	stateStarting   workerState = iota // started, not yet placed by offerLocked
	stateIdle                          // in the idle set, waiting for a caller
	stateCheckedOut                    // held by exactly one caller
	stateDraining                      // its caller gave up mid-call: the pool awaits the interrupted reply
	stateStopping                      // being stopped or killed: never handed out again
	stateExited                        // reaped: out of the pool
	numStates
)

// serving reports whether a worker in state s holds a slot of the pool.
func (s workerState) serving() bool { return s >= stateIdle && s <= stateDraining }

// pooledWorker is the pool's record of one worker process, as database/sql's
// driverConn is of a driver connection.
type pooledWorker struct {
	proc *process

	// Set when the worker joins the pool, read-only afterwards: its own
	// recycling limits (supervise.go).
	maxCalls int64
	lifetime time.Duration
	// gen is the generation it was started in (Pool.Reload): it is
	// retired at check-in once the pool's generation is higher.
	gen uint64
	// standIn: the fork server's first worker, started by exec before the
	// template; handed over to a forked worker at its first check-in once
	// the template runs (recycleReason). carried: the calls its
	// predecessor served, for a worker that took a stand-in's place
	// (MaxCallsPerWorker counts them).
	standIn bool
	carried int64

	// Guarded by Pool.mu.
	state     workerState
	idleSince time.Duration // monoNow when it became idle
	inIdle    bool          // in Pool.idle's deque (idleSet)

	// Set by the sweeper, read at check-in.
	overMemory atomic.Bool

	// Why the pool stopped it, for its log record; guarded by Pool.mu.
	stopCause string
}

// waiter is a caller blocked in checkout.
type waiter struct {
	granted chan grant // capacity 1: receives the one grant once decided

	// Guarded by Pool.mu.
	decided  bool      // granted, or gave up
	queued   bool      // in Pool.waiters
	deadline time.Time // its caller's deadline; zero: none
	started  bool      // a start was ordered for it (startOrder.startedFor)
	async    bool      // a call of an async function: a place on a worker serving such calls will do (async.go)
}

// grant is what a waiter receives: a checked-out worker or an error.
type grant struct {
	pw  *pooledWorker
	err error
}

// waiterPool holds waiters for reuse (release): a checkout that waits
// allocates no waiter and no channel.
var waiterPool = sync.Pool{New: func() any { return &waiter{granted: make(chan grant, 1)} }}

func newWaiter() *waiter { return waiterPool.Get().(*waiter) }

// release gives wt back for reuse, when its checkout is over (granted or
// given up). Nothing refers to it any more then, unless a start was
// ordered for it: decided, it left Pool.waiters (grantLocked, next,
// abandonLocked); its one grant, if one was sent, was received (checkout,
// abandon), so its channel is empty. A start ordered for it keeps it
// (startOrder.startedFor reads decided and deadline when the start ends):
// such a waiter is left to the garbage collector.
func (wt *waiter) release() {
	if wt.started {
		return
	}
	*wt = waiter{granted: wt.granted}
	waiterPool.Put(wt)
}

// setStateLocked moves pw to state s. It is the one place where the
// counts and the idle set change.
func (p *Pool) setStateLocked(pw *pooledWorker, s workerState) {
	from := pw.state
	if from == s {
		return
	}
	if from == stateIdle {
		p.idle.drop(pw)
	}
	if s == stateIdle {
		pw.idleSince = monoNow()
		p.idle.put(pw)
	}
	p.counts[from]--
	p.counts[s]++
	pw.state = s
	if from == stateCheckedOut && p.counts[stateCheckedOut] == 0 && p.allIn != nil {
		close(p.allIn) // Close waits for this
		p.allIn = nil
	}
	p.notifyLocked()
}

// readyLocked is the number of workers that hold a slot and are ready:
// idle, checked out or draining.
func (p *Pool) readyLocked() int {
	return p.counts[stateIdle] + p.counts[stateCheckedOut] + p.counts[stateDraining]
}

// othersReadyLocked is readyLocked without pw, which is being placed
// (offered after its start, its check-in or its drain).
func (p *Pool) othersReadyLocked(pw *pooledWorker) int {
	n := p.readyLocked()
	if pw.state.serving() {
		n--
	}
	return n
}

// slotsUsedLocked is the number of worker processes that hold a slot of
// Size+MaxOverflow: starts in flight, started workers not yet placed,
// ready workers, and workers being stopped, which hold their slot until
// they have exited.
func (p *Pool) slotsUsedLocked() int {
	return p.starting + p.counts[stateStarting] + p.readyLocked() + p.counts[stateStopping]
}

// roomLocked is how many more workers may be started now without exceeding
// Size+MaxOverflow live processes.
func (p *Pool) roomLocked() int {
	return max(0, p.cfg.Size+p.cfg.MaxOverflow-p.slotsUsedLocked())
}

// checkoutLocked takes an idle worker, or queues the caller as a waiter
// (and has a worker started for it when there is room), or refuses it.
// noWait is the caller's NoWait; with it, or with Config.MaxWaiting set to
// NoWaiting, the caller sheds instead of queueing behind others: it waits
// only for a start it causes (or for any worker checked in first), and is
// refused when no start is possible.
func (p *Pool) checkoutLocked(noWait bool) (*waiter, *pooledWorker, error) {
	if p.closed {
		return nil, nil, ErrPoolClosed
	}
	if p.counts[stateIdle] > 0 { // else the idle set is empty: no deque lock
		if pw := p.idle.take(); pw != nil {
			p.setStateLocked(pw, stateCheckedOut) // its drop is a no-op
			return nil, pw, nil
		}
	}
	if err := p.backoff.refusal(); err != nil {
		return nil, nil, err // a fatal start failure: a start would fail again
	}
	wt := newWaiter()
	shed := noWait || p.cfg.MaxWaiting == NoWaiting
	switch limit := p.cfg.MaxWaiting; {
	case shed && p.slotsUsedLocked()-p.counts[stateStopping] >= p.cfg.Size+p.cfg.MaxOverflow:
		return nil, nil, p.exhaustedLocked(noWait)
	case shed:
		p.waiters.add(wt) // served by its own start, or by any worker checked in first
		if p.roomLocked() > 0 {
			wt.started = true
			p.startLocked(wt)
		} // else a worker being stopped holds the slot: reconcileLocked starts one at its exit
	case limit > 0 && p.waiters.len() >= limit:
		return nil, nil, p.exhaustedLocked(false)
	default:
		p.waiters.add(wt)
		p.reconcileLocked()
	}
	p.notifyLocked()
	return wt, nil, nil
}

// exhaustedLocked is checkoutLocked's refusal: ErrPoolExhausted, with the
// rule that refused (the caller's NoWait, MaxWaiting set to NoWaiting, or
// MaxWaiting callers already waiting) and what to change for fewer
// refusals.
func (p *Pool) exhaustedLocked(noWait bool) error {
	all := p.cfg.Size + p.cfg.MaxOverflow
	switch {
	case noWait:
		return fmt.Errorf("%w: all %d workers are busy (Size+MaxOverflow) and the call does not wait (NoWait or TryCall); "+
			"to refuse fewer calls raise Size or MaxOverflow, and give callers that wait a pool of their own: they take checked-in workers first",
			ErrPoolExhausted, all)
	case p.cfg.MaxWaiting == NoWaiting:
		return fmt.Errorf("%w: all %d workers are busy (Size+MaxOverflow) and Config.MaxWaiting is NoWaiting (no call waits); "+
			"to refuse fewer calls raise Size or MaxOverflow, or let calls wait (MaxWaiting 0 or above) with a deadline",
			ErrPoolExhausted, all)
	}
	return fmt.Errorf("%w: %d callers are already waiting for one of the %d workers (Config.MaxWaiting is %d); "+
		"to refuse fewer calls raise MaxWaiting, Size or MaxOverflow",
		ErrPoolExhausted, p.waiters.len(), all, p.cfg.MaxWaiting)
}

// grantLocked gives wt its grant unless it gave up already, and reports
// whether it did. A granted worker must already be checked out.
func (p *Pool) grantLocked(wt *waiter, g grant) bool {
	if wt == nil || wt.decided {
		return false
	}
	wt.decided = true
	p.waiters.drop(wt) // a no-op when it was taken with next
	wt.granted <- g
	p.notifyLocked()
	return true
}

// offerLocked finds a use for a ready worker that is new or back from a
// caller: the waiter its start was for (if still waiting), else the caller
// waiting longest, else the idle set; but an overflow worker nobody waits
// for is stopped (poolboy's rule), unless Config.OverflowIdleTimeout keeps
// it idle a while, and a worker beyond Size+MaxOverflow (after Resize shrank
// the pool) is stopped even when callers wait.
//
// During a reload (reload.go) the workers of an older generation do not
// count: a new worker takes the place of an idle old one, which is retired,
// or waits idle for a busy old one to be checked in and retired; and a
// worker of an older generation is handed only to a waiting caller.
func (p *Pool) offerLocked(pw *pooledWorker, startedFor *waiter) {
	if p.closed {
		p.stopLocked(pw, causeClose)
		return
	}
	if pw.gen < p.gen.Load() && p.offerOldLocked(pw, startedFor) {
		return
	}
	oldServing := p.replacedByLocked(pw) // first: it may retire an idle old worker
	others := p.othersReadyLocked(pw) - oldServing
	if others >= p.cfg.Size+p.cfg.MaxOverflow {
		// Beyond Size+MaxOverflow: only after Resize shrank the pool. It
		// goes even when callers wait (the others serve them), whatever
		// OverflowIdleTimeout says, as database/sql closes a connection
		// beyond its limit on return.
		pw.stopCause = "the pool was resized"
		p.stopLocked(pw, causeResize)
		return
	}
	wt := startedFor
	if wt == nil || wt.decided {
		wt = p.waiters.next()
	}
	if wt != nil {
		p.setStateLocked(pw, stateCheckedOut)
		p.grantLocked(wt, grant{pw: pw})
		return
	}
	if others >= p.cfg.Size && p.cfg.OverflowIdleTimeout == 0 {
		pw.stopCause = "overflow worker no longer needed"
		p.stopLocked(pw, causeOverflow)
		return
	}
	p.setStateLocked(pw, stateIdle)
}

// checkinLocked takes a worker back from its caller. cond is the process's
// condition, read before the lock was taken.
func (p *Pool) checkinLocked(pw *pooledWorker, cond condition, recycle recycling) {
	if pw.state != stateCheckedOut {
		return // it died meanwhile, and its slot was freed then
	}
	switch {
	case cond == condInterrupted && !p.closed:
		p.setStateLocked(pw, stateDraining)
		p.goDrain(pw)
	case cond != condHealthy:
		p.killLocked(pw, cond == condDiedByItself)
	case recycle.now():
		p.recycleLocked(pw, recycle)
	default:
		p.offerLocked(pw, nil)
	}
	p.reconcileLocked()
}

// drainedLocked ends a drain: the worker answered its interrupt in time
// (ok) and is placed or recycled like any checked-in worker, or it did not
// and is killed.
func (p *Pool) drainedLocked(pw *pooledWorker, ok bool, recycle recycling) {
	switch {
	case pw.state != stateDraining:
		return // it died, or Close killed it
	case !ok:
		p.killLocked(pw, false)
	case recycle.now():
		p.recycleLocked(pw, recycle)
	default:
		p.offerLocked(pw, nil)
	}
	p.reconcileLocked()
}

// abandonLocked takes back a waiter whose caller gave up. It returns false
// when a grant was already sent, which the caller must then take and undo.
func (p *Pool) abandonLocked(wt *waiter) bool {
	if wt.decided {
		return false
	}
	wt.decided = true
	p.waiters.drop(wt)
	p.notifyLocked()
	return true
}

// failWaitersLocked gives err to every waiting caller.
func (p *Pool) failWaitersLocked(err error) {
	for wt := p.waiters.next(); wt != nil; wt = p.waiters.next() {
		p.grantLocked(wt, grant{err: err})
	}
}

// notifyLocked wakes everyone waiting for the next change of the pool's
// state (tests await states this way instead of polling).
func (p *Pool) notifyLocked() {
	if p.watched {
		close(p.changed)
		p.changed = make(chan struct{})
		p.watched = false
	}
}

// The accounting's two collections: the idle workers and the queue of
// callers waiting for one, each in one of go-commons-pool's deques, behind
// the pool's own verbs (put, peek, drop, all; add, next, first, drop, len).
// This is the only place that touches go-commons-pool.
//
// Only the deques are used, and only their non-blocking operations, always
// under Pool.mu: the pool decides every transition itself (above). The
// library's ObjectPool is not used because it decides things on callers'
// goroutines: BorrowObject calls MakeObject (a worker start) whenever fewer
// than MaxTotal objects exist, InvalidateObject may start a replacement and
// ReturnObject may destroy (stop) a worker while the caller waits. Its
// blocking waits are not used either: TimeoutCond.Signal drops a wake-up
// when its one-slot channel is full, so a waiter could sleep while an object
// is idle.

// idleSet holds the idle workers. put adds at the back; take and drop take
// from the back (LIFO) or the front (FIFO). A worker's inIdle says whether
// it is in the deque, so that the drop of setStateLocked after a take
// costs no deque lock.
type idleSet struct {
	deque *collections.LinkedBlockingDeque
	lifo  bool
}

func newIdleSet(strategy Strategy) idleSet {
	return idleSet{deque: collections.NewDeque(maxQueued), lifo: strategy == LIFO}
}

// put adds an idle worker.
func (s idleSet) put(w *pooledWorker) { w.inIdle = s.deque.AddLast(w) == nil }

// take removes and returns the worker the Strategy picks, or nil; the
// caller moves it out of stateIdle at once (setStateLocked).
func (s idleSet) take() *pooledWorker {
	var item any
	if s.lifo {
		item = s.deque.PollLast()
	} else {
		item = s.deque.PollFirst()
	}
	w, _ := item.(*pooledWorker)
	if w != nil {
		w.inIdle = false
	}
	return w
}

// drop removes w, unless take did, and reports whether it was there. It
// searches from the end take takes from.
func (s idleSet) drop(w *pooledWorker) bool {
	if !w.inIdle {
		return false
	}
	w.inIdle = false
	if s.lifo {
		return s.deque.RemoveLastOccurrence(w)
	}
	return s.deque.RemoveFirstOccurrence(w)
}

// all returns the idle workers, longest idle first.
func (s idleSet) all() []*pooledWorker {
	items := s.deque.ToSlice()
	ws := make([]*pooledWorker, len(items))
	for i, item := range items {
		ws[i] = item.(*pooledWorker)
	}
	return ws
}

// waitQueue holds the callers waiting for a worker, first come first served.
// n is the deque's size, kept here (under Pool.mu, as every use of the
// deque): an empty queue, which every check-in and reconcileLocked of a
// pool without waiters asks, costs no deque lock.
type waitQueue struct {
	deque *collections.LinkedBlockingDeque
	n     int
}

func newWaitQueue() waitQueue {
	return waitQueue{deque: collections.NewDeque(maxQueued)}
}

// maxQueued is the wait queue's capacity: in practice unbounded
// (Config.MaxWaiting is the limit users set).
const maxQueued = 1<<31 - 1

// add puts a waiter at the end of the queue.
func (q *waitQueue) add(wt *waiter) {
	if q.deque.AddLast(wt) == nil {
		q.n++
	}
	wt.queued = true
}

// next removes and returns the longest waiting caller, or nil.
func (q *waitQueue) next() *waiter {
	if q.n == 0 {
		return nil
	}
	wt, _ := q.deque.PollFirst().(*waiter)
	if wt != nil {
		wt.queued = false
		q.n--
	}
	return wt
}

// first returns the longest waiting caller, leaving it in the queue, or nil.
func (q *waitQueue) first() *waiter {
	if q.n == 0 {
		return nil
	}
	wt, _ := q.deque.PeekFirst().(*waiter)
	return wt
}

// drop removes a waiter from the queue if it is still there (a search, so
// only when it is: a long queue must not make every hand-off slow).
func (q *waitQueue) drop(wt *waiter) {
	if wt.queued {
		if q.deque.RemoveFirstOccurrence(wt) {
			q.n--
		}
		wt.queued = false
	}
}

// len returns the number of waiting callers.
func (q *waitQueue) len() int { return q.n }
