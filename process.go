package pypool

// process.go is one python3 worker process: its named states (procState,
// one transition function), its start and handshake, calls, interruption,
// the watch on its exit, and the forwarding of what it writes to stdout
// and stderr. It knows frames, not pooling: the pool's record of a worker
// is a pooledWorker (state.go). It reports, its supervisor decides: stop
// and kill are the supervisor's tools (supervise.go), and a process that
// can no longer serve reports it (broke) instead of killing itself.
//
// Life of a process, each step in one function:
//
//	startProcess: start (fork, pipes, forwarders) -> handshake (HELLO frame)
//	call ... call            (one at a time, p.mu held for each)
//	stop (end of input, then kill after a grace) or kill (SIGKILL), by its supervisor
//	watchExit: reap, record how it ended (setState), close the pipes, call onExit

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pypool/pypool/internal/osproc"
	"github.com/pypool/pypool/internal/wire"
)

// stderrTailLines is how many of the last stderr lines a crash error quotes.
const stderrTailLines = 20

// maxLogLine is the longest line forwarded to the logger in one record;
// longer lines are split.
const maxLogLine = 64 << 10

// pipeSize is the capacity asked for the protocol pipes: larger than Linux's
// 64 KiB default, so that large payloads cross in fewer wake-ups.
const pipeSize = 1 << 20

// outputDrainTimeout bounds the wait for a dead worker's stdout and stderr to
// reach their end: a grandchild process can hold them open.
const outputDrainTimeout = 200 * time.Millisecond

// exitWaitTimeout bounds the wait for a worker whose output pipe closed to
// exit by itself before it is killed.
const exitWaitTimeout = time.Second

// workerSpec is everything needed to start a worker. It is built once by New.
type workerSpec struct {
	python         *interpreter
	args           []string
	env            []string
	dir            string
	credential     *Credential // Config.Credential
	module         string
	setUp          string       // Config.SetUp
	pythonFS       *pythonFSRef // Config.PythonFS, for the hint of a module that did not import; nil: none
	maxMessageSize int
	codec          valueCodec // how values are encoded and decoded
	// sharedThreshold is the size from which values go through shared
	// memory (Config.SharedMemoryThreshold); 0: never.
	sharedThreshold int
	startTimeout    time.Duration
	logger          *slog.Logger
	callbacks       map[string]Callback // Config.Callbacks; nil: none
	interruptGrace  time.Duration       // Config.InterruptGrace
	stacks          *stackLimiter       // Config.StackDumps: which stacks are logged, rate-limited
	preload         []string            // Config.Preload, for the fork server
	preloadSetUp    bool                // Config.PreloadSetUp
	// guard owns the workers' process groups should the Go process die
	// (guardian.go); nil outside a pool.
	guard *guardian
	// asyncCalls is Config.AsyncCalls: above 0, a process learns its
	// async functions after its handshake (learnAsync) and serves their
	// calls many at once (mux.go).
	asyncCalls int
	asyncFns   atomic.Pointer[map[string]bool] // the async functions the workers named (mux.go); nil: none yet
	// onBroken receives a process's report that it can no longer serve
	// (process.broke): its supervisor decides what to do with it. Set by
	// the pool (Pool.processBroken) before its first start.
	onBroken func(*process)
	// ready holds the starts until the runtime's install is checked (its
	// startGate); nil: open.
	ready *startGate
	// runtimeDir is the runtime's install, which a held bootstrap is
	// given (release) and the fork server's template is run with. Set
	// by ready's check.
	runtimeDir string
}

// startGate holds a pool's starts until the runtime's install (which the
// workers import) has been checked: meanwhile, a worker started by exec
// runs its interpreter's own start, its bootstrap held (bootstrapHold),
// and the fork server's template waits to be exec'd. The first start to
// reach the gate runs the check, after its own exec, so that the check
// runs while that interpreter starts; the others wait for it. Settled
// once: open for good, or failed for good (New then fails, and ends what
// waits).
type startGate struct {
	check   func() error  // the install's check (Config.newSpec's)
	claimed atomic.Bool   // a start runs check
	done    chan struct{} // closed once check returned
	err     error         // check's error: why the starts may not go on; set before done is closed
}

// newStartGate returns a gate that holds the starts until check has
// passed (nil: open at once).
func newStartGate(check func() error) *startGate {
	g := &startGate{check: check, done: make(chan struct{})}
	if check == nil {
		close(g.done)
	}
	return g
}

// failure returns why the gate failed the starts, once it has (nil while
// it holds, or once it opened), without waiting.
func (g *startGate) failure() error {
	if g == nil {
		return nil
	}
	select {
	case <-g.done:
		return g.err
	default:
		return nil
	}
}

// await runs the gate's check if no start has claimed it yet, else waits
// for it, or for ctx's end, and returns why the start may not go on (nil:
// it may): the check's failure, else an ended ctx, even at an open gate
// (a held worker of a start given up is not released to import the
// module). A nil gate is open.
func (g *startGate) await(ctx context.Context) error {
	if g == nil {
		return nil
	}
	if g.check != nil && g.claimed.CompareAndSwap(false, true) {
		g.err = g.check()
		close(g.done)
	}
	select {
	case <-g.done:
	case <-ctx.Done():
	}
	if err := g.failure(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: the start's context ended before it went on past the pool's install check: %w",
			ErrWorkerStart, contextCause(ctx))
	}
	return nil
}

// process is one running python3 worker.
type process struct {
	spec    *workerSpec
	forks   *forkServer // the template that forks it; nil: it is started as its own python3
	os      osProcess
	pid     int
	hello   hello
	started time.Time
	held    bool // started by exec: its bootstrap waits for release

	turn ctxMutex // held by the Worker call that runs on it: another waits its turn within its context (Worker)

	toWorker   *os.File // frames to Python (its stdin)
	fromWorker *os.File // frames from Python (its stdout)
	reader     *frameReader
	encoder    *callEncoder
	shm        *sharedMem // nil when values always cross the pipes
	codec      valueCodec // the spec's, with shm

	// The process's state (procState), written by setState only. stateMu
	// guards it; its stream part (and cutOff, streamErr) is written with
	// mu held too, so that a call, which holds mu, reads it without stateMu.
	stateMu    sync.Mutex
	state      procState
	exited     chan struct{}    // closed by setState once the process is reaped
	exitErr    *WorkerExitError // how it exited; set by setState before exited is closed
	stderr     tail             // its last stderr lines, for a crash's error
	forwarders forwarders       // of its stderr, stdout and stack dumps

	// Guarded by mu, which is held for the whole of a call.
	mu      sync.Mutex
	nextID  uint64
	outerID uint64 // id of the call that holds mu (the outermost of nested ones)
	// outerTask: the call outerID is a task on the worker's event loop
	// (Config.AsyncCalls: a CALL of an async function sent on its own, a
	// Transaction's), which the loop's thread takes, not the main thread:
	// SIGINT does not reach it, and the runtime does not read its frame's
	// count of late interrupts (sendCall). Set by sendCall.
	outerTask bool
	// The callbacks read and not yet answered, innermost last (callback.go).
	pendingCallbacks []uint64
	// The nested calls sent whose replies have not been read (a call made
	// inside a callback that was cut off): a drain reads them too (owe,
	// paid), in whatever order they come with the outer call's. (The
	// runtime answers a nested call it had not read when the interrupt
	// came, without running it, before the outer call's reply; the drain
	// does not rely on that order.)
	owed []uint64
	// signalled: a SIGINT went to the cut-off call (interrupt), until its
	// drain read a reply "interrupted" (the call's, or a nested call's,
	// which took the SIGINT) or ended. lateInterrupts: SIGINTs sent to
	// calls whose drain read no reply "interrupted" (the signal came after
	// the replies, between calls; or the user's code swallowed it),
	// counted by the drain and sent with the next call frame that the
	// worker's main thread reads ("i", protocol.go; not a task's,
	// outerTask), which resets it: Python then tells an early SIGINT, for
	// a call it has not begun, from a late one.
	signalled      bool
	lateInterrupts uint64
	streamErr      error         // why the stream broke (streamBroken); written by setState
	afterFired     chan struct{} // see watchContext
	watchStop      func() bool   // the watch's context.AfterFunc stop (watchContext), nil when none
	watchFired     func()        // p.deadlineFired, bound once: no closure per call
	watchEnd       func()        // p.endWatch, bound once
	deadline       time.Time     // both pipes' deadline, when deadlineSet
	deadlineSet    bool          // false: the pipes' deadlines are not known
	// watched is the context of the outermost call's watch (watchContext),
	// until it ends: its end moves the pipes' deadline for the calls nested
	// in that call's callbacks too (cutCause).
	watched context.Context

	served atomic.Int64 // calls answered

	// The function of the call in progress (nil between calls; it stays
	// set while an interrupted call drains), and of the last call. Read
	// by the output forwarders and the life-cycle log records.
	current atomic.Pointer[string]
	last    atomic.Pointer[string]
	cutOff  error // why the interrupted call was cut off (streamInterrupted); guarded by mu, written by setState
	// sharedOutput, guarded by mu, says calls of async functions ran
	// (beginShared) since the last call one at a time began: that call
	// marks their output as no call's first (outputWritten).
	sharedOutput bool
	dumps        stackDumper    // the Python stack dumps (stackdump.go)
	output       [2]outputCalls // which call wrote the lines of stderr, stdout

	// Config.AsyncCalls (mux.go): the module's async functions, as the
	// worker named them after its handshake, read-only then; and the
	// calls of them in flight. nil without the mode.
	asyncFns map[string]bool
	mux      *mux

	// testHookWritten, nil but in tests, runs once a call's frame was
	// written whole (writeCall), with the call's p.mu held.
	testHookWritten func()
}

// startProcess starts a worker and waits for its handshake. onExit is called
// once, from the goroutine that reaps the process, after it has exited (or
// at once if it could not be started at all).
//
// With forks not nil, the worker is forked by that fork server's template;
// if the template is gone, it is started as its own python3 instead.
func startProcess(ctx context.Context, spec *workerSpec, forks *forkServer, onExit func(*process)) (*process, error) {
	p := &process{
		spec:       spec,
		forks:      forks,
		exited:     make(chan struct{}),
		afterFired: make(chan struct{}, 1),
		turn:       make(ctxMutex, 1),
		encoder:    newCallEncoder(spec.maxMessageSize, &spec.codec),
	}
	p.watchFired, p.watchEnd = p.deadlineFired, p.endWatch
	if err := p.start(ctx); err != nil {
		onExit(p)
		return nil, err
	}
	go p.watchExit(onExit)
	if err := p.release(ctx); err != nil {
		p.broke() // its supervisor kills it
		<-p.exited
		return nil, err
	}
	if err := p.handshake(ctx); err != nil {
		p.broke() // its supervisor kills it
		<-p.exited
		return nil, err
	}
	// What it wrote as it started (its module's import, Config.SetUp)
	// names no call, however late the forwarders read it.
	p.outputWritten(nil)
	if spec.asyncCalls > 0 {
		if err := p.learnAsync(ctx); err != nil {
			p.broke()
			<-p.exited
			return nil, err
		}
	}
	p.logStarted()
	return p, nil
}

// start launches the process with its pipes and output forwarders: forked
// by the pool's fork server, or, without one or when its template is gone
// (errForkServerDown), as its own python3. That fallback is the one retry,
// on new pipes and new shared memory: a fork request that reached the
// template may have given the first ones to a child (see forkDownError).
// Neither runs once the pool's startGate has failed (the template's exec
// waited there, and its failure took it from the pool): New fails, and a
// worker would only be killed at the gate.
func (p *process) start(ctx context.Context) error {
	if err := p.spec.ready.failure(); err != nil {
		return err
	}
	err := p.startOn(ctx, p.forks)
	switch {
	case !errors.Is(err, errForkServerDown):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("pypool: starting a worker: %w", ctx.Err())
	}
	if err := p.spec.ready.failure(); err != nil {
		return err
	}
	return p.startOn(ctx, nil)
}

// startOn launches the process on descriptors of its own: forked by forks,
// or, when forks is nil, as its own python3.
func (p *process) startOn(ctx context.Context, forks *forkServer) error {
	pipes, err := osproc.OpenPipes()
	if err != nil {
		return fmt.Errorf("%w: creating pipes: %v", ErrWorkerStart, err)
	}
	inR, inW, outR, outW := pipes[0], pipes[1], pipes[2], pipes[3]
	errR, errW, logR, logW := pipes[4], pipes[5], pipes[6], pipes[7]
	osproc.SetPipeSize(inW, pipeSize)
	osproc.SetPipeSize(outR, pipeSize)

	// The child's descriptors, from 0: stdin, stdout, stderr, its own
	// stdout (the log stream), the shared memory (sharedMemoryFd), the
	// Python stack dumps (--dump-fd).
	child := []*os.File{inR, outW, errW, logW}
	if p.spec.sharedThreshold > 0 {
		if p.shm, err = newSharedMem(p.spec.maxMessageSize); err != nil {
			osproc.CloseFiles(pipes[:]...)
			return fmt.Errorf("%w: creating its shared memory: %v", ErrWorkerStart, err)
		}
		child = append(child, p.shm.file)
		p.encoder.shared, p.encoder.sharedFrom = p.shm, p.spec.sharedThreshold
	}
	dumpR, dumpW, err := os.Pipe()
	if err != nil {
		osproc.CloseFiles(pipes[:]...)
		if p.shm != nil {
			p.shm.retire()
		}
		return fmt.Errorf("%w: creating pipes: %v", ErrWorkerStart, err)
	}
	child = append(child, dumpW)
	p.codec = p.spec.codec
	p.codec.shared = p.shm
	proc, err := p.launch(ctx, forks, child)
	osproc.CloseFiles(inR, outW, errW, logW, dumpW) // the child's ends
	if err != nil {
		osproc.CloseFiles(inW, outR, errR, logR, dumpR)
		if p.shm != nil {
			p.shm.retire()
		}
		return err
	}
	p.os, p.pid, p.started = proc, proc.pid(), time.Now()
	p.held = forks == nil && slices.Contains(p.spec.args, bootstrap) // its bootstrap waits for its runtime's directory
	p.toWorker, p.fromWorker = inW, outR
	p.reader = newFrameReader(outR, p.spec.maxMessageSize)
	p.stderr.lines = make([]string, 0, stderrTailLines)
	p.startForwarders(errR, logR, dumpR)
	return nil
}

// launch starts the OS process with the descriptors child (0, 1, 2, then
// the extra files in order): forked by forks, or, when forks is nil, as its
// own python3.
func (p *process) launch(ctx context.Context, forks *forkServer, child []*os.File) (osProcess, error) {
	if forks != nil {
		return forks.fork(ctx, child)
	}
	return p.spec.execWorker(child)
}

// execWorker starts a worker as its own python3 process.
func (spec *workerSpec) execWorker(child []*os.File) (osProcess, error) {
	cmd := exec.Command(spec.python.path(), spec.args...)
	cmd.Args = append(cmd.Args, "--dump-fd", strconv.Itoa(len(child)-1))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = child[0], child[1], child[2]
	cmd.ExtraFiles = child[3:]
	cmd.Env = spec.env
	cmd.Dir = spec.dir
	cmd.SysProcAttr = osproc.SysProcAttr(spec.credential.sysProcCredential())
	if err := osproc.StartOnLockedThread(cmd); err != nil {
		return nil, execFailed(cmd.Path, err)
	}
	spec.guard.own(cmd.Process.Pid)
	if workerExecuted != nil {
		workerExecuted(cmd.Process.Pid)
	}
	return execProcess{cmd: cmd, guard: spec.guard}, nil
}

// workerExecuted, nil but in tests (while no other pool starts), is told
// the pid of each worker started by exec, as its start returns.
var workerExecuted func(pid int)

// execFailed is the start error of a worker whose interpreter, path, could
// not be run. It is fatal when the cause will not go away by itself: the
// interpreter or the working directory is missing or not executable, or
// the credential or limits asked for are refused. Out of processes,
// memory or descriptors (EAGAIN, ENOMEM, EMFILE, ENFILE) is transient.
func execFailed(path string, err error) error {
	var errno syscall.Errno
	fatal := errors.As(err, &errno) && fatalExecErrno(errno)
	err = fmt.Errorf("%w: running %s: %v", ErrWorkerStart, path, err)
	if fatal {
		return &fatalStart{err}
	}
	return err
}

// fatalExecErrno reports whether a failed exec's errno says that the
// interpreter cannot run, whatever the moment.
func fatalExecErrno(errno syscall.Errno) bool {
	switch errno {
	case syscall.ENOENT, syscall.ENOTDIR, syscall.EACCES, syscall.EPERM, syscall.ENOEXEC,
		syscall.ELOOP, syscall.ENAMETOOLONG, syscall.EISDIR, syscall.EINVAL, syscall.E2BIG:
		return true
	}
	return false
}

// osProcess is the operating system's process behind a worker: one that
// the Go process started (execProcess), or one that a fork server's
// template forked (forkedProcess, forkserver.go).
type osProcess interface {
	pid() int
	// wait blocks until the process has exited, kills what is left of its
	// process group (its children), and says how it ended.
	wait() exitStatus
	// signal sends sig to the process (not to its group); a no-op once it
	// exited.
	signal(sig syscall.Signal)
	// path names what runs, for error messages.
	path() string
}

// exitStatus is how a process ended: its exit code (-1 when killed by a
// signal or unknown) and, if a signal ended it, the signal's name (or why
// the status is unknown).
type exitStatus struct {
	code   int
	signal string
	sig    syscall.Signal // the signal that ended it; 0: none, or unknown
}

// waitStatus reads a wait(2) status.
func waitStatus(ws syscall.WaitStatus) exitStatus {
	st := exitStatus{code: ws.ExitStatus()}
	if ws.Signaled() {
		st.sig, st.signal = ws.Signal(), ws.Signal().String()
		if ws.Signal() == syscall.SIGXCPU {
			st.signal += " (SIGXCPU: it used up its CPU time limit, Config.Limits.CPUTime)"
		}
	}
	return st
}

// execProcess is a process started as its own python3: a worker, a fork
// server's template, a guardian. Its process group is its pid.
type execProcess struct {
	cmd   *exec.Cmd
	guard *guardian // told once its group was killed; nil: none
}

func (e execProcess) pid() int     { return e.cmd.Process.Pid }
func (e execProcess) path() string { return e.cmd.Path }

func (e execProcess) signal(sig syscall.Signal) { _ = e.cmd.Process.Signal(sig) }

// wait waits for the exit without reaping it, so that the zombie keeps the
// pid and the group's number from being reused; then it kills the group
// (the process's children, which would outlive it), tells the guardian,
// and reaps.
func (e execProcess) wait() exitStatus {
	pid := e.cmd.Process.Pid
	if osproc.AwaitExitKeepZombie(pid) {
		osproc.KillGroup(pid)
	}
	e.guard.release(pid)
	err := e.cmd.Wait()
	if e.cmd.ProcessState == nil {
		return exitStatus{code: -1, signal: fmt.Sprint(err)}
	}
	if ws, ok := e.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		return waitStatus(ws)
	}
	return exitStatus{code: e.cmd.ProcessState.ExitCode()}
}

// release lets the bootstrap of a worker started by exec go on once the
// pool's startGate opens: it writes the runtime's directory to it
// (runtimeDirFrame). A forked worker runs no bootstrap. A write that finds
// the worker gone is left to the handshake, which reads its exit.
func (p *process) release(ctx context.Context) error {
	if !p.held {
		return nil
	}
	if err := p.spec.ready.await(ctx); err != nil {
		return err
	}
	_, _ = p.toWorker.Write(runtimeDirFrame(p.spec.runtimeDir))
	return nil
}

// handshake reads the worker's HELLO (readHello) and checks it (welcome),
// whether the worker was started as its own python3 or forked.
func (p *process) handshake(ctx context.Context) error {
	// A HELLO is small: a larger first frame is text that something wrote
	// to the worker's stdout before the runtime took it (helloHint), not
	// a frame to wait for (with MaxMessageSize raised, up to StartTimeout).
	p.reader.r.SetMaxSize(min(p.spec.maxMessageSize, maxHelloSize))
	body, readErr, err := p.spec.readHello(ctx, fmt.Sprintf("worker %d", p.pid), p.fromWorker.SetReadDeadline,
		func() ([]byte, error) {
			body, _, err := p.reader.r.Next()
			return body, err
		})
	p.reader.r.SetMaxSize(p.spec.maxMessageSize)
	var tooLarge *wire.SizeError
	switch {
	case err != nil:
		return err
	case readErr == nil:
	case isEOF(readErr):
		// The worker exited: its end of the pipe is gone (EOF), or its exit
		// watcher has already closed ours (os.ErrClosed). Either way, the
		// exit tells why.
		<-p.exited
		exitErr := *p.exitErr
		exitErr.cause = ErrWorkerStart
		if exitErr.ExitCode == exitUnsupportedPython && len(exitErr.Stderr) > 0 {
			// Not a *WorkerExitError: it is fatal, a restart cannot help.
			return &fatalStart{fmt.Errorf("%w: %s: %s (set Config.Python)", ErrWorkerStart, p.os.path(), exitErr.Stderr[len(exitErr.Stderr)-1])}
		}
		return &exitErr
	case errors.As(readErr, &tooLarge):
		var header [wire.HeaderSize]byte
		binary.BigEndian.PutUint32(header[:], tooLarge.Size)
		return &fatalStart{fmt.Errorf("%w: %w: worker %d began with %q where its handshake should be: %s",
			ErrWorkerStart, ErrProtocol, p.pid, header[:], p.helloHint())}
	default:
		return fmt.Errorf("%w: reading the handshake of worker %d: %w", ErrWorkerStart, p.pid, readErr)
	}
	h, err := decodeHello(body)
	if err != nil {
		// Its first words are not a handshake this package speaks: it does
		// not run this runtime, and will not next time either.
		return &fatalStart{fmt.Errorf("%w: %w; %s", ErrWorkerStart, err, p.helloHint())}
	}
	if err := p.spec.welcome(h); err != nil {
		return err
	}
	if p.spec.setUp != "" {
		p.spec.logger.Info("pypool: worker ran its set-up", slog.Int("worker", p.pid),
			slog.String("function", p.spec.setUp), slog.Duration("duration", h.setUp))
	}
	p.hello = h
	p.fromWorker.SetReadDeadline(time.Time{})
	return nil
}

// maxHelloSize bounds a worker's first frame, its HELLO (an import error's
// traceback included). Text (any first byte from 0x01 up) read as a frame's
// length is larger.
const maxHelloSize = 16 << 20

// helloHint says what writes where a worker's HELLO should be.
func (p *process) helloHint() string {
	return fmt.Sprintf("something wrote to the worker's stdout before Python ran pypool's runtime "+
		"(a wrapper script that echoes, a sitecustomize or .pth file that prints): "+
		"set Config.Python to the interpreter itself (%q runs), or make it write to stderr", p.os.path())
}

// readHello is the one handshake read of a starting python3, a worker's
// (handshake) or a fork server template's (forkserver.go): it reads the
// HELLO with read, bounded by Config.StartTimeout and ctx through
// setDeadline. who names the process in its errors ("worker 12"): ctx's
// end and the time-out wrap ErrWorkerStart. It returns the HELLO's body;
// or err, the handshake's error when ctx or the time-out ended the read;
// or readErr, the read's own error, for the caller to say what it means.
func (spec *workerSpec) readHello(ctx context.Context, who string, setDeadline func(time.Time) error,
	read func() ([]byte, error)) (body []byte, readErr, err error) {
	deadline := time.Now().Add(spec.startTimeout)
	ctxDeadline, byCtx := ctx.Deadline()
	if byCtx = byCtx && ctxDeadline.Before(deadline); byCtx {
		deadline = ctxDeadline
	}
	setDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { setDeadline(time.Now()) })
	defer stop()
	body, readErr = read()
	switch {
	case readErr == nil:
		return body, nil, nil
	case errors.Is(readErr, os.ErrDeadlineExceeded) && (ctx.Err() != nil || byCtx):
		// ctx ended, or its deadline, the read's, passed (the pipe's
		// timer may fire before ctx's): not Config.StartTimeout.
		return nil, nil, fmt.Errorf("%w: %s had not finished importing %q when the context of its start ended: %w",
			ErrWorkerStart, who, spec.module, contextCause(ctx))
	case errors.Is(readErr, os.ErrDeadlineExceeded):
		return nil, nil, fmt.Errorf("%w: %s did not finish importing %q within %v (Config.StartTimeout): %w",
			ErrWorkerStart, who, spec.module, spec.startTimeout, context.DeadlineExceeded)
	}
	return nil, readErr, nil
}

// welcome checks a decoded HELLO, a worker's or a fork server template's:
// a module that did not import, or a set-up that failed, is an
// *importError; otherwise the interpreter's path it names is learnt.
func (spec *workerSpec) welcome(h hello) error {
	if h.err != nil {
		return &importError{module: spec.module, setUp: spec.setUp, err: h.err, fsHint: spec.pythonFS.hint(h.err)}
	}
	spec.python.learn(h.executable)
	return nil
}

// watch makes the pipes' deadlines follow ctx (watchContext); a nested
// call's watch gives the pipes back the outer call's deadline when it
// stops.
func (p *process) watch(ctx context.Context, nested bool) (stop func()) {
	if !nested {
		return p.watchContext(ctx)
	}
	outer, hadDeadline := p.deadline, p.deadlineSet
	deadline, _ := ctx.Deadline()
	p.toWorker.SetWriteDeadline(deadline)
	p.fromWorker.SetReadDeadline(deadline)
	fired := make(chan struct{}, 1)
	stopAfter := context.AfterFunc(ctx, func() {
		now := time.Now()
		p.toWorker.SetWriteDeadline(now)
		p.fromWorker.SetReadDeadline(now)
		fired <- struct{}{}
	})
	return func() {
		if !stopAfter() {
			<-fired
		}
		if p.state.stream == streamRunning && hadDeadline {
			p.toWorker.SetWriteDeadline(outer)
			p.fromWorker.SetReadDeadline(outer)
		} else {
			p.deadlineSet = false
		}
	}
}

// replied ends a call with its reply r: the reply's value decoded by into,
// or its *PythonError.
func (p *process) replied(ctx context.Context, fn string, r reply, owned bool, into decodeFunc) error {
	p.served.Add(1)
	if p.reader.r.Buffered() > 0 {
		// Only one message answers a call: more bytes mean a frame longer
		// than it declared, and the stream can no longer be trusted.
		return p.failed(ctx, fn, fmt.Errorf("%w: worker %d sent more bytes than its reply declared", ErrProtocol, p.pid), true)
	}
	if r.err != nil {
		return r.err
	}
	if into == nil {
		return nil
	}
	err := into(r.value, owned, &p.codec)
	if isSharedFault(err) {
		// The reply's references into the shared memory could not be
		// read: the memory, and the worker, are in an unknown state.
		return p.failed(ctx, fn, err, true)
	}
	return err
}

// send writes a frame that flows while a call runs (a callback's answer,
// stream credit). A write cut off by the call's context before it began
// leaves the call interrupted; one cut in the middle loses the stream.
func (p *process) send(ctx context.Context, fn string, frame []byte) error {
	n, err := p.toWorker.Write(frame)
	switch {
	case err == nil:
		return nil
	case n == 0 && errors.Is(err, os.ErrDeadlineExceeded):
		return p.failed(ctx, fn, err, true)
	}
	return p.failed(ctx, fn, fmt.Errorf("sending a message: %w", err), false)
}

// watchContext makes the pipes' deadlines follow ctx. The returned function
// stops the watch; after it returns no deadline change is pending. A
// context without a deadline or a Done channel (context.Background) costs
// nothing once the pipes have no deadline. One watch at a time: the
// outermost call's, with p.mu held until it stops (a nested call's is
// watch's own); so its functions are the process's, bound once, and
// a watch allocates only what context.AfterFunc does.
func (p *process) watchContext(ctx context.Context) (stop func()) {
	deadline, _ := ctx.Deadline() // zero: no deadline
	p.setDeadline(deadline)
	if ctx.Done() == nil {
		return func() {}
	}
	p.watched = ctx
	p.watchStop = context.AfterFunc(ctx, p.watchFired)
	return p.watchEnd
}

// deadlineFired is the watched context's end (watchContext): both pipes'
// deadlines pass now.
func (p *process) deadlineFired() {
	now := time.Now()
	p.toWorker.SetWriteDeadline(now)
	p.fromWorker.SetReadDeadline(now)
	p.afterFired <- struct{}{}
}

// endWatch stops watchContext's watch.
func (p *process) endWatch() {
	if !p.watchStop() {
		<-p.afterFired // the deadline change has happened
		p.deadlineSet = false
	}
	p.watchStop, p.watched = nil, nil
}

// setDeadline sets both pipes' deadline to t, unless they have it already.
func (p *process) setDeadline(t time.Time) {
	if p.deadlineSet && t.Equal(p.deadline) {
		return
	}
	p.toWorker.SetWriteDeadline(t)
	p.fromWorker.SetReadDeadline(t)
	p.deadline, p.deadlineSet = t, true
}

// failed turns an I/O or protocol error of a call into the caller's error
// and records the process's new state (setState); a protocol error is
// reported to its supervisor (broke), which kills it. sent tells whether
// the whole call frame reached the worker.
func (p *process) failed(ctx context.Context, fn string, err error, sent bool) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		cause := p.cutCause(ctx)
		if sent {
			// Python is still running the call: interrupt it. The pool
			// decides, after a grace period, whether the worker is usable.
			p.setState(evCutOff, cause)
			if p.spec.stacks.policy == StackDumpsAll {
				p.dumps.requestLimited(p, fn, dumpInterrupted) // before the interrupt changes the stack
			}
			p.interrupt()
		} else {
			p.setState(evLost, cause) // a frame was cut in half: the stream is lost
		}
		return fmt.Errorf("pypool: call to %s: %w", fn, cause)
	case isEOF(err):
		p.setState(evLost, err)
		return p.exitError(ctx)
	default:
		p.setState(evLost, err)
		p.broke() // its supervisor kills it
		return fmt.Errorf("pypool: call to %s on worker %d: %w", fn, p.pid, err)
	}
}

// exitError waits (briefly, and never past ctx) for the process to be
// reaped and returns its exit as an error. A process whose output closed
// but that has not exited by then quit (evQuit): it is reported to its
// supervisor (broke), which kills it, and the error says so.
func (p *process) exitError(ctx context.Context) error {
	timer := time.NewTimer(exitWaitTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return p.exitErr
	case <-timer.C:
		// The pipe closed but the process lives on: it closed its
		// own stdout. It is of no use any more.
	case <-ctx.Done():
	}
	p.setState(evQuit, nil)
	p.broke() // its supervisor kills it: the error says so
	return &WorkerExitError{Pid: p.pid, ExitCode: -1, Signal: "SIGKILL (it closed its output)", cause: ErrWorkerCrashed}
}

// cutCause is why the pipes' deadline passed during a call made with ctx:
// ctx's end, or, for a call nested in a callback whose context has not
// ended yet, the end of the outer call's context, whose watch moved the
// pipes' deadline (the caller cancelled: the nested call is cut off as
// cancelled too, not as a deadline); else the deadline itself.
func (p *process) cutCause(ctx context.Context) error {
	if ctx.Err() == nil && p.watched != nil && p.watched.Err() != nil {
		return p.watched.Err()
	}
	return contextCause(ctx)
}

// contextCause is ctx's error, or DeadlineExceeded when a pipe deadline set
// from ctx fired a moment before ctx itself ended.
func contextCause(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// drainInterrupted waits up to grace for the reply to the call that was
// cut off (awaitInterrupted), reports whether the worker is usable again,
// and logs how the interrupt ended. One answered within half of grace is
// routine, logged at Debug. One answered later is logged at Warn, with
// the Python stack taken at that half (Config.StackDumps); one not
// answered ("worker killed") at Warn, with the stack taken now, before
// its supervisor kills it (bounded by dumpKillWait); one its pool stopped
// meanwhile (Close) at Debug. Both warnings are
// rate-limited per function (stackLimiter); those suppressed are logged
// at Debug.
func (p *process) drainInterrupted(grace time.Duration) bool {
	fn, cause := p.currentFunction(), p.interruptCause()
	began := time.Now()
	var slowAllowed atomic.Bool
	var slowSuppressed atomic.Int64
	var slowDump atomic.Uint64 // the slow stack's request
	slow := time.AfterFunc(grace/2, func() {
		ok, n := p.spec.stacks.allow(fn, dumpSlow)
		if ok {
			slowAllowed.Store(true)
			slowSuppressed.Store(int64(n))
			slowDump.Store(p.dumps.requestCounted(p, fn, dumpSlow, n))
		}
	})
	ok := p.awaitInterrupted(grace) && p.condition() == condHealthy
	answered := time.Since(began).Round(time.Millisecond)
	slow.Stop()
	attrs := []any{"worker", p.pid, "function", fn, "cause", cause}
	switch {
	case ok && (answered < grace/2 || !slowAllowed.Load()):
		// Routine, or a slow one already warned of this interval.
		p.spec.logger.Debug(msgCallInterrupted, append(attrs, "answered_in", answered)...)
	case ok:
		attrs = append(attrs, "answered_in", answered)
		if n := slowSuppressed.Load(); n > 0 {
			attrs = append(attrs, "suppressed", n)
		}
		p.spec.logger.Warn(msgCallInterrupted, attrs...)
	case p.askedToEnd():
		// Its pool stopped it meanwhile (Close): it did not ignore its
		// interrupt, it was not given the time to answer it.
		p.spec.logger.Debug(msgCallInterrupted, append(attrs, "stopped_by_pool_after", answered)...)
	case !p.hasExited():
		p.logKilled(fn, append(attrs, "grace", grace), slowDump.Load())
	}
	return ok
}

// logKilled logs that the worker, running fn, is killed for not answering
// its interrupt (attrs): at Warn with its stacks, taken now, before its
// supervisor kills it (bounded by dumpKillWait; no caller waits for it),
// rate-limited per function (stackLimiter), else at Debug. pending is a
// stack request still awaited (the slow one's), which would hold this one
// back; 0 for none.
func (p *process) logKilled(fn string, attrs []any, pending uint64) {
	allowed, n := p.spec.stacks.allow(fn, dumpKilled)
	if !allowed {
		p.spec.logger.Debug(msgWorkerKilled, attrs...)
		return
	}
	if n > 0 {
		attrs = append(attrs, "suppressed", n)
	}
	p.spec.logger.Warn(msgWorkerKilled, attrs...)
	if pending != 0 {
		p.dumps.await(p, pending, dumpKillWait)
	}
	p.dumps.await(p, p.dumps.requestCounted(p, fn, dumpKilled, n), dumpKillWait)
}

// awaitInterrupted waits up to grace for the reply to the call that was cut
// off and reports whether the worker is usable again. The reply itself is
// dropped: its caller has already been given the context's error.
func (p *process) awaitInterrupted(grace time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state.stream == streamBroken {
		return false
	}
	p.deadlineSet = false
	p.fromWorker.SetReadDeadline(time.Now().Add(grace))
	p.toWorker.SetWriteDeadline(time.Now().Add(grace))
	defer p.toWorker.SetWriteDeadline(time.Time{})
	if err := p.answerPending(); err != nil {
		p.setState(evLost, err)
		return false
	}
	if err := p.cancelTask(); err != nil {
		p.setState(evLost, err)
		return false
	}
	if p.state.stream == streamInterrupted {
		l := replyLoop{wait: waitDrain, id: p.outerID}
		if p.readReplies(context.Background(), "", &l, nil, nil) != nil {
			return false
		}
	}
	p.callOver()
	p.fromWorker.SetReadDeadline(time.Time{})
	return true
}

// cancelTask sends CANCEL for the cut-off call when the worker runs it as
// a task on its event loop: with Config.AsyncCalls, the worker's loop
// takes every CALL of an async function, also one sent on its own (a
// Transaction's), where SIGINT does not reach it. Part of a drain, as
// answerPending.
func (p *process) cancelTask() error {
	if !p.outerTask || p.state.stream != streamInterrupted {
		return nil
	}
	frame, err := p.encoder.encodeControl(kindCancel, 2, func(e *callEncoder) error { return e.enc.EncodeUint(p.outerID) })
	if err == nil {
		_, err = p.toWorker.Write(frame)
	}
	return err
}

// procState is the one state of a process: what the calls made on it left
// its stream fit for, and where the process is in its life. setState is
// its only writer. The two parts move apart because they are apart: a
// worker held by a Transaction that Close kills is stopping while its
// stream still runs (its next call fails as a crash), and a worker whose
// stream broke lives on until its supervisor kills it.
//
// Its stream, changed by the calls, with p.mu held:
//
//	streamRunning     --[evCutOff: a call was cut off after it was sent]--> streamInterrupted
//	streamInterrupted --[evDrained: the drain read its reply]-------------> streamRunning
//	streamRunning, streamInterrupted --[evLost]--> streamBroken   (final; a later evLost replaces the cause)
//
// Its life, changed from any goroutine:
//
//	lifeAlive --[evLost on end of file, evQuit: it closed its end, unasked]--> lifeQuit
//	lifeAlive, lifeQuit --[evAsked: askToEnd, by its supervisor]-------------> lifeStopping
//	any --[evCrashed: reaped, and it was not asked to end when it exited]----> lifeCrashed
//	any --[evExited: reaped, and it was asked to end]------------------------> lifeExited
//
// lifeCrashed and lifeExited are final: they close exited. The process
// reports (workerSpec.onBroken) and its supervisor decides: the process
// never asks itself to end, and never kills itself.
type procState struct {
	stream streamState
	life   lifeState
}

// streamState is what the calls made on a process left its stream fit for.
type streamState uint8

const (
	streamRunning     streamState = iota // serving calls, or ready for one
	streamInterrupted                    // the call p.outerID was cut off (p.cutOff says why): its reply is pending, and those of p.owed
	streamBroken                         // the stream is in an unknown state (p.streamErr says why)
)

// lifeState is where a process is in its life.
type lifeState uint8

const (
	lifeAlive    lifeState = iota // running, no end known
	lifeQuit                      // it closed its end of the protocol unasked, and is not reaped yet
	lifeStopping                  // its supervisor asked it to end (stop, kill): its exit is no crash
	lifeCrashed                   // reaped: it exited by itself (p.exitErr says how)
	lifeExited                    // reaped: it exited as asked (p.exitErr says how)
)

// procEvent is what happens to a process; setState makes it its new state.
type procEvent uint8

const (
	evCutOff  procEvent = iota // a call was cut off after it was sent; why: the cause
	evDrained                  // the cut-off call's reply was read
	evLost                     // the stream is lost; why: the cause
	evQuit                     // it closed its output but did not exit (exitError)
	evAsked                    // its supervisor asked it to end (askToEnd)
	evCrashed                  // reaped, unasked; why: its *WorkerExitError
	evExited                   // reaped, as asked; why: its *WorkerExitError
)

// setState is the one writer of a process's state (procState): it makes
// ev the new state, with why its cause. The stream's events (evCutOff,
// evDrained, evLost) and evQuit are made with p.mu held, by the call that
// met them. A broken stream stays broken: a call cut off then keeps the
// cut's cause, not the state. The exit events record the exit and close
// exited, the broadcast of the exit.
func (p *process) setState(ev procEvent, why error) {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	s := &p.state
	switch ev {
	case evCutOff:
		p.cutOff = why
		if s.stream == streamRunning {
			s.stream = streamInterrupted
		}
	case evDrained:
		if s.stream == streamInterrupted {
			s.stream = streamRunning
		}
	case evLost:
		p.streamErr = why
		s.stream = streamBroken
		if s.life == lifeAlive && isEOF(why) {
			s.life = lifeQuit
		}
	case evQuit:
		if s.life == lifeAlive {
			s.life = lifeQuit
		}
	case evAsked:
		if s.life == lifeAlive || s.life == lifeQuit {
			s.life = lifeStopping
		}
	case evCrashed, evExited:
		s.life = lifeExited
		if ev == evCrashed {
			s.life = lifeCrashed
		}
		p.exitErr = why.(*WorkerExitError)
		close(p.exited)
	}
}

// stateNow is the process's state, read with p.stateMu.
func (p *process) stateNow() procState {
	p.stateMu.Lock()
	defer p.stateMu.Unlock()
	return p.state
}

// condition is what a process is fit for after a call, as its pool sees it
// at check-in.
type condition int

const (
	condHealthy      condition = iota // ready for another call
	condInterrupted                   // a call was cut off; its reply is pending
	condBroken                        // the stream is in an unknown state: kill it
	condDiedByItself                  // it exited, or closed its end, unasked
)

// condition says what the process is fit for, from its state. It must not
// be called while a call runs.
func (p *process) condition() condition {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stateNow()
	switch s.life {
	case lifeQuit, lifeCrashed:
		return condDiedByItself
	case lifeExited:
		return condBroken
	}
	switch s.stream {
	case streamRunning:
		return condHealthy
	case streamInterrupted:
		return condInterrupted
	}
	return condBroken
}

// diedByItself reports whether the process exited, or closed its end of the
// protocol, without being asked to (lifeQuit, lifeCrashed).
func (p *process) diedByItself() bool {
	life := p.stateNow().life
	return life == lifeQuit || life == lifeCrashed
}

// askedToEnd reports whether its supervisor asked the process to end
// (lifeStopping, lifeExited).
func (p *process) askedToEnd() bool {
	life := p.stateNow().life
	return life == lifeStopping || life == lifeExited
}

// crashed reports whether the process exited by itself (lifeCrashed). It is
// known once exited is closed.
func (p *process) crashed() bool {
	return p.stateNow().life == lifeCrashed
}

// interrupt sends SIGINT to the cut-off call, with p.mu held: its drain
// then counts it as late if no reply it reads is "interrupted"
// (onDrainReply). With Config.AsyncCalls, a call of an async function
// sent on its own (a Transaction's CALL, not a Stream, which the main
// thread awaits, nor a call nested in a callback, which the main thread
// reads and runs) is a task on the worker's loop thread (outerTask),
// which SIGINT does not reach: the drain cancels it (cancelTask), and no
// SIGINT is sent, which the worker would take, between calls, for the
// next call's.
func (p *process) interrupt() {
	if p.outerTask {
		return
	}
	p.signalled = true
	p.signal(syscall.SIGINT)
}

// signal sends sig to the worker (not to its process group).
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
	default:
		p.os.signal(sig)
	}
}

// isEOF reports whether err means the worker's end of a pipe is gone. The
// pipes are closed only once the process has exited (watchExit).
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)
}

// broke reports to the process's supervisor (workerSpec.onBroken) that it
// can no longer serve: its handshake failed, or, during a call, its stream
// is lost or it closed its output and lives on (lifeQuit). The supervisor
// decides (it kills it).
func (p *process) broke() {
	p.spec.onBroken(p)
}

// kill is its supervisor's tool to end the worker and its process group at
// once. Unless it had already died by itself, its exit does not count as a
// crash.
func (p *process) kill() {
	if !p.diedByItself() {
		p.askToEnd()
	}
	p.sigkill()
}

// askToEnd is its supervisor's record that the process was asked to end
// (stopped or killed by its supervisor, or by its start): its exit is then
// no crash (evAsked).
func (p *process) askToEnd() {
	p.setState(evAsked, nil)
}

// sigkill is its supervisor's tool to send SIGKILL to the worker's process
// group; it does not ask it to end (see kill).
func (p *process) sigkill() {
	select {
	case <-p.exited:
	default:
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		p.os.signal(syscall.SIGKILL) // in case it left its group
	}
}

// stop is its supervisor's tool to end the worker gracefully: end of input
// makes the runtime exit; after grace it is killed. Its process group is
// killed once it exited (wait). A forked worker whose template died is
// killed at once, group and all: once it exited, nobody could kill its
// group safely. stop returns once the process is reaped.
func (p *process) stop(grace time.Duration) {
	p.askToEnd()
	if orphaned(p.os) {
		p.sigkill()
	}
	p.toWorker.Close()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.sigkill()
		<-p.exited
	}
}

// watchExit reaps the process, records how it ended (whether it was asked
// to end is read as it is reaped) and calls onExit.
func (p *process) watchExit(onExit func(*process)) {
	status := p.os.wait()
	ev := evCrashed
	if p.askedToEnd() {
		ev = evExited
	}
	p.forwarders.drained(outputDrainTimeout)
	exitErr := &WorkerExitError{Pid: p.pid, ExitCode: status.code, Signal: status.signal, Stderr: p.stderr.last(),
		sig: status.sig, cause: ErrWorkerCrashed}
	p.toWorker.Close()
	p.fromWorker.Close()
	if p.shm != nil {
		p.shm.retire()
	}
	p.setState(ev, exitErr)
	onExit(p)
}

// startForwarders copies the worker's stderr and stdout to the logger, line
// by line, and keeps the last stderr lines for crash errors.
func (p *process) startForwarders(stderr, stdout, dumps *os.File) {
	p.forwarders.add(stderr, stdout, dumps)
	p.output[0].init(stderr)
	p.output[1].init(stdout)
	go p.forward(stderr, &p.output[0], "stderr", slog.LevelWarn, true)
	go p.forward(stdout, &p.output[1], "stdout", slog.LevelInfo, false)
	go p.dumps.forward(p, dumps)
}

func (p *process) forward(f *os.File, calls *outputCalls, stream string, level slog.Level, keep bool) {
	defer p.forwarders.done()
	defer f.Close()
	r := bufio.NewReaderSize(calls.reader(f), 4096)
	attrs := []slog.Attr{slog.Int("worker", p.pid), slog.String("stream", stream), {}}
	var line []byte
	for {
		var err error
		line, err = nextLogLine(r, line)
		if err != nil {
			if len(line) > 0 {
				p.logLine(level, string(line), attrs, calls.lineFunction(calls.read.Load(), p.current.Load()), keep)
			}
			return
		}
		end := calls.read.Load() - int64(r.Buffered())
		p.logLine(level, string(line), attrs, calls.lineFunction(end, p.current.Load()), keep)
	}
}

// nextLogLine reads the next line of r into line[:0], without its
// newline: a whole line, or a piece of maxLogLine bytes of a longer one.
// At the end of r it returns what is left (a last line without newline,
// or nothing) with the error.
func nextLogLine(r *bufio.Reader, line []byte) ([]byte, error) {
	line = line[:0]
	for {
		chunk, isPrefix, err := r.ReadLine()
		line = append(line, chunk...)
		if err != nil || !isPrefix || len(line) >= maxLogLine {
			return line, err
		}
	}
}

func (p *process) logLine(level slog.Level, line string, attrs []slog.Attr, fn *string, keep bool) {
	line = strings.TrimRight(line, "\r")
	if keep {
		p.stderr.add(line)
	}
	// The last slot of attrs is the function of the call that wrote the
	// line: output between calls has none.
	if fn != nil {
		attrs[len(attrs)-1] = slog.String("function", *fn)
	} else {
		attrs = attrs[:len(attrs)-1]
	}
	p.spec.logger.LogAttrs(context.Background(), level, line, attrs...)
}

// tail keeps the last lines of a worker's stderr.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == stderrTailLines {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:stderrTailLines-1]
	}
	t.lines = append(t.lines, line)
}

func (t *tail) last() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// hasExited reports whether the process has been reaped.
func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}
