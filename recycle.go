package pypool

// recycle.go replaces healthy workers on purpose: after MaxCallsPerWorker
// calls, past MaxWorkerLifetime, above MaxWorkerMemory, and overflow workers
// idle for OverflowIdleTimeout. A busy worker is only ever replaced when it
// is checked in, never during a call.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
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
func (p *Pool) limits(proc *process) {
	if n := p.cfg.MaxCallsPerWorker; n > 0 {
		proc.maxCalls = int64(n + rand.IntN(p.cfg.MaxCallsJitter+1))
	}
	if d := p.cfg.MaxWorkerLifetime; d > 0 {
		proc.lifetime = d + time.Duration(rand.Int64N(int64(d)/10+1))
	}
	proc.idleSince.Store(time.Now().UnixNano())
}

// recycleReason says why a worker being checked in must be replaced, or "".
func (p *Pool) recycleReason(proc *process) string {
	switch {
	case proc.maxCalls > 0 && proc.served.Load() >= proc.maxCalls:
		return fmt.Sprintf("served %d calls (Config.MaxCallsPerWorker)", proc.served.Load())
	case proc.lifetime > 0 && time.Since(proc.started) >= proc.lifetime:
		return fmt.Sprintf("ran for %v (Config.MaxWorkerLifetime)", time.Since(proc.started).Round(time.Millisecond))
	case proc.overMemory.Load():
		return fmt.Sprintf("uses more than %d bytes (Config.MaxWorkerMemory)", p.cfg.MaxWorkerMemory)
	}
	return ""
}

// recycle stops a healthy worker (already marked dead) gracefully in the
// background; the keeper starts its replacement at once.
func (p *Pool) recycle(proc *process, reason string) {
	p.recycled.Add(1)
	p.log.Info("pypool: replacing worker", "worker", proc.pid, "reason", reason)
	proc.stopping.Store(true)
	invalidate := func() { _ = p.objects.InvalidateObject(context.Background(), proc) }
	if !p.goTracked(invalidate) {
		invalidate()
	}
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

func (p *Pool) sweepOnce() {
	procs := p.snapshot()
	if p.cfg.MaxWorkerMemory > 0 {
		for _, proc := range procs {
			if rss, err := residentBytes(proc.pid); err == nil && rss > p.cfg.MaxWorkerMemory {
				proc.overMemory.Store(true)
			}
		}
	}
	// Idle workers with a reason go now; busy ones at their check-in.
	for _, proc := range procs {
		if reason := p.recycleReason(proc); reason != "" && p.takeIdle(proc) {
			p.recycle(proc, reason)
		}
	}
	p.stopIdleOverflow(procs)
}

// stopIdleOverflow stops the workers beyond Size that have been idle for
// OverflowIdleTimeout, longest idle first.
func (p *Pool) stopIdleOverflow(procs []*process) {
	timeout := p.cfg.OverflowIdleTimeout
	excess := p.liveWorkers() - p.cfg.Size
	if timeout <= 0 || excess <= 0 {
		return
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].idleSince.Load() < procs[j].idleSince.Load() })
	cutoff := time.Now().Add(-timeout).UnixNano()
	for _, proc := range procs {
		if excess == 0 || proc.idleSince.Load() > cutoff {
			return
		}
		if p.takeIdle(proc) {
			excess--
			p.recycle(proc, fmt.Sprintf("overflow worker idle for %v (Config.OverflowIdleTimeout)", timeout))
		}
	}
}

// takeIdle claims an idle worker for destruction. A caller that polled it
// from the object pool meanwhile finds it dead in checkout and takes another.
func (p *Pool) takeIdle(proc *process) bool {
	return proc.state.CompareAndSwap(int32(stateIdle), int32(stateDead))
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
