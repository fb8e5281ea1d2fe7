package pypool

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// soak makes the long-running tests run this long instead of their
// default bound: go test -run TestChaos -pypool.soak=10m
var soak = flag.Duration("pypool.soak", 0, "run TestChaos for this long instead of its default bound")

// startMethod makes the tests' pools (testConfig, newTestPool) start their
// workers this way: CI runs the key scenarios again with
// -pypool.start=forkserver.
var startMethod = flag.String("pypool.start", "exec", "start method of the tests' pools: exec or forkserver")

// testStartMethod is the start method -pypool.start names.
func testStartMethod() StartMethod {
	if *startMethod == "forkserver" {
		return StartForkServer
	}
	return StartExec
}

// TestMain runs the tests, then fails if any goroutine of this package or
// any process started by the test binary, its workers or their children is
// left behind. The test binary is a child subreaper (issue 18, finding 1):
// processes orphaned by a worker's exit become its children instead of
// init's, so that the leak check and the tests see them.
func TestMain(m *testing.M) {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "prctl(PR_SET_CHILD_SUBREAPER):", errno)
		os.Exit(1)
	}
	code := m.Run()
	removeExampleBinary()
	if code == 0 {
		if err := checkLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "leak check:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// checkLeaks reports goroutines still running pypool code and live child
// processes. Goroutines that are ending are given a moment to finish: a
// goroutine leaves the stack dump only after its last deferred call.
func checkLeaks() error {
	var leaked string
	for range 100 {
		leaked = pypoolGoroutines()
		if leaked == "" {
			break
		}
		time.Sleep(10 * time.Millisecond) // goroutines unwinding have no event to await
	}
	if leaked != "" {
		return fmt.Errorf("goroutines leaked:\n%s", leaked)
	}
	if kids := childProcesses(); len(kids) > 0 {
		return fmt.Errorf("worker processes (or their children) left behind: %v", kids)
	}
	if templates := forkServerTemplates(); len(templates) > 0 {
		return fmt.Errorf("fork server templates left behind: %v", templates)
	}
	if guards := guardians(); len(guards) > 0 {
		return fmt.Errorf("guardians left behind: %v", guards)
	}
	return nil
}

// isZombie reports whether pid has exited and awaits its reaping.
func isZombie(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] == "Z"
}

func pypoolGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pypool.(*") && !strings.Contains(g, "TestMain") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}

// childProcesses lists the live (not zombie) processes of this test binary
// but for fork server templates and guardians: its children, the workers its
// templates forked, and every live descendant of those (what the workers'
// Python code started). Orphans count too: the test binary is a subreaper,
// so they become its children. Zombies are ignored: nobody reaps orphans
// (a waitpid(-1) here would steal exit statuses from os/exec).
func childProcesses() []int {
	var kids []int
	parents := parentPids()
	for _, pid := range allPids() {
		if isZombie(pid) || isGuardian(pid) || isForkServerTemplate(pid) {
			continue
		}
		if isForkServerProcess(pid) || descendsFromUs(pid, parents) {
			kids = append(kids, pid)
		}
	}
	return kids
}

// forkServerTemplates lists the fork server templates this process runs.
func forkServerTemplates() []int {
	var found []int
	for _, pid := range allPids() {
		if isForkServerTemplate(pid) && !isZombie(pid) {
			found = append(found, pid)
		}
	}
	return found
}

// guardians lists the live guardians (guardian.go) of this process's pools.
func guardians() []int {
	var found []int
	for _, pid := range allPids() {
		if isGuardian(pid) && parentPid(pid) == os.Getpid() && !isZombie(pid) {
			found = append(found, pid)
		}
	}
	return found
}

// isGuardian reports whether pid runs a pool's guardian.
func isGuardian(pid int) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err == nil && strings.Contains(string(cmdline), "pypool_runtime/guardian.py")
}

// isForkServerTemplate reports whether pid is a template of this process (a
// child with the fork server's command line that serves: it catches SIGCHLD,
// which the workers it forks do not). An orphaned forked worker is a child
// of this process too, with the same command line.
func isForkServerTemplate(pid int) bool {
	if !isForkServerProcess(pid) || parentPid(pid) != os.Getpid() {
		return false
	}
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			bits, _ := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return bits&(1<<(uint(syscall.SIGCHLD)-1)) != 0
		}
	}
	return false
}

// parentPids maps every process to its parent.
func parentPids() map[int]int {
	parents := make(map[int]int)
	for _, pid := range allPids() {
		parents[pid] = parentPid(pid)
	}
	return parents
}

// descendsFromUs reports whether this process is an ancestor of pid.
func descendsFromUs(pid int, parents map[int]int) bool {
	me := os.Getpid()
	for range 64 { // deeper than any tree a test builds
		parent, ok := parents[pid]
		if !ok || parent <= 1 {
			return false
		}
		if parent == me {
			return true
		}
		pid = parent
	}
	return false
}

func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isForkServerProcess reports whether pid is a fork server template of this
// process or a worker one forked: a forked worker shares its template's
// command line, which names this process as the host.
func isForkServerProcess(pid int) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	host := "\x00--host-pid\x00" + strconv.Itoa(os.Getpid()) + "\x00"
	return err == nil && strings.Contains(string(cmdline), "pypool_runtime.forkserver") && strings.Contains(string(cmdline), host)
}

func parentPid(pid int) int {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// The command name is in parentheses and may contain spaces.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// testConfig is a pool of the test module with one worker.
func testConfig(t testing.TB) Config {
	return Config{
		Module:      "pypool_testmod",
		PythonPath:  []string{"testdata/pymod"},
		Size:        1,
		Logger:      testLogger(t),
		StartMethod: testStartMethod(),
	}
}

// newTestPool starts a pool and closes it when the test ends.
func newTestPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cfg.StartMethod == StartExec {
		cfg.StartMethod = testStartMethod()
	}
	pool, err := New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, pool.Close(ctx))
	})
	return pool
}

// testCtx is a context for one test step: generous, so that a hang fails the
// test instead of the whole run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// awaitPool waits until cond holds for the pool, without polling: it
// re-checks at every change of the pool's workers or waiters. It may run in
// a goroutine of the test: a timeout is reported with Errorf.
func awaitPool(t testing.TB, p *Pool, what string, cond func(Stats) bool) {
	t.Helper()
	ctx := testCtx(t)
	for {
		changed := p.awaitChange()
		if cond(p.Stats()) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Errorf("pool never reached: %s (last stats %+v)", what, p.Stats())
			return
		}
	}
}

// awaitChange returns a channel closed at the next change of the pool's
// state (see notifyLocked).
func (p *Pool) awaitChange() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watched = true
	return p.changed
}

// workerPids returns the pids of the pool's serving workers: idle, checked
// out or draining.
func workerPids(p *Pool) []int {
	var pids []int
	for _, pw := range p.serving() {
		pids = append(pids, pw.proc.pid)
	}
	return pids
}

// holdsAny reports whether any of procs is still one of p's workers, in any
// state: true until the pool has handled its exit (processExited).
func (p *Pool) holdsAny(procs []*process) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, proc := range procs {
		if p.workers[proc] != nil {
			return true
		}
	}
	return false
}

// atRest reports whether a pool is at rest with want workers: nothing
// starting, stopping, waiting or checked out, and want idle workers.
func atRest(s Stats, want int) bool {
	return s.Workers == want && s.Idle == want && s.Starting == 0 && s.Stopping == 0 && s.Waiting == 0
}

// logRecorder is a slog.Handler that keeps the records it receives.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	added   chan struct{}
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	select {
	case r.added <- struct{}{}:
	default:
	}
	return nil
}

func newLogRecorder() *logRecorder { return &logRecorder{added: make(chan struct{}, 1)} }

// await waits for a record whose message is msg and returns its attributes.
func (r *logRecorder) await(t testing.TB, msg string) map[string]string {
	t.Helper()
	ctx := testCtx(t)
	for {
		r.mu.Lock()
		for _, rec := range r.records {
			if rec.Message == msg {
				attrs := map[string]string{"level": rec.Level.String()}
				rec.Attrs(func(a slog.Attr) bool {
					attrs[a.Key] = a.Value.String()
					return true
				})
				r.mu.Unlock()
				return attrs
			}
		}
		r.mu.Unlock()
		select {
		case <-r.added:
		case <-ctx.Done():
			t.Fatalf("no log record %q", msg)
		}
	}
}

// testLogger sends the workers' output to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func slogNew(h slog.Handler) *slog.Logger { return slog.New(h) }

func itoa(n int) string { return strconv.Itoa(n) }

// watchInvariants checks the pool's invariants on a snapshot taken at every
// change of its state (changes that come faster than the checks coalesce,
// but each snapshot is a real state, taken under the pool's lock) until the
// returned function is called:
//   - no more than Size+MaxOverflow workers serve, start or stop;
//   - no caller waits while a worker is idle;
//   - the counts add up.
func watchInvariants(t testing.TB, p *Pool) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			changed := p.awaitChange()
			s := p.Stats()
			if s.Workers+s.Starting+s.Stopping > s.Size+s.MaxOverflow {
				t.Errorf("more workers than Size+MaxOverflow: %+v", s)
			}
			if s.Waiting > 0 && s.Idle > 0 {
				t.Errorf("a caller waits while a worker is idle: %+v", s)
			}
			if s.Workers != s.Idle+s.InUse || s.Overflow != max(0, s.Workers-s.Size) {
				t.Errorf("counts do not add up: %+v", s)
			}
			select {
			case <-changed:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// sharedMemoryInUse counts this process's open shared-memory files and
// their mappings (see shm.go), to show that none outlives its worker.
func sharedMemoryInUse(t *testing.T) (files, mappings int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd to count shared memory in: %v", err)
	}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if strings.HasPrefix(target, "/memfd:pypool ") {
			files++
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps to count shared memory in: %v", err)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if strings.Contains(line, "/memfd:pypool ") {
			mappings++
		}
	}
	return files, mappings
}
