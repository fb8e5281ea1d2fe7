package pypool

// Issue 18, finding 1: every process a worker's Python code makes is owned
// (DESIGN invariant 10): after the worker ends, however it ends, nothing of
// its process group is left. The host's death is tested in
// lifecycle_test.go (TestHostDeathLeavesNoWorker).

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ownedExitBound bounds the wait for a process to exit once its owner
// ended: generous for a busy 2-vCPU machine, since a leak never ends.
const ownedExitBound = 10 * time.Second

// TestOwnedChildDiesWithItsWorker starts a sleeping child from a worker's
// Python code (subprocess.Popen, or os.fork) and checks that it is gone
// once the worker ended: by a crash, by Close, by a graceful stop (a
// recycle), or by exiting by itself between calls.
func TestOwnedChildDiesWithItsWorker(t *testing.T) {
	ends := []struct {
		name string
		cfg  func(*Config)
		// end makes the worker end after fn started the child.
		end func(t *testing.T, pool *Pool)
	}{
		{"crash", nil, func(t *testing.T, pool *Pool) {
			_, err := pool.Call(testCtx(t), "crash", 3)
			var exit *WorkerExitError
			require.ErrorAs(t, err, &exit)
		}},
		{"close", nil, func(t *testing.T, pool *Pool) {
			require.NoError(t, pool.Close(testCtx(t)))
		}},
		{"recycle", func(cfg *Config) { cfg.MaxCallsPerWorker = 1 }, func(t *testing.T, pool *Pool) {
			awaitPool(t, pool, "the worker recycled", func(s Stats) bool { return s.Recycled == 1 })
		}},
		{"exit_by_itself", nil, func(t *testing.T, pool *Pool) {
			awaitPool(t, pool, "the worker's exit seen", func(s Stats) bool { return s.Crashes == 1 })
		}},
	}
	for _, how := range []string{"spawn", "fork"} {
		for _, end := range ends {
			t.Run(how+"/"+end.name, func(t *testing.T) {
				cfg := testConfig(t)
				if end.cfg != nil {
					end.cfg(&cfg)
				}
				pool := newTestPool(t, cfg)
				fn, args := how+"_sleeping_child", []any{}
				if end.name == "exit_by_itself" {
					fn, args = "sleeping_child_then_exit", []any{how, 0.1}
				}
				res, err := pool.Call(testCtx(t), fn, args...)
				require.NoError(t, err)
				child := int(res.(int64))
				exited := openPidfd(t, child)
				require.False(t, pidfdExited(exited, 0), "the child %d runs", child)
				end.end(t, pool)
				requireExited(t, map[int]*os.File{child: exited}, "the child of a worker that ended")
			})
		}
	}
}

// reapOrphan reaps pid if it is a zombie child of this process. Only for
// pids the test knows to be orphans: an os/exec child is its Cmd's to reap.
func reapOrphan(pid int) {
	if parentPid(pid) != os.Getpid() || !isZombie(pid) {
		return
	}
	var status syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &status, syscall.WNOHANG, nil)
		if !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

// TestGuardianRestartOwnsLiveWorkers kills a pool's guardian: the pool
// starts another one and hands it the live worker's group, so that the end
// of the new guardian's input (as when the Go process dies) kills the
// worker and its child (issue 18, findings 1 and 2).
func TestGuardianRestartOwnsLiveWorkers(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	res, err := pool.Call(testCtx(t), "spawn_sleeping_child")
	require.NoError(t, err)
	child := int(res.(int64))
	worker := workerPids(pool)[0]
	pidfds := map[int]*os.File{worker: openPidfd(t, worker), child: openPidfd(t, child)}

	first := runningGuardian(pool)
	require.NotNil(t, first)
	require.NoError(t, first.cmd.Process.Kill())
	rec.await(t, msgGuardianExited)
	rec.awaitCount(t, msgGuardianStarted, 2)
	second := runningGuardian(pool)
	require.NotNil(t, second)
	require.NotEqual(t, first.pid, second.pid)
	for pid, fd := range pidfds {
		require.False(t, pidfdExited(fd, 0), "process %d lives on", pid)
	}

	second.stdin.Close() // what the Go process's death does
	requireExited(t, pidfds, "the worker and its child, owned by the restarted guardian")
	// The worker's end is a crash, or, with the fork server, a recycle
	// when the supervisor saw first that its template (killed by the
	// guardian too) was gone ("its fork server exited"): either way it is
	// replaced once.
	awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
		return s.Crashes+s.StopsMaxLifetime == 1 && atRest(s, 1)
	})
}

// runningGuardian is the pool's running guardian process, nil if none.
func runningGuardian(p *Pool) *guardianProcess {
	g := p.spec.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proc
}

// awaitCount waits until n records whose message is msg were logged.
func (r *logRecorder) awaitCount(t testing.TB, msg string, n int) {
	t.Helper()
	ctx := testCtx(t)
	for {
		r.mu.Lock()
		count := 0
		for _, rec := range r.records {
			if rec.Message == msg {
				count++
			}
		}
		r.mu.Unlock()
		if count >= n {
			return
		}
		select {
		case <-r.added:
		case <-ctx.Done():
			t.Fatalf("%d log records %q, want %d", count, msg, n)
		}
	}
}
