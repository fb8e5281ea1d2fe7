package pypool

// supervise.go is the one owner of worker starts and stops. Whether a worker
// starts or stops is decided under Pool.mu (state.go, and reconcileLocked
// here); the start or stop itself runs in a goroutine of its own, on the
// pool's lifetime context, tracked by Pool.wg. No caller's goroutine and no
// caller's context ever starts, waits for, or stops a process: callers only
// take a ready worker or wait for one.

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"time"
)

// reconcileLocked starts the workers the pool needs: as many as it takes to
// be back at Size, and one for every waiting caller that no start in flight
// will serve, within Size+MaxOverflow. A worker being stopped does not count
// towards Size (it is not coming back), but its slot is not free until it
// has exited: processExited calls reconcileLocked again then, and the
// replacement starts. It is the one place that decides starts, but for
// TryCall's own (checkout).
func (p *Pool) reconcileLocked() {
	if p.closed {
		return
	}
	live := p.readyLocked() + p.starting
	n := max(p.cfg.Size-live, p.waiters.len()-p.starting)
	for range min(n, p.roomLocked()) {
		p.startLocked(nil)
	}
}

// startLocked has a worker started, for the waiter startedFor if not nil.
func (p *Pool) startLocked(startedFor *waiter) {
	why := p.startCauseLocked()
	p.starting++
	p.wg.Add(1)
	go p.start(startedFor, why)
	p.notifyLocked()
}

// start starts one worker, after the crash-loop backoff, and hands it on.
func (p *Pool) start(startedFor *waiter, why cause) {
	defer p.wg.Done()
	if !p.awaitBackoff(p.lifetime) {
		p.started(startedFor, why, nil, ErrPoolClosed, time.Now())
		return
	}
	begun := time.Now()
	p.wg.Add(1) // for the exit watcher, which ends in processExited
	proc, err := startProcess(p.lifetime, p.spec, p.forks.Load(), p.processExited)
	p.started(startedFor, why, proc, err, begun)
}

// started takes the result of a start made for why, which began at begun.
func (p *Pool) started(startedFor *waiter, why cause, proc *process, err error, begun time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starting--
	p.notifyLocked()
	if err == nil {
		err = p.joinLocked(proc)
	}
	switch {
	case err == nil:
		p.starts[why]++
		p.offerLocked(p.workers[proc], startedFor)
		return
	case p.closed:
		p.grantLocked(startedFor, grant{err: ErrPoolClosed})
		return
	}
	p.startFailedCauseLocked(why)
	p.startFailedLocked(startedFor, err, begun)
	p.reconcileLocked() // try again, after the backoff
}

// joinLocked records a started process as a pooled worker (state new, for
// offerLocked to place), or stops it when the pool closed or the process
// died since its handshake.
func (p *Pool) joinLocked(proc *process) error {
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
	pw := &pooledWorker{proc: proc, state: stateStarting}
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
	if proc.crashed() {
		p.crashes++ // before anyone can see the worker gone
	}
	p.leftLocked(pw, p.endCauseLocked(proc.crashed()))
	p.setStateLocked(pw, stateExited)
	p.reconcileLocked()
	cause := p.stopCauseLocked(pw)
	p.mu.Unlock()
	proc.logExit(cause)
	if proc.crashed() {
		if time.Since(proc.started) < quickDeath && proc.served.Load() == 0 && !killedFromOutside(proc.exitErr) {
			p.backoff.diedYoung()
		}
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
		proc := pw.proc
		fn := proc.function(false)
		p.log.Warn(msgCallInterrupted, "worker", proc.pid, fn, "cause", proc.interruptCause())
		ok := proc.awaitInterrupted(p.cfg.InterruptGrace) && proc.condition() == condHealthy
		var recycle recycling
		if ok {
			recycle = p.recycleReason(pw)
		} else if !proc.hasExited() {
			p.log.Warn(msgWorkerKilled, "worker", proc.pid, fn, "grace", p.cfg.InterruptGrace)
			// Where it is stuck, before the kill ends it; bounded, and no
			// caller waits for it.
			proc.dumps.await(proc, proc.dumps.request(proc, proc.currentFunction(), dumpKilled), dumpKillWait)
		}
		p.mu.Lock()
		if !ok {
			pw.stopCause = "did not answer its interrupt within Config.InterruptGrace"
		}
		defer p.mu.Unlock()
		p.drainedLocked(pw, ok, recycle)
	}()
}

// awaitBackoff waits out the start backoff, so that restarts and retries do
// not spin through a crash loop; false if ctx ended or the pool closed. The
// delay is read again at least every backoffMin, so that a successful call
// that ends the backoff also ends the wait.
func (p *Pool) awaitBackoff(ctx context.Context) bool {
	for {
		if ctx.Err() != nil || p.lifetime.Err() != nil {
			return false
		}
		wait := p.backoff.delay()
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

// killedFromOutside reports whether a worker was ended by SIGKILL, which
// its own code cannot send itself by accident: an operator or the OOM
// killer. Such a death says nothing about the module, so it does not
// lengthen the crash-loop backoff.
func killedFromOutside(exit *WorkerExitError) bool {
	return exit != nil && exit.Signal == syscall.SIGKILL.String()
}

// fill starts the first Size workers for New, in parallel, on New's
// context, and returns the first error.
func (p *Pool) fill(ctx context.Context) error {
	errs := make(chan error, p.cfg.Size)
	for range p.cfg.Size {
		p.wg.Add(1) // for the exit watcher
		go func() {
			proc, err := startProcess(ctx, p.spec, p.forks.Load(), p.processExited)
			if err == nil {
				p.mu.Lock()
				if err = p.joinLocked(proc); err == nil {
					p.starts[causeInitial]++
					p.offerLocked(p.workers[proc], nil)
				}
				p.mu.Unlock()
			}
			errs <- err
		}()
	}
	var first error
	for range p.cfg.Size {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// The fork server (StartMethod StartForkServer, forkserver.go) is supervised
// here too: started by New, restarted with its own backoff when it dies,
// stopped by Close once every worker has exited. While it is down, workers
// are started as their own python3 (process.go's launch), and the workers
// it forked keep serving.

// startForkServer starts the pool's template for New. If it cannot start,
// the pool logs why and starts its workers as their own python3.
func (p *Pool) startForkServer(ctx context.Context) {
	fs, err := startForkServer(ctx, p.spec, p.forkServerExited)
	if err != nil {
		p.log.Warn(msgForkServerFallback, "module", p.cfg.Module, "error", err)
		return
	}
	p.forkServerStarted(fs)
}

// forkServerStarted makes fs the pool's template.
func (p *Pool) forkServerStarted(fs *forkServer) {
	p.forks.Store(fs)
	p.log.Debug(msgForkServerStarted, "forkserver", fs.pid, "module", p.cfg.Module)
}

// forkServerExited runs in the template's watcher once it was reaped. Unless
// the pool is closing, it has the template restarted after the backoff.
func (p *Pool) forkServerExited(fs *forkServer) {
	if !p.forks.CompareAndSwap(fs, nil) {
		return // stopped by Close
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.restartAfterLocked(&p.forkBackoff, fs.started, p.restartForkServer,
		msgForkServerExited, "forkserver", fs.pid, "exit_code", fs.exited.code, "signal", fs.exited.signal)
}

// restartAfterLocked has restart run in a goroutine of the pool for a
// helper process (the fork server's template, the guardian) that began at
// started and exited while the pool runs: its backoff b grows (and starts
// over if it lived), and the exit is logged as msg with attrs and the
// delay before restart tries again.
func (p *Pool) restartAfterLocked(b *startBackoff, started time.Time, restart func(), msg string, attrs ...any) {
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
		if !p.awaitDelay(&p.forkBackoff) {
			return
		}
		fs, err := startForkServer(p.lifetime, p.spec, p.forkServerExited)
		if err == nil {
			p.forkServerStarted(fs)
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

// awaitDelay waits out b's delay; false if the pool closed.
func (p *Pool) awaitDelay(b *startBackoff) bool {
	wait := b.delay()
	if wait <= 0 {
		return p.lifetime.Err() == nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.lifetime.Done():
		return false
	}
}

// recycleOrphans replaces the idle workers of a template that died, now
// that a new one runs; busy ones are replaced at their check-in
// (recycleReason).
func (p *Pool) recycleOrphans() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pw := range p.idle.all() {
		if reason := p.recycleReason(pw); reason.cause != causeNone {
			p.recycleLocked(pw, reason)
		}
	}
	p.reconcileLocked()
}

// The guardian (guardian.go) is supervised here too: started by New before
// the first worker, restarted with its own backoff when it dies while the
// pool runs (the new one is handed every live group), stopped by Close
// after everything else.

// guardianExited runs in the guardian's watcher once it was reaped. Unless
// the pool is closing, it has a new one started after the backoff.
func (p *Pool) guardianExited(gp *guardianProcess) {
	if !p.spec.guard.exited(gp) {
		return // stopped by Close
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.restartAfterLocked(&p.guardBackoff, gp.started, p.restartGuardian,
		msgGuardianExited, "guardian", gp.pid, "exit_code", gp.exited.code, "signal", gp.exited.signal)
}

// restartGuardian starts a new guardian after the backoff, again and again
// until one starts or the pool closes. Close stops one started meanwhile.
func (p *Pool) restartGuardian() {
	defer p.wg.Done()
	for p.awaitDelay(&p.guardBackoff) {
		err := p.spec.guard.start(p.guardianExited)
		if err == nil {
			return
		}
		p.guardBackoff.failedStart(err, time.Now())
		p.log.Warn(msgGuardianFailed, "error", err, "retry_in", p.guardBackoff.delay().Round(time.Millisecond))
	}
}
