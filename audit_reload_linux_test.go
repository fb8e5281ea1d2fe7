package pypool

// audit_reload_linux_test.go attacks Pool.Reload (reload.go,
// docs/reloading.md) with hostile new code (a hang, an exit, a self-stop,
// megabytes of output at import, a removed function), streams and
// Transactions held across a reload, a pool saturated with waiters, the
// reload's context ending at each of its steps, a new worker killed, and
// checks that every call form runs the new code once Reload returned. Run
// with both start methods (-pypool.start=forkserver).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// auditReloadTop is the module's extra code in these tests: a generator
// for streams and an async function for AsyncCalls.
const auditReloadTop = `import asyncio
def gen(n):
    for _ in range(n):
        yield VERSION
async def aversion():
    await asyncio.sleep(0)
    return VERSION`

// pidFileTop is a module line that writes the importing process's pid to
// path (one line per import), then runs then.
func pidFileTop(path, then string) string {
	return "with open(" + strconv.Quote(path) + ", 'a') as _f: _f.write(str(os.getpid()) + '\\n')\n" + then
}

// importedPids reads the pids pidFileTop wrote.
func importedPids(t *testing.T, path string) []int {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var pids []int
	for _, line := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(line)
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	return pids
}

// TestAuditReloadOfHostileImports: new code that hangs at import beyond
// StartTimeout, stops itself (SIGSTOP), or exits: Reload returns a start
// error (ErrWorkerStart), the old workers serve on, the generation stays,
// and no process of the new code is left.
func TestAuditReloadOfHostileImports(t *testing.T) {
	for _, tc := range []struct{ name, then string }{
		{"hang", "time.sleep(600)"},
		{"sigstop", "import signal; os.kill(os.getpid(), signal.SIGSTOP)"},
		{"exit", "os._exit(3)"},
		{"killpg", "import signal; os.killpg(0, signal.SIGKILL)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newReloadFixture(t, 2, func(c *Config) { c.StartTimeout = 2 * time.Second })
			pids := filepath.Join(t.TempDir(), "pids")
			f.writeTop(t, "v2", pidFileTop(pids, tc.then), "pass")
			err := f.pool.Reload(testCtx(t))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrWorkerStart)
			if tc.name == "hang" || tc.name == "sigstop" {
				// A start that hangs past StartTimeout wraps
				// context.DeadlineExceeded (docs/errors.md), as the
				// Reload's own ctx ending does: ErrWorkerStart tells them
				// apart (docs/reloading.md).
				assert.Contains(t, err.Error(), "Config.StartTimeout")
			}
			assert.Equal(t, "v1", f.version(t))
			s := f.pool.Stats()
			assert.Zero(t, s.Generation)
			assert.Zero(t, s.OldGeneration)
			assert.Equal(t, uint64(1), s.ReloadsFailed)
			assert.Zero(t, s.StopsReload)
			for _, pid := range importedPids(t, pids) {
				assert.True(t, pidfdExited(openPidfd(t, pid), 10*time.Second), "process %d of the new code left", pid)
			}
			f.reloadTo(t, "v3")
		})
	}
}

// TestAuditReloadOfLoudImport: new code that writes megabytes to stdout
// and stderr at import reloads.
func TestAuditReloadOfLoudImport(t *testing.T) {
	f := newReloadFixture(t, 2, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil)) })
	f.writeTop(t, "v2", "import sys\nsys.stdout.write('x' * (4 << 20)); sys.stdout.flush()\nsys.stderr.write('y' * (4 << 20)); sys.stderr.flush()", "print('z' * (1 << 20))")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	assert.Equal(t, "v2", f.version(t))
}

// TestAuditReloadOfIdenticalCodeTwice: two reloads of unchanged code each
// replace every worker once.
func TestAuditReloadOfIdenticalCodeTwice(t *testing.T) {
	f := newReloadFixture(t, 2, nil)
	for want := uint64(1); want <= 2; want++ {
		require.NoError(t, f.pool.Reload(testCtx(t)))
		awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 2) })
		s := f.pool.Stats()
		assert.Equal(t, want, s.Generation)
		assert.Equal(t, 2*want, s.StartsReload)
		assert.Equal(t, 2*want, s.StopsReload)
		assert.Equal(t, want, s.ReloadsDone)
	}
}

// TestAuditReloadRemovesAFunctionMidCall: a call in flight to a function
// the new code no longer has ends on the old code; after Reload, the
// function is unknown and Functions lists the new code's.
func TestAuditReloadRemovesAFunctionMidCall(t *testing.T) {
	f := newReloadFixture(t, 1, nil)
	f.writeTop(t, "v1", "def gone(ms):\n    time.sleep(ms / 1000)\n    return VERSION", "pass")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	inFlight := make(chan any, 1)
	go func() {
		got, err := f.pool.Call(testCtx(t), "gone", 500)
		assert.NoError(t, err)
		inFlight <- got
	}()
	awaitPool(t, f.pool, "the call in flight", func(s Stats) bool { return s.InUse == 1 })
	f.write(t, "v2", "pass")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	assert.Equal(t, "v1", <-inFlight)
	_, err := f.pool.Call(testCtx(t), "gone", 0)
	require.Error(t, err)
	fns, err := f.pool.Functions(testCtx(t))
	require.NoError(t, err)
	for _, fn := range fns {
		assert.NotEqual(t, "gone", fn.Name)
	}
}

// TestAuditReloadWaitsForAnOpenStream: a Stream holds its old worker
// until it ends, consumed to its end or abandoned; Reload returns after
// it, and the next stream is the new code's.
func TestAuditReloadWaitsForAnOpenStream(t *testing.T) {
	for _, tc := range []struct {
		abandon bool
		async   int
	}{{false, 0}, {true, 0}, {false, 4}, {true, 4}} {
		abandon := tc.abandon
		t.Run(fmt.Sprintf("abandon=%v,async=%d", abandon, tc.async), func(t *testing.T) {
			f := newReloadFixture(t, 1, func(c *Config) { c.AsyncCalls = tc.async })
			f.writeTop(t, "v1", auditReloadTop, "pass")
			require.NoError(t, f.pool.Reload(testCtx(t)))
			f.writeTop(t, "v2", auditReloadTop, "pass")
			reloaded := make(chan error, 1)
			n := 0
			for v, err := range f.pool.Stream(testCtx(t), "gen", 5) {
				require.NoError(t, err)
				assert.Equal(t, "v1", v)
				if n++; n == 1 {
					go func() { reloaded <- f.pool.Reload(testCtx(t)) }()
					awaitPool(t, f.pool, "a new worker beside the stream's", func(s Stats) bool {
						return s.Generation == 2 && s.OldGeneration == 1 && s.Idle == 1
					})
					assert.Equal(t, "v2", f.version(t))
					if abandon {
						break
					}
				}
			}
			require.NoError(t, <-reloaded)
			for v, err := range f.pool.Stream(testCtx(t), "gen", 2) {
				require.NoError(t, err)
				assert.Equal(t, "v2", v)
			}
			awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 1) && s.OldGeneration == 0 })
		})
	}
}

// TestAuditReloadOfASaturatedPool: callers beyond Size+MaxOverflow wait
// all the time; the reload still completes, within its surge, and no call
// fails.
func TestAuditReloadOfASaturatedPool(t *testing.T) {
	f := newReloadFixture(t, 2, func(c *Config) { c.MaxOverflow = 1 })
	unwatch := watchSurge(t, f.pool)
	stop := busyCallers(t, f.pool, 10, 10, 30*time.Second)
	awaitPool(t, f.pool, "callers waiting", func(s Stats) bool { return s.Waiting > 0 && s.Workers == 3 })
	f.write(t, "v2", "pass")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := f.pool.Reload(ctx)
	outcomes := stop()
	unwatch()
	require.NoError(t, err)
	for _, o := range outcomes {
		assert.NoError(t, o.err)
	}
	assert.Equal(t, "v2", f.version(t))
	awaitPool(t, f.pool, "back at Size", func(s Stats) bool { return atRest(s, 2) })
}

// TestAuditReloadContextEndingAtEachStep: the reload's context ends as its
// first new worker is proven, or after its first old worker was retired:
// Reload returns the context's error, the pool serves on with no caller
// failing, and the next Reload completes the replacement.
func TestAuditReloadContextEndingAtEachStep(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   func(Stats) bool
	}{
		{"proven", func(s Stats) bool { return s.Generation == 1 }},
		{"retired", func(s Stats) bool { return s.StopsReload >= 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newReloadFixture(t, 3, nil)
			stop := busyCallers(t, f.pool, 4, 5, 20*time.Second)
			f.write(t, "v2", "time.sleep(0.2)")
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				defer cancel()
				awaitPool(t, f.pool, tc.name, tc.at)
			}()
			err := f.pool.Reload(ctx)
			if err == nil {
				t.Logf("the reload ended before its context")
			} else {
				assert.ErrorIs(t, err, context.Canceled)
			}
			awaitPool(t, f.pool, "the reload ended", func(s Stats) bool { return !s.Reloading })
			for _, o := range stop() {
				assert.NoError(t, o.err)
			}
			f.reloadTo(t, "v3")
			awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 3) && s.OldGeneration == 0 })
			for _, v := range []string{"v1", "v2"} {
				assert.NotEqual(t, v, f.version(t))
			}
		})
	}
}

// TestAuditReloadNewWorkerKilled: the reload's first new worker, proven
// and idle while the old ones are busy, is killed: the reload still
// completes, and no call fails but for none (the victim served none).
func TestAuditReloadNewWorkerKilled(t *testing.T) {
	f := newReloadFixture(t, 2, nil)
	release := holdWorkers(t, f.pool, 2)
	f.write(t, "v2", "pass")
	reloaded := make(chan error, 1)
	go func() { reloaded <- f.pool.Reload(testCtx(t)) }()
	awaitPool(t, f.pool, "a new worker idle", func(s Stats) bool { return s.Generation == 1 && s.Idle == 1 })
	f.pool.mu.Lock()
	var victim int
	for _, pw := range f.pool.workers {
		if pw.gen == 1 {
			victim = pw.proc.pid
		}
	}
	f.pool.mu.Unlock()
	require.NotZero(t, victim)
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
	awaitPool(t, f.pool, "the victim replaced", func(s Stats) bool { return s.Crashes == 1 && s.Idle == 1 })
	release()
	require.NoError(t, <-reloaded)
	assert.Equal(t, "v2", f.version(t))
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 2) && s.OldGeneration == 0 })
}

// TestAuditReloadEveryCallFormRunsTheNewCode: once Reload returned nil,
// Call, TryCall, Stream, Transaction (Call and Stream) and an async call
// all answer with the new code, with and without AsyncCalls.
func TestAuditReloadEveryCallFormRunsTheNewCode(t *testing.T) {
	for _, async := range []int{0, 4} {
		t.Run("async="+strconv.Itoa(async), func(t *testing.T) {
			f := newReloadFixture(t, 2, func(c *Config) { c.AsyncCalls = async; c.MaxOverflow = 1 })
			f.writeTop(t, "v1", auditReloadTop, "pass")
			require.NoError(t, f.pool.Reload(testCtx(t)))
			stop := busyCallers(t, f.pool, 6, 5, 20*time.Second)
			f.writeTop(t, "v2", auditReloadTop, "pass")
			require.NoError(t, f.pool.Reload(testCtx(t)))
			defer stop()
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := testCtx(t)
					got, err := f.pool.Call(ctx, "version")
					assert.NoError(t, err)
					assert.Equal(t, "v2", got, "Call")
					got, err = f.pool.Call(ctx, "aversion")
					assert.NoError(t, err)
					assert.Equal(t, "v2", got, "async function")
					if got, err := f.pool.TryCall(ctx, "version"); !errors.Is(err, ErrPoolExhausted) {
						assert.NoError(t, err)
						assert.Equal(t, "v2", got, "TryCall")
					}
					for v, err := range f.pool.Stream(ctx, "gen", 2) {
						assert.NoError(t, err)
						assert.Equal(t, "v2", v, "Stream")
					}
					assert.NoError(t, f.pool.Transaction(ctx, func(w *Worker) error {
						got, err := w.Call(ctx, "version")
						assert.NoError(t, err)
						assert.Equal(t, "v2", got, "Transaction's Call")
						for v, err := range w.Stream(ctx, "gen", 2) {
							assert.NoError(t, err)
							assert.Equal(t, "v2", v, "Transaction's Stream")
						}
						return nil
					}))
				}()
			}
			wg.Wait()
		})
	}
}

// TestAuditReloadDuringResize: a Resize up and one down while a reload
// rolls under load: the reload completes, no call fails, and the pool
// ends at the new Size, all of the new code.
func TestAuditReloadDuringResize(t *testing.T) {
	f := newReloadFixture(t, 2, nil)
	stop := busyCallers(t, f.pool, 6, 5, 20*time.Second)
	f.write(t, "v2", "time.sleep(0.1)")
	reloaded := make(chan error, 1)
	go func() { reloaded <- f.pool.Reload(testCtx(t)) }()
	awaitPool(t, f.pool, "rolling", func(s Stats) bool { return s.Generation == 1 })
	require.NoError(t, f.pool.Resize(4, 0))
	awaitPool(t, f.pool, "a retirement", func(s Stats) bool { return s.StopsReload >= 1 })
	require.NoError(t, f.pool.Resize(1, 0))
	require.NoError(t, <-reloaded)
	for _, o := range stop() {
		assert.NoError(t, o.err)
	}
	assert.Equal(t, "v2", f.version(t))
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 1) && s.OldGeneration == 0 })
}

// TestAuditReloadAndCloseWhileRolling: Close while a reload rolls under
// load: Reload returns ErrPoolClosed, and no worker is left.
func TestAuditReloadAndCloseWhileRolling(t *testing.T) {
	cfg := testConfig(t)
	dir := t.TempDir()
	f := &reloadFixture{path: filepath.Join(dir, "reloadmod.py")}
	f.write(t, "v1", "pass")
	cfg.Module, cfg.PythonPath, cfg.SetUp, cfg.Size = "reloadmod", []string{dir}, "setup", 3
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	f.pool = pool
	stop := busyCallers(t, pool, 6, 5, 20*time.Second)
	f.write(t, "v2", "time.sleep(0.2)")
	reloaded := make(chan error, 1)
	go func() { reloaded <- pool.Reload(testCtx(t)) }()
	awaitPool(t, pool, "a retirement", func(s Stats) bool { return s.StopsReload >= 1 })
	pids := workerPids(pool)
	require.NoError(t, pool.Close(testCtx(t)))
	if err := <-reloaded; err != nil { // nil: it ended before Close
		assert.ErrorIs(t, err, ErrPoolClosed)
	}
	for _, o := range stop() {
		if o.err != nil {
			assert.ErrorIs(t, o.err, ErrPoolClosed)
		}
	}
	assertGone(t, pids)
	for _, pid := range descendantsOf(os.Getpid()) {
		cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		stat, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if fields := strings.Fields(string(stat)); len(fields) > 2 && fields[2] == "Z" {
			// Exited: a template's fork, reparented to this test binary
			// (a child subreaper, TestMain) when its template exited.
			continue
		}
		t.Errorf("process %d left after Close: %q %s", pid, cmd, stat)
	}
}

// TestAuditReloadJoinerOutlivesTheStartersContext: a Reload that joined a
// running one whose starter's ctx then ends does not return that other
// ctx's error while its own ctx is live: it carries the replacement
// through, and returns nil once every worker runs the new code.
func TestAuditReloadJoinerOutlivesTheStartersContext(t *testing.T) {
	f := newReloadFixture(t, 2, nil)
	f.write(t, "v2", "time.sleep(0.5)")
	starter, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan error, 1)
	go func() { started <- f.pool.Reload(starter) }()
	awaitPool(t, f.pool, "a reload running", func(s Stats) bool { return s.Reloading })
	go func() {
		defer cancel()
		awaitPool(t, f.pool, "the reload rolling", func(s Stats) bool { return s.Generation == 1 })
	}()
	err := f.pool.Reload(testCtx(t)) // joins, unless the starter's ended already
	assert.ErrorIs(t, <-started, context.Canceled)
	require.NoError(t, err, "the joiner's own ctx is live")
	s := f.pool.Stats()
	assert.Zero(t, s.OldGeneration)
	assert.Equal(t, "v2", f.version(t))
}

// TestAuditReloadContextEndedBeforeOrWhileStarting: a Reload whose ctx
// has ended already, or ends while its first new worker (or, with the
// fork server, its new template) starts, returns ctx's error, and the old
// workers serve on; nothing is left running of the stopped reload.
func TestAuditReloadContextEndedBeforeOrWhileStarting(t *testing.T) {
	f := newReloadFixture(t, 1, nil)
	f.write(t, "v2", "pass")
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := f.pool.Reload(ctx)
		assert.ErrorIs(t, err, context.Canceled, "ctx ended before")
		awaitPool(t, f.pool, "the reload ended", func(s Stats) bool { return !s.Reloading })
	}
	pids := filepath.Join(t.TempDir(), "pids")
	f.writeTop(t, "v3", pidFileTop(pids, "time.sleep(0.5)"), "pass")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := f.pool.Reload(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "ctx ended while starting")
	assert.NotErrorIs(t, err, ErrWorkerStart)
	awaitPool(t, f.pool, "the reload ended", func(s Stats) bool { return !s.Reloading && s.Starting == 0 })
	assert.Equal(t, "v1", f.version(t))
	if _, err := os.Stat(pids); err == nil {
		for _, pid := range importedPids(t, pids) {
			assert.True(t, pidfdExited(openPidfd(t, pid), 10*time.Second), "process %d of the stopped reload left", pid)
		}
	}
	s := f.pool.Stats()
	assert.Zero(t, s.Generation)
	// The five with a ctx ended before began nothing; the sixth failed.
	assert.Equal(t, uint64(1), s.Reloads)
	assert.Equal(t, uint64(1), s.ReloadsFailed)
}

// TestAuditReloadBoundedByALongTransaction: with AsyncCalls, a Transaction
// that holds an old worker past the Reload's ctx makes Reload return ctx's
// error; once the Transaction ends its worker is retired and replaced by
// one of the new code, without another Reload.
func TestAuditReloadBoundedByALongTransaction(t *testing.T) {
	f := newReloadFixture(t, 2, func(c *Config) { c.AsyncCalls = 4 })
	f.write(t, "v2", "pass")
	held, release := make(chan int, 1), make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		txDone <- f.pool.Transaction(testCtx(t), func(w *Worker) error {
			held <- w.Pid()
			<-release
			got, err := w.Call(testCtx(t), "version")
			assert.Equal(t, "v1", got, "the Transaction runs on its old worker to its end")
			return err
		})
	}()
	pid := <-held
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		awaitPool(t, f.pool, "only the held worker old", func(s Stats) bool { return s.Generation == 1 && s.OldGeneration == 1 })
	}()
	err := f.pool.Reload(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, "v2", f.version(t), "callers get new workers")
	close(release)
	require.NoError(t, <-txDone)
	awaitPool(t, f.pool, "the held worker retired", func(s Stats) bool { return s.OldGeneration == 0 && atRest(s, 2) })
	assert.NotContains(t, workerPids(f.pool), pid)
	for range 4 {
		assert.Equal(t, "v2", f.version(t))
	}
}

// TestAuditReloadOldWorkerStopped: an old worker stopped (SIGSTOP) in the
// middle of a call during a reload: its caller's deadline ends the call,
// the worker is killed when it does not answer its interrupt, and the
// reload completes.
func TestAuditReloadOldWorkerStopped(t *testing.T) {
	f := newReloadFixture(t, 2, func(c *Config) { c.InterruptGrace = 500 * time.Millisecond })
	f.write(t, "v2", "pass")
	called := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := f.pool.Call(ctx, "work", 60000)
		called <- err
	}()
	awaitPool(t, f.pool, "the call in flight", func(s Stats) bool { return s.InUse == 1 })
	f.pool.mu.Lock()
	var victim int
	for _, pw := range f.pool.workers {
		if pw.state == stateCheckedOut {
			victim = pw.proc.pid
		}
	}
	f.pool.mu.Unlock()
	require.NotZero(t, victim)
	require.NoError(t, syscall.Kill(victim, syscall.SIGSTOP))
	require.NoError(t, f.pool.Reload(testCtx(t)))
	assert.ErrorIs(t, <-called, context.DeadlineExceeded)
	assert.Equal(t, "v2", f.version(t))
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 2) && s.OldGeneration == 0 })
	assert.True(t, pidfdExited(openPidfd(t, victim), 10*time.Second), "the stopped worker was killed")
}

// TestAuditReloadOutOfACrashLoop: the old code crashes its worker at every
// call (the pool's backoff grows); a Reload of fixed code completes, and
// the calls work again.
func TestAuditReloadOutOfACrashLoop(t *testing.T) {
	f := newReloadFixture(t, 2, nil)
	f.writeTop(t, "v1", "def crash():\n    os._exit(1)", "pass")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	for range 6 {
		_, err := f.pool.Call(testCtx(t), "crash")
		require.ErrorIs(t, err, ErrWorkerCrashed)
	}
	f.writeTop(t, "v2", "def crash():\n    return VERSION", "pass")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	got, err := f.pool.Call(testCtx(t), "crash")
	require.NoError(t, err)
	assert.Equal(t, "v2", got)
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 2) && s.OldGeneration == 0 })
}

// TestAuditReloadFailingMidRollAtRest: in a pool at rest, the reload's
// first new worker is proven and a later one's SetUp raises: Reload
// returns that error, the pool's generation goes back to the one before
// (docs/reloading.md), the pool serves at Size with old and new workers,
// and the next Reload of fixed code completes.
func TestAuditReloadFailingMidRollAtRest(t *testing.T) {
	f := newReloadFixture(t, 3, nil)
	top := brokenAfterFirstSetUp(t)
	f.writeTop(t, "v2", top, "_setup2()")
	err := f.pool.Reload(testCtx(t))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Contains(t, pyErr.Traceback, "a later worker is broken")
	awaitPool(t, f.pool, "at Size", func(s Stats) bool { return atRest(s, 3) })
	s := f.pool.Stats()
	assert.Zero(t, s.Generation, "back to the generation before")
	assert.Zero(t, s.OldGeneration)
	assert.Equal(t, uint64(1), s.ReloadsFailed)
	assert.Equal(t, uint64(1), s.StartsReload, "its first worker")
	assert.Equal(t, uint64(1), s.StopsReload, "the idle old worker it replaced")
	f.reloadTo(t, "v3")
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 3) && s.OldGeneration == 0 })
	assert.Equal(t, uint64(2), f.pool.Stats().Generation)
}

// TestAuditReloadChaos: rounds of reloads under load, each stopped by its
// ctx at a random step or not, with a random worker (old or new) killed at
// a random step; after every round a Reload with a live ctx completes,
// every worker runs its code, and no call failed but by a kill.
func TestAuditReloadChaos(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	f := newReloadFixture(t, 3, func(c *Config) { c.MaxOverflow = 1; c.ReloadSurge = 2 })
	stop := busyCallers(t, f.pool, 5, 5, 20*time.Second)
	steps := []func(Stats) bool{
		func(Stats) bool { return true },
		func(s Stats) bool { return s.Reloading },
		func(s Stats) bool { return s.StartsReload > 0 },
		func(s Stats) bool { return s.StopsReload > 0 },
		nil, // never
	}
	for round := range 5 {
		v := "v" + strconv.Itoa(round+2)
		f.write(t, v, "time.sleep(0.05)")
		base := f.pool.Stats()
		at := func(step func(Stats) bool) func(Stats) bool {
			return func(s Stats) bool {
				s.StartsReload -= base.StartsReload
				s.StopsReload -= base.StopsReload
				return step(s)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		if step := steps[rng.IntN(len(steps))]; step != nil {
			go func() {
				defer cancel()
				awaitQuietly(ctx, f.pool, at(step))
			}()
		}
		if step, pick := steps[rng.IntN(len(steps)-1)], rng.IntN(1<<20); rng.IntN(2) == 0 {
			go func() {
				if !awaitQuietly(ctx, f.pool, at(step)) {
					return
				}
				pids := workerPids(f.pool)
				if len(pids) > 0 {
					syscall.Kill(pids[pick%len(pids)], syscall.SIGKILL)
				}
			}()
		}
		err := f.pool.Reload(ctx)
		cancel()
		t.Logf("round %d: %v", round, err)
		require.NoError(t, f.pool.Reload(testCtx(t)), "round %d", round)
		assert.Zero(t, f.pool.Stats().OldGeneration)
		assert.Equal(t, v, f.version(t), "round %d", round)
	}
	for _, o := range stop() {
		if o.err != nil {
			assert.ErrorIs(t, o.err, ErrWorkerCrashed)
		}
	}
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 3) && s.OldGeneration == 0 })
}

// awaitQuietly waits until cond holds for the pool or ctx ends, and
// reports whether cond held.
func awaitQuietly(ctx context.Context, p *Pool, cond func(Stats) bool) bool {
	for {
		changed := p.awaitChange()
		if cond(p.Stats()) {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// TestAuditReloadOfPythonFSReloadsItsData: a pool of code embedded with
// Config.PythonFS re-imports the same code at a reload, and re-runs SetUp,
// which loads its data anew (docs/reloading.md).
func TestAuditReloadOfPythonFSReloadsItsData(t *testing.T) {
	data := filepath.Join(t.TempDir(), "model.txt")
	require.NoError(t, os.WriteFile(data, []byte("model-1"), 0o644))
	code := "MODEL = None\n" +
		"def setup():\n" +
		"    global MODEL\n" +
		"    with open(" + strconv.Quote(data) + ") as f: MODEL = f.read()\n" +
		"def model():\n" +
		"    return MODEL\n"
	cfg := testConfig(t)
	cfg.Module, cfg.PythonPath, cfg.SetUp, cfg.Size = "auditfsmod", nil, "setup", 2
	cfg.PythonFS = fstest.MapFS{"auditfsmod.py": {Data: []byte(code)}}
	pool := newTestPool(t, cfg)
	got, err := pool.Call(testCtx(t), "model")
	require.NoError(t, err)
	assert.Equal(t, "model-1", got)
	require.NoError(t, os.WriteFile(data, []byte("model-2"), 0o644))
	require.NoError(t, pool.Reload(testCtx(t)))
	for range 3 {
		got, err = pool.Call(testCtx(t), "model")
		require.NoError(t, err)
		assert.Equal(t, "model-2", got)
	}
}

// TestAuditReloadRacingClose: Reload and Close at once, at several points
// of a reload: Reload returns nil or ErrPoolClosed, Close returns, and no
// worker, template or goroutine is left (TestMain checks the goroutines).
func TestAuditReloadRacingClose(t *testing.T) {
	for i := range 4 {
		dir := t.TempDir()
		f := &reloadFixture{path: filepath.Join(dir, "reloadmod.py")}
		f.write(t, "v1", "pass")
		cfg := testConfig(t)
		cfg.Module, cfg.PythonPath, cfg.SetUp, cfg.Size = "reloadmod", []string{dir}, "setup", 2
		pool, err := New(testCtx(t), cfg)
		require.NoError(t, err)
		f.write(t, "v2", "pass")
		reloaded := make(chan error, 2)
		go func() { reloaded <- pool.Reload(testCtx(t)) }()
		go func() { reloaded <- pool.Reload(testCtx(t)) }()
		switch i {
		case 1:
			awaitPool(t, pool, "rolling", func(s Stats) bool { return s.Generation == 1 })
		case 2:
			awaitPool(t, pool, "a retirement", func(s Stats) bool { return s.StopsReload > 0 })
		case 3:
			awaitPool(t, pool, "a reload running", func(s Stats) bool { return s.Reloading })
		}
		pids := workerPids(pool)
		require.NoError(t, pool.Close(testCtx(t)))
		for range 2 {
			if err := <-reloaded; err != nil {
				assert.ErrorIs(t, err, ErrPoolClosed, "round %d", i)
			}
		}
		assertGone(t, pids)
		assert.Zero(t, pool.Stats().Reloading)
	}
}

// brokenAfterFirstSetUp is module code (for reloadFixture.writeTop, with
// the set-up "_setup2()") whose set-up passes in the first worker that
// runs it and raises in every later one: a reload whose first new worker
// is proven and a later one breaks (the files changed again mid-reload).
func brokenAfterFirstSetUp(t *testing.T) string {
	count := strconv.Quote(filepath.Join(t.TempDir(), "setups"))
	return "def _setup2():\n" +
		"    n = os.path.getsize(" + count + ") if os.path.exists(" + count + ") else 0\n" +
		"    with open(" + count + ", 'a') as _f: _f.write('x')\n" +
		"    if n >= 1: raise RuntimeError('a later worker is broken')"
}
