package pypool

// reload.go is Pool.Reload: the rolling replacement of every worker by one
// started from the code as it is now on disk (docs/reloading.md).
//
// Every worker carries the generation it was started in (pooledWorker.gen)
// and the pool the generation new workers start in (Pool.gen). A reload
// runs in three steps, in a goroutine of the supervisor (runReload):
//
//  1. With the fork server, a new template is started from the code on
//     disk; the old one forks nothing more and is stopped once the last
//     worker it forked has exited (stopOldForkServersLocked).
//  2. One worker of the next generation is started and proven: it
//     imported the module and ran SetUp (its HELLO). If it fails, the
//     reload ends with its error, and nothing else changed: the pool's
//     generation, backoff, waiting callers and workers are untouched.
//  3. Once it is proven the pool's generation becomes the reload's, and
//     the reload rolls: every worker of an older generation is retired,
//     an idle one as soon as a new one takes its place (offerLocked,
//     replacedByLocked), a busy one when it is checked in if the pool keeps
//     the workers it needs without it, else it serves a waiting caller or
//     waits idle for its replacement (offerOldLocked), never during a call
//     or a Transaction. The reload's own starts
//     (reloadStartsLocked) run at most Config.ReloadSurge at a time and
//     within Size+MaxOverflow+ReloadSurge workers. The reload ends once no
//     worker of an older generation serves or starts.
//
// The supervisor stays the one owner of starts and stops: every start is
// ordered with orderLocked and runs in its own goroutine, every
// retirement is a stopLocked, all decided under Pool.mu.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"
)

// The log records of a reload.
const (
	msgReloaded     = "pypool: reloaded"       // Info: generation, duration
	msgReloadFailed = "pypool: reload stopped" // Warn: generation, error; the workers serve on
)

// reloadRun is one reload in progress. Its fields but done are guarded by
// Pool.mu.
type reloadRun struct {
	done chan struct{} // closed when it ended; err is set then
	err  error
	// ctxEnded: it stopped because the ctx of the Reload that began it
	// ended (set with err); a Reload that joined it carries on.
	ctxEnded bool
	gen      uint64 // the generation it brings
	prevGen  uint64 // the pool's generation before it
	began    time.Time

	// ctx bounds its own starts: the pool's lifetime, and cut short when
	// it ends with an error (a start of a reload given up holds a slot).
	ctx    context.Context
	cancel context.CancelFunc

	rolling  bool       // its first worker was proven: the pool's generation is gen
	proof    chan error // receives its first worker's start: nil once it serves, or the start's error
	starting int        // its own starts in flight
	failed   error      // a start of its own failed while it rolled

	// With the fork server: the template it started and the one that
	// one replaced, put back if the reload fails (restoreForkServerLocked).
	newFork, oldFork *forkServer
}

// Reload replaces every worker of the pool by a new one started from the
// Python code as it is now: the module's files on disk under
// Config.PythonPath (and Config.Dir), and the data its SetUp loads. Code
// embedded with Config.PythonFS is not re-read: it is the binary's.
//
// No call fails or waits longer because of a reload. Each new worker is
// started and proven (it imported the module and ran SetUp) before an old
// one is retired; an old worker is retired when it is idle and a new one
// takes its place, or when its caller checks it in: never during a call,
// and a Transaction finishes on the worker it holds. Meanwhile the pool
// may run up to Config.ReloadSurge workers beyond Size+MaxOverflow. With
// the fork server, a new template is started first, and the new workers
// are forked from it (started by exec where the fork server cannot run).
//
// If the new code cannot start (the module fails to import, SetUp raises,
// the new fork server's template fails), the reload stops and Reload
// returns that start error (it wraps ErrWorkerStart, and the
// *PythonError with the traceback when Python raised): the workers that
// serve keep serving, and the pool's crash-loop backoff is not touched.
//
// Reload returns nil once every worker is of the new generation
// (Stats.OldGeneration is 0): a call that begins after it returns is
// answered by the new code. One reload runs at a time: a Reload while
// one runs joins it and returns its result (or its own ctx's error, when
// its ctx ends first, without stopping the reload). When the ctx of the
// Reload that began it ends, the reload stops where it is and Reload
// returns ctx's error: the pool serves on with old and new workers (old
// ones are still retired at check-in, and replaced by new ones), and the
// next Reload completes it; a Reload that had joined it, its own ctx
// still live, goes on with a reload of its own. A ctx already ended begins
// nothing: Reload returns its error. Close ends a reload: Reload then returns
// ErrPoolClosed, as it does after Close.
func (p *Pool) Reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pypool: Reload: %w", err) // as it would once begun, but nothing begun
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return ErrPoolClosed
		}
		r, mine := p.reload, false
		if r == nil {
			p.lastGen++
			r = &reloadRun{done: make(chan struct{}), gen: p.lastGen, prevGen: p.gen.Load(), began: time.Now(), proof: make(chan error, 1)}
			r.ctx, r.cancel = context.WithCancel(p.lifetime)
			p.reload, mine = r, true
			p.reloads++
			p.wg.Add(1)
			go p.runReload(ctx, r)
			p.notifyLocked()
		}
		p.mu.Unlock()
		select {
		case <-r.done:
			if r.ctxEnded && !mine && ctx.Err() == nil {
				// The reload this one joined was stopped by the ctx of
				// the Reload that began it, not by this one's: carry
				// the replacement through with a reload of its own.
				continue
			}
			return r.err
		case <-ctx.Done():
			return fmt.Errorf("pypool: Reload: %w", ctx.Err())
		}
	}
}

// runReload runs the reload r until it ends: done, failed, ctx ended, or
// Close.
func (p *Pool) runReload(ctx context.Context, r *reloadRun) {
	defer p.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.lifetime, cancel)
	defer stop()

	err := p.reloadSteps(ctx, r)
	if err != nil && p.lifetime.Err() != nil {
		err = ErrPoolClosed
	}
	p.mu.Lock()
	p.reload = nil
	r.err = err
	r.ctxEnded = err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err())
	if err == nil {
		p.reloadsDone++
		if r.starting == 0 {
			r.cancel()
		} // else its last start does (reloadStartedLocked)
		p.stopIdleBeyondSizeLocked()
	} else {
		p.reloadFailures++
		r.cancel() // its starts in flight: it no longer needs them
		p.restoreForkServerLocked(r)
	}
	p.stopOldForkServersLocked()
	p.reconcileLocked()
	p.notifyLocked()
	p.mu.Unlock()
	if err == nil {
		p.log.Info(msgReloaded, "generation", r.gen, "duration", time.Since(r.began).Round(time.Millisecond))
	} else {
		p.log.Warn(msgReloadFailed, "generation", r.gen, "error", err)
	}
	close(r.done)
}

// reloadSteps runs the reload's three steps (the file's comment).
func (p *Pool) reloadSteps(ctx context.Context, r *reloadRun) error {
	if p.cfg.StartMethod == StartForkServer && runtime.GOOS == "linux" {
		if err := p.reloadForkServer(ctx, r); err != nil {
			return err
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	r.starting++
	p.orderLocked(startOrder{why: p.reloadCauseLocked(), ctx: r.ctx, gen: r.gen, reload: r})
	p.mu.Unlock()
	select {
	case err := <-r.proof:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return fmt.Errorf("pypool: Reload: %w", ctx.Err())
	}
	for {
		p.mu.Lock()
		switch {
		case p.closed:
			p.mu.Unlock()
			return ErrPoolClosed
		case r.failed != nil:
			p.mu.Unlock()
			return r.failed
		case p.oldGenerationLocked() == 0:
			p.mu.Unlock()
			return nil
		}
		p.reconcileLocked()
		p.watched = true
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("pypool: Reload: %w", ctx.Err())
		}
	}
}

// reloadForkServer starts a new template from the code on disk and makes it
// the pool's; the one it replaces forks nothing more.
func (p *Pool) reloadForkServer(ctx context.Context, r *reloadRun) error {
	// New's template first, if it still starts (the stand-in's, with Size
	// 1): it is then the pool's, the one put back should this reload fail,
	// not one that becomes the pool's after this reload's broken one.
	if p.forkSettled != nil {
		select {
		case <-p.forkSettled:
		case <-ctx.Done():
			return fmt.Errorf("pypool: Reload: %w", ctx.Err())
		}
	}
	fs, err := startForkServer(ctx, p.spec, p.forkServerExited)
	unsupported := forkServerUnsupported(err)
	if err != nil && !unsupported {
		return fmt.Errorf("pypool: Reload: the new fork server did not start, the workers serve on: %w", err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		if fs != nil {
			fs.stop(p.cfg.StopTimeout)
		}
		return ErrPoolClosed
	}
	// Where the fork server cannot run, the new workers are started by
	// exec, as New's were: no template of the old code forks them.
	old := p.forks.Swap(fs)
	if old != nil {
		p.oldForks = append(p.oldForks, old)
	}
	r.newFork, r.oldFork = fs, old
	p.mu.Unlock()
	if unsupported {
		p.log.Warn(msgForkServerFallback, "module", p.cfg.Module, "error", err, "reload", true)
		return nil
	}
	p.log.Info(msgForkServerStarted, "forkserver", fs.pid, "module", p.cfg.Module, "reload", true)
	return nil
}

// forkServerUnsupported reports whether err is a template's refusal to run
// with this interpreter or system (forkserver.py's _unsupported: no
// os.pidfd_open, no _ctypes, RLIMIT_NOFILE too low), not a failure of the
// Python code: the pool then starts its workers by exec.
func forkServerUnsupported(err error) bool {
	var pyErr *PythonError
	return errors.As(err, &pyErr) && pyErr.Code == "fork_server_unsupported"
}

// restoreForkServerLocked puts back, after the reload r failed, the
// template its own replaced, if that one still runs, so that the workers
// started until the next reload are forked from the code they were
// proven with; r's template is stopped once its workers are gone. A
// reload that rolled and stopped with the pool in its generation (its
// ctx ended) keeps its template: the workers that replace old ones are
// of its generation, and must run its code.
func (p *Pool) restoreForkServerLocked(r *reloadRun) {
	old := r.oldFork
	at := slices.Index(p.oldForks, old)
	if p.gen.Load() == r.gen || old == nil || at < 0 || old.exited() || !p.forks.CompareAndSwap(r.newFork, old) {
		return
	}
	if r.newFork == nil { // none could start (forkServerUnsupported)
		p.oldForks = slices.Delete(p.oldForks, at, at+1)
		return
	}
	p.oldForks[at] = r.newFork
}

// reloadCauseLocked is the cause of a reload's own start: it replaces a
// worker the reload retires, whichever left first.
func (p *Pool) reloadCauseLocked() cause {
	if p.owed[causeReload] > 0 {
		p.owed[causeReload]--
	}
	return causeReload
}

// reloadStartedLocked places a worker the reload r started. Its first one
// is the proof: the pool's generation becomes r's, and the reload rolls.
// A worker of a reload that ended meanwhile is placed as any other.
func (p *Pool) reloadStartedLocked(r *reloadRun, pw *pooledWorker) {
	if r.starting--; r.starting == 0 && p.reload != r {
		r.cancel()
	}
	if p.reload == r && !r.rolling && r.failed == nil {
		r.rolling = true
		p.gen.Store(r.gen)
		r.proof <- nil
	}
	p.offerLocked(pw, nil)
}

// reloadStartFailedLocked ends the reload r after a start of its own
// failed: before it rolled, nothing changed; while it rolled, the pool's
// generation goes back to the one before it, so that the workers that
// serve, old and new, all serve on.
func (p *Pool) reloadStartFailedLocked(r *reloadRun, err error) {
	if r.starting--; p.reload != r || r.failed != nil {
		if r.starting == 0 && p.reload != r {
			r.cancel()
		}
		return // it ended, and cut its starts short
	}
	p.startFails++
	p.logStartFailed(err, isFatalStart(err))
	r.failed = fmt.Errorf("pypool: Reload: a worker of the new code did not start, the workers serve on: %w", err)
	if r.rolling {
		p.gen.Store(r.prevGen)
		return
	}
	r.proof <- r.failed
}

// reloadStartsLocked has the reload start new workers for the old ones
// still serving, at most Config.ReloadSurge at a time and within
// Size+MaxOverflow+ReloadSurge workers. A new worker idle while no old one
// is (it waits for a busy old one to be checked in) counts as one's
// replacement already.
func (p *Pool) reloadStartsLocked() {
	r := p.reload
	if r == nil || !r.rolling || r.failed != nil || p.closed {
		return
	}
	old, oldIdle, newIdle := p.generationsLocked()
	spare := 0
	if oldIdle == 0 {
		spare = newIdle
	}
	surge := p.cfg.ReloadSurge
	n := min(old-spare-r.starting, surge-r.starting, p.cfg.Size+p.cfg.MaxOverflow+surge-p.slotsUsedLocked())
	for range max(0, n) {
		r.starting++
		p.orderLocked(startOrder{why: p.reloadCauseLocked(), ctx: r.ctx, gen: r.gen, reload: r})
	}
}

// offerOldLocked places a worker of an older generation that is offered:
// checked in (or back from a drain) during or after a reload, or started
// while a reload rolled. It is retired if the pool keeps, without it, the
// ready workers it needs: Size, or as many as its callers use and wait
// for, within Size+MaxOverflow; or if no reload runs (one stopped by its
// ctx: the replacement is an ordinary start). Else it is not retired
// before a new worker is proven to take its place: it serves the caller
// waiting longest, or waits idle until a new worker retires it
// (replacedByLocked). It reports whether it placed pw.
func (p *Pool) offerOldLocked(pw *pooledWorker, startedFor *waiter) bool {
	others := p.othersReadyLocked(pw)
	busy := others - p.counts[stateIdle]
	needed := min(p.cfg.Size+p.cfg.MaxOverflow, max(p.cfg.Size, busy+p.waiters.len()))
	if why := p.limitReason(pw); why.cause != causeNone {
		p.recycleLocked(pw, why) // it must go anyway
		return true
	}
	if r := p.reload; r == nil || !r.rolling || others >= needed {
		p.recycleLocked(pw, p.recycleReason(pw))
		return true
	}
	wt := startedFor
	if wt == nil || wt.decided {
		wt = p.waiters.next()
	}
	if wt != nil {
		p.setStateLocked(pw, stateCheckedOut)
		p.grantLocked(wt, grant{pw: pw})
		return true
	}
	p.setStateLocked(pw, stateIdle)
	return true
}

// replacedByLocked is offerLocked's part in a rolling reload, for a worker
// of the pool's generation: a new worker just started retires one idle
// old worker, whose place it takes, and the old workers still serving do
// not count towards Size+MaxOverflow (it returns how many there are).
func (p *Pool) replacedByLocked(pw *pooledWorker) int {
	r := p.reload
	if r == nil || !r.rolling || pw.gen < p.gen.Load() {
		return 0
	}
	if pw.state == stateStarting {
		for _, idle := range p.idle.all() { // longest idle first
			if idle.gen < pw.gen {
				p.recycleLocked(idle, p.recycleReason(idle))
				break
			}
		}
	}
	old, _, _ := p.generationsLocked()
	return old
}

// generationsLocked counts the workers of an older generation than the
// pool's that serve or start (old), the idle ones among them, and the
// idle workers of the pool's generation.
func (p *Pool) generationsLocked() (old, oldIdle, newIdle int) {
	gen := p.gen.Load()
	for _, pw := range p.workers {
		switch {
		case pw.gen >= gen && pw.state == stateIdle:
			newIdle++
		case pw.gen >= gen:
		case pw.state == stateIdle:
			old++
			oldIdle++
		case pw.state == stateStarting || pw.state.serving():
			old++
		}
	}
	for g, n := range p.startingGen {
		if g < gen {
			old += n
		}
	}
	return old, oldIdle, newIdle
}

// oldGenerationLocked is Stats.OldGeneration: the workers of an older
// generation than the pool's that serve or start.
func (p *Pool) oldGenerationLocked() int {
	if p.gen.Load() == 0 && p.reload == nil {
		return 0 // no reload ever rolled
	}
	old, _, _ := p.generationsLocked()
	return old
}

// stopIdleBeyondSizeLocked stops, once a reload is done, the idle workers
// beyond Size it leaves (new workers that waited for busy old ones),
// poolboy's rule at check-in, unless OverflowIdleTimeout keeps them.
func (p *Pool) stopIdleBeyondSizeLocked() {
	if p.cfg.OverflowIdleTimeout > 0 {
		return
	}
	excess := p.readyLocked() - p.cfg.Size
	for _, pw := range p.idle.all() { // longest idle first
		if excess <= 0 {
			return
		}
		excess--
		pw.stopCause = "overflow worker no longer needed"
		p.stopLocked(pw, causeOverflow)
	}
}

// stopOldForkServersLocked stops, in the background, the templates a
// reload replaced once no worker they forked is left.
func (p *Pool) stopOldForkServersLocked() {
	if len(p.oldForks) == 0 {
		return
	}
	kept := p.oldForks[:0]
	for _, fs := range p.oldForks {
		if p.forkedAnyLocked(fs) {
			kept = append(kept, fs)
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			fs.stop(p.cfg.StopTimeout)
		}()
	}
	clear(p.oldForks[len(kept):])
	p.oldForks = kept
}

// forkedAnyLocked reports whether a worker of the pool was forked by fs.
func (p *Pool) forkedAnyLocked(fs *forkServer) bool {
	for proc := range p.workers {
		if forkedBy(proc.os) == fs {
			return true
		}
	}
	return false
}

// stopOldForkServers stops the templates replaced by a reload (Close).
func (p *Pool) stopOldForkServers() {
	p.mu.Lock()
	old := p.oldForks
	p.oldForks = nil
	p.mu.Unlock()
	for _, fs := range old {
		fs.stop(p.cfg.StopTimeout)
	}
}
