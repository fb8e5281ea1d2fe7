package pypool

// objects.go is the only file that touches go-commons-pool. It keeps two
// collections for the pool: the idle workers and the queue of callers
// waiting for one, each in one of the library's deques, behind the pool's own
// verbs (put, peek, drop, all; add, next, drop, len).
//
// Only the deques are used, and only their non-blocking operations, always
// under Pool.mu: the pool decides every transition itself (state.go). The
// library's ObjectPool is not used because it decides things on callers'
// goroutines: BorrowObject calls MakeObject (a worker start) whenever fewer
// than MaxTotal objects exist, InvalidateObject may start a replacement and
// ReturnObject may destroy (stop) a worker while the caller waits. Its
// blocking waits are not used either: TimeoutCond.Signal drops a wake-up
// when its one-slot channel is full, so a waiter could sleep while an object
// is idle.

import (
	"github.com/jolestar/go-commons-pool/v2/collections"
)

// idleSet holds the idle workers. put adds at the back; peek and drop take
// from the back (LIFO) or the front (FIFO).
type idleSet struct {
	deque *collections.LinkedBlockingDeque
	lifo  bool
}

func newIdleSet(strategy Strategy) idleSet {
	return idleSet{deque: collections.NewDeque(maxQueued), lifo: strategy == LIFO}
}

// put adds an idle worker.
func (s idleSet) put(w *pooledWorker) { _ = s.deque.AddLast(w) }

// peek returns the worker the Strategy picks, or nil; drop takes it out.
func (s idleSet) peek() *pooledWorker {
	var item any
	if s.lifo {
		item = s.deque.PeekLast()
	} else {
		item = s.deque.PeekFirst()
	}
	w, _ := item.(*pooledWorker)
	return w
}

// drop removes w and reports whether it was idle. It searches from the end
// peek takes from, so that dropping the worker peek returned is O(1).
func (s idleSet) drop(w *pooledWorker) bool {
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
type waitQueue struct {
	deque *collections.LinkedBlockingDeque
}

func newWaitQueue() waitQueue {
	return waitQueue{deque: collections.NewDeque(maxQueued)}
}

// maxQueued is the wait queue's capacity: in practice unbounded
// (Config.MaxWaiting is the limit users set).
const maxQueued = 1<<31 - 1

// add puts a waiter at the end of the queue.
func (q waitQueue) add(wt *waiter) {
	_ = q.deque.AddLast(wt)
	wt.queued = true
}

// next removes and returns the longest waiting caller, or nil.
func (q waitQueue) next() *waiter {
	wt, _ := q.deque.PollFirst().(*waiter)
	if wt != nil {
		wt.queued = false
	}
	return wt
}

// first returns the longest waiting caller, leaving it in the queue, or nil.
func (q waitQueue) first() *waiter {
	wt, _ := q.deque.PeekFirst().(*waiter)
	return wt
}

// drop removes a waiter from the queue if it is still there (a search, so
// only when it is: a long queue must not make every hand-off slow).
func (q waitQueue) drop(wt *waiter) {
	if wt.queued {
		q.deque.RemoveFirstOccurrence(wt)
		wt.queued = false
	}
}

// len returns the number of waiting callers.
func (q waitQueue) len() int { return q.deque.Size() }
