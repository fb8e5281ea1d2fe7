//go:build linux

package pypool

// audit_fork_linux_test.go holds the hostile audit of the fork server's
// path (issue 21d): the template, Reload, the stand-in's handover, the
// processes Python code starts, and the guardian (DESIGN invariants 10, 11
// and 12 with StartForkServer; docs/forkserver.md, docs/reloading.md).

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// importChildConfig is a fork server pool of pypool_importchild, whose
// import starts a child that holds the importing process's stdout and
// stderr: in the template, the pipes the pool logs. Size 2: no stand-in,
// every worker forked.
func importChildConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_importchild"
	cfg.StartMethod = StartForkServer
	cfg.Size = 2
	cfg.Env = []string{"PYPOOL_IMPORTCHILD_SLEEP=20"}
	return cfg
}

// templateImportChild returns the pool's template and the child its
// module's import started (a forked worker reports its template's).
func templateImportChild(t *testing.T, pool *Pool) (*forkServer, int) {
	t.Helper()
	fs := pool.forks.Load()
	require.NotNil(t, fs, "the fork server runs")
	res, err := pool.Call(testCtx(t), "import_child")
	require.NoError(t, err)
	child := int(res.(int64))
	require.Equal(t, fs.pid, parentPid(child), "the import's child is the template's")
	return fs, child
}

// TestAuditForkTemplateImportChildDoesNotHoldClose: a module whose import
// starts a child (which inherits the template's stdout and stderr) must not
// keep Close from ending the template, nor outlive it (invariant 10:
// "Close ends every worker", the template's group is the pool's).
func TestAuditForkTemplateImportChildDoesNotHoldClose(t *testing.T) {
	pool, err := New(testCtx(t), importChildConfig(t))
	require.NoError(t, err)
	fs, child := templateImportChild(t, pool)
	pidfds := map[int]*os.File{fs.pid: openPidfd(t, fs.pid), child: openPidfd(t, child)}

	closed := make(chan error, 1)
	go func() { closed <- pool.Close(testCtx(t)) }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(ownedExitBound):
		_ = syscall.Kill(child, syscall.SIGKILL) // let Close end
		<-closed
		t.Fatalf("Close still ran %v after it began: the template's import child %d holds it", ownedExitBound, child)
	}
	requireExited(t, pidfds, "the template and its module's child after Close")
}

// TestAuditForkTemplateImportChildDoesNotHoldRestart: a template killed
// while its module's import child runs is restarted, and the child dies
// with the template's group ("if the template dies ... the template is
// restarted after a backoff", docs/forkserver.md).
func TestAuditForkTemplateImportChildDoesNotHoldRestart(t *testing.T) {
	pool := newTestPool(t, importChildConfig(t))
	fs, child := templateImportChild(t, pool)
	pidfds := map[int]*os.File{child: openPidfd(t, child)}
	defer func() { _ = syscall.Kill(child, syscall.SIGKILL) }()

	require.NoError(t, fs.cmd.Process.Kill())
	requireExited(t, pidfds, "the module's child of a killed template")
	ctx := testCtx(t)
	for {
		if next := pool.forks.Load(); next != nil && next != fs && next.ready() {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the fork server was not restarted")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestAuditForkTemplateDaemonDoesNotHoldClose: a child that the module's
// import started in a session of its own (as a daemon does) is out of
// the pool's reach (docs/errors.md's limits), but holds the template's
// stdout and stderr: Close must end all the same.
func TestAuditForkTemplateDaemonDoesNotHoldClose(t *testing.T) {
	cfg := importChildConfig(t)
	cfg.Env = append(cfg.Env, "PYPOOL_IMPORTCHILD_SESSION=1")
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	_, child := templateImportChild(t, pool)
	daemon := map[int]*os.File{child: openPidfd(t, child)}
	defer func() {
		_ = syscall.Kill(child, syscall.SIGKILL) // out of the pool's reach: the test's to end
		requireExited(t, daemon, "the daemon, killed by the test")
	}()

	closed := make(chan error, 1)
	go func() { closed <- pool.Close(testCtx(t)) }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(ownedExitBound):
		_ = syscall.Kill(child, syscall.SIGKILL)
		<-closed
		t.Fatalf("Close still ran %v after it began: the template's daemon %d holds it", ownedExitBound, child)
	}
}

// echoCallers runs n callers of echo (each at most a few hundred calls)
// until the returned function is called, which stops them and returns
// their call count and first error.
func echoCallers(t *testing.T, pool *Pool, n int) (stopAndCheck func() (int, error)) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	calls := 0
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				got, err := pool.Call(ctx, "echo", c*1000+i)
				cancel()
				mu.Lock()
				calls++
				if err == nil && got != int64(c*1000+i) {
					err = fmt.Errorf("echo %d answered %v", c*1000+i, got)
				}
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
				if i >= 300 { // bounded work
					<-stop
					return
				}
			}
		}()
	}
	return func() (int, error) {
		close(stop)
		wg.Wait()
		return calls, first
	}
}

// awaitNewTemplate waits until the pool's template is a ready one other
// than old.
func awaitNewTemplate(t *testing.T, pool *Pool, old *forkServer) *forkServer {
	t.Helper()
	ctx := testCtx(t)
	for {
		if fs := pool.forks.Load(); fs != nil && fs != old && fs.ready() {
			return fs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no new template ran: %+v", pool.Stats())
		case <-time.After(2 * time.Millisecond): // a template's start has no event of its own
		}
	}
}

// requireNothingLeftAfterClose closes pool and checks that none of its
// processes is left.
func requireNothingLeftAfterClose(t *testing.T, pool *Pool) {
	t.Helper()
	require.NoError(t, pool.Close(testCtx(t)))
	require.Empty(t, forkServerLeftovers(), "processes of the pool's templates left after Close")
	require.Empty(t, childProcesses(), "workers left after Close")
}

// TestAuditForkReloadWhileTemplatesDie: a Reload under busy callers while
// the reload's new template, or the old one, is SIGKILLed as soon as the
// reload swapped them: no call fails ("No call fails", docs/reloading.md;
// invariant 11: a template that dies costs no caller's answer), Reload
// returns nil with no old worker left, the pool is back at Size, and
// Close leaves nothing.
func TestAuditForkReloadWhileTemplatesDie(t *testing.T) {
	for _, victim := range []string{"new", "old"} {
		t.Run(victim, func(t *testing.T) {
			cfg := forkConfig(t)
			cfg.Size = 2
			pool, err := New(testCtx(t), cfg)
			require.NoError(t, err)
			old := awaitNewTemplate(t, pool, nil)
			check := echoCallers(t, pool, 3)
			reloaded := make(chan error, 1)
			go func() { reloaded <- pool.Reload(testCtx(t)) }()
			fresh := awaitNewTemplate(t, pool, old)
			kill := map[string]*forkServer{"new": fresh, "old": old}[victim]
			require.NoError(t, kill.cmd.Process.Kill())
			require.NoError(t, <-reloaded)
			calls, err := check()
			require.NoError(t, err, "a call failed during the reload (%d calls)", calls)
			awaitPool(t, pool, "at rest, all new", func(s Stats) bool { return atRest(s, 2) && s.OldGeneration == 0 })
			require.Zero(t, pool.Stats().Crashes)
			requireNothingLeftAfterClose(t, pool)
		})
	}
}

// TestAuditForkRecyclingWhileTheTemplateRestarts: MaxCallsPerWorker
// recycles a worker every other call while the template is SIGKILLed three
// times: no call fails, nothing crashes, and the pool ends at Size with a
// template that runs.
func TestAuditForkRecyclingWhileTheTemplateRestarts(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Size, cfg.MaxCallsPerWorker, cfg.MaxCallsJitter = 2, 2, 0
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	fs := awaitNewTemplate(t, pool, nil)
	check := echoCallers(t, pool, 3)
	for range 3 {
		require.NoError(t, fs.cmd.Process.Kill())
		fs = awaitNewTemplate(t, pool, fs)
	}
	calls, err := check()
	require.NoError(t, err, "a call failed (%d calls)", calls)
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 2) })
	require.Zero(t, pool.Stats().Crashes)
	requireNothingLeftAfterClose(t, pool)
}

// TestAuditForkResizeDuringReload: Resize down and up while a Reload waits
// for busy old workers: the Reload completes once they are checked in,
// with no old worker left and the pool at its last Size.
func TestAuditForkResizeDuringReload(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Size = 2
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	release := holdWorkers(t, pool, 2)
	reloaded := make(chan error, 1)
	go func() { reloaded <- pool.Reload(testCtx(t)) }()
	awaitPool(t, pool, "the reload rolls", func(s Stats) bool { return s.Reloading && s.Generation == 1 })
	require.NoError(t, pool.Resize(1, 0))
	require.NoError(t, pool.Resize(3, 1))
	release()
	require.NoError(t, <-reloaded)
	awaitPool(t, pool, "at rest at the new size", func(s Stats) bool { return atRest(s, 3) && s.OldGeneration == 0 })
	requireNothingLeftAfterClose(t, pool)
}

// TestAuditForkReloadDuringHandover: a Reload right as New's stand-in is
// handed over (its first check-in once the template runs) retires it and
// its successor: Reload returns nil, one worker forked by the running
// template serves, and one template is left.
func TestAuditForkReloadDuringHandover(t *testing.T) {
	pool, standIn := newStandInPool(t, testConfig(t))
	awaitTemplate(t, pool)
	_, err := pool.Call(testCtx(t), "echo", 1) // its check-in hands it over
	require.NoError(t, err)
	require.NoError(t, pool.Reload(testCtx(t)))
	awaitPool(t, pool, "at rest, all new", func(s Stats) bool { return atRest(s, 1) && s.OldGeneration == 0 })
	fs := awaitTemplate(t, pool)
	pids := workerPids(pool)
	require.Len(t, pids, 1)
	require.NotEqual(t, standIn, pids[0])
	require.Equal(t, fs.pid, parentPid(pids[0]), "the worker is the running template's")
	ctx := testCtx(t)
	for len(forkServerTemplates()) > 1 {
		select {
		case <-ctx.Done():
			t.Fatalf("templates left: %v", forkServerTemplates())
		case <-time.After(5 * time.Millisecond):
		}
	}
	require.Zero(t, pool.Stats().Crashes)
}

// pythonWithoutPidfd is an interpreter of this machine that the fork
// server cannot run on (Python 3.8: no os.pidfd_open), "" if none.
func pythonWithoutPidfd(t *testing.T) string {
	for _, python := range otherPythons(t) {
		if exec.Command(python, "-c", "import os, sys; sys.exit(hasattr(os, 'pidfd_open'))").Run() == nil {
			return python
		}
	}
	return ""
}

// TestAuditForkReloadWhereTheForkServerCannotRun: with an interpreter the
// fork server does not support, the pool starts its workers by exec
// ("elsewhere the pool logs why and starts workers by exec",
// docs/forkserver.md), and Reload replaces them as it does with
// StartExec: it must not fail for ever on the template that can never
// start ("every worker is replaced", docs/reloading.md).
func TestAuditForkReloadWhereTheForkServerCannotRun(t *testing.T) {
	python := pythonWithoutPidfd(t)
	if python == "" {
		t.Skip("no Python without os.pidfd_open (3.8) under ~/.pyenv/versions")
	}
	cfg := forkConfig(t)
	cfg.Python, cfg.Size = python, 2
	logs := newLogRecorder()
	cfg.Logger = slogNew(logs)
	pool := newTestPool(t, cfg)
	require.Contains(t, logs.await(t, msgForkServerFallback)["error"], "pidfd_open")
	before := workerPids(pool)
	require.NoError(t, pool.Reload(testCtx(t)))
	s := pool.Stats()
	require.Zero(t, s.OldGeneration)
	require.Equal(t, uint64(1), s.Generation)
	for _, pid := range workerPids(pool) {
		require.NotContains(t, before, pid, "an old worker serves on")
	}
}

// TestAuditForkReloadContextEndingWhileRolling: the ctx of a Reload ends
// once it rolls (a new worker serves, an old one is held by a
// Transaction). "The pool serves on ... old ones are still retired as they
// are checked in and replaced by new ones" (docs/reloading.md): the held
// worker's replacement must run the new code, not be forked by the old
// template (which the failed reload put back) under the new generation.
func TestAuditForkReloadContextEndingWhileRolling(t *testing.T) {
	f := newReloadFixture(t, 2, func(c *Config) { c.StartMethod = StartForkServer })
	f.write(t, "v2", "pass")
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	reloaded := make(chan error, 1)
	err := f.pool.Transaction(testCtx(t), func(w *Worker) error {
		go func() { reloaded <- f.pool.Reload(ctx) }()
		awaitPool(t, f.pool, "the reload rolls, the held worker left", func(s Stats) bool {
			return s.Generation == 1 && s.OldGeneration == 1 && s.Starting == 0 && s.Idle == 1
		})
		cancel()
		require.ErrorIs(t, <-reloaded, context.Canceled)
		awaitPool(t, f.pool, "the reload stopped", func(s Stats) bool { return !s.Reloading && s.ReloadsFailed == 1 })
		return nil
	})
	require.NoError(t, err)
	awaitPool(t, f.pool, "no old worker left", func(s Stats) bool { return atRest(s, 2) && s.OldGeneration == 0 })
	versions := workerVersions(t, f.pool, 2)
	require.Equal(t, []string{"v2", "v2"}, versions, "every worker of generation 1 runs the new code")
}

// slowSecondForkTop is reloadModule's TOP for the tests whose new
// template must be in the middle of a fork when something happens: in a
// template, its second fork is answered 3 s late, after it logs
// "audit: second fork answered late".
const slowSecondForkTop = `import sys
_fs = sys.modules.get("pypool_runtime.forkserver")
if _fs is not None:
    _open, _n = os.pidfd_open, [0]
    def _slow(pid, *flags):
        _n[0] += 1
        if _n[0] == 2:
            print("audit: second fork answered late", flush=True)
            time.sleep(3)
        return _open(pid, *flags)
    os.pidfd_open = _slow`

// TestAuditForkReloadContextEndingMidForkKeepsTheTemplate: the ctx of a
// Reload ends once it rolled, while its template is forking one of its
// workers. The reload stops (docs/reloading.md); its template, which the
// pool keeps, is healthy and must not be killed for it (invariant 9: a
// caller's deadline never kills a start, nor anything but the calls it
// touched): no fork server exit, no lost request, and the pool serves on.
func TestAuditForkReloadContextEndingMidForkKeepsTheTemplate(t *testing.T) {
	logs := newLogRecorder()
	f := newReloadFixture(t, 2, func(c *Config) {
		c.StartMethod = StartForkServer
		c.Logger = slogNew(logs)
	})
	f.writeTop(t, "v2", slowSecondForkTop, "pass")
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	reloaded := make(chan error, 1)
	go func() { reloaded <- f.pool.Reload(ctx) }()
	logs.await(t, "audit: second fork answered late")
	fs := f.pool.forks.Load()
	cancel()
	require.ErrorIs(t, <-reloaded, context.Canceled)
	awaitPool(t, f.pool, "the reload stopped, the pool at rest", func(s Stats) bool {
		return !s.Reloading && s.ReloadsFailed == 1 && atRest(s, 2)
	})
	require.Same(t, fs, f.pool.forks.Load(), "the reload's template is the pool's")
	require.False(t, fs.exited(), "the reload's template was killed")
	require.Empty(t, logs.matching(msgForkServerExited))
	require.Empty(t, logs.matching(msgForkOrphanKilled))
}

// TestAuditForkFailedReloadBeforeTheFirstTemplate: with Size 1, a Reload
// of broken code (its SetUp raises) while New's template is still
// importing the old code (slowly), and the reload's template, quicker,
// starts first. "A broken deploy never takes capacity away ... the old
// template and workers stay" (docs/reloading.md): the failed reload's
// template must not stay the pool's, or the stand-in's handover forks a
// worker of the broken code and the pool loses its only worker.
func TestAuditForkFailedReloadBeforeTheFirstTemplate(t *testing.T) {
	dir := t.TempDir()
	f := &reloadFixture{path: filepath.Join(dir, "reloadmod.py")}
	f.writeTop(t, "v1", `import sys
if "pypool_runtime.forkserver" in sys.modules:
    print("audit: the template imports v1", flush=True)
    time.sleep(1)`, "pass")
	logs := newLogRecorder()
	cfg := testConfig(t)
	cfg.Module, cfg.PythonPath, cfg.SetUp, cfg.Logger = "reloadmod", []string{dir}, "setup", slogNew(logs)
	f.pool, _ = newStandInPool(t, cfg)
	logs.await(t, "audit: the template imports v1")

	f.write(t, "v2", "raise RuntimeError('broken set-up')")
	var pyErr *PythonError
	require.ErrorAs(t, f.pool.Reload(testCtx(t)), &pyErr)
	require.Contains(t, pyErr.Traceback, "broken set-up")

	awaitTemplate(t, f.pool)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Second)
		v, err := f.pool.Call(ctx, "version")
		cancel()
		require.NoError(t, err, "call %d after the failed reload", i)
		require.Equal(t, "v1", v)
	}
	require.Equal(t, uint64(1), f.pool.Stats().StartFailures, "no start failed but the reload's")
}

// descriptorKinds counts a worker's descriptors by kind (pipe, socket,
// pidfd, memfd, a file's path).
func descriptorKinds(t *testing.T, w *Worker) map[string]int {
	t.Helper()
	out, err := w.Call(testCtx(t), "descriptors", 0)
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, target := range out.([]any)[0].(map[any]any) {
		kind := target.(string)
		if before, _, ok := strings.Cut(kind, ":["); ok {
			kind = before
		}
		if strings.HasPrefix(kind, "/memfd:") {
			kind = "memfd"
		}
		kinds[kind]++
	}
	return kinds
}

// TestAuditForkWorkerHoldsExactlyItsDescriptors (invariant 12 on the fork
// server path): a forked worker holds what a worker started by exec holds,
// plus the template's pidfd of the Go process, nothing else of the
// template's (its control socket, its wake-up pipe, its output pipes, the
// pidfds of its children, the descriptors of its other children): workers
// forked at once, one after the template warmed up, and one forked by a
// restarted template.
func TestAuditForkWorkerHoldsExactlyItsDescriptors(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module, cfg.StartMethod = "pypool_secmod", StartExec
	exec, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	var want map[string]int
	require.NoError(t, exec.Transaction(testCtx(t), func(w *Worker) error { want = descriptorKinds(t, w); return nil }))
	require.NoError(t, exec.Close(testCtx(t)))
	want["anon_inode"]++ // the pidfd of the Go process

	cfg.StartMethod, cfg.Size, cfg.MaxOverflow = StartForkServer, 2, 1
	pool := newTestPool(t, cfg)
	fs := awaitNewTemplate(t, pool, nil)
	check := func(w *Worker) {
		require.Equal(t, want, descriptorKinds(t, w), "the descriptors of worker %d", w.Pid())
	}
	// Three workers at once: the third, an overflow worker, is forked
	// after the others, once the template warmed up.
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
				<-release
				check(w)
				return nil
			}))
		}()
	}
	awaitPool(t, pool, "three checked out", func(s Stats) bool { return s.InUse == 3 })
	close(release)
	wg.Wait()
	require.NoError(t, fs.cmd.Process.Kill())
	awaitNewTemplate(t, pool, fs)
	awaitPool(t, pool, "the orphans replaced", func(s Stats) bool { return atRest(s, 2) && s.Recycled >= 2 })
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error { check(w); return nil }))
}

// TestAuditForkTemplateKilledDuringNew: with Size 2, New's first worker's
// start starts the template with that worker's pipes; the template is
// SIGKILLed at a random moment of New (before, during or after its import
// and its first forks). New must succeed all the same, its workers
// started by exec where the template could not fork them ("the caller it
// was for sees no error", docs/forkserver.md), with no two processes on
// one worker's pipes, and Close must leave nothing.
func TestAuditForkTemplateKilledDuringNew(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for round := range 6 {
		cfg := forkConfig(t)
		cfg.Size = 2
		delay := time.Duration(rng.Int64N(int64(150 * time.Millisecond)))
		killed := make(chan int, 1)
		stop := make(chan struct{})
		go func() { // kill the first template that appears, delay after it does
			defer close(killed)
			for {
				for _, pid := range allPids() {
					if isForkServerProcess(pid) && parentPid(pid) == os.Getpid() {
						time.Sleep(delay) // the fault's random moment, not a synchronisation
						_ = syscall.Kill(pid, syscall.SIGKILL)
						killed <- pid
						return
					}
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		pool, err := New(testCtx(t), cfg)
		close(stop)
		pid := <-killed
		require.NoError(t, err, "round %d: template %d killed %v after it appeared", round, pid, delay)
		for i := range 4 {
			_, err := pool.Call(testCtx(t), "echo", i)
			require.NoError(t, err, "round %d", round)
		}
		awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 2) })
		requireNothingLeftAfterClose(t, pool)
	}
}

// TestAuditForkChildOfAWorkerThatCrashedWhileItsTemplateWasStopped: a
// forked worker with a child of its own crashes while its template is
// stopped (SIGSTOP: it can neither kill the worker's group nor reap it);
// the pool then gives up on the stopped template (its next fork request
// goes unanswered) and kills it. "When a worker ends, however it ends
// (crash ...), nothing of its process group is left, on every start
// method" (invariant 10): the child must not outlive it.
func TestAuditForkChildOfAWorkerThatCrashedWhileItsTemplateWasStopped(t *testing.T) {
	saved := forkTimeout
	forkTimeout = 300 * time.Millisecond // the stopped template is given up on soon
	t.Cleanup(func() { forkTimeout = saved })
	pool := newTestPool(t, forkConfig(t))
	fs := awaitNewTemplate(t, pool, nil)
	res, err := pool.Call(testCtx(t), "spawn_sleeping_child")
	require.NoError(t, err)
	child := int(res.(int64))
	worker := workerPids(pool)[0]
	require.Equal(t, fs.pid, parentPid(worker))
	pidfds := map[int]*os.File{child: openPidfd(t, child)}

	require.NoError(t, syscall.Kill(fs.pid, syscall.SIGSTOP))
	defer func() { _ = syscall.Kill(fs.pid, syscall.SIGCONT) }()
	require.NoError(t, syscall.Kill(worker, syscall.SIGKILL))
	awaitPool(t, pool, "the crash seen, the pool back at Size", func(s Stats) bool { return s.Crashes == 1 && atRest(s, 1) })
	requireExited(t, pidfds, "the child of a worker that crashed while its template was stopped")
}

// TestAuditForkTemplateForkedChildDoesNotHoldItsEnd: a module whose import
// forks a child without exec (multiprocessing's fork method does): the
// child holds every descriptor of the template, its control socket
// included. Close must end the template all the same, and a SIGKILLed
// template must be seen and restarted, its child gone with its group.
func TestAuditForkTemplateForkedChildDoesNotHoldItsEnd(t *testing.T) {
	for _, end := range []string{"close", "kill"} {
		t.Run(end, func(t *testing.T) {
			cfg := importChildConfig(t)
			cfg.Env = append(cfg.Env, "PYPOOL_IMPORTCHILD_FORK=1")
			pool, err := New(testCtx(t), cfg)
			require.NoError(t, err)
			fs := pool.forks.Load()
			require.NotNil(t, fs)
			res, err := pool.Call(testCtx(t), "forked_child")
			require.NoError(t, err)
			child := int(res.(int64))
			require.Equal(t, fs.pid, parentPid(child))
			pidfds := map[int]*os.File{child: openPidfd(t, child)}
			defer func() { _ = syscall.Kill(child, syscall.SIGKILL) }()
			if end == "kill" {
				require.NoError(t, fs.cmd.Process.Kill())
				requireExited(t, pidfds, "the forked child of a killed template")
				awaitNewTemplate(t, pool, fs)
			}
			closed := make(chan error, 1)
			go func() { closed <- pool.Close(testCtx(t)) }()
			select {
			case err := <-closed:
				require.NoError(t, err)
			case <-time.After(ownedExitBound):
				_ = syscall.Kill(child, syscall.SIGKILL)
				<-closed
				t.Fatalf("Close still ran %v after it began: the template's forked child %d holds it", ownedExitBound, child)
			}
			requireExited(t, pidfds, "the forked child of the template after Close")
		})
	}
}

// TestAuditForkReloadWhileTheTemplateRestarts: the template dies and its
// restart is importing the old code (slowly) when the files change and
// Reload starts its own template of the new code. "When Reload returns
// nil, every worker runs the new code" (docs/reloading.md): the restarted
// template, older, must not replace the reload's and fork its workers.
func TestAuditForkReloadWhileTheTemplateRestarts(t *testing.T) {
	logs := newLogRecorder()
	f := newReloadFixture(t, 2, func(c *Config) {
		c.StartMethod = StartForkServer
		c.Logger = slogNew(logs)
	})
	f.writeTop(t, "v1", `import sys
if "pypool_runtime.forkserver" in sys.modules:
    print("audit: a template imports v1", flush=True)
    time.sleep(1)`, "pass")
	fs := awaitNewTemplate(t, f.pool, nil)
	release := holdWorkers(t, f.pool, 1) // an old worker, retired once the restarted template runs
	require.NoError(t, fs.cmd.Process.Kill())
	logs.await(t, "audit: a template imports v1") // the restart imports v1

	f.write(t, "v2", "pass")
	reloaded := make(chan error, 1)
	go func() { reloaded <- f.pool.Reload(testCtx(t)) }()
	logs.awaitCount(t, msgForkServerStarted, 3) // New's, the reload's, the restarted one
	release()
	require.NoError(t, <-reloaded)
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 2) && s.OldGeneration == 0 })
	versions := workerVersions(t, f.pool, 2)
	require.Equal(t, []string{"v2", "v2"}, versions, "every worker runs the new code once Reload returned nil")
}

// workerVersions is the version each of a pool's n workers answers with
// (reloadModule's version()): n Transactions hold every worker at once.
func workerVersions(t *testing.T, pool *Pool, n int) []string {
	t.Helper()
	var versions []string
	var mu sync.Mutex
	var wg, held sync.WaitGroup
	all := make(chan struct{})
	held.Add(n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
				held.Done()
				<-all
				v, err := w.Call(testCtx(t), "version")
				mu.Lock()
				versions = append(versions, fmt.Sprint(v))
				mu.Unlock()
				return err
			}))
		}()
	}
	held.Wait()
	close(all)
	wg.Wait()
	return versions
}

// TestAuditForkTemplateKilledBeforeItsChildLeftItsGroup: the template
// forks New's first worker, answers for it, and is SIGKILLed before the
// child has taken a process group of its own (pypool_slowchild delays
// the child). The child's start must not fail for it ("a fault costs at
// most the calls it touched", invariant 11): the pool's kill of the dead
// template's group must not take the child with it, and New succeeds.
// Found by TestAuditForkTemplateKilledDuringNew (1 round in about 30).
func TestAuditForkTemplateKilledBeforeItsChildLeftItsGroup(t *testing.T) {
	cfg := forkConfig(t)
	cfg.Size, cfg.Preload = 2, []string{"pypool_slowchild"}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // kill the template as soon as it has a child
		for {
			for _, pid := range allPids() {
				if template := parentPid(pid); isForkServerProcess(pid) && template != os.Getpid() {
					time.Sleep(200 * time.Millisecond) // its answer sent; the child waits 1 s
					_ = syscall.Kill(template, syscall.SIGKILL)
					return
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	for i := range 3 {
		_, err := pool.Call(testCtx(t), "echo", i)
		require.NoError(t, err)
	}
	requireNothingLeftAfterClose(t, pool)
}
