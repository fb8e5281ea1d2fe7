package pypool

// stackdump.go gets the Python stack of a worker into the log when a call
// is slow to answer its interrupt, its worker is killed for not answering
// it, or recycled for memory; with Config.StackDumps set to StackDumpsAll,
// also at the moment any call is cut off. stackLimiter rate-limits them
// per function: a storm of deadlines must not flood the log.
//
// The runtime registers faulthandler (startup.py) on dumpSignal, writing the
// stacks of all threads to a pipe of their own (--dump-fd). faulthandler's
// handler is C code that runs when the signal arrives, without the GIL and
// without waiting for the interpreter's loop, so a worker stuck in C code
// (which a KeyboardInterrupt never reaches) is dumped too. A pipe of its
// own, rather than stderr, keeps the dump apart from what the user's
// threads write at the same moment, and tells the dump's lines apart
// without guessing from their format. faulthandler marks no end: the bytes
// that arrive for one request, until the pipe is quiet for dumpQuiet, are
// one dump and one log record (at most maxDumpBytes). A dump that a
// machine too busy to finish it within dumpQuiet splits arrives as two
// records of the same function.
//
// One request is outstanding at a time: while a dump is awaited (up to
// dumpKillWait), a new request sends no signal. Requests and dumps then
// pair up one to one, so each record names the right call even when a
// worker's calls are cut off in quick succession (two signals sent close
// together would also merge into one: the kernel does not queue them), and
// a storm of deadlines logs at most one dump per worker per dumpQuiet.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dumpSignal makes the runtime dump its threads' stacks.
const dumpSignal = syscall.SIGUSR1

const (
	// dumpQuiet ends a dump: no more bytes for this long.
	dumpQuiet = 50 * time.Millisecond
	// dumpKillWait bounds the wait for a dump before a worker is killed.
	dumpKillWait = 500 * time.Millisecond
	// maxDumpBytes bounds one dump's record; the rest is dropped.
	maxDumpBytes = 64 << 10
)

// What a dump was taken for: its record's "event".
const (
	dumpInterrupted = "interrupted" // its call's context ended: before the KeyboardInterrupt (StackDumpsAll)
	dumpSlow        = "slow"        // it had not answered its interrupt after half of InterruptGrace
	dumpKilled      = "killed"      // it did not answer the interrupt within InterruptGrace
	dumpRecycled    = "recycled"    // it is replaced for using more than MaxWorkerMemory
)

// stackDumper asks a worker for its stacks and logs them. Its zero value
// is ready.
type stackDumper struct {
	mu      sync.Mutex
	seq     uint64        // requests made
	fn      string        // the function of the latest request
	event   string        // what the latest request was for
	sent    time.Time     // when the latest request was made
	skipped int           // the latest request's count of records its limiter suppressed
	logged  uint64        // the latest request whose dump was logged
	changed chan struct{} // closed when a dump is logged; nil if nobody waits
}

// request asks the worker for a dump of its stacks, for fn's call, and
// returns the request's number; 0 when an earlier request's dump is still
// awaited, or Config.StackDumps is StackDumpsOff (none is asked for).
func (d *stackDumper) request(p *process, fn, event string) uint64 {
	return d.requestCounted(p, fn, event, 0)
}

// requestLimited asks for a dump, as request, if fn's limiter allows one
// for event now (stackLimiter.allow).
func (d *stackDumper) requestLimited(p *process, fn, event string) uint64 {
	ok, suppressed := p.spec.stacks.allow(fn, event)
	if !ok {
		return 0
	}
	return d.requestCounted(p, fn, event, suppressed)
}

// requestCounted is request, whose record says that suppressed earlier
// ones were not logged.
func (d *stackDumper) requestCounted(p *process, fn, event string, suppressed int) uint64 {
	if p.spec.stacks.policy == StackDumpsOff {
		return 0
	}
	d.mu.Lock()
	now := time.Now()
	if d.logged < d.seq && now.Sub(d.sent) < dumpKillWait {
		d.mu.Unlock()
		return 0
	}
	d.seq++
	seq := d.seq
	d.fn, d.event, d.sent, d.skipped = fn, event, now, suppressed
	d.mu.Unlock()
	p.signal(dumpSignal)
	return seq
}

// await waits until the dump of request seq is logged, at most timeout,
// and not past the worker's exit.
func (d *stackDumper) await(p *process, seq uint64, timeout time.Duration) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		d.mu.Lock()
		if d.logged >= seq {
			d.mu.Unlock()
			return
		}
		if d.changed == nil {
			d.changed = make(chan struct{})
		}
		changed := d.changed
		d.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-p.exited:
			return
		}
	}
}

// forward reads the dump pipe until the worker's end closes and logs each
// dump as one record.
func (d *stackDumper) forward(p *process, f *os.File) {
	defer p.forwarders.done()
	defer f.Close()
	var (
		buf       []byte
		chunk     = make([]byte, 4096)
		seq       uint64 // the request the dump in buf answers
		fn, event string
		skipped   int
		truncated bool
	)
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if event == "" {
			event = "signal" // not asked for by the pool
		}
		attrs := []slog.Attr{slog.Int("worker", p.pid)}
		if fn != "" {
			attrs = append(attrs, slog.String("function", fn))
		}
		attrs = append(attrs, slog.String("event", event), slog.String("stack", strings.TrimRight(string(buf), "\n")))
		if truncated {
			attrs = append(attrs, slog.Bool("truncated", true))
		}
		if skipped > 0 {
			attrs = append(attrs, slog.Int("suppressed", skipped))
		}
		p.spec.logger.LogAttrs(context.Background(), slog.LevelWarn, msgPythonStack, attrs...)
		buf, truncated = buf[:0], false
		d.mu.Lock()
		d.logged = max(d.logged, seq)
		if d.changed != nil {
			close(d.changed)
			d.changed = nil
		}
		d.mu.Unlock()
	}
	for {
		n, err := f.Read(chunk)
		if n > 0 {
			d.mu.Lock()
			latest, latestFn, latestEvent, latestSkipped := d.seq, d.fn, d.event, d.skipped
			d.mu.Unlock()
			if len(buf) > 0 && latest != seq {
				flush() // a new request: its dump begins here
			}
			if len(buf) == 0 {
				seq, fn, event, skipped = latest, latestFn, latestEvent, latestSkipped
			}
			if room := maxDumpBytes - len(buf); n > room {
				n, truncated = room, true
			}
			buf = append(buf, chunk[:n]...)
			f.SetReadDeadline(time.Now().Add(dumpQuiet))
			continue
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			flush()
			f.SetReadDeadline(time.Time{})
		case err != nil:
			flush()
			return
		}
	}
}

// maxLimited bounds the (function, event) pairs a stackLimiter remembers.
const maxLimited = 1024

// stackLimiter rate-limits a pool's stack records and the warnings that
// go with them, per function and event: the first is logged, then at most
// one per interval, which counts the ones suppressed since the last.
// Shared by a pool's workers (workerSpec.stacks).
type stackLimiter struct {
	policy   StackDumpPolicy // Config.StackDumps
	interval time.Duration   // Config.StackDumpInterval

	mu   sync.Mutex
	seen map[[2]string]*limited
}

// limited is what a stackLimiter knows of one function and event.
type limited struct {
	at         time.Time // when the last one was allowed
	suppressed int       // not allowed since
}

func newStackLimiter(policy StackDumpPolicy, interval time.Duration) *stackLimiter {
	return &stackLimiter{policy: policy, interval: interval, seen: make(map[[2]string]*limited)}
}

// allow reports whether a record of event for fn may be logged now, and
// how many were suppressed since the last one that was; one not allowed
// is counted.
func (l *stackLimiter) allow(fn, event string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	key := [2]string{fn, event}
	e := l.seen[key]
	switch {
	case e == nil:
		if len(l.seen) >= maxLimited {
			for k, old := range l.seen {
				if now.Sub(old.at) >= l.interval {
					delete(l.seen, k)
				}
			}
		}
		if len(l.seen) < maxLimited {
			l.seen[key] = &limited{at: now}
		}
		return true, 0
	case now.Sub(e.at) >= l.interval:
		suppressed, e.at, e.suppressed = e.suppressed, now, 0
		return true, suppressed
	}
	e.suppressed++
	return false, 0
}
