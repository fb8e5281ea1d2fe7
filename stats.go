package pypool

// stats.go holds the pool's counters (Stats), the causes of worker starts
// and stops, and the per-call observation hook (Pool.Observe) that metrics
// libraries such as the prometheus subpackage use for latency histograms.
//
// Counters of worker starts and stops change under Pool.mu, where the
// transition is decided (state.go, supervise.go); counters of
// calls are atomics updated on the caller's goroutine at the call's start
// and end. Either way each event is counted exactly once.

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a pool's state and counters, in the spirit of
// database/sql's DBStats. Taking it costs one short hold of the pool's lock.
// Gauges say what is true now; counters (uint64) only grow, from New on.
type Stats struct {
	// Configuration.

	Size        int // Config.Size: workers kept running at rest
	MaxOverflow int // Config.MaxOverflow: extra workers allowed under load

	// Workers now.

	Workers       int // workers that hold a slot and serve: Idle + InUse
	Idle          int // workers waiting for a call
	InUse         int // workers checked out by callers, or finishing a call whose caller gave up (being interrupted)
	Overflow      int // workers beyond Size, idle or in use: max(0, Workers-Size)
	OverflowInUse int // callers served beyond Size: max(0, InUse-Size)
	Waiting       int // callers waiting to check a worker out (Call, Transaction, TryCall awaiting its start)
	Starting      int // worker starts in flight
	Stopping      int // workers being stopped: no longer serving, holding their slot until they have exited (Workers+Starting+Stopping <= Size+MaxOverflow)

	// Calls. A call is one Call, TryCall, CallAs, CallBytes, Ping or
	// Worker.Call; a call retried after a crash (Config.CrashRetries) is
	// one call. Every call that started ends with exactly one outcome, and
	// is counted in CallsFinished and in at most one of the outcome
	// counters below (successes and other errors are in none of them).

	CallsStarted     uint64 // calls begun
	CallsFinished    uint64 // calls returned, whatever their outcome; CallsStarted-CallsFinished are in progress
	Calls            uint64 // calls sent to a worker: every attempt of a retried call, not rejections or calls that never got a worker
	PythonExceptions uint64 // calls that ended with a *PythonError: an exception of the function, or a refusal of the runtime (unknown function, unencodable result)
	Rejections       uint64 // calls refused with ErrPoolExhausted (TryCall with every worker busy, or Config.MaxWaiting reached)
	DeadlineExceeded uint64 // calls that ended because their context's deadline passed (or Config.CallTimeout), waiting or in Python
	Canceled         uint64 // calls that ended because their context was canceled, waiting or in Python
	Interrupts       uint64 // calls cut off while Python ran them: their worker was sent KeyboardInterrupt (StopsKilled counts those that did not answer in Config.InterruptGrace)

	// Waiting for a worker, as DBStats: every checkout that could not take
	// an idle worker at once (a call's attempt or a Transaction), whether
	// it was served in the end or gave up.

	WaitCount    uint64        // checkouts that waited
	WaitDuration time.Duration // total time they waited

	// Worker starts (successful: failures are StartFailures), by cause.
	// Their sum less StartsInitial is Restarts.

	StartsInitial    uint64 // the Size workers started by New
	StartsCrash      uint64 // replacements of workers that crashed or were killed in an unknown state (Crashes, StopsKilled)
	StartsRecycle    uint64 // replacements of workers recycled (StopsMaxCalls, StopsMaxMemory, StopsMaxLifetime)
	StartsOverflow   uint64 // workers started beyond Size for waiting callers or TryCall
	Restarts         uint64 // workers started after New: StartsCrash + StartsRecycle + StartsOverflow + StartsResize
	StartFailures    uint64 // worker starts that failed, fatal or transient (the interpreter, the module's import, the handshake, no descriptors, processes or memory)
	Crashes          uint64 // workers that died without being asked to, whatever they were doing
	Recycled         uint64 // healthy workers stopped on purpose: StopsMaxCalls + StopsMaxMemory + StopsMaxLifetime + overflow workers stopped by Config.OverflowIdleTimeout
	StopsOverflow    uint64 // overflow workers stopped because no caller needed them: at check-in (poolboy's rule) or after Config.OverflowIdleTimeout
	StopsMaxCalls    uint64 // workers recycled after Config.MaxCallsPerWorker calls
	StopsMaxMemory   uint64 // workers recycled above Config.MaxWorkerMemory
	StopsMaxLifetime uint64 // workers recycled past Config.MaxWorkerLifetime
	StopsKilled      uint64 // workers killed because their state was unknown: no answer to an interrupt in Config.InterruptGrace, a protocol error, a broken pipe
	StopsClose       uint64 // workers stopped by Close
	StartsResize     uint64 // workers started because Resize grew the pool
	StopsResize      uint64 // workers stopped because Resize shrank the pool: idle ones at once, busy ones beyond Size+MaxOverflow at their check-in
}

// cause is why a worker started or stopped: the index of Pool.starts,
// Pool.stops and Pool.owed.
type cause uint8

const (
	causeNone        cause = iota
	causeInitial           // started by New
	causeCrash             // died by itself: a crash
	causeKilled            // killed in an unknown state
	causeMaxCalls          // recycled: Config.MaxCallsPerWorker
	causeMaxMemory         // recycled: Config.MaxWorkerMemory
	causeMaxLifetime       // recycled: Config.MaxWorkerLifetime
	causeOverflow          // an overflow worker: started for a waiter, stopped when idle
	causeClose             // stopped by Close
	causeResize            // started or stopped by Resize
	numCauses
)

// recycling is why a healthy worker is due for replacement: a cause and
// the text for the log; the zero value means it is not.
type recycling struct {
	cause  cause
	reason string
}

// replacementClass is the start cause of a worker replacing one that left
// for c.
func replacementClass(c cause) cause {
	switch c {
	case causeMaxCalls, causeMaxMemory, causeMaxLifetime:
		return causeMaxCalls // counted as StartsRecycle
	}
	return causeCrash
}

// leftLocked records that pw left its slot (it was serving or just
// started) for cause c. When that leaves the pool below Size, the
// replacement reconcileLocked starts is owed to c.
func (p *Pool) leftLocked(pw *pooledWorker, c cause) {
	if pw.state != stateStarting && !pw.state.serving() {
		return // it left already, and was counted then
	}
	p.stops[c]++
	rest := p.readyLocked() + p.starting
	if pw.state.serving() {
		rest--
	}
	if rest < p.cfg.Size {
		p.owed[replacementClass(c)]++
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

// startCauseLocked is the cause of a start decided now: a replacement when
// the pool is below Size (of what left it there), else overflow.
func (p *Pool) startCauseLocked() cause {
	if p.readyLocked()+p.starting >= p.cfg.Size {
		return causeOverflow
	}
	for _, c := range []cause{causeResize, causeCrash, causeMaxCalls} {
		if p.owed[c] > 0 {
			p.owed[c]--
			return c
		}
	}
	return causeCrash // below Size with nothing owed: a start of New's that died
}

// startFailedCauseLocked gives a failed start's cause back, so that the
// start that retries it is counted for the same reason.
func (p *Pool) startFailedCauseLocked(c cause) {
	if c != causeOverflow && c != causeInitial {
		p.owed[c]++
	}
}

// CallInfo describes one call that ended, for a CallObserver.
type CallInfo struct {
	Function string        // the Python function's name
	Wait     time.Duration // time spent waiting for a worker, over all attempts; 0 for a Worker.Call (the Transaction waited)
	Duration time.Duration // from the call's start to its return, Wait included
	Outcome  Outcome       // how it ended: OutcomeOf(Err)
	Err      error         // what the call returned
}

// CallObserver is told about every call that ends. ObserveCall runs on the
// caller's goroutine after the call ended, before Call returns, with no
// lock of the pool held: it must be quick, and may read Stats.
type CallObserver interface {
	ObserveCall(CallInfo)
}

// Observe adds o to the observers told about every call that ends from now
// on. Observers cannot be removed; they live as long as the pool.
func (p *Pool) Observe(o CallObserver) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var obs []CallObserver
	if old := p.observers.Load(); old != nil {
		obs = append(obs, *old...)
	}
	obs = append(obs, o)
	p.observers.Store(&obs)
}

// callCounters are the pool's atomic counters of calls.
type callCounters struct {
	started, finished atomic.Uint64
	byOutcome         [numOutcomes]atomic.Uint64
	interrupts        atomic.Uint64
	waitCount         atomic.Uint64
	waitNanos         atomic.Int64
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
		Overflow:      max(0, idle+inUse-p.cfg.Size),
		OverflowInUse: max(0, inUse-p.cfg.Size),
		Waiting:       p.waiters.len(),
		Starting:      p.starting,
		Stopping:      p.counts[stateStopping],

		StartsInitial:    p.starts[causeInitial],
		StartsCrash:      p.starts[causeCrash],
		StartsRecycle:    p.starts[causeMaxCalls],
		StartsOverflow:   p.starts[causeOverflow],
		StartFailures:    p.startFails,
		Crashes:          p.crashes,
		Recycled:         p.recycled,
		StopsOverflow:    p.stops[causeOverflow],
		StopsMaxCalls:    p.stops[causeMaxCalls],
		StopsMaxMemory:   p.stops[causeMaxMemory],
		StopsMaxLifetime: p.stops[causeMaxLifetime],
		StopsKilled:      p.stops[causeKilled],
		StopsClose:       p.stops[causeClose],
		StartsResize:     p.starts[causeResize],
		StopsResize:      p.stops[causeResize],
	}
	p.mu.Unlock()
	s.Restarts = s.StartsCrash + s.StartsRecycle + s.StartsOverflow + s.StartsResize
	c := &p.callStats
	// finished before started: a snapshot never shows more calls
	// finished than started.
	s.CallsFinished = c.finished.Load()
	s.CallsStarted = c.started.Load()
	s.Calls = p.calls.Load()
	s.PythonExceptions = c.byOutcome[countPython].Load()
	s.Rejections = c.byOutcome[countRejected].Load()
	s.DeadlineExceeded = c.byOutcome[countDeadline].Load()
	s.Canceled = c.byOutcome[countCanceled].Load()
	s.Interrupts = c.interrupts.Load()
	s.WaitCount = c.waitCount.Load()
	s.WaitDuration = time.Duration(c.waitNanos.Load())
	return s
}
