//go:build linux

package pypool

// forkserver.go is the Go side of the fork server (Config.StartMethod =
// StartForkServer): one template process per pool that has imported the
// runtime and the module once, and forks a new worker on request
// (python/pypool_runtime/forkserver.py describes the template and its
// control socket). A forked worker is a process like a started one: the
// same descriptors, protocol, process group and pid; only its parent is the
// template, so its exit is watched through a pidfd and its exit status comes
// from the template, which reaps it. The pool's supervisor (supervise.go)
// starts, restarts and stops the template.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pypool/pypool/internal/osproc"
)

// errForkServerDown is a fork request's error when the template is gone:
// the worker is started as its own python3 instead. fork returns it as a
// *forkDownError, which says whether the request reached the template.
var errForkServerDown = errors.New("pypool: the fork server is not running")

// forkDownError is a fork request's error when the template is gone, or
// stuck and killed. Sent tells whether the request reached the template
// (osproc.SendFiles succeeded): then the template may have forked a child
// that holds the request's descriptors before it died, and those
// descriptors must never be given to another process (fork has killed
// every process that held them; the worker is started on new ones). It
// matches errForkServerDown.
type forkDownError struct{ sent bool }

// Error says that the template is gone, and whether the request reached it.
func (e *forkDownError) Error() string {
	if e.sent {
		return errForkServerDown.Error() + " (it ended after a fork request was sent)"
	}
	return errForkServerDown.Error()
}

// Is makes errors.Is(err, errForkServerDown) true.
func (e *forkDownError) Is(target error) bool { return target == errForkServerDown }

// orphanWait bounds the wait for the processes that held the descriptors
// of a lost fork request to exit once they were killed.
const orphanWait = time.Second

// forkStatusWait bounds the wait for the template's report of a child's exit
// status once its pidfd said it exited.
const forkStatusWait = time.Second

// forkTimeout bounds the template's answer to a fork request, which takes
// about a millisecond. A variable for the tests.
var forkTimeout = 5 * time.Second

// forkServer is one running template.
type forkServer struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	conn    *net.UnixConn
	logger  *slog.Logger
	guard   *guardian // owns the groups of the template and its workers
	nfds    int       // descriptors per fork request

	spec    *workerSpec
	onExit  func(*forkServer)                             // called once by its watcher, after it exited
	settled func(fs *forkServer, err error, givenUp bool) // told once how a start by launch went (givenUp: it ended because its context did); may be nil

	mu   sync.Mutex // one fork request at a time
	lost bool       // a request went unanswered: it was killed; guarded by mu
	// A template made by newForkServer: unstarted until the first fork
	// request starts it (launch), failed once that start failed. Guarded
	// by mu.
	unstarted bool
	failed    bool
	up        atomic.Bool    // it started and sent its HELLO: read without mu (ready)
	replies   chan forkReply // the template's answers to requests, in order
	done      chan struct{}  // closed once the template exited and was reaped
	status    exitStatus     // how it ended; set before done is closed
	output    forwarders     // its stdout and stderr forwarders
	gone      chan struct{}  // closed once watchExit saw it exit (or could not wait)
	stopOne   sync.Once      // the end of the control socket is sent once

	exitsMu sync.Mutex
	exits   map[int]chan exitStatus // children's exit statuses, by pid
}

// forkReply answers one fork request.
type forkReply struct {
	pid   int
	pidfd *os.File
	err   error
}

// forkServerArgs are the template's command line: the worker's, with the
// fork server's entry point and its own flags first; --first-worker when
// the template is given the first worker's descriptors (fds 4..3+nfds).
func (spec *workerSpec) forkServerArgs(nfds int, first bool) ([]string, error) {
	args := append([]string(nil), spec.args...)
	at := slices.Index(args, bootstrap) // python's options, "-c", bootstrap, the worker's
	if at < 0 {
		return nil, fmt.Errorf("%w: fork server: the workers do not run pypool's runtime bootstrap", ErrWorkerStart)
	}
	args[at] = forkBootstrap
	own := []string{spec.runtimeDir, "--host-pid", strconv.Itoa(os.Getpid()), "--worker-fds", strconv.Itoa(nfds)}
	for _, m := range spec.preload {
		own = append(own, "--preload", m)
	}
	if spec.preloadSetUp {
		own = append(own, "--preload-setup")
	}
	if first {
		own = append(own, "--first-worker")
	}
	args = slices.Insert(args, at+1, own...)
	return append(args, "--dump-fd", strconv.Itoa(nfds-1)), nil
}

// startForkServer starts a template and waits until it has imported the
// module (within StartTimeout and ctx). onExit is called once, from the
// template's watcher, after it exited; not when startForkServer fails.
func startForkServer(ctx context.Context, spec *workerSpec, onExit func(*forkServer)) (*forkServer, error) {
	fs := newForkServer(spec, onExit)
	fs.unstarted = false
	if err := fs.start(ctx, nil); err != nil {
		return nil, err
	}
	return fs, nil
}

// newForkServer returns a template not started yet: the first fork request
// starts it with that request's descriptors (launch), and it forks that
// worker as soon as it has imported the module, without a request. So the
// pool's first worker waits for one interpreter's start, as a worker
// started by exec does, not for the template's start and then a fork.
// settled, if not nil, is told once (with mu held) how that start went:
// nil, or why it failed (the request then fails with a *forkDownError and
// later ones at once, so that their workers are started by exec).
func newForkServer(spec *workerSpec, onExit func(*forkServer)) *forkServer {
	nfds := 5 // 0, 1, 2, the log stream, the dump fd
	if spec.sharedThreshold > 0 {
		nfds++
	}
	return &forkServer{
		logger: spec.logger, guard: spec.guard, nfds: nfds, spec: spec, onExit: onExit, unstarted: true,
		replies: make(chan forkReply, 1), done: make(chan struct{}),
		exits: make(map[int]chan exitStatus),
	}
}

// start starts the template and waits for its HELLO. With first not nil
// (the first worker's descriptors), the template forks that worker right
// after its HELLO; its answer comes as a fork request's.
func (fs *forkServer) start(ctx context.Context, first []*os.File) error {
	spec := fs.spec
	if err := spec.ready.await(ctx); err != nil { // its bootstrap does not hold: it imports at once
		return err
	}
	args, err := spec.forkServerArgs(fs.nfds, first != nil)
	if err != nil {
		return err
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: fork server: creating its control socket: %v", ErrWorkerStart, err)
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "fork server control"), os.NewFile(uintptr(pair[1]), "fork server control")
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return fmt.Errorf("%w: fork server: %v", ErrWorkerStart, err)
	}
	fs.conn = fc.(*net.UnixConn)
	outR, outW, err := os.Pipe()
	if err != nil {
		osproc.CloseFiles(theirs)
		fs.conn.Close()
		return fmt.Errorf("%w: fork server: creating pipes: %v", ErrWorkerStart, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		osproc.CloseFiles(outR, outW, theirs)
		fs.conn.Close()
		return fmt.Errorf("%w: fork server: creating pipes: %v", ErrWorkerStart, err)
	}
	cmd := exec.Command(spec.python.path(), args...)
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.ExtraFiles = append([]*os.File{theirs}, first...) // fd 3: the control socket; then the first worker's
	cmd.Env, cmd.Dir = spec.env, spec.dir
	cmd.SysProcAttr = osproc.SysProcAttr(spec.credential.sysProcCredential()) // its forks run as that user too
	err = osproc.StartOnLockedThread(cmd)
	osproc.CloseFiles(outW, errW, theirs) // so that the template's exit ends the handshake's read
	if err != nil {
		osproc.CloseFiles(outR, errR)
		fs.conn.Close()
		return fmt.Errorf("%w: fork server: running %s: %v", ErrWorkerStart, cmd.Path, err)
	}
	fs.cmd, fs.pid, fs.started = cmd, cmd.Process.Pid, time.Now()
	fs.guard.own(fs.pid) // a worker forked before it left the template's group is in it
	fs.gone = make(chan struct{})
	go fs.watchExit()
	fs.output.add(outR, errR)
	go fs.forward(outR, "stdout", slog.LevelInfo)
	go fs.forward(errR, "stderr", slog.LevelWarn)
	if err := fs.handshake(ctx, spec); err != nil {
		fs.kill()
		fs.conn.Close()
		_ = fs.reaped()
		return err
	}
	fs.up.Store(true)
	go fs.watch(fs.onExit)
	return nil
}

// handshake reads the template's HELLO (readHello) and checks it
// (welcome): it has imported the module.
func (fs *forkServer) handshake(ctx context.Context, spec *workerSpec) error {
	buf := make([]byte, 64<<10)
	body, readErr, err := spec.readHello(ctx, fmt.Sprintf("the fork server %d", fs.pid), fs.conn.SetReadDeadline,
		func() ([]byte, error) {
			n, err := fs.conn.Read(buf)
			if err == nil && n == 0 {
				err = io.EOF
			}
			return buf[:n], err
		})
	switch {
	case err != nil:
		return err
	case readErr != nil:
		return fmt.Errorf("%w: the fork server %d exited before its handshake: %v", ErrWorkerStart, fs.pid, readErr)
	}
	fs.conn.SetReadDeadline(time.Time{})
	h, err := decodeHello(body)
	if err != nil {
		return fmt.Errorf("%w: fork server: %w", ErrWorkerStart, err)
	}
	if err := spec.welcome(h); err != nil {
		return err
	}
	if spec.setUp != "" && spec.preloadSetUp {
		spec.logger.Info("pypool: fork server ran the set-up", slog.Int("forkserver", fs.pid),
			slog.String("function", spec.setUp), slog.Duration("duration", h.setUp))
	}
	return nil
}

// forward logs what the template writes (what the module prints at
// import), line by line, as a worker's (a line longer than maxLogLine in
// pieces), until the template's end closes the pipe.
func (fs *forkServer) forward(f *os.File, stream string, level slog.Level) {
	defer fs.output.done()
	defer f.Close()
	r := bufio.NewReaderSize(f, 4096)
	var line []byte
	for {
		var err error
		line, err = nextLogLine(r, line)
		if err == nil || len(line) > 0 {
			fs.logger.Log(context.Background(), level, string(bytes.TrimRight(line, "\r")),
				slog.Int("forkserver", fs.pid), slog.String("stream", stream))
		}
		if err != nil {
			return
		}
	}
}

// watch reads the control socket until the template ends, then reaps it.
func (fs *forkServer) watch(onExit func(*forkServer)) {
	buf := make([]byte, 256)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := fs.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
			break
		}
		fs.message(buf[:n], oob[:oobn])
	}
	fs.kill() // it closed its end: of no use any more
	fs.conn.Close()
	fs.status = fs.reaped()
	close(fs.done)
	fs.exitsMu.Lock()
	for pid, ch := range fs.exits {
		close(ch) // their statuses will never come
		delete(fs.exits, pid)
	}
	fs.exitsMu.Unlock()
	select {
	case r := <-fs.replies: // an answer nobody took
		if r.pidfd != nil {
			r.pidfd.Close()
		}
	default:
	}
	onExit(fs)
}

// watchExit kills the template's process group as soon as it exits: a
// process its module forked at import holds the template's end of the
// control socket (and its stdout and stderr), and would keep watch's read
// from ever ending. One that left the group is cut off after
// outputDrainTimeout: the control socket is closed. The template is
// reaped (reaped) only once gone is closed, so that its pid, and its
// group's number, name it while this waits.
func (fs *forkServer) watchExit() {
	exited := osproc.AwaitExitKeepZombie(fs.pid)
	if exited {
		osproc.KillGroup(fs.pid)
	}
	close(fs.gone)
	if !exited {
		return
	}
	timer := time.NewTimer(outputDrainTimeout)
	defer timer.Stop()
	select {
	case <-fs.done:
	case <-timer.C:
		fs.conn.Close()
	}
}

// reaped reaps the killed template, its process group killed first (what
// its module started at import, which holds its stdout and stderr), then
// waits for its output to be logged: up to outputDrainTimeout, since a
// process that left the group may hold the pipes for ever.
func (fs *forkServer) reaped() exitStatus {
	<-fs.gone
	status := execProcess{cmd: fs.cmd, guard: fs.guard}.wait()
	fs.output.drained(outputDrainTimeout)
	return status
}

// message handles one message from the template.
func (fs *forkServer) message(msg, oob []byte) {
	kind, rest, _ := bytes.Cut(msg, []byte(" "))
	switch string(kind) {
	case "P":
		pid, err := strconv.Atoi(string(rest))
		pidfd := osproc.ReceivedFile(oob)
		if err != nil || pidfd == nil {
			if pidfd != nil {
				pidfd.Close()
			}
			fs.replies <- forkReply{err: fmt.Errorf("%w: fork server: bad reply %q", ErrWorkerStart, msg)}
			return
		}
		fs.exitsMu.Lock()
		fs.exits[pid] = make(chan exitStatus, 1) // before any X for it can be read
		fs.exitsMu.Unlock()
		fs.replies <- forkReply{pid: pid, pidfd: pidfd}
	case "E":
		fs.replies <- forkReply{err: fmt.Errorf("%w: fork server %d: %s", ErrWorkerStart, fs.pid, rest)}
	case "W":
		// It warmed up (forkserver.py's warm_up): its later children inherit
		// what it imported. Nothing to do; the tests of forkserver.py wait
		// for it.
	case "X":
		pidText, statusText, _ := bytes.Cut(rest, []byte(" "))
		pid, _ := strconv.Atoi(string(pidText))
		status, _ := strconv.Atoi(string(statusText))
		fs.exitsMu.Lock()
		if ch := fs.exits[pid]; ch != nil {
			ch <- waitStatus(syscall.WaitStatus(status)) // buffered: never blocks
			delete(fs.exits, pid)
		}
		fs.exitsMu.Unlock()
	}
}

// fork has the template fork a worker whose descriptors are child. It fails
// with a *forkDownError when the template is gone, or when it does not
// answer within forkTimeout: then it is killed (its answers could no longer
// be matched to requests) and restarted by the pool. ctx ending fails the
// fork the same way. Once the request was sent, such a failure first kills
// the child the template may have forked (abandon): child must then not be
// given to another process.
func (fs *forkServer) fork(ctx context.Context, child []*os.File) (osProcess, error) {
	if len(child) != fs.nfds {
		return nil, fmt.Errorf("%w: fork server: %d descriptors for a worker, want %d", ErrWorkerStart, len(child), fs.nfds)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.unstarted {
		return fs.launch(ctx, child)
	}
	if fs.failed {
		return nil, &forkDownError{}
	}
	select {
	case <-fs.done:
		return nil, &forkDownError{}
	default:
	}
	if fs.lost {
		return nil, &forkDownError{}
	}
	if err := osproc.SendFiles(fs.conn, []byte("F"), child); err != nil {
		return nil, &forkDownError{}
	}
	return fs.await(ctx, child)
}

// begin starts a template made by newForkServer without a first worker,
// unless a fork request started it already (then it waits for that start):
// the pool's first worker is then started by exec before it
// (Pool.startForkServer). settled is told how the start went.
func (fs *forkServer) begin(ctx context.Context) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !fs.unstarted {
		return
	}
	fs.unstarted = false
	err := fs.start(ctx, nil)
	fs.settle(ctx, err)
	if err != nil {
		fs.failed = true
	}
}

// settle tells settled, if set, how the start by begin or launch went:
// err, and whether the start ended because its ctx did.
func (fs *forkServer) settle(ctx context.Context, err error) {
	if fs.settled != nil {
		fs.settled(fs, err, err != nil && ctx.Err() != nil)
	}
}

// ready reports whether the template runs and forks: it started, and has
// neither exited nor been killed after a lost request. It never blocks.
func (fs *forkServer) ready() bool {
	return fs.up.Load() && !fs.exited()
}

// launch starts a template made by newForkServer, with child, the first
// worker's descriptors, and waits for the template's answer for it, with
// fs.mu held. If the template fails to start, no later request is sent to
// it, and the template, given child at its exec, may have forked that
// worker before it failed: whatever holds child is killed (as abandon
// does), and the worker is started on new descriptors (*forkDownError,
// sent).
func (fs *forkServer) launch(ctx context.Context, child []*os.File) (osProcess, error) {
	fs.unstarted = false
	err := fs.start(ctx, child)
	fs.settle(ctx, err)
	if err == nil {
		return fs.await(ctx, child)
	}
	fs.failed = true
	if n, err := osproc.KillHolders(child, orphanWait); err != nil || n > 0 {
		fs.logger.Warn(msgForkOrphanKilled, "forkserver", fs.pid, "killed", n, "error", err)
	}
	return nil, &forkDownError{sent: true}
}

// await waits for the template's answer to the request for child, sent,
// with fs.mu held.
func (fs *forkServer) await(ctx context.Context, child []*os.File) (osProcess, error) {
	timer := time.NewTimer(forkTimeout)
	defer timer.Stop()
	select {
	case <-timer.C:
		fs.logger.Warn(msgForkServerStuck, "forkserver", fs.pid, "timeout", forkTimeout)
		return nil, fs.abandon(child)
	case <-ctx.Done():
		return nil, fs.unwanted(ctx, child, timer.C)
	case r := <-fs.replies:
		if r.err != nil {
			return nil, r.err
		}
		fs.exitsMu.Lock()
		status := fs.exits[r.pid] // registered before the reply was sent
		fs.exitsMu.Unlock()
		fs.guard.own(r.pid)
		return &forkedProcess{server: fs, id: r.pid, pidfd: r.pidfd, status: status}, nil
	case <-fs.done:
		return nil, fs.abandon(child)
	}
}

// unwanted ends a fork request that was sent and is no longer wanted (its
// ctx ended: a reload stopped, or Close), with fs.mu held. The template is
// healthy: its answer is awaited (within forkTimeout of the request, as
// any), and the child it forked is killed (the template kills its group
// and reaps it); the template serves on. Should it not answer, it is
// abandoned.
func (fs *forkServer) unwanted(ctx context.Context, child []*os.File, timeout <-chan time.Time) error {
	select {
	case r := <-fs.replies:
		if r.err != nil {
			return r.err
		}
		osproc.SignalPidfd(r.pidfd, syscall.SIGKILL)
		r.pidfd.Close()
		return fmt.Errorf("%w: %w", ErrWorkerStart, ctx.Err())
	case <-timeout:
		fs.logger.Warn(msgForkServerStuck, "forkserver", fs.pid, "timeout", forkTimeout)
	case <-fs.done:
	}
	return fs.abandon(child)
}

// abandon gives up a fork request that was sent and not answered, with
// fs.mu held. The template is killed, and no later request is sent to it.
// A killed process forks no more: a child it forked already exists and is
// found by what it holds, the request's descriptors (a child holds them
// from the fork on, through the move to its own fds 0..N-1); it is killed
// with its process group, and so is any other process that holds them
// (what the child started), and abandon waits (up to orphanWait) for them
// to exit.
func (fs *forkServer) abandon(child []*os.File) error {
	fs.lost = true
	fs.up.Store(false)
	fs.kill()
	if n, err := osproc.KillHolders(child, orphanWait); err != nil || n > 0 {
		fs.logger.Warn(msgForkOrphanKilled, "forkserver", fs.pid, "killed", n, "error", err)
	}
	return &forkDownError{sent: true}
}

// stop ends the template: the end of its control socket makes it exit; it
// is killed if it has not after grace. Its children live on. stop returns
// once it was reaped. A template that was never started (newForkServer)
// or failed to start will not be started.
func (fs *forkServer) stop(grace time.Duration) {
	fs.mu.Lock()
	idle := fs.unstarted || fs.failed
	fs.unstarted, fs.failed = false, fs.failed || fs.unstarted
	fs.mu.Unlock()
	if idle {
		return
	}
	fs.stopOne.Do(func() { fs.conn.CloseWrite() })
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-fs.done:
	case <-timer.C:
		fs.kill()
		<-fs.done
	}
}

// kill ends the template at once (not its children, which have their own
// process groups).
func (fs *forkServer) kill() { _ = fs.cmd.Process.Kill() }

// forkedProcess is a worker forked by a template: not the Go process's
// child, so it is watched through its pidfd.
type forkedProcess struct {
	server *forkServer
	id     int
	pidfd  *os.File
	status chan exitStatus // the template's report; closed if it died first
}

func (f *forkedProcess) pid() int { return f.id }

func (f *forkedProcess) path() string {
	return "the fork server " + strconv.Itoa(f.server.pid) + " (" + f.server.cmd.Path + ")"
}

// signal sends sig through the pidfd: the pid may already name another
// process once the template has reaped this one.
func (f *forkedProcess) signal(sig syscall.Signal) {
	osproc.SignalPidfd(f.pidfd, sig)
}

// wait waits for the pidfd to become readable (the process exited), then
// for the template's report of its status. The template killed its
// process group before reaping it (forkserver.py); the guardian is told
// once the report came, after the reap: should the Go process die in that
// instant, the guardian could kill a group whose number was reused within
// it. A worker whose template died was reaped by someone else: its group
// can no longer be killed safely (its number may name another group by
// now), so the pool kills it before it exits whenever it can (process.stop).
func (f *forkedProcess) wait() exitStatus {
	defer f.pidfd.Close()
	defer f.server.guard.release(f.id)
	unknown := exitStatus{code: -1, signal: "unknown (its fork server had exited)"}
	late := exitStatus{code: -1, signal: "unknown (its fork server did not report it within " + forkStatusWait.String() + ")"}
	if !osproc.AwaitPidfd(f.pidfd) {
		// No poller for the pidfd: the template's report is the watch.
		if st, ok := <-f.status; ok {
			return st
		}
		return unknown
	}
	timer := time.NewTimer(forkStatusWait)
	defer timer.Stop()
	select {
	case st, ok := <-f.status:
		if ok {
			return st
		}
	case <-timer.C:
		// The template does not answer (stopped, or stuck): it has
		// neither killed the worker's group nor reaped it. Its zombie pins
		// the group's number, so the group is killed here, as the template
		// would have before the reap: should the template be killed now,
		// someone else reaps the zombie and the group is out of reach.
		killGroupOfZombie(f.id, f.server.pid)
		return late
	}
	return unknown
}

// killGroupOfZombie kills the process group of pid if pid is an exited,
// unreaped child of parent (its zombie keeps the group's number from
// naming another group).
func killGroupOfZombie(pid, parent int) {
	fields, err := osproc.StatFields(pid)
	if err != nil || len(fields) < 2 || fields[0] != "Z" || fields[1] != strconv.Itoa(parent) {
		return
	}
	osproc.KillGroup(pid)
}

// orphaned reports whether proc was forked by a template that has exited
// since: its parent-death signal no longer ties it to the Go process.
func orphaned(proc osProcess) bool {
	f, ok := proc.(*forkedProcess)
	if !ok {
		return false
	}
	select {
	case <-f.server.done:
		return true
	default:
		return false
	}
}

// forkedBy returns the template that forked proc, nil for a worker started
// by exec.
func forkedBy(proc osProcess) *forkServer {
	if f, ok := proc.(*forkedProcess); ok {
		return f.server
	}
	return nil
}

// exited reports whether the template has exited and was reaped.
func (fs *forkServer) exited() bool {
	select {
	case <-fs.done:
		return true
	default:
		return false
	}
}
