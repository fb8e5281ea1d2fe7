// pool.go is the Pool: New, Close, Resize, Ping, Transaction, the checkout
// and the check-in. Every way to call is in call.go; the package overview is in
// doc.go.

package pypool

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a supervised pool of Python worker processes. It is safe for
// concurrent use. Create it with New and end it with Close.
//
// Its semantics are poolboy's: at rest exactly Config.Size workers run, all
// idle; under load up to Size+MaxOverflow, worker processes being stopped
// included (a stopped worker holds its slot until it has exited), and
// Config.ReloadSurge more while Reload runs; a worker
// checked in while overflow workers exist and nobody waits is stopped; no
// caller waits while a worker is idle; a worker that dies frees its slot at
// once and is replaced without a caller having to ask.
type Pool struct {
	cfg  Config
	spec *workerSpec
	log  *slog.Logger

	lifetime context.Context    // ends when Close begins: aborts starts in flight
	endLife  context.CancelFunc // ends lifetime
	wg       sync.WaitGroup     // starts, stops, drains, exit watchers, the sweeper

	// Guarded by mu: the accounting of state.go.
	mu        sync.Mutex
	closed    bool
	workers   map[*process]*pooledWorker // every worker that joined and is not yet reaped
	counts    [numStates]int             // workers by state
	idle      idleSet                    // the workers in stateIdle
	waiters   waitQueue                  // callers blocked in checkout
	starting  int                        // starts in flight
	allIn     chan struct{}              // closed when Close waits and no worker is checked out
	changed   chan struct{}              // closed and replaced at every change (notifyLocked)
	watched   bool                       // someone waits on changed
	closeDone chan struct{}              // closed when the first Close returns

	// Also guarded by mu: the counters of worker starts and stops (stats.go).
	starts     [numCauses]uint64 // successful starts by cause
	stops      [numCauses]uint64 // workers that left their slot, by cause (causeCrash: Stats.Crashes)
	owed       [numCauses]uint64 // replacements due, by the class of what left
	startFails uint64
	recycled   uint64

	backoff startBackoff
	// The fork server (StartMethod StartForkServer): the running template, nil
	// when there is none, and its own backoff.
	forks       atomic.Pointer[forkServer]
	forkBackoff startBackoff
	calls       atomic.Uint64 // calls sent to a worker
	callStats   callCounters
	tracers     atomic.Pointer[Tracer] // set by Pool.AddTracer: Config.Tracer and the added ones; nil: Config.Tracer alone

	guardBackoff startBackoff // the guardian's restarts (supervise.go)

	// The fork server's first worker (supervise.go's startForkServer):
	// whether the template's start is pending or in flight (it is not the
	// pool's, forks, until it runs: workers started meanwhile, New's
	// first, are started by exec); and, guarded by mu, that template until
	// the stand-in has started, and the calls the stand-in had served when
	// it was handed over, which its forked successor takes on.
	// forkSettled is closed once New's template started or failed (or
	// will never start): a Reload waits for it (reloadForkServer).
	forkPending atomic.Bool
	pendingFork *forkServer
	handedCalls int64
	forkSettled chan struct{}
	settleOnce  sync.Once

	// Pool.Reload (reload.go). gen is the generation workers are started
	// in and below which a worker is retired at check-in; read without mu
	// by recycleReason, written under mu.
	gen atomic.Uint64
	// Guarded by mu: the last generation a reload took (gen's successor
	// is taken from it), the reload running (nil: none), in-flight starts
	// by generation, the fork servers replaced by a reload that still have
	// workers, and the reloads' counters.
	lastGen        uint64
	reload         *reloadRun
	startingGen    map[uint64]int
	oldForks       []*forkServer
	reloads        uint64
	reloadsDone    uint64
	reloadFailures uint64

	async asyncCalls // Config.AsyncCalls: the workers serving async calls (async.go); guarded by mu
}

// New starts a pool of cfg.Size workers and returns when all of them have
// imported cfg.Module. If a worker can not start, New stops the others and
// returns the first start error, transient or not, wrapping ErrWorkerStart;
// when the module failed to import, the error also wraps the *PythonError
// with its traceback, and a worker that exited (or was killed) before its
// handshake gives a *WorkerExitError.
func New(ctx context.Context, cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.StartMethod == StartExec && (len(cfg.Preload) > 0 || cfg.PreloadSetUp) {
		// Only a template preloads: each worker started by exec imports
		// the module (and runs SetUp) itself.
		cfg.Logger.Warn(msgPreloadUnused, "preload", cfg.Preload, "preload_setup", cfg.PreloadSetUp)
	}
	// The first workers' interpreters start before the runtime's install
	// is checked, held until it has been (newPool, startGate).
	spec, check, err := cfg.newSpec()
	if err != nil {
		return nil, err
	}
	spec.guard = newGuardian(cfg.Logger)
	return newPool(ctx, cfg, spec, check)
}

// newSpec finds the interpreter, installs Config.PythonFS and returns what
// a worker start runs (without its guardian), and the runtime's install
// to check before a worker reads it: check verifies (or writes) it and
// sets the spec's runtimeDir (nil when done already: with a Credential,
// which is checked against the installed files).
func (cfg Config) newSpec() (spec *workerSpec, check func() error, err error) {
	if err := cfg.checkDir(); err != nil {
		return nil, nil, err
	}
	python, err := newInterpreter(cfg.Python, cfg.env(), cfg.Dir)
	if err != nil {
		return nil, nil, err
	}
	codeDir, err := cfg.installPythonFS()
	if err != nil {
		return nil, nil, err
	}
	if spec, err = cfg.spec(python, codeDir); err != nil {
		return nil, nil, err
	}
	check = func() error {
		dir, err := runtimeDir(cfg.InstallDir, cfg.Logger)
		logInstallFallback(cfg.Logger)
		spec.runtimeDir = dir
		return err
	}
	if cfg.Credential == nil {
		return spec, check, nil
	}
	if err := check(); err != nil {
		return nil, nil, err
	}
	paths, err := cfg.pythonPathDirs()
	if err != nil {
		return nil, nil, err
	}
	if err := checkCredential(cfg.Credential, python.path(), spec.runtimeDir, codeDir, paths, cfg.Dir); err != nil {
		return nil, nil, err
	}
	return spec, nil, nil
}

// newPool starts a pool whose workers run spec: its guardian, its fork
// server if configured, and its first workers, held until check (nil:
// none) has passed, which the first of them runs after its exec (the
// pool's startGate), while its interpreter starts.
func newPool(ctx context.Context, cfg Config, spec *workerSpec, check func() error) (*Pool, error) {
	p := &Pool{
		cfg:       cfg,
		spec:      spec,
		log:       cfg.Logger,
		workers:   make(map[*process]*pooledWorker),
		idle:      newIdleSet(cfg.Strategy),
		waiters:   newWaitQueue(),
		changed:   make(chan struct{}),
		closeDone: make(chan struct{}),

		startingGen: make(map[uint64]int),
	}
	p.lifetime, p.endLife = context.WithCancel(context.Background())
	p.spec.onBroken = p.processBroken
	// The guardian first: the interpreter's own start runs code of its
	// installation (a .pth file, sitecustomize) before the bootstrap
	// holds, and a process that code starts must be owned too.
	if err := p.spec.guard.start(p.guardianExited); err != nil {
		p.endLife()
		return nil, fmt.Errorf("%w: %w", ErrWorkerStart, err)
	}
	p.spec.ready = newStartGate(check)
	if cfg.StartMethod == StartForkServer {
		p.startForkServer(ctx)
	}
	if err := p.startFirst(ctx); err != nil {
		p.log.Error(msgNewFailed, "module", strings.Join(cfg.modules(), ", "), "size", cfg.Size, "error", err)
		p.Close(context.Background())
		return nil, err
	}
	if p.sweeping() {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.sweep()
		}()
	}
	return p, nil
}

// Ping checks that the pool serves: it takes a worker as Call does and
// makes a round trip through the Python runtime (a no-op of the runtime's
// own; the module's code does not run). For readiness probes: it fails with
// ctx's error when no worker is free in time, with ErrPoolClosed after
// Close, and with the start error while the module cannot be imported.
// A probe is not a call of the module: it counts in Stats.Pings and
// Stats.PingFailures, not in the call counters nor towards
// Config.MaxCallsPerWorker, it does not end the backoff of a crash loop
// (a worker that dies soon after its start), and a Tracer is told of it
// with TraceCallStartData.Probe set (the prometheus subpackage's collector
// leaves it out of its call metrics).
func (p *Pool) Ping(ctx context.Context) error {
	return p.ping(ctx)
}

// pingFunction is the runtime's no-op (PING_FUNCTION in serve.py).
const pingFunction = "_pypool_ping"

// Transaction checks a worker out, runs fn with it and checks it back in,
// also when fn returns an error or panics (the panic goes on after the
// check-in). All calls made through the Worker run in the same Python process,
// one after the other. The Worker must not be used after fn returns: a call
// still in flight on it then (from a goroutine of fn) holds the check-in
// until it returns, and later calls return ErrWorkerReleased.
//
// ctx bounds the checkout only, as with pgx's AcquireFunc and database/sql's
// DB.Conn: when it ends before a worker is free, fn does not run and
// Transaction returns ctx's error; once fn runs, ctx no longer matters, and
// each call inside is bounded by the context passed to that Worker.Call or
// CallAs (with Config.CallTimeout when that context has no deadline), so fn
// alone decides how long the worker stays checked out. With NoWait, or
// Config.MaxWaiting set to NoWaiting, the checkout sheds load as TryCall
// does, failing at once with ErrPoolExhausted when no worker can be had.
func (p *Pool) Transaction(ctx context.Context, fn func(w *Worker) error) error {
	pw, _, err := p.checkout(ctx)
	if err != nil {
		return err
	}
	w := &Worker{pool: p, pw: pw}
	defer func() {
		w.release()
		p.checkin(pw)
	}()
	return fn(w)
}

// checkout hands a worker to the caller: an idle one at once, else the first
// one that is checked in or started while the caller waits. It is where
// NoWait is read, once per checkout, for every call form and Transaction:
// checkoutLocked then refuses the caller rather than queue it behind
// others. It never starts or stops a process itself. It returns how long
// the caller waited (0 when a worker was idle).
func (p *Pool) checkout(ctx context.Context) (*pooledWorker, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("pypool: waiting for a worker: %w", err)
	}
	p.mu.Lock()
	wt, pw, err := p.checkoutLocked(noWait(ctx))
	if wt != nil {
		wt.deadline, _ = ctx.Deadline() // before a failed start can read it
	}
	p.mu.Unlock()
	if wt == nil {
		return pw, 0, err
	}
	return p.awaitGrant(ctx, wt)
}

// awaitGrant waits until wt, a caller queued by checkoutLocked (checkout,
// and checkoutShared for a call of an async function), is granted a worker
// (or a place on one) or an error, or until ctx ends (abandon). It records
// and returns how long the caller waited.
func (p *Pool) awaitGrant(ctx context.Context, wt *waiter) (pw *pooledWorker, waited time.Duration, err error) {
	start := monoNow()
	if done := ctx.Done(); done == nil {
		// A context that never ends (context.Background): a plain
		// receive, not a select.
		g := <-wt.granted
		pw, err = g.pw, g.err
	} else {
		select {
		case g := <-wt.granted:
			pw, err = g.pw, g.err
		case <-done:
			err = p.abandon(ctx, wt)
		}
	}
	wt.release()
	waited = monoNow() - start
	p.waited(waited)
	return pw, waited, err
}

// monoBase is monoNow's origin.
var monoBase = time.Now()

// monoNow is the time on the monotonic clock, as a duration since monoBase:
// one clock reading, where time.Now takes two (the wall clock's too), for
// the times the call path measures and compares only (a checkout's wait, a
// worker's idle start).
func monoNow() time.Duration { return time.Since(monoBase) }

// abandon takes a waiter whose context ended out of the queue. A worker
// granted to it in the meantime goes back, untouched: checked in, or, for
// a place on a worker serving async calls (fillLocked grants those to an
// async caller), the place freed (releaseShared).
func (p *Pool) abandon(ctx context.Context, wt *waiter) error {
	err := fmt.Errorf("pypool: waiting for a worker: %w", ctx.Err())
	p.mu.Lock()
	gone := p.abandonLocked(wt)
	p.mu.Unlock()
	if gone {
		return err
	}
	g := <-wt.granted
	if g.pw == nil {
		return err
	}
	p.mu.Lock()
	_, shared := p.async.shared[g.pw]
	p.mu.Unlock()
	if shared {
		p.releaseShared(g.pw)
	} else {
		p.checkin(g.pw)
	}
	return err
}

// checkin takes a worker back from a caller, and counts the interrupt of
// a call cut off on it in Stats.Interrupts.
func (p *Pool) checkin(pw *pooledWorker) {
	if p.checkinCut(pw) {
		p.callStats.interrupts.Add(1)
	}
}

// checkinCut is checkin, but reports whether the worker's last call was
// cut off (it is being interrupted) instead of counting it: the one
// attempt path counts it after the call's outcome (callEnd).
func (p *Pool) checkinCut(pw *pooledWorker) (interrupted bool) {
	cond := pw.proc.condition()
	var recycle recycling
	if cond == condHealthy {
		recycle = p.recycleReason(pw)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.checkinLocked(pw, cond, recycle)
	return cond == condInterrupted
}

// Status names the pool's state as poolboy's status/1 does: "full" when
// Size+MaxOverflow workers are in use, "overflow" when at least Size are,
// "ready" otherwise. poolboy's {StateName, Idle, Overflow, InUse} tuple is
// {s.Status(), s.Idle, s.Overflow, s.InUse}.
func (s Stats) Status() string {
	switch {
	case s.InUse >= s.Size+s.MaxOverflow:
		return "full"
	case s.InUse >= s.Size:
		return "overflow"
	}
	return "ready"
}

// Close stops the pool. New calls fail with ErrPoolClosed at once, and so do
// callers waiting for a worker. Calls in flight may finish until ctx ends;
// then every worker is stopped, gracefully (end of input, Config.StopTimeout)
// or by force, and Close returns when all have exited. Close returns ctx's
// error only if it had to cut off a worker still checked out (a call or a
// Transaction); a call already cut off by its own caller (being
// interrupted) does not count, and its worker is killed at once. Calling
// Close again waits for the first.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.closeDone
		return nil
	}
	p.closed = true
	p.failWaitersLocked(ErrPoolClosed)
	for _, pw := range p.idle.all() {
		p.stopLocked(pw, causeClose)
	}
	allIn := make(chan struct{})
	if p.counts[stateCheckedOut] == 0 {
		close(allIn)
	} else {
		p.allIn = allIn
	}
	p.mu.Unlock()
	defer close(p.closeDone)
	p.endLife() // aborts starts in flight and the sweeper

	select {
	case <-allIn:
	case <-ctx.Done():
	}
	// Whether something was cut off is decided here, under the lock, not by
	// which of the two cases above the select picked when both were ready.
	var err error
	if cut := p.killAll(func(s workerState) bool { return s.serving() }); cut > 0 {
		err = fmt.Errorf("pypool: Close: calls still running were stopped: %w", ctx.Err())
	}
	stopped := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		// Workers still stopping gracefully are cut short too.
		p.killAll(func(s workerState) bool { return s == stateStopping })
		<-stopped
	}
	// After the workers, so that their exit statuses were still reported.
	p.stopForkServer()
	p.stopOldForkServers()
	// Last: it owns the groups of all of the above until they are reaped.
	p.spec.guard.stop(p.cfg.StopTimeout)
	return err
}

// killAll kills the workers whose state matches, and returns how many of
// them were checked out: a worker serving async calls (Config.AsyncCalls)
// counts only if one of its calls still has its caller, since a call
// already cut off by its caller does not count (Close).
func (p *Pool) killAll(match func(workerState) bool) (checkedOut int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pw := range p.workers {
		if match(pw.state) {
			n, shared := p.async.shared[pw]
			if pw.state == stateCheckedOut && (!shared || int64(n) > pw.proc.sharedCutOff()) {
				checkedOut++
			}
			p.killLocked(pw, false)
		}
	}
	return checkedOut
}

func (p *Pool) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// serving returns the workers that hold a slot: idle, checked out or
// draining.
func (p *Pool) serving() []*pooledWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	ws := make([]*pooledWorker, 0, len(p.workers))
	for _, pw := range p.workers {
		if pw.state.serving() {
			ws = append(ws, pw)
		}
	}
	return ws
}

// Resize changes the pool's Size and MaxOverflow while it runs.
//
// Growing starts the missing workers at once (and serves waiting callers
// within the new Size+MaxOverflow). Shrinking stops idle workers beyond the
// new Size at once, longest idle first, and busy ones beyond the new
// Size+MaxOverflow as their callers check them in, even while other callers
// wait (the remaining workers serve them): it never interrupts a call, so
// until they come back the pool may run more workers than the new
// Size+MaxOverflow, and no worker is started until it runs fewer. With
// Config.AsyncCalls, a worker serving calls of async functions that is
// beyond the new Size+MaxOverflow takes no more of them, so that it is
// checked in once those in flight have ended.
//
// size must be at least 1 and maxOverflow at least 0. After Close, Resize
// returns ErrPoolClosed.
func (p *Pool) Resize(size, maxOverflow int) error {
	if size < 1 || maxOverflow < 0 {
		return fmt.Errorf("pypool: Resize(%d, %d): the size must be at least 1 and the overflow at least 0", size, maxOverflow)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrPoolClosed
	}
	if grown := size - p.cfg.Size; grown > 0 {
		p.owed[causeResize] += uint64(grown) // the starts reconcileLocked makes for it
	}
	p.cfg.Size, p.cfg.MaxOverflow = size, maxOverflow
	p.log.Info("pypool: resized", "size", size, "max_overflow", maxOverflow)
	p.shrinkIdleLocked()
	p.markShrinkingLocked()
	p.reconcileLocked()
	p.notifyLocked()
	return nil
}

// shrinkIdleLocked stops the idle workers beyond Size, longest idle first.
func (p *Pool) shrinkIdleLocked() {
	excess := p.readyLocked() - p.cfg.Size
	for _, pw := range p.idle.all() { // longest idle first
		if excess <= 0 {
			return
		}
		excess--
		p.log.Info("pypool: stopping a worker the resized pool does not need", "worker", pw.proc.pid, "size", p.cfg.Size)
		pw.stopCause = "the pool was resized"
		p.stopLocked(pw, causeResize)
	}
}
