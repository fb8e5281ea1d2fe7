package pypool

// stats.go holds the pool's counters (Stats) and the causes of worker
// starts and stops. Per-call latencies are the Tracer's (tracer.go), which
// the prometheus subpackage uses for its histograms.
//
// Counters of worker starts and stops change under Pool.mu, where the
// transition is decided (state.go, supervise.go); counters of
// calls are atomics updated on the caller's goroutine at the call's start
// and end. Either way each event is counted exactly once.

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a pool's state and counters, read like database/sql's
// DBStats: plain fields in groups. Taking it costs one short hold of the
// pool's lock. Gauges (int) say what is true now; counters (uint64, and
// WaitDuration) only grow, from New on, and count each event exactly once.
type Stats struct {
	Size        int // Config.Size (as Resize last set it): workers kept running at rest
	MaxOverflow int // Config.MaxOverflow (as Resize last set it): workers allowed beyond Size under load

	// Workers by state, and callers waiting (gauges).
	// Workers+Starting+Stopping never exceeds Size+MaxOverflow, but for
	// Config.ReloadSurge more while Pool.Reload runs (Reloading).
	Workers       int // workers that hold a slot and serve: Idle + InUse
	Idle          int // workers waiting for a call
	InUse         int // workers checked out by callers, or finishing a call whose caller gave up (being interrupted)
	Starting      int // worker starts in flight
	Stopping      int // workers being stopped: no longer serving, holding their slot until they have exited
	Overflow      int // workers beyond Size, idle or in use: max(0, Workers-Size)
	OverflowInUse int // callers served beyond Size: max(0, InUse-Size)
	Waiting       int // callers waiting to check a worker out (Call, Transaction; a call with NoWait or TryCall awaiting its start)

	// Config.AsyncCalls (gauges): the workers in use by calls of async
	// functions (they are in InUse too), and the calls in flight on them,
	// those being cancelled included; at most AsyncWorkers*AsyncCalls.
	AsyncWorkers int
	AsyncCalls   int

	// Waits for a worker (counters), as DBStats: every checkout that could
	// not take an idle worker at once (a call's attempt or a Transaction),
	// whether it was served in the end or gave up.
	WaitCount    uint64        // checkouts that waited
	WaitDuration time.Duration // total time they waited

	// Calls and their outcomes (counters). A call is one Call, TryCall,
	// CallAs, CallBytes, Stream or Worker.Call (not Ping: see Pings); a call retried after a
	// crash (Config.CrashRetries) is one call. Every call that started ends
	// with exactly one outcome, and is counted in CallsFinished and in at
	// most one of the outcome counters below (successes and other errors are
	// in none of them).
	CallsStarted     uint64 // calls begun
	CallsFinished    uint64 // calls returned, whatever their outcome; CallsStarted-CallsFinished are in progress
	CallsSent        uint64 // calls sent to a worker: every attempt of a retried call, not rejections or calls that never got a worker
	PythonExceptions uint64 // calls that ended with a *PythonError: an exception of the function, or a refusal of the runtime (unknown function, unencodable result)
	Rejections       uint64 // calls refused with ErrPoolExhausted (with NoWait, TryCall or MaxWaiting NoWaiting and every worker busy, or Config.MaxWaiting reached); a refused Transaction is not a call
	DeadlineExceeded uint64 // calls that ended because their context's deadline passed (or Config.CallTimeout), waiting or in Python
	Canceled         uint64 // calls that ended because their context was canceled, waiting or in Python
	Interrupts       uint64 // calls cut off while Python ran them: their worker was sent KeyboardInterrupt (StopsKilled counts those that did not answer in Config.InterruptGrace)

	// Calls is the same count as CallsSent, under its earlier name.
	//
	// Deprecated: use CallsSent.
	Calls uint64

	// Readiness probes (counters): Pool.Ping, which is not a call of the
	// module and counts in none of the call counters above (its wait for
	// a worker is in WaitCount and WaitDuration, as a Transaction's).
	Pings        uint64 // probes made
	PingFailures uint64 // probes that returned an error

	// Worker starts by cause (counters). A start is counted once it
	// succeeded; one that failed is counted in StartFailures only. A start
	// that replaces a worker counts as the cause that made it (a crash, a
	// kill, a recycle), whatever the pool's size at the time; a start
	// beyond Size for callers, replacing nothing, is overflow.
	StartsInitial  uint64 // the Size workers started by New
	StartsCrash    uint64 // replacements of workers that crashed or were killed in an unknown state (Crashes, StopsKilled)
	StartsRecycle  uint64 // replacements of workers recycled (StopsMaxCalls, StopsMaxMemory, StopsMaxLifetime)
	StartsOverflow uint64 // workers started beyond Size for waiting callers or calls with NoWait (TryCall), replacing no worker
	StartsResize   uint64 // workers started because Resize grew the pool
	StartsReload   uint64 // workers started by Pool.Reload, or to replace a worker it retired
	Restarts       uint64 // workers started after New: StartsCrash + StartsRecycle + StartsOverflow + StartsResize + StartsReload
	StartFailures  uint64 // worker starts that failed, fatal or transient (the interpreter, the module's import, the handshake, no descriptors, processes or memory)
	// StartsHandover counts the forked workers that took the place of the
	// fork server's first worker (StopsHandover): with StartForkServer and
	// Size 1, New starts its worker by exec before the template (and so
	// any worker started before the template runs), and hands it over to a
	// forked one at its first check-in once the template runs
	// (docs/forkserver.md). Not in Restarts: it replaces no lost or
	// recycled worker.
	StartsHandover uint64

	// Worker ends by cause (counters): a crash, or a stop the pool decided
	// and why. At rest, the starts above less these ends (Recycled aside,
	// a total of some of them) are Workers.
	Crashes           uint64 // workers that died without being asked to, whatever they were doing
	StopsKilled       uint64 // workers killed because their state was unknown: no answer to an interrupt in Config.InterruptGrace, a protocol error, a broken pipe
	StopsMaxCalls     uint64 // workers recycled after Config.MaxCallsPerWorker calls
	StopsMaxMemory    uint64 // workers recycled above Config.MaxWorkerMemory
	StopsMaxLifetime  uint64 // workers recycled past Config.MaxWorkerLifetime
	StopsOverflow     uint64 // overflow workers stopped at check-in because no caller waited (poolboy's rule, without Config.OverflowIdleTimeout)
	StopsOverflowIdle uint64 // overflow workers stopped after Config.OverflowIdleTimeout idle
	StopsResize       uint64 // workers stopped because Resize shrank the pool: idle ones at once, busy ones beyond Size+MaxOverflow at their check-in
	StopsClose        uint64 // workers stopped by Close
	StopsReload       uint64 // workers of an older generation retired by Pool.Reload: idle ones as new ones took their place, busy ones at their check-in once the pool keeps enough workers without them
	Recycled          uint64 // healthy workers stopped on purpose: StopsMaxCalls + StopsMaxMemory + StopsMaxLifetime + StopsOverflowIdle + StopsReload
	// StopsHandover counts the fork server's first workers, started by exec,
	// stopped once a forked worker could take their place (StartsHandover).
	// Not in Recycled. At rest, StartsInitial + Restarts + StartsHandover
	// less Crashes and the stops above (Recycled aside) are Workers.
	StopsHandover uint64

	// Generations (Pool.Reload). Every worker is started in the pool's
	// generation of the moment: 0 from New on, and the number a reload
	// takes (the next one) once its first new worker is proven. A reload that fails
	// leaves Generation as it was; its number is not used again.
	Generation    uint64 // the generation new workers start in
	OldGeneration int    // gauge: workers of an older generation still serving or starting, which a reload replaces (its progress: it ends at 0)
	Reloading     bool   // a reload runs (Pool.Reload)
	Reloads       uint64 // reloads begun (a Reload joining a running one begins none)
	ReloadsDone   uint64 // reloads that replaced every worker: Reload returned nil
	ReloadsFailed uint64 // reloads that ended with an error: the new code did not start, their context ended, or Close ended them
}

// cause is why a worker started or stopped: the index of Pool.starts,
// Pool.stops and Pool.owed.
type cause uint8

const (
	causeNone         cause = iota
	causeInitial            // started by New
	causeCrash              // died by itself: a crash
	causeKilled             // killed in an unknown state
	causeMaxCalls           // recycled: Config.MaxCallsPerWorker
	causeMaxMemory          // recycled: Config.MaxWorkerMemory
	causeMaxLifetime        // recycled: Config.MaxWorkerLifetime
	causeOverflow           // an overflow worker: started for a caller, stopped at check-in when nobody waits
	causeClose              // stopped by Close
	causeResize             // started or stopped by Resize
	causeOverflowIdle       // an overflow worker stopped after Config.OverflowIdleTimeout
	causeReload             // started by Pool.Reload, or retired by it (an older generation)
	causeHandover           // the fork server's first worker, started by exec, handed over to a forked one
	numCauses
)

// recycling is why a healthy worker is due for replacement: a cause and
// the text for the log; the zero value means it is not.
type recycling struct {
	cause  cause
	reason string
}

// now reports whether a worker checked in (or back from a drain) for
// this reason is recycled at once. A reload's is not: the worker is
// offered, and offerLocked hands it to offerOldLocked, which retires it
// only once the pool keeps the workers it needs without it.
func (r recycling) now() bool {
	return r.cause != causeNone && r.cause != causeReload
}

// replacementClass is the start cause of a worker replacing one that left
// for c: a crash's for a crash or a kill, a recycle's for a recycle;
// causeNone when a worker that left for c is not replaced for that reason
// (an overflow worker stopped, Resize, Close).
func replacementClass(c cause) cause {
	switch c {
	case causeCrash, causeKilled:
		return causeCrash
	case causeMaxCalls, causeMaxMemory, causeMaxLifetime:
		return causeMaxCalls // counted as StartsRecycle
	case causeReload:
		return causeReload
	case causeHandover:
		return causeHandover
	}
	return causeNone
}

// leftLocked records that pw left its slot (it was serving or just
// started) for cause c, once: a crash too (Stats.Crashes) is counted here,
// when the dead worker is checked in or reaped, whichever comes first, so
// that a caller who sees the worker gone sees its crash counted. The next
// start the pool decides while it still needs one (reconcileLocked) is
// owed to c's class, whatever the pool's size: a replacement counts as
// the cause that made it.
func (p *Pool) leftLocked(pw *pooledWorker, c cause) {
	if pw.state != stateStarting && !pw.state.serving() {
		return // it left already, and was counted then
	}
	p.stops[c]++
	if r := replacementClass(c); r != causeNone {
		p.owed[r]++
	}
}

// endCauseLocked is why a worker that was not stopped on purpose leaves:
// it crashed, Close killed it, or it was killed in an unknown state.
func (p *Pool) endCauseLocked(crashed bool) cause {
	switch {
	case crashed:
		return causeCrash
	case p.closed:
		return causeClose
	}
	return causeKilled
}

// startCauseLocked is the cause of a start decided now: a replacement of
// what left (a crash, a recycle) or of what Resize added while such a
// start is owed, whatever the pool's size; else overflow beyond Size, or
// below Size a start of New's that died.
func (p *Pool) startCauseLocked() cause {
	for _, c := range []cause{causeResize, causeCrash, causeMaxCalls, causeReload, causeHandover} {
		if p.owed[c] > 0 {
			p.owed[c]--
			return c
		}
	}
	if p.readyLocked()+p.starting >= p.cfg.Size {
		return causeOverflow
	}
	return causeCrash // below Size with nothing owed: a start of New's that died
}

// settleOwedLocked forgets the replacements owed once the pool needs no
// further start (unmet <= 0): a worker that left and that nobody needs
// again (an idle overflow worker that crashed) is not replaced, so the
// next start beyond Size is overflow again.
func (p *Pool) settleOwedLocked(unmet int) {
	if unmet <= 0 {
		p.owed = [numCauses]uint64{}
	}
}

// startFailedCauseLocked gives a failed start's cause back, so that the
// start that retries it is counted for the same reason.
func (p *Pool) startFailedCauseLocked(c cause) {
	if c != causeOverflow && c != causeInitial {
		p.owed[c]++
	}
}

// callCounters are the pool's atomic counters of calls.
type callCounters struct {
	started, finished   atomic.Uint64
	pings, pingFailures atomic.Uint64
	byOutcome           [numOutcomes]atomic.Uint64
	interrupts          atomic.Uint64
	waitCount           atomic.Uint64
	waitNanos           atomic.Int64
}

// The outcomes that have a counter in Stats.
const (
	countPython = iota
	countRejected
	countDeadline
	countCanceled
	numOutcomes
)

// waited records a checkout that had to wait d.
func (p *Pool) waited(d time.Duration) {
	p.callStats.waitCount.Add(1)
	p.callStats.waitNanos.Add(int64(d))
}

// Stats returns a snapshot of the pool's state and counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	idle := p.counts[stateIdle]
	inUse := p.counts[stateCheckedOut] + p.counts[stateDraining]
	s := Stats{
		Size:          p.cfg.Size,
		MaxOverflow:   p.cfg.MaxOverflow,
		Workers:       idle + inUse,
		Idle:          idle,
		InUse:         inUse,
		Starting:      p.starting,
		Stopping:      p.counts[stateStopping],
		Overflow:      max(0, idle+inUse-p.cfg.Size),
		OverflowInUse: max(0, inUse-p.cfg.Size),
		Waiting:       p.waiters.len(),
		AsyncWorkers:  len(p.async.shared),
		AsyncCalls:    p.async.inFlight,

		StartsInitial:  p.starts[causeInitial],
		StartsCrash:    p.starts[causeCrash],
		StartsRecycle:  p.starts[causeMaxCalls],
		StartsOverflow: p.starts[causeOverflow],
		StartsResize:   p.starts[causeResize],
		StartsReload:   p.starts[causeReload],
		StartFailures:  p.startFails,
		StartsHandover: p.starts[causeHandover],

		Crashes:           p.stops[causeCrash],
		StopsKilled:       p.stops[causeKilled],
		StopsMaxCalls:     p.stops[causeMaxCalls],
		StopsMaxMemory:    p.stops[causeMaxMemory],
		StopsMaxLifetime:  p.stops[causeMaxLifetime],
		StopsOverflow:     p.stops[causeOverflow],
		StopsOverflowIdle: p.stops[causeOverflowIdle],
		StopsResize:       p.stops[causeResize],
		StopsClose:        p.stops[causeClose],
		StopsReload:       p.stops[causeReload],
		Recycled:          p.recycled,
		StopsHandover:     p.stops[causeHandover],

		Generation:    p.gen.Load(),
		OldGeneration: p.oldGenerationLocked(),
		Reloading:     p.reload != nil,
		Reloads:       p.reloads,
		ReloadsDone:   p.reloadsDone,
		ReloadsFailed: p.reloadFailures,
	}
	p.mu.Unlock()
	s.Restarts = s.StartsCrash + s.StartsRecycle + s.StartsOverflow + s.StartsResize + s.StartsReload
	c := &p.callStats
	// Interrupts, the outcomes, then finished, then started, the reverse
	// of the order a call counts them in (callBegin, callEnd): a snapshot
	// never shows an interrupt without its call's outcome, more outcomes
	// than calls finished, nor more calls finished than started.
	s.Interrupts = c.interrupts.Load()
	s.PythonExceptions = c.byOutcome[countPython].Load()
	s.Rejections = c.byOutcome[countRejected].Load()
	s.DeadlineExceeded = c.byOutcome[countDeadline].Load()
	s.Canceled = c.byOutcome[countCanceled].Load()
	s.CallsFinished = c.finished.Load()
	s.CallsStarted = c.started.Load()
	s.CallsSent = p.calls.Load()
	s.Calls = s.CallsSent
	s.PingFailures = c.pingFailures.Load()
	s.Pings = c.pings.Load()
	s.WaitCount = c.waitCount.Load()
	s.WaitDuration = time.Duration(c.waitNanos.Load())
	return s
}
