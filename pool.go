// Package pypool calls Python functions from Go through a supervised pool of
// long-lived python3 worker processes.
//
// A Pool keeps Config.Size workers running, starts up to Config.MaxOverflow
// more under load, and replaces any worker that crashes. Each worker imports
// Config.Module once; Call runs one of its public functions:
//
//	pool, err := pypool.New(ctx, pypool.Config{Module: "my_module"})
//	...
//	defer pool.Close(context.Background())
//	out, err := pool.Call(ctx, "duplicate_text", "testing") // "testingtesting"
//
// Arguments and results cross as msgpack; the README has the table of types.
// The Python side needs nothing but the standard library: the worker runtime
// ships inside this package.
package pypool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	gcp "github.com/jolestar/go-commons-pool/v2"
)

// A worker's life, each transition a compare-and-swap on process.state:
//
//	starting --registered--> idle <--checkout/checkin--> busy
//	idle --exit watcher sees it die--> dead (and InvalidateObject)
//	busy --checkin of a crashed, broken or undrained worker--> dead
//	any  --DestroyObject (Close, overflow return, invalidation)--> dead
//
// A dead worker is never handed out again. go-commons-pool keeps the idle
// list and the waiters; it never learns of a death by itself, so the exit
// watcher (onExit) and the keeper goroutine (keep) do that part.

// Pool is a supervised pool of Python worker processes. It is safe for
// concurrent use. Create it with New and end it with Close.
type Pool struct {
	cfg     Config
	spec    *workerSpec
	log     *slog.Logger
	objects *gcp.ObjectPool

	lifetime context.Context // cancelled when Close begins
	noWait   context.Context // always done: borrows that must not wait
	endLife  context.CancelFunc
	kick     chan struct{} // wakes the keeper; capacity 1
	wg       sync.WaitGroup

	returnMu   sync.Mutex // serialises ReturnObject (see release)
	mu         sync.Mutex
	changed    chan struct{} // closed and replaced at a change of workers or waiters
	watched    bool          // someone waits on changed
	closed     bool
	closeDone  chan struct{}
	procs      map[*process]struct{} // every started process not yet reaped
	waiters    map[*waiter]struct{}
	checkedOut int
	allIn      chan struct{} // closed when Close waits and checkedOut reaches 0

	backoff    startBackoff
	ready      atomic.Bool // New has returned the pool
	waiting    atomic.Int64
	calls      atomic.Uint64
	crashes    atomic.Uint64
	restarts   atomic.Uint64
	startFails atomic.Uint64
	recycled   atomic.Uint64
}

// waiter is a caller blocked in checkout; a failed worker start wakes it.
type waiter struct {
	cancel context.CancelCauseFunc
}

// keeperKey marks the keeper's context: its starts ignore the backoff it
// applies itself.
type keeperKey struct{}

// New starts a pool of cfg.Size workers and returns when all of them have
// imported cfg.Module. If a worker can not start, New stops the others and
// returns an error wrapping ErrWorkerStart; when the module failed to import,
// the error also wraps the *PythonError with its traceback.
func New(ctx context.Context, cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	dir, err := runtimeDir()
	if err != nil {
		return nil, err
	}
	python, err := resolvePython(ctx, cfg.Python, cfg.env(), cfg.Dir)
	if err != nil {
		return nil, err
	}
	spec, err := cfg.spec(python, dir)
	if err != nil {
		return nil, err
	}
	return start(ctx, cfg, spec)
}

// start starts a pool whose workers run spec.
func start(ctx context.Context, cfg Config, spec *workerSpec) (*Pool, error) {
	p := &Pool{
		cfg:       cfg,
		spec:      spec,
		log:       cfg.Logger,
		kick:      make(chan struct{}, 1),
		closeDone: make(chan struct{}),
		procs:     make(map[*process]struct{}),
		waiters:   make(map[*waiter]struct{}),
		changed:   make(chan struct{}),
	}
	p.lifetime, p.endLife = context.WithCancel(context.Background())
	noWait, cancel := context.WithCancelCause(context.Background())
	cancel(errNoWait)
	p.noWait = noWait
	p.objects = gcp.NewObjectPool(p.lifetime, factory{p}, p.objectPoolConfig())
	if err := p.fill(ctx); err != nil {
		p.Close(context.Background())
		return nil, err
	}
	p.ready.Store(true)
	p.wg.Add(1)
	go p.keep()
	if p.sweeping() {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.sweep()
		}()
	}
	return p, nil
}

func (p *Pool) objectPoolConfig() *gcp.ObjectPoolConfig {
	c := gcp.NewDefaultPoolConfig() // a zero ObjectPoolConfig is not the defaults
	c.MaxTotal = p.cfg.Size + p.cfg.MaxOverflow
	c.MaxIdle = p.cfg.Size // a worker returned beyond Size idle ones is stopped...
	if p.cfg.OverflowIdleTimeout > 0 {
		c.MaxIdle = c.MaxTotal // ...unless overflow workers linger (recycle.go)
	}
	c.MinIdle = 0 // keeping Size workers is the keeper's job
	c.LIFO = p.cfg.Strategy == LIFO
	c.BlockWhenExhausted = true
	c.TestOnBorrow, c.TestOnReturn, c.TestWhileIdle = false, false, false
	c.TimeBetweenEvictionRuns = 0 // no evictor
	return c
}

// fill starts Size workers in parallel and returns the first error.
func (p *Pool) fill(ctx context.Context) error {
	errs := make(chan error, p.cfg.Size)
	for range p.cfg.Size {
		go func() { errs <- p.objects.AddObject(ctx) }()
	}
	var first error
	for range p.cfg.Size {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Call runs the public function fn of the pool's module with args and returns
// its result, decoded as the README's type table says. A Kwargs value as the
// last argument becomes Python keyword arguments.
//
// Call waits for a free worker until ctx ends (or Config.CallTimeout, when
// ctx has no deadline). If ctx ends while Python runs the function, Call
// returns ctx's error at once; the worker is interrupted (KeyboardInterrupt)
// and goes back to the pool if it answers within Config.InterruptGrace,
// otherwise it is replaced. With Config.CrashRetries, a call whose worker
// crashed is tried again on another worker.
func (p *Pool) Call(ctx context.Context, fn string, args ...any) (any, error) {
	return p.callValue(ctx, fn, args, true)
}

// TryCall is Call without waiting: when no worker is idle it fails at once
// with ErrPoolExhausted (it does not start an overflow worker either), so
// that a saturated service can shed load.
func (p *Pool) TryCall(ctx context.Context, fn string, args ...any) (any, error) {
	return p.callValue(ctx, fn, args, false)
}

// callValue makes a call whose result is decoded as Call documents.
func (p *Pool) callValue(ctx context.Context, fn string, args []any, wait bool) (any, error) {
	var result any
	err := p.call(ctx, fn, args, func(b []byte, owned bool) (err error) {
		result, err = decodeValue(b, owned)
		return err
	}, wait)
	return result, err
}

func (p *Pool) call(ctx context.Context, fn string, args []any, into decodeFunc, wait bool) error {
	ctx, cancel := p.withCallTimeout(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := p.callOnce(ctx, fn, args, into, wait)
		if err == nil || attempt >= p.cfg.CrashRetries || !retryable(err) || !p.awaitBackoff(ctx) {
			return err
		}
		p.log.Debug("pypool: retrying a call whose worker failed", "function", fn, "attempt", attempt+1, "error", err)
	}
}

// awaitBackoff waits out the start backoff, so that restarts and retries do
// not spin through a crash loop; false if ctx ended or the pool closed.
func (p *Pool) awaitBackoff(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	wait := p.backoff.delay()
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	case <-p.lifetime.Done():
		return false
	}
}

func (p *Pool) callInto(ctx context.Context, fn string, args []any, into decodeFunc) error {
	return p.call(ctx, fn, args, into, true)
}

func (p *Pool) callOnce(ctx context.Context, fn string, args []any, into decodeFunc, wait bool) error {
	proc, err := p.checkout(ctx, wait)
	if err != nil {
		return err
	}
	defer p.checkin(proc)
	return p.callOn(ctx, proc, fn, args, into)
}

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

// withCallTimeout applies Config.CallTimeout to a context without deadline.
func (p *Pool) withCallTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.cfg.CallTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			return context.WithTimeout(ctx, p.cfg.CallTimeout)
		}
	}
	return ctx, func() {}
}

func (p *Pool) callOn(ctx context.Context, proc *process, fn string, args []any, into decodeFunc) error {
	args, kwargs := splitKwargs(args)
	err := proc.call(ctx, fn, args, kwargs, into)
	p.calls.Add(1)
	switch {
	case err == nil:
		p.backoff.callSucceeded()
	case errors.Is(err, ErrWorkerCrashed) && proc.stopping.Load() && p.isClosed():
		return fmt.Errorf("%w: the worker was stopped while the call ran: %w", ErrPoolClosed, err)
	}
	return err
}

// Transaction checks a worker out, runs fn with it and checks it back in,
// also when fn returns an error or panics (the panic goes on after the
// check-in). All calls made through the Worker run in the same Python process,
// one after the other. The Worker must not be used after fn returns.
func (p *Pool) Transaction(ctx context.Context, fn func(w *Worker) error) error {
	proc, err := p.checkout(ctx, true)
	if err != nil {
		return err
	}
	w := &Worker{pool: p, proc: proc}
	defer func() {
		w.released.Store(true)
		p.checkin(proc)
	}()
	return fn(w)
}

// Stats is a snapshot of a pool's state and counters.
type Stats struct {
	Size        int // configured number of workers kept running
	MaxOverflow int // configured limit of extra workers

	Workers  int // workers running now (idle and in use)
	Idle     int // workers waiting for a call
	InUse    int // workers checked out by callers
	Overflow int // workers running beyond Size
	Waiting  int // callers waiting to check a worker out

	Calls         uint64 // calls made, whatever their outcome
	Crashes       uint64 // workers that died without being asked to
	Restarts      uint64 // workers started after New to replace or add to the first ones
	StartFailures uint64 // worker starts that failed
	Recycled      uint64 // healthy workers replaced on purpose (call, age, memory and idle limits)
}

// Stats returns a snapshot of the pool's state and counters.
func (p *Pool) Stats() Stats {
	idle, active := p.objects.GetNumIdle(), p.objects.GetNumActive()
	return Stats{
		Size:          p.cfg.Size,
		MaxOverflow:   p.cfg.MaxOverflow,
		Workers:       idle + active,
		Idle:          idle,
		InUse:         active,
		Overflow:      max(0, idle+active-p.cfg.Size),
		Waiting:       int(p.waiting.Load()),
		Calls:         p.calls.Load(),
		Crashes:       p.crashes.Load(),
		Restarts:      p.restarts.Load(),
		StartFailures: p.startFails.Load(),
		Recycled:      p.recycled.Load(),
	}
}

// Close stops the pool. New calls fail with ErrPoolClosed at once, and so do
// callers waiting for a worker. Calls in flight may finish until ctx ends;
// then every worker is stopped, gracefully (end of input, Config.StopTimeout)
// or by force, and Close returns when all have exited. Close returns ctx's
// error if it had to cut calls off. Calling Close again waits for the first.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.closeDone
		return nil
	}
	p.closed = true
	allIn := make(chan struct{})
	if p.checkedOut == 0 {
		close(allIn)
	} else {
		p.allIn = allIn
	}
	waiters := p.takeWaiters()
	p.mu.Unlock()
	defer close(p.closeDone)

	for w := range waiters {
		w.cancel(ErrPoolClosed)
	}
	p.endLife() // stops the keeper and aborts starts in progress
	var err error
	select {
	case <-allIn:
	case <-ctx.Done():
		err = fmt.Errorf("pypool: Close: calls still running were stopped: %w", ctx.Err())
	}
	p.stopIdle()
	p.objects.Close(context.Background()) // destroys idle workers, wakes waiters
	for _, proc := range p.snapshot() {
		proc.stopping.Store(true)
		proc.kill()
	}
	p.wg.Wait()
	return err
}

// stopIdle closes the input of every idle worker at once, so that they exit
// in parallel rather than one after the other in the object pool's Close.
func (p *Pool) stopIdle() {
	for _, proc := range p.snapshot() {
		if procState(proc.state.Load()) == stateIdle {
			proc.stopping.Store(true)
			proc.toWorker.Close()
		}
	}
}

func (p *Pool) snapshot() []*process {
	p.mu.Lock()
	defer p.mu.Unlock()
	procs := make([]*process, 0, len(p.procs))
	for proc := range p.procs {
		procs = append(procs, proc)
	}
	return procs
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// checkout hands a live worker to the caller.
func (p *Pool) checkout(ctx context.Context, wait bool) (*process, error) {
	for {
		if p.isClosed() {
			return nil, ErrPoolClosed
		}
		if err := p.admit(wait); err != nil {
			return nil, err
		}
		obj, err := p.borrow(ctx, wait)
		if err != nil {
			return nil, err
		}
		proc := obj.(*process)
		if !proc.state.CompareAndSwap(int32(stateIdle), int32(stateBusy)) {
			p.discard(proc) // it died while idle
			continue
		}
		p.mu.Lock()
		closed := p.closed
		if !closed {
			p.checkedOut++
		}
		p.mu.Unlock()
		if closed {
			proc.state.Store(int32(stateDead))
			_ = p.objects.InvalidateObject(context.Background(), proc)
			return nil, ErrPoolClosed
		}
		return proc, nil
	}
}

// discard drops a worker that was found dead on its way out of the pool. Its
// exit watcher or the sweeper normally took it out of the object pool
// already; but a worker that died in the instant between its start and the
// object pool recording it was not found there, and would stay counted as
// in use forever. InvalidateObject does nothing for one already destroyed.
func (p *Pool) discard(proc *process) {
	if !proc.destroyed.Load() {
		_ = p.objects.InvalidateObject(context.Background(), proc)
	}
}

// borrow takes a worker from the object pool, waiting until ctx ends. A
// failed worker start wakes every waiter: the object pool itself would leave
// them blocked (go-commons-pool issue #50). They get the error if it is fatal
// and borrow again otherwise.
func (p *Pool) borrow(ctx context.Context, wait bool) (any, error) {
	for {
		obj, err := p.borrowOnce(ctx, wait)
		if !errors.Is(err, errRetryBorrow) {
			return obj, err
		}
	}
}

func (p *Pool) borrowOnce(ctx context.Context, wait bool) (any, error) {
	if p.objects.GetNumIdle() > 0 {
		// Fast path: take an idle worker without registering as a waiter.
		// The context is already done, so the object pool starts nothing
		// and waits for nothing.
		if obj, err := p.objects.BorrowObject(p.noWait); err == nil {
			return obj, nil
		}
	}
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !wait {
		// The object pool hands out an idle worker before it looks at the
		// context; with none idle, it fails at once.
		cancel(errNoWait)
		obj, err := p.objects.BorrowObject(bctx)
		if err != nil && !p.isClosed() {
			return nil, fmt.Errorf("%w: no idle worker (TryCall does not wait)", ErrPoolExhausted)
		}
		return obj, p.borrowError(ctx, bctx, err)
	}
	w := &waiter{cancel: cancel}
	p.waiting.Add(1)
	p.mu.Lock()
	p.waiters[w] = struct{}{}
	p.notifyLocked()
	p.mu.Unlock()
	obj, err := p.objects.BorrowObject(bctx)
	p.waiting.Add(-1)
	p.mu.Lock()
	delete(p.waiters, w)
	p.notifyLocked()
	p.mu.Unlock()
	return obj, p.borrowError(ctx, bctx, err)
}

// admit refuses a caller at once when Config.MaxWaiting callers already
// wait and no worker is idle.
func (p *Pool) admit(wait bool) error {
	limit := p.cfg.MaxWaiting
	if !wait || limit == 0 || p.objects.GetNumIdle() > 0 {
		return nil
	}
	if n := p.waiting.Load(); n >= int64(limit) {
		return fmt.Errorf("%w: %d callers are already waiting for a worker (Config.MaxWaiting)", ErrPoolExhausted, n)
	}
	return nil
}

// borrowError turns the object pool's answer into ours.
func (p *Pool) borrowError(ctx, bctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case p.isClosed():
		return ErrPoolClosed
	case ctx.Err() != nil:
		// The object pool returns its own error type for a wait that timed
		// out; callers want the context's.
		return fmt.Errorf("pypool: waiting for a worker: %w", ctx.Err())
	case bctx.Err() != nil && context.Cause(bctx) != errNoWait:
		return context.Cause(bctx) // a worker start failed: errRetryBorrow or fatal
	}
	return err
}

func (p *Pool) takeWaiters() map[*waiter]struct{} {
	waiters := p.waiters
	p.waiters = make(map[*waiter]struct{})
	return waiters
}

// checkin takes a worker back from a caller.
func (p *Pool) checkin(proc *process) {
	if proc.needsDrain() && p.goTracked(func() { p.drain(proc) }) {
		return
	}
	p.release(proc, proc.healthy())
}

// goTracked runs f in a goroutine that Close waits for, unless the pool is
// closed; it reports whether f was started.
func (p *Pool) goTracked(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// drain waits for an interrupted worker's answer, then releases it.
func (p *Pool) drain(proc *process) {
	ok := proc.awaitInterrupted(p.cfg.InterruptGrace)
	if !ok {
		p.log.Warn("pypool: worker did not answer its interrupt in time; replacing it",
			"worker", proc.pid, "grace", p.cfg.InterruptGrace)
	}
	p.release(proc, ok && proc.healthy())
}

// release returns a checked-out worker to the pool, or destroys it.
func (p *Pool) release(proc *process, healthy bool) {
	ctx := context.Background()
	reason := ""
	if healthy {
		reason = p.recycleReason(proc)
	}
	switch {
	case healthy && reason != "":
		proc.state.Store(int32(stateDead))
		p.recycle(proc, reason)
	case healthy && proc.state.CompareAndSwap(int32(stateBusy), int32(stateIdle)):
		proc.idleSince.Store(time.Now().UnixNano())
		// ReturnObject counts the idle workers, then adds this one: two
		// returns at once could both pass the MaxIdle check and keep an
		// overflow worker that should stop.
		p.returnMu.Lock()
		_ = p.objects.ReturnObject(ctx, proc) // destroys it beyond MaxIdle or when closed
		p.returnMu.Unlock()
	default:
		proc.state.Store(int32(stateDead))
		proc.retire()
		_ = p.objects.InvalidateObject(ctx, proc)
	}
	p.mu.Lock()
	p.checkedOut--
	if p.checkedOut == 0 && p.allIn != nil {
		close(p.allIn)
		p.allIn = nil
	}
	p.notifyLocked()
	p.mu.Unlock()
}

// factory adapts the pool to go-commons-pool's PooledObjectFactory.
type factory struct{ pool *Pool }

func (f factory) MakeObject(ctx context.Context) (*gcp.PooledObject, error) {
	proc, err := f.pool.startWorker(ctx)
	if err != nil {
		return nil, err
	}
	return gcp.NewPooledObject(proc), nil
}

func (f factory) DestroyObject(_ context.Context, o *gcp.PooledObject) error {
	f.pool.destroy(o.Object.(*process))
	return nil
}

func (factory) ValidateObject(context.Context, *gcp.PooledObject) bool  { return true }
func (factory) ActivateObject(context.Context, *gcp.PooledObject) error { return nil }

// PassivateObject refuses a worker that died before the object pool recorded
// it (see discard), so that AddObject destroys it instead of listing it idle.
func (factory) PassivateObject(_ context.Context, o *gcp.PooledObject) error {
	proc := o.Object.(*process)
	if procState(proc.state.Load()) == stateDead && !proc.destroyed.Load() {
		return errDeadWorker
	}
	return nil
}

// startWorker starts one worker, honouring the crash-loop backoff: while it
// lasts, a start asked for by a caller fails at once with the last failure.
func (p *Pool) startWorker(ctx context.Context) (*process, error) {
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return nil, ErrPoolClosed
	case ctx.Err() != nil:
		p.mu.Unlock()
		return nil, ctx.Err()
	}
	if ctx.Value(keeperKey{}) == nil {
		if err := p.backoff.refusal(); err != nil {
			p.mu.Unlock()
			return nil, err
		}
	}
	p.wg.Add(1) // for the process's exit watcher, which ends in onExit
	p.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.lifetime, cancel)
	defer stop()
	proc, err := startProcess(ctx, p.spec, p.onExit)
	switch {
	case err != nil && p.lifetime.Err() != nil:
		return nil, ErrPoolClosed
	case err != nil && ctx.Err() != nil:
		return nil, err // the caller gave up: not the worker's failure
	case err != nil:
		p.startFailed(err)
		return nil, err
	}
	return proc, p.register(proc)
}

// register adds a started process to the pool's set, or stops it if the
// pool closed meanwhile.
func (p *Pool) register(proc *process) error {
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.limits(proc)
		p.procs[proc] = struct{}{}
		p.notifyLocked()
	}
	p.mu.Unlock()
	if closed {
		proc.stopping.Store(true)
		proc.kill()
		return ErrPoolClosed
	}
	p.backoff.started()
	if p.ready.Load() {
		p.restarts.Add(1)
	}
	return nil
}

// destroy stops a worker the object pool is done with.
func (p *Pool) destroy(proc *process) {
	proc.destroyed.Store(true)
	proc.state.Store(int32(stateDead))
	proc.stop(p.cfg.StopTimeout)
	p.kickKeeper()
}

// onExit runs in a worker's exit watcher once the process has been reaped.
func (p *Pool) onExit(proc *process) {
	defer p.wg.Done()
	p.mu.Lock()
	_, registered := p.procs[proc]
	delete(p.procs, proc)
	p.notifyLocked()
	p.mu.Unlock()
	if !registered {
		return // it never joined the pool: startWorker reports why
	}
	if proc.crashed {
		p.crashes.Add(1)
		p.log.Warn("pypool: worker crashed; replacing it", "worker", proc.pid, "error", proc.exitErr)
		if time.Since(proc.started) < quickDeath && proc.served.Load() == 0 {
			p.backoff.diedYoung()
		}
	}
	if proc.state.CompareAndSwap(int32(stateIdle), int32(stateDead)) {
		// It died while idle: take it out of the pool. A caller that polled
		// it meanwhile sees it dead in checkout and takes another.
		_ = p.objects.InvalidateObject(context.Background(), proc)
	}
	p.notify()
	p.kickKeeper()
}

// startFailed records a failed start and wakes every waiting caller: with
// the error if it is fatal, to borrow again otherwise.
func (p *Pool) startFailed(err error) {
	p.startFails.Add(1)
	p.log.Error("pypool: a worker failed to start", "error", err)
	cause := errRetryBorrow
	if p.backoff.failedStart(err) {
		cause = err
	}
	p.mu.Lock()
	waiters := p.takeWaiters()
	p.mu.Unlock()
	for w := range waiters {
		w.cancel(cause)
	}
	p.kickKeeper()
}

// notify wakes everyone waiting in awaitChange.
func (p *Pool) notify() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notifyLocked()
}

// notifyLocked wakes everyone waiting in awaitChange. p.mu must be held.
func (p *Pool) notifyLocked() {
	if p.watched {
		close(p.changed)
		p.changed = make(chan struct{})
		p.watched = false
	}
}

// awaitChange returns a channel closed at the next change of the pool's
// workers or waiters (used by tests to await a state without polling).
func (p *Pool) awaitChange() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watched = true
	return p.changed
}

func (p *Pool) kickKeeper() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// keep brings the pool back to Size workers whenever it is kicked: after a
// crash, a destroyed worker or a failed start.
func (p *Pool) keep() {
	defer p.wg.Done()
	ctx := context.WithValue(p.lifetime, keeperKey{}, true)
	for {
		select {
		case <-p.lifetime.Done():
			return
		case <-p.kick:
		}
		p.refill(ctx)
	}
}

func (p *Pool) refill(ctx context.Context) {
	for p.liveWorkers() < p.cfg.Size {
		if !p.awaitBackoff(ctx) {
			return
		}
		before := p.liveWorkers()
		err := p.objects.AddObject(ctx)
		p.notify()
		if err != nil {
			if p.lifetime.Err() != nil {
				return
			}
			continue // recorded by startWorker; the next round waits longer
		}
		if p.liveWorkers() <= before {
			return // at MaxTotal: a caller is starting one; we are kicked again
		}
	}
}

func (p *Pool) liveWorkers() int {
	return p.objects.GetNumIdle() + p.objects.GetNumActive()
}
