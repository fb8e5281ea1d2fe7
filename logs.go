package pypool

// logs.go holds the pool's log records: the messages of the worker
// life-cycle events (the "Logs" table of docs/observability.md lists them with their
// levels and attributes) and the helpers that build their attributes.
// Records that concern a call carry its function ("function").

import (
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pypool/pypool/internal/osproc"
)

// The messages of the pool's own records. Each record also carries the
// worker's pid ("worker"), but for the start failures.
const (
	msgWorkerStarted   = "pypool: worker started"                                                       // Debug: pid, start duration, python, codec
	msgWorkerStopped   = "pypool: worker stopped"                                                       // Debug: cause, calls served, uptime
	msgWorkerRecycled  = "pypool: worker recycled"                                                      // Info: reason; a "stopped" record follows
	msgWorkerCrashed   = "pypool: worker crashed"                                                       // Warn: exit status or signal, stderr tail, function
	msgCallInterrupted = "pypool: call interrupted"                                                     // Debug, Warn if answered after half of InterruptGrace (rate-limited): function, cause, answered_in; Debug with stopped_by_pool_after when Close stopped it first
	msgWorkerKilled    = "pypool: worker killed"                                                        // Warn (rate-limited, else Debug): function, cause, grace: it ignored its interrupt
	msgPythonStack     = "pypool: python stack"                                                         // Warn (Config.StackDumps, rate-limited): function, event, stack (all threads), suppressed
	msgStartFailed     = "pypool: worker failed to start"                                               // Error if fatal, else Warn: error, fatal, retry_in
	msgStartKilled     = "pypool: worker start killed"                                                  // Warn: signal, stderr, retry_in: it is retried
	msgNewFailed       = "pypool: pool failed to start"                                                 // Error: module, size, error; once per failed New
	msgCallbackPanic   = "pypool: Go callback panicked"                                                 // Error: callback, panic, stack; Python gets a GoError
	msgPreloadUnused   = "pypool: Config.Preload and Config.PreloadSetUp need StartForkServer; ignored" // Warn: preload, preload_setup; once per New

	msgForkServerStarted  = "pypool: fork server started"                                   // Debug: forkserver (pid), module
	msgForkServerExited   = "pypool: fork server exited"                                    // Warn: exit status; it is restarted after retry_in
	msgForkServerFallback = "pypool: fork server failed to start; starting workers by exec" // Warn: error, retry_in when restarting
	msgForkServerStuck    = "pypool: fork server did not answer; killing it"                // Warn: timeout
	msgForkOrphanKilled   = "pypool: killed what a lost fork request forked"                // Warn: forkserver (pid), killed (count), error

	msgGuardianStarted = "pypool: guardian started"                   // Debug: guardian (pid)
	msgGuardianExited  = "pypool: guardian exited"                    // Warn: guardian (pid), exit status; it is restarted after retry_in
	msgGuardianFailed  = "pypool: guardian failed to start"           // Warn: error, retry_in
	msgGuardianStuck   = "pypool: guardian does not read; killing it" // Warn: guardian (pid), error; it is restarted
)

// setCurrent records fn as the function of the call in progress. A
// worker mostly runs the same function again: the last call's name is
// reused then, so that a call allocates none (a *string is only compared
// by its text).
func (p *process) setCurrent(fn string) {
	f := p.last.Load()
	if f == nil || *f != fn {
		f = new(string)
		*f = fn
		p.last.Store(f)
	}
	p.current.Store(f)
}

// endCall ends the call in progress, with p.mu held. The function stays
// recorded while an interrupted call drains, and when the call broke the
// worker: its crash record names it.
func (p *process) endCall() {
	if p.state.stream == streamRunning {
		p.callOver()
	}
}

// callOver clears the call in progress; the output it wrote keeps its
// function (outputCalls).
func (p *process) callOver() {
	p.outputWritten(p.current.Load())
	// Cleared only now: a forwarder that logs a line of the call before
	// callEnded marked its stream finds it still in progress.
	p.current.Store(nil)
}

// outputWritten marks the output written so far as fn's
// (outputCalls.callEnded): the call in progress's before that call ends
// or, for a call made from one of its callbacks (a nested call), before
// another call takes its place in p.current; nil's (no call's) once the
// worker started, and before a call one at a time follows calls of async
// functions (sharedOutput). A line read later still names the call that
// wrote it, or none.
func (p *process) outputWritten(fn *string) {
	// One poll tells which streams have bytes in their pipe: the others
	// need no probe (most calls write nothing).
	waiting := osproc.Readable([2]uintptr{p.output[0].fd, p.output[1].fd})
	for i := range p.output {
		p.output[i].callEnded(fn, waiting[i])
	}
}

// function is the attribute naming the call in progress, or the last call
// when last is true; an empty Attr (dropped by slog) when there is none.
func (p *process) function(last bool) slog.Attr {
	fn := p.current.Load()
	if fn == nil && last {
		fn = p.last.Load()
	}
	if fn == nil {
		return slog.Attr{}
	}
	return slog.String("function", *fn)
}

// logStarted logs a worker's successful start.
func (p *process) logStarted() {
	p.spec.logger.Debug(msgWorkerStarted, "worker", p.pid, "start", time.Since(p.started).Round(time.Microsecond),
		"python", p.hello.pythonVersion, "codec", p.hello.codec)
}

// logExit logs how a pooled worker ended: crashed (it exited unasked) or
// stopped (for cause, from stopCauseLocked).
func (p *process) logExit(cause string) {
	uptime := time.Since(p.started).Round(time.Millisecond)
	if !p.crashed() {
		p.spec.logger.Debug(msgWorkerStopped, "worker", p.pid, "cause", p.stopCause(cause), "served", p.served.Load(), "uptime", uptime)
		return
	}
	e := p.exitErr
	attrs := []any{"worker", p.pid, p.function(false), "exit_code", e.ExitCode}
	if e.Signal != "" {
		attrs = append(attrs, "signal", e.signalText())
	}
	attrs = append(attrs, "stderr", strings.Join(e.Stderr, "\n"), "served", p.served.Load(), "uptime", uptime)
	p.spec.logger.Warn(msgWorkerCrashed, attrs...)
}

// interruptCause is why the cut-off call was cut off.
func (p *process) interruptCause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cutOff
}

// currentFunction is the function of the call in progress, or "".
func (p *process) currentFunction() string {
	if fn := p.current.Load(); fn != nil {
		return *fn
	}
	return ""
}

// lastFunction is the function of the last call, or "".
func (p *process) lastFunction() string {
	if fn := p.last.Load(); fn != nil {
		return *fn
	}
	return ""
}

// stopCauseLocked says why the pool stopped pw, for its "stopped" record;
// "" when it was killed because its stream broke (see stopCause).
func (p *Pool) stopCauseLocked(pw *pooledWorker) string {
	switch {
	case pw.stopCause != "":
		return pw.stopCause
	case p.closed:
		return "pool closed"
	}
	return ""
}

// stopCause completes a cause from stopCauseLocked, without Pool.mu: a
// call may hold the process's lock for a while yet.
func (p *process) stopCause(cause string) string {
	if cause != "" || p.crashed() {
		return cause
	}
	if err := p.streamError(); err != nil {
		return "its call left it unusable: " + err.Error()
	}
	return "stopped by the pool"
}

// streamError is the error that left the stream in an unknown state, or nil.
func (p *process) streamError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streamErr
}

// outputCalls tells which call wrote each line of one output stream
// (stdout or stderr). A line can be read after the reply of the call that
// wrote it: the reply travels on another pipe. So when a call ends, the
// bytes written so far (read, plus still in the pipe) are marked as its
// own; lines that end within them name its function, later lines the
// call in progress, if any.
//
// The forwarder reads the pipe through outputReader: the read system call
// and its count are one step under mu, and callEnded takes mu (or, to
// skip it, sees no read in flight), so no byte is ever out of the pipe and
// not yet counted when a call's end is marked.
type outputCalls struct {
	raw  syscall.RawConn
	read atomic.Int64 // bytes read from the pipe; written with mu held

	// reading is true from before the forwarder's read system call until
	// after its count; logged is the bytes of the stream logged (up to a
	// line's end), written with mu held. callEnded reads both without mu,
	// to skip it when no byte can be the call's.
	reading atomic.Bool
	logged  atomic.Int64

	mu    sync.Mutex
	ended []endedCall // calls with output not yet logged, oldest first
	// forgotten is the end of the last call dropped from ended (more
	// than maxEndedCalls calls ended with output not yet logged): a line
	// that ends there or before names no call, rather than a later one.
	forgotten int64
	pending   int64 // osproc.PendingBytes' answer, set inside raw.Control
	probe     func(fd uintptr)
	fd        uintptr // the pipe's descriptor, for the poll before probes

	// testHookRead, nil but in tests, runs between a read that took
	// bytes and their count, with mu held.
	testHookRead func()
	// testHookCallEnded, nil but in tests, runs as callEnded begins.
	testHookCallEnded func()
}

// maxEndedCalls bounds the calls whose output an outputCalls remembers.
const maxEndedCalls = 64

// endedCall is a call whose output ends at byte end of the stream.
type endedCall struct {
	end int64
	fn  *string
}

func (o *outputCalls) init(f *os.File) {
	o.raw, _ = f.SyscallConn()
	o.probe = func(fd uintptr) { o.pending = osproc.PendingBytes(fd) }
	if o.raw != nil {
		_ = o.raw.Control(func(fd uintptr) { o.fd = fd })
	}
}

// callEnded marks the stream's bytes so far as fn's; waiting says the
// pipe may hold bytes not read yet (osproc.Readable, asked after the
// worker's reply was read: every byte the call wrote was in the pipe
// then, or taken out by the forwarder).
//
// It returns without taking mu when no byte can be fn's (most calls print
// nothing): the pipe was empty at the poll, no read is in flight, every
// byte read is logged. The argument: a byte fn wrote was written before
// its reply, so at the poll it was in the pipe (waiting is true) or taken
// out by a read system call of the forwarder. That read runs between the
// forwarder's reading.Store(true) and its reading.Store(false), which
// follows its count (outputReader.Read), and it took the byte before the
// poll (the pipe's own lock orders them), which comes before the loads
// below: reading.Load sees true, or the false stored after the count, and
// then read.Load sees the byte counted. Counted and logged (read <=
// logged) means the line that holds it was logged already: its forwarder
// loaded the call in progress (after reading the byte, so after fn's
// setCurrent) before lineFunction stored logged, and process.callOver
// clears the call in progress only after callEnded, so that line named
// fn. In every other case mu is taken: a read in flight holds mu until it
// has counted, so no byte is out of the pipe and uncounted under mu; the
// bytes still in the pipe are probed under mu, where the forwarder cannot
// take them.
func (o *outputCalls) callEnded(fn *string, waiting bool) {
	if o.testHookCallEnded != nil {
		o.testHookCallEnded()
	}
	if !waiting && !o.reading.Load() && o.read.Load() <= o.logged.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = 0
	// What makes output still in the pipe at the call's end its own.
	if o.raw != nil && waiting {
		_ = o.raw.Control(o.probe)
	}
	end := o.read.Load() + o.pending
	logged := o.logged.Load()
	for len(o.ended) > 0 && o.ended[0].end <= logged {
		o.ended = o.ended[1:]
	}
	if end > logged {
		if len(o.ended) == maxEndedCalls {
			// A line that never ends (a write without newline), or a
			// logger that blocks, holds them back: forget the oldest.
			o.forgotten = o.ended[0].end
			o.ended = append(o.ended[:0], o.ended[1:]...)
		}
		o.ended = append(o.ended, endedCall{end, fn})
	}
}

// lineFunction returns the function of the call that wrote the line
// ending at byte end of the stream, or nil (none, or a call forgotten);
// current is the call in progress, loaded before (see callEnded).
func (o *outputCalls) lineFunction(end int64, current *string) *string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.logged.Store(end)
	for len(o.ended) > 0 && o.ended[0].end < end {
		o.ended = o.ended[1:]
	}
	if end <= o.forgotten {
		return nil
	}
	if len(o.ended) > 0 {
		return o.ended[0].fn
	}
	return current
}

// reader is what the forwarder of f reads the pipe through.
func (o *outputCalls) reader(f *os.File) io.Reader { return outputReader{o, f} }

// outputReader reads an output pipe and counts the bytes read, the read
// system call and the count as one step under the stream's mu (see
// outputCalls). It parks in the netpoller while the pipe is empty, as
// f.Read does.
type outputReader struct {
	o *outputCalls
	f *os.File
}

// Read reads from the pipe and counts the bytes read.
func (r outputReader) Read(b []byte) (int, error) {
	o := r.o
	if o.raw == nil { // no descriptor (init had none): not the forwarders' case
		n, err := r.f.Read(b)
		o.mu.Lock()
		o.read.Add(int64(n))
		o.mu.Unlock()
		return n, err
	}
	var n int
	var rerr error
	err := o.raw.Read(func(fd uintptr) bool {
		o.reading.Store(true)
		o.mu.Lock()
		n, rerr = osproc.Read(fd, b)
		if n > 0 {
			if o.testHookRead != nil {
				o.testHookRead()
			}
			o.read.Add(int64(n))
		}
		o.mu.Unlock()
		o.reading.Store(false)
		return rerr != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, &os.PathError{Op: "read", Path: r.f.Name(), Err: rerr}
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// signalNames are the C names of the signals that end workers most often.
var signalNames = map[syscall.Signal]string{
	syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT",
	syscall.SIGSEGV: "SIGSEGV", syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS",
	syscall.SIGILL: "SIGILL", syscall.SIGFPE: "SIGFPE", syscall.SIGHUP: "SIGHUP",
	syscall.SIGQUIT: "SIGQUIT", syscall.SIGPIPE: "SIGPIPE", syscall.SIGXCPU: "SIGXCPU",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2", syscall.SIGALRM: "SIGALRM",
}

// signalName names sig as C does ("SIGKILL"), or by its number.
func signalName(sig syscall.Signal) string {
	if name, ok := signalNames[sig]; ok {
		return name
	}
	return "signal " + strconv.Itoa(int(sig))
}

// forwarders counts the goroutines that log a process's output pipes (a
// worker's or a fork server's), so that its end can wait for its last lines.
type forwarders struct {
	files []*os.File    // the pipes they read
	ended chan struct{} // one token per forwarder that reached its pipe's end
}

// add records the pipes of forwarders about to start, one each.
func (f *forwarders) add(files ...*os.File) {
	f.files = files
	f.ended = make(chan struct{}, len(files))
}

// done is a forwarder's last call.
func (f *forwarders) done() { f.ended <- struct{}{} }

// drained waits until every forwarder reached the end of its pipe, or
// closes the pipes after timeout so that they end anyway: a process that
// left the group may hold a pipe for ever.
func (f *forwarders) drained(timeout time.Duration) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for range len(f.files) {
		select {
		case <-f.ended:
		case <-timer.C:
			osproc.CloseFiles(f.files...)
			<-f.ended
		}
	}
}
