package pypool

// supervise.go is the one owner of worker starts and stops. Whether a worker
// starts or stops is decided under Pool.mu (state.go, and reconcileLocked
// here); the start or stop itself runs in a goroutine of its own, on the
// pool's lifetime context (New's first starts: on New's, which New waits
// for), tracked by Pool.wg. No caller's goroutine and no caller's context
// ever starts, waits for, or stops a process: callers only take a ready
// worker or wait for one.
//
// In order: starts (New's first workers included) and their failures;
// exits, stops, kills and drains; recycling (the sweeper); the backoff of
// starts; the fork server's template and the guardian, supervised here too.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// reconcileLocked starts the workers the pool needs: as many as it takes to
// be back at Size, and one for every waiting caller that no start in flight
// will serve, within Size+MaxOverflow. A worker being stopped does not count
// towards Size (it is not coming back), but its slot is not free until it
// has exited: processExited calls reconcileLocked again then, and the
// replacement starts. It is the one place that decides starts, but for
// TryCall's own (checkoutLocked) and New's first workers (startFirst).
func (p *Pool) reconcileLocked() {
	if p.closed {
		return
	}
	live := p.readyLocked() + p.starting
	n := max(p.cfg.Size-live, p.waiters.len()-p.starting)
	started := max(0, min(n, p.roomLocked()))
	for range started {
		p.startLocked(nil)
	}
	p.settleOwedLocked(n - started)
	if p.reload != nil {
		p.reloadStartsLocked() // a reload's own starts, in its surge (reload.go)
	}
}

// startOrder is one worker start the supervisor decided: why, for whom,
// what bounds it and, for New's first workers, where its result goes.
type startOrder struct {
	standIn    bool // started by exec while the fork server's template starts (startWorker, startForkServer)
	why        cause
	startedFor *waiter         // the waiter it is for; nil: for the pool
	ctx        context.Context // bounds the start: the pool's lifetime, or New's ctx
	report     chan<- error    // New's first workers only: receives the start's error, nil on success
	gen        uint64          // the generation of the worker: a reload's, else the pool's now (orderLocked)
	reload     *reloadRun      // the reload that ordered it (reload.go); nil: not a reload's
}

// startLocked has a worker started, for the waiter startedFor if not nil.
func (p *Pool) startLocked(startedFor *waiter) {
	p.orderLocked(startOrder{why: p.startCauseLocked(), startedFor: startedFor, ctx: p.lifetime})
}

// orderLocked runs the start o in a goroutine of the supervisor. It counts
// as in flight (Pool.starting) until started takes its result.
func (p *Pool) orderLocked(o startOrder) {
	if o.reload == nil {
		o.gen = p.gen.Load()
	}
	p.startingGen[o.gen]++
	p.starting++
	p.wg.Add(1)
	go p.startWorker(o)
	p.notifyLocked()
}

// startFirst has New's first Size workers started, in parallel and bounded
// by New's ctx, and waits for them. It returns the first start's error
// (the install check's, should it fail: the pool's startGate fails every
// start with it).
func (p *Pool) startFirst(ctx context.Context) error {
	report := make(chan error, p.cfg.Size)
	p.mu.Lock()
	for range p.cfg.Size {
		p.orderLocked(startOrder{why: causeInitial, ctx: ctx, report: report})
	}
	p.mu.Unlock()
	var first error
	for range p.cfg.Size {
		if err := <-report; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// startWorker starts one worker, after the crash-loop backoff, and hands
// it on (started).
func (p *Pool) startWorker(o startOrder) {
	defer p.wg.Done()
	if !p.awaitBackoff(p.lifetime, &p.backoff) {
		p.started(o, nil, ErrPoolClosed, time.Now())
		return
	}
	begun := time.Now()
	p.wg.Add(1) // for the exit watcher, which ends in processExited
	forks := p.forks.Load()
	if forks == nil && p.forkPending.Load() {
		o.standIn = true // by exec while the template starts, and handed over once it runs
	}
	proc, err := startProcess(o.ctx, p.spec, forks, p.processExited)
	p.started(o, proc, err, begun)
}

// started takes the result of the start o, which began at begun. A failed
// start is retried after the backoff, but for one of New's first workers:
// New reports it and closes the pool.
func (p *Pool) started(o startOrder, proc *process, err error, begun time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	if p.startingGen[o.gen]--; p.startingGen[o.gen] <= 0 {
		delete(p.startingGen, o.gen)
	}
	p.notifyLocked()
	if err == nil {
		err = p.joinLocked(proc, o.gen)
	}
	if err == nil {
		p.handOnLocked(o, p.workers[proc])
	}
	switch {
	case err == nil && o.reload != nil:
		p.starts[o.why]++
		p.reloadStartedLocked(o.reload, p.workers[proc])
	case err == nil:
		p.starts[o.why]++
		p.offerLocked(p.workers[proc], o.startedFor)
	case o.reload != nil && !p.closed:
		// A reload's start: its failure is the reload's, which ends and
		// returns it. The pool's backoff, its waiting callers and its
		// workers of the generation that serves are not touched.
		p.reloadStartFailedLocked(o.reload, err)
		p.reconcileLocked()
	case o.reload != nil:
	case o.report != nil:
		// One of New's first workers: New logs the failure and closes
		// the pool, so no retry.
	case p.closed:
		p.grantLocked(o.startedFor, grant{err: ErrPoolClosed})
	default:
		p.startFailedCauseLocked(o.why)
		p.startFailedLocked(o.startedFor, err, begun)
		p.reconcileLocked() // try again, after the backoff
	}
	if o.report != nil && o.standIn {
		p.standInStartedLocked(err)
	}
	if o.report != nil {
		o.report <- err
	}
}

// joinLocked records a started process as a pooled worker (state new, for
// offerLocked to place), or stops it when the pool closed or the process
// died since its handshake.
func (p *Pool) joinLocked(proc *process, gen uint64) error {
	if p.closed {
		proc.kill()
		return ErrPoolClosed
	}
	if proc.hasExited() {
		// It died between its handshake and now: its exit watcher found no
		// record and left it to us.
		exitErr := *proc.exitErr
		exitErr.cause = ErrWorkerStart
		return &exitErr
	}
	pw := &pooledWorker{proc: proc, state: stateStarting, gen: gen}
	p.limits(pw)
	p.counts[stateStarting]++
	p.workers[proc] = pw
	p.backoff.started()
	return nil
}

// startFailedLocked records a failed start that began at begun. A fatal
// failure (isFatalStart: the module failed to import, the interpreter
// cannot run) fails every waiting caller at once: waiting would only repeat
// it. Any other says nothing about the module and is retried after the
// backoff. It costs at most one waiter, the one the start was for or else
// the longest waiting, and that one only when the retry cannot serve it
// (retryBefore): its deadline comes first, or the failures have gone on
// until the backoff reached its maximum. Otherwise it waits for the retry.
func (p *Pool) startFailedLocked(startedFor *waiter, err error, begun time.Time) {
	p.startFails++
	fatal := p.backoff.failedStart(err, begun)
	p.logStartFailed(err, fatal)
	if fatal {
		p.grantLocked(startedFor, grant{err: err})
		p.failWaitersLocked(err)
		return
	}
	wt := startedFor
	if wt == nil || wt.decided {
		wt = p.waiters.first()
	}
	if wt != nil && !p.backoff.retryBefore(wt.deadline) {
		p.grantLocked(wt, grant{err: err})
	}
}

// logStartFailed logs a failed start: a fatal one as an Error, a worker
// killed by a signal during its start as a killed start, any other as a
// transient failure; both of these are retried, after retry_in.
func (p *Pool) logStartFailed(err error, fatal bool) {
	retryIn := max(0, p.backoff.delay()).Round(time.Millisecond)
	var exitErr *WorkerExitError
	switch {
	case fatal:
		p.log.Error(msgStartFailed, "error", err, "fatal", true, "retry_in", retryIn)
	case errors.As(err, &exitErr) && exitErr.sig != 0:
		p.log.Warn(msgStartKilled, "worker", exitErr.Pid, "signal", signalName(exitErr.sig),
			"stderr", strings.Join(exitErr.Stderr, "\n"), "retry_in", retryIn)
	default:
		p.log.Warn(msgStartFailed, "error", err, "fatal", false, "retry_in", retryIn)
	}
}

// processExited runs in a worker's exit watcher once the process has been
// reaped (or could not be started at all). A worker that dies frees its
// slot at once, whatever its state, and is replaced; so does a worker that
// was being stopped, which held its slot until now.
func (p *Pool) processExited(proc *process) {
	defer p.wg.Done()
	p.mu.Lock()
	pw := p.workers[proc]
	if pw == nil {
		p.mu.Unlock()
		return // it never joined the pool: its start reports why
	}
	delete(p.workers, proc)
	p.leftLocked(pw, p.endCauseLocked(proc.crashed()))
	p.setStateLocked(pw, stateExited)
	if proc.crashed() && time.Since(proc.started) < quickDeath && proc.served.Load() == 0 && !killedFromOutside(proc.exitErr) {
		p.backoff.diedYoung() // before its replacement's start reads the delay
	}
	p.reconcileLocked()
	p.stopOldForkServersLocked() // once the last worker a replaced template forked has exited
	cause := p.stopCauseLocked(pw)
	p.mu.Unlock()
	if strings.HasPrefix(cause, handOverCause) {
		p.log.Debug(msgHandedOver, "worker", proc.pid, "served", proc.served.Load(),
			"uptime", time.Since(proc.started).Round(time.Millisecond))
	} else {
		proc.logExit(cause)
	}
}

// processBroken is a process's report that it can no longer serve
// (process.broke): its handshake failed (startProcess waits for its exit),
// or, during a call, its stream is lost (a protocol error) or it closed
// its output and lives on. The supervisor kills it at once, on the
// reporting goroutine: the kill ends the wait of an outer call for a
// callback whose nested call broke the stream (awaitCallback watches
// exited), and ends a worker that a Transaction holds. Its exit counts as
// a crash only if it quit by itself (process.kill); a pooled worker's slot
// is settled at check-in, as for any broken worker.
func (p *Pool) processBroken(proc *process) {
	proc.kill()
}

// stopLocked stops a worker gracefully in the background: end of input,
// then SIGKILL after Config.StopTimeout. Its exit is not a crash; why is
// counted in Stats.
func (p *Pool) stopLocked(pw *pooledWorker, why cause) {
	p.leftLocked(pw, why)
	p.setStateLocked(pw, stateStopping)
	pw.proc.askToEnd()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		pw.proc.stop(p.cfg.StopTimeout)
	}()
}

// killLocked kills a worker whose state is unknown. Its exit counts as a
// crash only if it died by itself.
func (p *Pool) killLocked(pw *pooledWorker, byItself bool) {
	p.leftLocked(pw, p.endCauseLocked(byItself))
	p.setStateLocked(pw, stateStopping)
	if !byItself {
		pw.proc.askToEnd()
	}
	pw.proc.sigkill()
}

// goDrain waits in the background for the reply to a call that was cut
// off, then puts the worker back or kills it.
func (p *Pool) goDrain(pw *pooledWorker) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ok := pw.proc.drainInterrupted(p.cfg.InterruptGrace) // logs how it ended
		var recycle recycling
		if ok {
			recycle = p.recycleReason(pw)
		}
		p.mu.Lock()
		if !ok && pw.state == stateDraining { // else Close stopped it first, and says so
			pw.stopCause = "did not answer its interrupt within Config.InterruptGrace"
		}
		defer p.mu.Unlock()
		p.drainedLocked(pw, ok, recycle)
	}()
}

// killedFromOutside reports whether a worker was ended by SIGKILL, which
// its own code cannot send itself by accident: an operator or the OOM
// killer. Such a death says nothing about the module, so it does not
// lengthen the crash-loop backoff.
func killedFromOutside(exit *WorkerExitError) bool {
	return exit != nil && exit.Signal == syscall.SIGKILL.String()
}

// Recycling: the supervisor replaces healthy workers on purpose after
// MaxCallsPerWorker calls, past MaxWorkerLifetime, above MaxWorkerMemory,
// and stops overflow workers idle for OverflowIdleTimeout. A busy worker is
// only ever replaced when it is checked in, never during a call.

// sweepInterval is how often idle workers are checked for age, memory and
// overflow idleness (more often when OverflowIdleTimeout or
// MaxWorkerLifetime are short).
const sweepInterval = time.Second

// limits sets a new worker's own limits: the configured ones plus jitter, so
// that workers started together are not all replaced together.
func (p *Pool) limits(pw *pooledWorker) {
	if n := p.cfg.MaxCallsPerWorker; n > 0 {
		pw.maxCalls = int64(n + rand.IntN(p.cfg.MaxCallsJitter+1))
	}
	if d := p.cfg.MaxWorkerLifetime; d > 0 {
		pw.lifetime = d + time.Duration(rand.Int64N(int64(d)/10+1))
	}
}

// recycleReason says why a healthy worker must be replaced; the zero
// recycling if it need not.
func (p *Pool) recycleReason(pw *pooledWorker) recycling {
	if gen := p.gen.Load(); pw.gen < gen {
		return recycling{causeReload, fmt.Sprintf("replaced by Pool.Reload (generation %d, the pool's is now %d)", pw.gen, gen)}
	}
	if why := p.limitReason(pw); why.cause != causeNone || !pw.standIn {
		return why
	}
	return p.handOverReason(pw)
}

// limitReason is recycleReason but for a reload: why a healthy worker must
// be replaced whatever its generation.
func (p *Pool) limitReason(pw *pooledWorker) recycling {
	proc := pw.proc
	switch {
	case pw.maxCalls > 0 && proc.served.Load()+pw.carried >= pw.maxCalls:
		return recycling{causeMaxCalls, fmt.Sprintf("served %d calls (Config.MaxCallsPerWorker)", proc.served.Load()+pw.carried)}
	case pw.lifetime > 0 && time.Since(proc.started) >= pw.lifetime:
		return recycling{causeMaxLifetime, fmt.Sprintf("ran for %v (Config.MaxWorkerLifetime)", time.Since(proc.started).Round(time.Millisecond))}
	case pw.overMemory.Load():
		return recycling{causeMaxMemory, fmt.Sprintf("uses more than %d bytes (Config.MaxWorkerMemory)", p.cfg.MaxWorkerMemory)}
	case p.forks.Load() != nil && orphaned(proc.os):
		// Its parent-death signal died with its template: a worker of the
		// new template dies with the Go process again. Counted as a
		// lifetime's end.
		return recycling{causeMaxLifetime, "its fork server exited and a new one runs (Config.StartForkServer)"}
	}
	return recycling{}
}

// sweeping reports whether any limit needs the periodic sweep.
func (p *Pool) sweeping() bool {
	return p.cfg.OverflowIdleTimeout > 0 || p.cfg.MaxWorkerLifetime > 0 || p.cfg.MaxWorkerMemory > 0
}

// sweep runs until Close, checking the workers every interval.
func (p *Pool) sweep() {
	interval := sweepInterval
	for _, d := range []time.Duration{p.cfg.OverflowIdleTimeout / 4, p.cfg.MaxWorkerLifetime / 4} {
		if d > 0 && d < interval {
			interval = max(d, 10*time.Millisecond)
		}
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-p.lifetime.Done():
			return
		case <-ticker.C:
			p.sweepOnce()
		}
	}
}

// sweepOnce marks the workers over MaxWorkerMemory, then replaces the idle
// workers that have a reason to go (busy ones go at their check-in) and
// stops the overflow workers idle for OverflowIdleTimeout.
func (p *Pool) sweepOnce() {
	if p.cfg.MaxWorkerMemory > 0 {
		for _, pw := range p.serving() {
			if rss, err := residentBytes(pw.proc.pid); err == nil && rss > p.cfg.MaxWorkerMemory {
				pw.overMemory.Store(true)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recycleIdleLocked()
	p.stopIdleOverflowLocked()
	p.reconcileLocked()
}

// recycleIdleLocked replaces the idle workers that have a reason to go
// (recycleReason); busy ones go at their check-in. That an idle worker is
// of an older generation is not reason enough: the reload retires it once
// a new one takes its place (reload.go), so that it serves until then.
func (p *Pool) recycleIdleLocked() {
	for _, pw := range p.idle.all() {
		if reason := p.limitReason(pw); reason.cause != causeNone {
			p.recycleLocked(pw, reason)
		}
	}
}

// stopIdleOverflowLocked stops the workers beyond Size that have been idle
// for OverflowIdleTimeout, longest idle first.
func (p *Pool) stopIdleOverflowLocked() {
	timeout := p.cfg.OverflowIdleTimeout
	excess := p.readyLocked() - p.cfg.Size
	if timeout <= 0 {
		return
	}
	cutoff := monoNow() - timeout
	for _, pw := range p.idle.all() { // longest idle first
		if excess <= 0 || pw.idleSince > cutoff {
			return
		}
		excess--
		p.recycleLocked(pw, recycling{causeOverflowIdle, fmt.Sprintf("overflow worker idle for %v (Config.OverflowIdleTimeout)", timeout)})
	}
}

// recycleLocked stops a healthy worker on purpose; reconcileLocked starts
// its replacement if the pool needs one.
func (p *Pool) recycleLocked(pw *pooledWorker, why recycling) {
	if why.cause == causeHandover {
		p.handOverLocked(pw, why)
		return
	}
	p.recycled++
	p.log.Info(msgWorkerRecycled, "worker", pw.proc.pid, "reason", why.reason)
	pw.stopCause = "recycled: " + why.reason
	if pw.overMemory.Load() {
		// What holds the memory may show in its stack. The dump arrives
		// before the end of input the stop sends.
		pw.proc.dumps.request(pw.proc, pw.proc.lastFunction(), dumpRecycled)
	}
	p.stopLocked(pw, why.cause)
}

// residentBytes reads a process's resident set size from /proc.
func residentBytes(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(data))
	if len(fields) < 2 {
		return 0, fmt.Errorf("unexpected /proc/%d/statm: %q", pid, data)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize()), err
}

// Backoff: the supervisor delays worker starts after failures, so that a
// crash loop sleeps instead of burning CPU.
const (
	backoffMin = 50 * time.Millisecond
	backoffMax = 5 * time.Second
	// quickDeath: a worker that dies by itself this soon after its start,
	// before it served a call, counts as a failed start for the backoff.
	quickDeath = 2 * time.Second
)

// startBackoff tracks failed worker starts and workers that die young, and
// says how long the next start must wait.
//
// A failure is fatal only on positive knowledge that it will happen again if
// retried at once (isFatalStart): the module failed to import, its set-up
// raised, the interpreter is missing or refuses to run. Callers then get the
// error at once instead of waiting for a start; the supervisor goes on
// retrying after the delay, so the pool heals when the cause goes away. Any
// other failure (out of descriptors, processes or memory, a signal, a
// timeout) says nothing about the module: it only lengthens the delay, once
// per wave of starts that fail together.
type startBackoff struct {
	mu       sync.Mutex
	streak   int       // failures since the last successful call
	last     error     // the last failed start; nil after a successful start
	fatal    bool      // last is fatal
	retryAt  time.Time // no start before this time
	bumpedAt time.Time // when streak last grew

	failing atomic.Bool // streak > 0: read on every call
}

// failedStart records a start that began at begun and failed, and reports
// whether the failure is fatal. Starts that began before the last recorded
// failure (they ran side by side with it) do not lengthen the delay again:
// a moment of weather that fails five parallel starts is one failure.
func (b *startBackoff) failedStart(err error, begun time.Time) (fatal bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !begun.Before(b.bumpedAt) {
		b.bump()
	}
	b.last = err
	b.fatal = isFatalStart(err)
	return b.fatal
}

// diedYoung records a worker that died by itself soon after its start.
func (b *startBackoff) diedYoung() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bump()
}

func (b *startBackoff) bump() {
	b.streak++
	b.failing.Store(true)
	delay := backoffMin << min(b.streak-1, 10)
	b.bumpedAt = time.Now()
	b.retryAt = b.bumpedAt.Add(min(delay, backoffMax))
}

// retryBefore reports whether a start retried after the delay may still
// serve a caller whose deadline is deadline (zero: none): the retry begins
// before it, and the failures have not yet gone on for so long that the
// delay reached backoffMax (then a caller without a deadline would wait
// for a cause that does not go away).
func (b *startBackoff) retryBefore(deadline time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.streak > 0 && backoffMin<<min(b.streak-1, 10) >= backoffMax {
		return false
	}
	return deadline.IsZero() || b.retryAt.Before(deadline)
}

// started records a successful start.
func (b *startBackoff) started() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.fatal = nil, false
}

// callSucceeded ends the backoff: the workers work.
func (b *startBackoff) callSucceeded() {
	if !b.failing.Load() {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.streak, b.retryAt = 0, time.Time{}
	b.failing.Store(false)
}

// refusal returns the error a caller gets instead of starting a worker: the
// last failure while it is fatal and the delay runs. nil: start one.
func (b *startBackoff) refusal() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fatal && time.Now().Before(b.retryAt) {
		return b.last
	}
	return nil
}

// delay returns how long the next start must wait.
func (b *startBackoff) delay() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Until(b.retryAt)
}

// awaitBackoff waits out b's delay, so that restarts and retries do not
// spin through a crash loop; false if ctx ended or the pool closed. The
// delay is read again at least every backoffMin, so that a successful call
// that ends the workers' backoff also ends the wait.
func (p *Pool) awaitBackoff(ctx context.Context, b *startBackoff) bool {
	for {
		if ctx.Err() != nil || p.lifetime.Err() != nil {
			return false
		}
		wait := b.delay()
		if wait <= 0 {
			return true
		}
		timer := time.NewTimer(min(wait, backoffMin))
		select {
		case <-timer.C:
		case <-ctx.Done():
		case <-p.lifetime.Done():
		}
		timer.Stop()
	}
}

// isFatalStart reports whether a start error is known to repeat if retried
// at once: the module failed to import or its set-up raised (a
// *PythonError), or the interpreter cannot run (fatalStart). Anything else
// is transient: no descriptors, processes or memory for the moment, a
// fork server's fork error, a worker that died, was killed or timed out
// during its handshake.
func isFatalStart(err error) bool {
	var pyErr *PythonError
	var fatal *fatalStart
	return errors.As(err, &pyErr) || errors.As(err, &fatal)
}

// fatalStart marks a start error that will repeat whatever the moment: the
// interpreter is missing, may not be run, or refuses to (an unsupported
// Python), or its handshake is not one this package speaks. Its message is
// err's.
type fatalStart struct{ err error }

// Error is the wrapped start error's text.
func (e *fatalStart) Error() string { return e.err.Error() }

// Unwrap returns the error it marks.
func (e *fatalStart) Unwrap() error { return e.err }

// The fork server (StartMethod StartForkServer, forkserver.go) is supervised
// here too: started by New, restarted with its own backoff when it dies,
// stopped by Close once every worker has exited. While it is down, workers
// are started as their own python3 (process.go's launch), and the workers
// it forked keep serving.

// startForkServer sets up the pool's template for New.
//
// With Size 1, New's worker is the stand-in: it is started by exec, and the
// template right after it (standInStartedLocked, begin), in a goroutine of
// the pool on its lifetime, so that New and the first call wait for one
// interpreter's start, not for the template's and then a fork. At the stand-in's first
// check-in once the template runs, it is handed over (recycleReason,
// handOverLocked): stopped as a recycled worker is, and replaced by a
// forked worker, so that every worker shares the template's memory from
// then on.
//
// With a larger Size, New waits for all its workers, and the others would
// wait for the template anyway: the first worker's start starts the
// template (newForkServer, given that worker's descriptors), on that
// start's goroutine and context, and the template forks it as soon as it
// has imported the module; New's other first workers are forked after it.
//
// If the template cannot start, the pool logs why and starts its workers
// as their own python3, and a stand-in serves on.
func (p *Pool) startForkServer(context.Context) {
	fs := newForkServer(p.spec, p.forkServerExited)
	fs.settled = p.forkServerSettled
	p.forkSettled = make(chan struct{})
	if p.cfg.Size != 1 {
		p.forks.Store(fs)
		return
	}
	// The template is started once the stand-in has started (standInStartedLocked)
	// and becomes the pool's once it runs (forkServerSettled): until then,
	// starts are by exec (stand-ins all).
	p.pendingFork = fs
	p.forkPending.Store(true)
}

// standInStartedLocked starts the template of New's stand-in, now that the
// stand-in has started (err nil), in a goroutine of the pool on its
// lifetime. Not at once beside it: on a machine without a free CPU for
// each, the two starts took turns, and the stand-in was as late as the
// template's fork (bench/README.md). If the stand-in failed, New fails,
// and no template is started.
func (p *Pool) standInStartedLocked(err error) {
	fs := p.pendingFork
	if fs == nil {
		return
	}
	p.pendingFork = nil
	if err != nil {
		p.forkPending.Store(false)
		p.settleFork()
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fs.begin(p.lifetime)
	}()
}

// msgHandedOver is the log record of a handover (Debug), instead of the
// stand-in's "worker stopped": the fork server's first worker, started by
// exec, has exited so that a forked worker takes its place.
const msgHandedOver = "pypool: first worker handed over to the fork server"

// handOverCause begins the stop cause of a stand-in handed over.
const handOverCause = "handed over: "

// handOverReason is recycleReason's for the stand-in (startForkServer),
// which no limit retires: it is handed over once the pool's template runs.
// Over Config.MaxWorkerMemory it is recycled as such instead: its resident
// set is read here, as the sweeper would (it may not have run yet).
func (p *Pool) handOverReason(pw *pooledWorker) recycling {
	if fs := p.forks.Load(); fs == nil || !fs.ready() {
		return recycling{} // none runs yet, or it could not start: it serves on
	}
	if limit := p.cfg.MaxWorkerMemory; limit > 0 {
		if rss, err := residentBytes(pw.proc.pid); err == nil && rss > limit {
			pw.overMemory.Store(true)
			return p.limitReason(pw)
		}
	}
	return recycling{causeHandover, "started by exec while the fork server started; a forked worker takes its place (Config.StartForkServer)"}
}

// handOverLocked stops the stand-in as recycleLocked stops a recycled
// worker (counted in Stats.StopsHandover, not in Recycled); its
// replacement, a forked worker started by reconcileLocked as for any
// worker that left, takes on the calls it served (handOnLocked).
func (p *Pool) handOverLocked(pw *pooledWorker, why recycling) {
	p.handedCalls = pw.proc.served.Load() + pw.carried
	pw.stopCause = handOverCause + why.reason
	p.stopLocked(pw, why.cause)
}

// handOnLocked marks a worker that just joined the pool: New's stand-in as
// such, and a stand-in's successor with the calls the stand-in served, so
// that Config.MaxCallsPerWorker counts from the pool's first call.
func (p *Pool) handOnLocked(o startOrder, pw *pooledWorker) {
	switch {
	case o.standIn:
		pw.standIn = true
	case o.why == causeHandover:
		pw.carried, p.handedCalls = p.handedCalls, 0
	}
}

// forkServerSettled is told how the start of New's template went (on the
// goroutine of the first worker's start, with the template's mu held).
//
// A template started after New's stand-in (startForkServer) becomes the
// pool's here. Close ending its start is not a failure to report, nor is
// New's failed startGate, where its exec waited, nor the end of its
// start's context (givenUp: New's, which then fails): New reports why,
// and no worker is started by exec instead (process.start).
func (p *Pool) forkServerSettled(fs *forkServer, err error, givenUp bool) {
	defer p.settleFork()
	defer p.forkPending.Store(false)
	if err != nil {
		p.forks.CompareAndSwap(fs, nil)
		if !givenUp && p.lifetime.Err() == nil && p.spec.ready.failure() == nil {
			p.log.Warn(msgForkServerFallback, "module", p.cfg.Module, "error", err)
		}
		return
	}
	if !p.forks.CompareAndSwap(nil, fs) && p.forks.Load() != fs {
		// A reload's template became the pool's meanwhile: this one
		// forked nothing, and is stopped (not here: fs.mu is held).
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			fs.stop(p.cfg.StopTimeout)
		}()
		return
	}
	p.log.Debug(msgForkServerStarted, "forkserver", fs.pid, "module", p.cfg.Module)
}

// settleFork tells a Reload that New's template has started or failed, or
// will never start.
func (p *Pool) settleFork() {
	p.settleOnce.Do(func() { close(p.forkSettled) })
}

// forkServerStarted makes fs, a restarted template, the pool's, and
// reports whether it did. If a reload's template became the pool's
// meanwhile, that one stays: it imported the code on disk as the reload
// began, fs maybe before (replacing it would fork the reload's workers
// from the old code). fs then forks nothing:
// it is the template a running reload puts back should it fail, else it
// is stopped.
func (p *Pool) forkServerStarted(fs *forkServer) bool {
	p.mu.Lock()
	installed := !p.closed && p.forks.CompareAndSwap(nil, fs)
	if !installed && !p.closed {
		p.oldForks = append(p.oldForks, fs)
		if r := p.reload; r != nil && r.oldFork == nil {
			r.oldFork = fs
		} else {
			p.stopOldForkServersLocked()
		}
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		fs.stop(p.cfg.StopTimeout)
		return false
	}
	p.log.Debug(msgForkServerStarted, "forkserver", fs.pid, "module", p.cfg.Module)
	return installed
}

// forkServerExited runs in the template's watcher once it was reaped. Unless
// the pool is closing, it has the template restarted after the backoff.
func (p *Pool) forkServerExited(fs *forkServer) {
	if !p.forks.CompareAndSwap(fs, nil) {
		return // stopped by Close
	}
	p.restartAfter(&p.forkBackoff, fs.started, p.restartForkServer,
		msgForkServerExited, "forkserver", fs.pid, "exit_code", fs.status.code, "signal", fs.status.signal)
}

// restartAfter has restart run in a goroutine of the pool for a helper
// process (the fork server's template, the guardian) that began at started
// and exited, unless the pool is closing: its backoff b grows (and starts
// over if it lived), and the exit is logged as msg with attrs and the
// delay before restart tries again.
func (p *Pool) restartAfter(b *startBackoff, started time.Time, restart func(), msg string, attrs ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if time.Since(started) >= quickDeath {
		b.callSucceeded() // it lived: start the delays over
	}
	b.diedYoung()
	p.log.Warn(msg, append(attrs, "retry_in", b.delay().Round(time.Millisecond))...)
	p.wg.Add(1)
	go restart()
}

// restartForkServer starts a new template after the backoff, again and
// again until one starts or the pool closes.
func (p *Pool) restartForkServer() {
	defer p.wg.Done()
	for {
		if !p.awaitBackoff(p.lifetime, &p.forkBackoff) {
			return
		}
		fs, err := startForkServer(p.lifetime, p.spec, p.forkServerExited)
		if err == nil {
			if !p.forkServerStarted(fs) {
				return
			}
			if p.lifetime.Err() != nil {
				p.stopForkServer() // Close began meanwhile
				return
			}
			p.recycleOrphans()
			return
		}
		p.forkBackoff.failedStart(err, time.Now())
		p.log.Warn(msgForkServerFallback, "module", p.cfg.Module, "error", err,
			"retry_in", p.forkBackoff.delay().Round(time.Millisecond))
	}
}

// stopForkServer stops the template, if one runs.
func (p *Pool) stopForkServer() {
	if fs := p.forks.Swap(nil); fs != nil {
		fs.stop(p.cfg.StopTimeout)
	}
}

// recycleOrphans replaces the idle workers of a template that died, now
// that a new one runs; busy ones are replaced at their check-in
// (recycleReason).
func (p *Pool) recycleOrphans() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recycleIdleLocked()
	p.reconcileLocked()
}

// The guardian (guardian.go) is supervised here too: started by New before
// its first workers (whose interpreters' own start may run code of their
// installation, a .pth file), restarted with its own backoff when it dies while the
// pool runs (the new one is handed every live group), stopped by Close
// after everything else.

// guardianExited runs in the guardian's watcher once it was reaped. Unless
// the pool is closing, it has a new one started after the backoff.
func (p *Pool) guardianExited(gp *guardianProcess) {
	if !p.spec.guard.forget(gp) {
		return // stopped by Close
	}
	p.restartAfter(&p.guardBackoff, gp.started, p.restartGuardian,
		msgGuardianExited, "guardian", gp.pid, "exit_code", gp.status.code, "signal", gp.status.signal)
}

// restartGuardian starts a new guardian after the backoff, again and again
// until one starts or the pool closes. Close stops one started meanwhile.
func (p *Pool) restartGuardian() {
	defer p.wg.Done()
	for p.awaitBackoff(p.lifetime, &p.guardBackoff) {
		err := p.spec.guard.start(p.guardianExited)
		if err == nil {
			return
		}
		p.guardBackoff.failedStart(err, time.Now())
		p.log.Warn(msgGuardianFailed, "error", err, "retry_in", p.guardBackoff.delay().Round(time.Millisecond))
	}
}
