package pypool

// guardian.go is the Go side of a pool's guardian (guardian.sh, run by
// /bin/sh): a small shell process, one per pool, that owns the process groups of the pool's workers and of its fork
// server's template, and SIGKILLs them all when the Go process is gone. It
// covers what a worker's own parent-death signal cannot: a worker's
// children (its process group), and a forked worker whose parent is its
// template and whose Python-level handler cannot run while it is in C
// code. It needs nothing from a worker, so a worker busy in C code dies.
//
// The host tells it each group: "+PGID" once a worker (or template) was
// started, "-PGID" once it exited and its group was killed (before it is
// reaped, so that the number cannot name another group meanwhile). The end
// of its stdin, whose write end only the Go process holds, ends it: when
// the Go process dies, or when Close has ended every worker. It has no
// parent-death signal, so it outlives the Go process for as long as it
// takes to read that end and kill. The pool's supervisor (supervise.go)
// starts it in New, restarts it when it dies, and stops it last in Close.

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pypool/pypool/internal/osproc"
)

// guardianSource is the guardian's script, comments included.
//
//go:embed guardian.sh
var guardianSource string

// guardianScript is guardianSource without its comment lines: what the
// shell runs (-c), and what ps shows of it.
var guardianScript = stripShellComments(guardianSource)

// guardianShell runs the guardian: POSIX requires a sh, and /bin/sh is where
// every Unix has it (dash on Debian, bash elsewhere, busybox ash). Without
// it New fails, saying so: there is no fallback to a python3 guardian, a
// second implementation to keep and test for a system that lacks what
// system(3) itself runs.
const guardianShell = "/bin/sh"

// guardianName is the guardian's $0: how ps and the tests tell it.
const guardianName = "pypool-guardian"

// guardianEnv is the guardian's whole environment: nothing of the host's
// (no ENV, BASH_ENV, exported shell functions or IFS), only what a POSIX
// shell's built-ins need. So bash as sh needs no -p, and dash ignores ENV
// anyway when not interactive.
var guardianEnv = []string{"PATH=/bin:/usr/bin", "LC_ALL=C"}

// guardianWriteTimeout bounds a write to the guardian: one that does not
// read its input is of no use and is killed (and restarted).
const guardianWriteTimeout = time.Second

// guardianForking, when set (by tests, while no pool starts), runs before
// each guardian's fork: a slow one shows what waits for it.
var guardianForking func()

// guardian is a pool's guardian: the groups it must own and the process
// that owns them now. Its methods are safe for concurrent use, and a nil
// *guardian (a spec built without a pool, in tests) does nothing.
type guardian struct {
	shell  string // guardianShell; another in tests
	logger *slog.Logger

	mu     sync.Mutex
	groups map[int]struct{} // the process groups to kill if the Go process dies
	proc   *guardianProcess // the running guardian; nil while none runs
	closed bool             // stop was called: no guardian starts any more
	lines  bytes.Buffer     // scratch for writes
}

// guardianProcess is one running guardian.
type guardianProcess struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	stdin   *os.File      // the write end of its input; only this process holds it
	done    chan struct{} // closed once it was reaped
	status  exitStatus    // how it ended; set before done is closed
}

// newGuardian returns the guardian of a pool that logs to logger; it
// starts no process (start does).
func newGuardian(logger *slog.Logger) *guardian {
	return &guardian{
		shell:  guardianShell,
		logger: logger,
		groups: make(map[int]struct{}),
	}
}

// stripShellComments returns script without its comment lines (a line
// whose first non-blank character is #) and blank lines.
func stripShellComments(script string) string {
	var b strings.Builder
	for _, line := range strings.Split(script, "\n") {
		if trimmed := strings.TrimSpace(line); trimmed != "" && !strings.HasPrefix(trimmed, "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// start starts a guardian process and hands it every group owned so far.
// onExit is called once, from its watcher, after it exited.
func (g *guardian) start(onExit func(*guardianProcess)) error {
	if g == nil {
		return nil
	}
	inR, inW, err := os.Pipe() // both ends close-on-exec: no other child inherits the write end
	if err != nil {
		return fmt.Errorf("pypool: starting the pool's guardian: creating pipes: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		osproc.CloseFiles(inR, inW)
		return fmt.Errorf("pypool: starting the pool's guardian: creating pipes: %w", err)
	}
	// A shell, not an interpreter: it starts beside the first worker, on
	// the CPU that worker needs. Its environment is its own, its directory
	// / (it holds none of the host's busy).
	//
	// Descriptors: Go passes only stdin, stdout (none: /dev/null) and
	// stderr, but a descriptor the host opened without close-on-exec (C
	// code, or one a wrapper script passed) reaches every child. The
	// python3 guardian closed them all (/proc/self/fd), so that it never
	// held, say, the write end of another pipe whose reader waits for its
	// end. The script closes 3 to 9; dash cannot name 10 and above, so one
	// leaked there is held until the guardian exits (Close, or the host's
	// death). It runs no code but its own, as the host's user: it holds such
	// a descriptor, it never uses one. The workers close them all
	// (close_inherited_fds in startup.py).
	cmd := exec.Command(g.shell, "-c", guardianScript, guardianName)
	cmd.Stdin, cmd.Stderr = inR, errW
	cmd.Env, cmd.Dir = guardianEnv, "/"
	// Its own group, so that a terminal's Ctrl-C does not reach it; no
	// parent-death signal: it must outlive the Go process to do its job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if guardianForking != nil {
		guardianForking()
	}
	err = cmd.Start()
	osproc.CloseFiles(inR, errW)
	if err != nil {
		osproc.CloseFiles(inW, errR)
		return fmt.Errorf("pypool: starting the pool's guardian: running %s (a POSIX shell, which the guardian needs): %w", g.shell, err)
	}
	gp := &guardianProcess{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), stdin: inW, done: make(chan struct{})}
	go gp.watch(errR, g.logger, onExit)

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		gp.end(0)
		return fmt.Errorf("pypool: starting the pool's guardian: %w", ErrPoolClosed)
	}
	g.proc = gp
	g.logger.Debug(msgGuardianStarted, "guardian", gp.pid)
	g.lines.Reset()
	for pgid := range g.groups {
		fmt.Fprintf(&g.lines, "+%d\n", pgid)
	}
	g.flushLocked()
	return nil
}

// own adds the process group pgid to those the guardian kills if the Go
// process dies.
func (g *guardian) own(pgid int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.groups[pgid] = struct{}{}
	g.lines.Reset()
	fmt.Fprintf(&g.lines, "+%d\n", pgid)
	g.flushLocked()
}

// release removes pgid from the guardian's groups: its leader exited and
// the group was killed (or can no longer be killed safely). It must be
// called before the leader is reaped.
func (g *guardian) release(pgid int) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.groups, pgid)
	g.lines.Reset()
	fmt.Fprintf(&g.lines, "-%d\n", pgid)
	g.flushLocked()
}

// flushLocked writes g.lines to the running guardian. A guardian that does
// not take them within guardianWriteTimeout is killed: its restart hands
// the new one every group.
func (g *guardian) flushLocked() {
	if g.proc == nil {
		return // none runs: the next one is handed every group
	}
	g.proc.stdin.SetWriteDeadline(time.Now().Add(guardianWriteTimeout))
	if _, err := g.proc.stdin.Write(g.lines.Bytes()); err != nil && !g.proc.hasExited() {
		g.logger.Warn(msgGuardianStuck, "guardian", g.proc.pid, "error", err)
		_ = g.proc.cmd.Process.Kill()
	}
}

// forget reports whether gp was the running guardian, and forgets it;
// false when stop or a newer start replaced it.
func (g *guardian) forget(gp *guardianProcess) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.proc != gp {
		return false
	}
	g.proc = nil
	gp.stdin.Close()
	return true
}

// stop ends the guardian for good: the end of its input makes it kill the
// groups it still owns and exit; it is killed if it has not exited after
// grace. When it owns none (every worker was reaped), there is nothing to
// wait for: it is killed at once. stop returns once it was reaped.
func (g *guardian) stop(grace time.Duration) {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.closed = true
	gp := g.proc
	g.proc = nil
	if len(g.groups) == 0 {
		grace = 0
	}
	g.mu.Unlock()
	if gp != nil {
		gp.end(grace)
	}
}

// end closes gp's input and waits for it to exit, killing it after grace.
func (gp *guardianProcess) end(grace time.Duration) {
	gp.stdin.Close()
	if grace <= 0 {
		_ = gp.cmd.Process.Kill()
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-gp.done:
	case <-timer.C:
		_ = gp.cmd.Process.Kill()
		<-gp.done
	}
}

// watch logs what the guardian writes on stderr until it exits, reaps it
// and calls onExit.
func (gp *guardianProcess) watch(stderr *os.File, logger *slog.Logger, onExit func(*guardianProcess)) {
	s := bufio.NewScanner(stderr)
	s.Buffer(make([]byte, 4096), maxLogLine)
	for s.Scan() {
		logger.Log(context.Background(), slog.LevelWarn, string(bytes.TrimRight(s.Bytes(), "\r")),
			slog.Int("guardian", gp.pid), slog.String("stream", "stderr"))
	}
	stderr.Close()
	gp.status = execProcess{cmd: gp.cmd}.wait()
	close(gp.done)
	onExit(gp)
}

// hasExited reports whether gp has been reaped.
func (gp *guardianProcess) hasExited() bool {
	select {
	case <-gp.done:
		return true
	default:
		return false
	}
}
