package pypool

// recycle.go replaces healthy workers on purpose: after MaxCallsPerWorker
// calls, past MaxWorkerLifetime, above MaxWorkerMemory, and overflow workers
// idle for OverflowIdleTimeout. A busy worker is only ever replaced when it
// is checked in, never during a call.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"
)

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
	proc := pw.proc
	switch {
	case pw.maxCalls > 0 && proc.served.Load() >= pw.maxCalls:
		return recycling{causeMaxCalls, fmt.Sprintf("served %d calls (Config.MaxCallsPerWorker)", proc.served.Load())}
	case pw.lifetime > 0 && time.Since(proc.started) >= pw.lifetime:
		return recycling{causeMaxLifetime, fmt.Sprintf("ran for %v (Config.MaxWorkerLifetime)", time.Since(proc.started).Round(time.Millisecond))}
	case pw.overMemory.Load():
		return recycling{causeMaxMemory, fmt.Sprintf("uses more than %d bytes (Config.MaxWorkerMemory)", p.cfg.MaxWorkerMemory)}
	case orphaned(proc.os) && p.forks.Load() != nil:
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
	for _, pw := range p.idle.all() {
		if reason := p.recycleReason(pw); reason.cause != causeNone {
			p.recycleLocked(pw, reason)
		}
	}
	p.stopIdleOverflowLocked()
	p.reconcileLocked()
}

// stopIdleOverflowLocked stops the workers beyond Size that have been idle
// for OverflowIdleTimeout, longest idle first.
func (p *Pool) stopIdleOverflowLocked() {
	timeout := p.cfg.OverflowIdleTimeout
	excess := p.readyLocked() - p.cfg.Size
	if timeout <= 0 {
		return
	}
	cutoff := time.Now().Add(-timeout)
	for _, pw := range p.idle.all() { // longest idle first
		if excess <= 0 || pw.idleSince.After(cutoff) {
			return
		}
		excess--
		p.recycleLocked(pw, recycling{causeOverflow, fmt.Sprintf("overflow worker idle for %v (Config.OverflowIdleTimeout)", timeout)})
	}
}

// recycleLocked stops a healthy worker on purpose; reconcileLocked starts
// its replacement if the pool needs one.
func (p *Pool) recycleLocked(pw *pooledWorker, why recycling) {
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
