package pypool

// worker.go is the handle a Transaction gives its function: a pinned worker,
// valid only inside the transaction.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Worker is a worker checked out by Pool.Transaction. Its calls all run in
// the same Python process, one at a time (a call made while another runs,
// from another goroutine, waits its turn until its context ends). It is valid only inside its
// transaction: afterwards every method that calls returns ErrWorkerReleased.
type Worker struct {
	pool      *Pool
	pw        *pooledWorker
	life      sync.RWMutex // read-held by each call on it; its transaction's end takes it to set released
	released  atomic.Bool
	streaming atomic.Bool // a loop over its Stream runs
}

// enter admits one call on the Worker until leave, or refuses it once its
// transaction has ended or is ending (TryRLock fails while the end waits
// for the calls in flight): a call never runs on the worker after it is
// checked in.
func (w *Worker) enter() error {
	if w.life.TryRLock() {
		if !w.released.Load() {
			return nil
		}
		w.life.RUnlock()
	}
	return fmt.Errorf("%w: the transaction of worker %d has ended", ErrWorkerReleased, w.Pid())
}

// leave ends a call that enter admitted.
func (w *Worker) leave() { w.life.RUnlock() }

// release ends the Worker's transaction: it waits for the calls in
// flight on it (from goroutines that outlive fn), then refuses any more.
func (w *Worker) release() {
	w.life.Lock()
	w.released.Store(true)
	w.life.Unlock()
}

// Call runs fn in this worker, like Pool.Call. After a call cut off by its
// context, the worker is being interrupted and further calls return
// ErrWorkerReleased: end the transaction and start another. If the worker
// died (even between calls), Call returns an error wrapping
// ErrWorkerCrashed; the pool has already replaced it.
func (w *Worker) Call(ctx context.Context, fn string, args ...any) (any, error) {
	var r valueResult
	err := w.pool.call(ctx, w, fn, args, exchange{into: r.decode})
	return r.v, err
}

// Pid returns the worker's process id.
func (w *Worker) Pid() int { return w.pw.proc.pid }

// PythonVersion returns the worker's Python version, such as "3.11.7".
func (w *Worker) PythonVersion() string { return w.pw.proc.hello.pythonVersion }

// Codec returns the msgpack codec the worker named in its handshake:
// "msgpack-c" when msgpack's C extension is found among the interpreter's
// own paths, "pure" otherwise. The C extension is imported when the
// worker first waits idle, or after its first few calls at the latest (the
// pure codec, which puts the same bytes on the wire, serves until then);
// should that import fail, the
// worker says so on its stderr (logged as a Warn record) and runs on with
// the pure codec, and Codec still returns "msgpack-c".
func (w *Worker) Codec() string { return w.pw.proc.hello.codec }
