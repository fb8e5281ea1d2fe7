package pypool

// stackdump.go gets the Python stack of a worker at the moment a call is
// cut off, a worker is killed, or recycled for memory, into the log.
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
	dumpInterrupted = "interrupted" // its call's context ended: before the KeyboardInterrupt
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
	logged  uint64        // the latest request whose dump was logged
	changed chan struct{} // closed when a dump is logged; nil if nobody waits
}

// request asks the worker for a dump of its stacks, for fn's call, and
// returns the request's number; 0 when an earlier request's dump is still
// awaited (none is asked for).
func (d *stackDumper) request(p *process, fn, event string) uint64 {
	d.mu.Lock()
	now := time.Now()
	if d.logged < d.seq && now.Sub(d.sent) < dumpKillWait {
		d.mu.Unlock()
		return 0
	}
	d.seq++
	seq := d.seq
	d.fn, d.event, d.sent = fn, event, now
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
	defer func() { p.stderr.done <- struct{}{} }()
	defer f.Close()
	var (
		buf       []byte
		chunk     = make([]byte, 4096)
		seq       uint64 // the request the dump in buf answers
		fn, event string
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
			latest, latestFn, latestEvent := d.seq, d.fn, d.event
			d.mu.Unlock()
			if len(buf) > 0 && latest != seq {
				flush() // a new request: its dump begins here
			}
			if len(buf) == 0 {
				seq, fn, event = latest, latestFn, latestEvent
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
