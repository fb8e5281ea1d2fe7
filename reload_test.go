package pypool

// reload_test.go proves Pool.Reload (reload.go, docs/reloading.md): a reload
// under busy callers with deadlines while the module file changes, a broken
// new version, Transactions held across a reload, Close and a context
// ending during one, concurrent reloads, a crash during one, and the fork
// server's template. Every test runs with both start methods
// (-pypool.start=forkserver).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// reloadModule is the module the reload tests rewrite: version() and
// work() answer with VERSION, which each test's versions differ in; its
// set-up runs SETUP, a line of Python; TOP is a line run at import.
const reloadModule = `import os, time
VERSION = %q
%s
def setup():
    %s
def version():
    return VERSION
def work(ms):
    time.sleep(ms / 1000)
    return [VERSION, os.getpid()]
`

// reloadFixture is a pool of a module in a directory of the test's own.
type reloadFixture struct {
	pool *Pool
	path string    // the module's file
	mod  time.Time // its first modification time
}

// newReloadFixture writes version v1 of the module and starts a pool of it.
func newReloadFixture(t *testing.T, size int, tune func(*Config)) *reloadFixture {
	dir := t.TempDir()
	f := &reloadFixture{path: filepath.Join(dir, "reloadmod.py")}
	f.write(t, "v1", "pass")
	info, err := os.Stat(f.path)
	require.NoError(t, err)
	f.mod = info.ModTime()
	cfg := testConfig(t)
	cfg.Module, cfg.PythonPath, cfg.SetUp, cfg.Size = "reloadmod", []string{dir}, "setup", size
	if tune != nil {
		tune(&cfg)
	}
	f.pool = newTestPool(t, cfg)
	return f
}

// write writes version v of the module, whose set-up runs setup.
func (f *reloadFixture) write(t *testing.T, v, setup string) {
	f.writeTop(t, v, "", setup)
}

// writeTop writes version v of the module, which runs top at import.
func (f *reloadFixture) writeTop(t *testing.T, v, top, setup string) {
	require.NoError(t, os.WriteFile(f.path, fmt.Appendf(nil, reloadModule, v, top, setup), 0o644))
}

// rewriteSameStat writes version v, which must be as long as the first,
// and gives the file its first modification time back: what a rewrite
// within the same second looks like to Python's timestamp-based .pyc check.
func (f *reloadFixture) rewriteSameStat(t *testing.T, v string) {
	f.write(t, v, "pass")
	require.NoError(t, os.Chtimes(f.path, f.mod, f.mod))
}

// version is the version a call of the pool answers with.
// reloadTo writes version v of the module (its set-up a pass), reloads
// the pool and checks that a call now runs v.
func (f *reloadFixture) reloadTo(t *testing.T, v string) {
	t.Helper()
	f.write(t, v, "pass")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	assert.Equal(t, v, f.version(t))
}

func (f *reloadFixture) version(t *testing.T) string {
	t.Helper()
	got, err := f.pool.Call(testCtx(t), "version")
	require.NoError(t, err)
	return got.(string)
}

// callOutcome is one call of the busy callers.
type callOutcome struct {
	began, ended time.Time
	version      string
	err          error
}

// busyCallers runs n callers calling work(ms) in a loop, each call with a
// deadline, until stop is called; stop returns every call's outcome.
func busyCallers(t *testing.T, p *Pool, n, ms int, deadline time.Duration) (stop func() []callOutcome) {
	var (
		mu       sync.Mutex
		outcomes []callOutcome
		done     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				o := callOutcome{began: time.Now()}
				got, err := p.Call(ctx, "work", ms)
				cancel()
				o.ended, o.err = time.Now(), err
				if err == nil {
					o.version = got.([]any)[0].(string)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}()
	}
	return func() []callOutcome {
		close(done)
		wg.Wait()
		return outcomes
	}
}

// watchSurge checks, at every change of the pool, that no more than
// Size+MaxOverflow+ReloadSurge workers serve, start or stop, and that no
// caller waits while a worker is idle.
func watchSurge(t *testing.T, p *Pool) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			changed := p.awaitChange()
			s := p.Stats()
			if limit := s.Size + s.MaxOverflow + p.cfg.ReloadSurge; s.Workers+s.Starting+s.Stopping > limit {
				t.Errorf("more workers than Size+MaxOverflow+ReloadSurge (%d): %+v", limit, s)
			}
			if s.Waiting > 0 && s.Idle > 0 {
				t.Errorf("a caller waits while a worker is idle: %+v", s)
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

func TestReloadUnderLoadServesNewCodeWithoutFailedCalls(t *testing.T) {
	f := newReloadFixture(t, 4, nil)
	assert.Equal(t, "v1", f.version(t))
	firstPids := workerPids(f.pool)
	unwatch := watchSurge(t, f.pool)
	const callers = 16
	stop := busyCallers(t, f.pool, callers, 5, 20*time.Second)
	time.Sleep(100 * time.Millisecond)

	// Same length, same modification time: Python's own .pyc check would
	// serve v1 again (freshcode.py).
	f.rewriteSameStat(t, "v2")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	returned := time.Now()
	// Until a call begun after returned has ended, not for 200 ms (on a busy
	// machine the new workers may answer none by then): of the calls
	// finished, at most those started by now and one per caller (between
	// its began and the count) began before returned.
	begunBefore := f.pool.Stats().CallsStarted + callers
	awaitPool(t, f.pool, "a call begun after Reload returned ended", func(s Stats) bool { return s.CallsFinished > begunBefore })
	outcomes := stop()
	unwatch()

	var failed, before, after, oldAfter int
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			failed++
			t.Errorf("call failed: %v", o.err)
		case o.began.After(returned):
			after++
			if o.version != "v2" {
				oldAfter++
			}
		default:
			before++
		}
	}
	t.Logf("%d calls before Reload returned, %d after", before, after)
	assert.Zero(t, failed, "failed calls")
	assert.Positive(t, after, "calls after Reload returned")
	assert.Zero(t, oldAfter, "calls begun after Reload returned answered by the old code")

	s := f.pool.Stats()
	assert.Equal(t, uint64(1), s.Generation)
	assert.Zero(t, s.OldGeneration)
	assert.False(t, s.Reloading)
	assert.Equal(t, uint64(1), s.Reloads)
	assert.Equal(t, uint64(1), s.ReloadsDone)
	assert.Zero(t, s.ReloadsFailed)
	assert.GreaterOrEqual(t, s.StopsReload, uint64(4), "every first worker retired")
	assert.Positive(t, s.StartsReload)
	assert.Zero(t, s.Crashes)
	assert.Equal(t, "v2", f.version(t))
	assert.False(t, f.pool.holdsAny(nil))
	for _, pid := range workerPids(f.pool) {
		assert.NotContains(t, firstPids, pid, "a worker of the first generation still serves")
	}
	awaitPool(t, f.pool, "back at rest with Size workers", func(s Stats) bool { return atRest(s, 4) })
}

func TestReloadOfBrokenCodeKeepsTheOldWorkers(t *testing.T) {
	for _, tc := range []struct {
		name, top, setup, want string
	}{
		{"import", "raise RuntimeError('broken deploy at import')", "pass", "broken deploy at import"},
		{"setup", "", "raise RuntimeError('broken deploy in setup')", "broken deploy in setup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newReloadFixture(t, 2, nil)
			pids := workerPids(f.pool)
			stop := busyCallers(t, f.pool, 16, 5, 20*time.Second)
			time.Sleep(50 * time.Millisecond)
			f.writeTop(t, "v2", tc.top, tc.setup)

			err := f.pool.Reload(testCtx(t))
			outcomes := stop()
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrWorkerStart)
			var pyErr *PythonError
			require.ErrorAs(t, err, &pyErr, "the error carries Python's exception")
			assert.Contains(t, pyErr.Traceback, tc.want)
			for _, o := range outcomes {
				require.NoError(t, o.err, "a call failed during the broken reload")
				assert.Equal(t, "v1", o.version)
			}

			s := f.pool.Stats()
			assert.Zero(t, s.Generation, "the generation did not change")
			assert.Zero(t, s.OldGeneration)
			assert.Equal(t, uint64(1), s.ReloadsFailed)
			assert.Zero(t, s.ReloadsDone)
			if testStartMethod() == StartExec {
				assert.Equal(t, uint64(1), s.StartFailures)
			} // else the new template failed, before any worker start
			assert.Zero(t, s.StopsReload, "no worker was retired")
			assert.Equal(t, 2, s.Workers)
			assert.ElementsMatch(t, pids, workerPids(f.pool), "the old workers serve on")
			assert.NoError(t, f.pool.backoff.refusal(), "the failed start did not touch the pool's backoff")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err = f.pool.Call(ctx, "version")
			assert.NoError(t, err)

			// Fixed, the next reload completes.
			f.reloadTo(t, "v3")
			assert.Equal(t, uint64(2), f.pool.Stats().Generation, "the failed reload's number is not used again")
		})
	}
}

func TestReloadLeavesTransactionsOnTheirWorker(t *testing.T) {
	f := newReloadFixture(t, 1, nil)
	f.write(t, "v2", "pass")
	reloaded := make(chan error, 1)
	err := f.pool.Transaction(testCtx(t), func(w *Worker) error {
		first, err := w.Call(testCtx(t), "work", 0)
		require.NoError(t, err)
		go func() { reloaded <- f.pool.Reload(testCtx(t)) }()
		awaitPool(t, f.pool, "a new worker ready beside the held one", func(s Stats) bool {
			return s.Generation == 1 && s.Idle == 1 && s.OldGeneration == 1
		})
		// Callers get the new worker meanwhile.
		assert.Equal(t, "v2", f.version(t))
		again, err := w.Call(testCtx(t), "work", 0)
		require.NoError(t, err)
		assert.Equal(t, first, again, "the Transaction's calls run on its worker, of the old code")
		select {
		case err := <-reloaded:
			t.Errorf("Reload returned while an old worker was held: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		return nil
	})
	require.NoError(t, err)
	require.NoError(t, <-reloaded)
	s := f.pool.Stats()
	assert.Equal(t, uint64(1), s.StopsReload, "the held worker was retired at its check-in")
	assert.Zero(t, s.OldGeneration)
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 1) })
}

func TestCloseEndsAReload(t *testing.T) {
	f := newReloadFixture(t, 1, nil)
	f.write(t, "v2", "time.sleep(60)")
	pids := workerPids(f.pool)
	reloaded := make(chan error, 1)
	go func() { reloaded <- f.pool.Reload(context.Background()) }()
	awaitPool(t, f.pool, "the new worker starting", func(s Stats) bool { return s.Reloading && s.Starting == 1 })
	require.NoError(t, f.pool.Close(testCtx(t)))
	assert.ErrorIs(t, <-reloaded, ErrPoolClosed)
	assert.ErrorIs(t, f.pool.Reload(testCtx(t)), ErrPoolClosed)
	assertGone(t, pids)
}

func TestReloadContextEndingLeavesAServingPool(t *testing.T) {
	f := newReloadFixture(t, 2, nil)
	f.write(t, "v2", "time.sleep(60)")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := f.pool.Reload(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	awaitPool(t, f.pool, "the reload stopped", func(s Stats) bool { return !s.Reloading && s.ReloadsFailed == 1 })
	assert.Equal(t, "v1", f.version(t), "the old workers serve on")

	f.reloadTo(t, "v3")
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 2) && s.OldGeneration == 0 })
}

func TestConcurrentReloadsJoinTheRunningOne(t *testing.T) {
	f := newReloadFixture(t, 2, nil)
	f.write(t, "v2", "time.sleep(0.5)")
	errs := make(chan error, 3)
	go func() { errs <- f.pool.Reload(testCtx(t)) }()
	awaitPool(t, f.pool, "a reload running", func(s Stats) bool { return s.Reloading })
	go func() { errs <- f.pool.Reload(testCtx(t)) }()
	go func() { errs <- f.pool.Reload(testCtx(t)) }()
	for range 3 {
		assert.NoError(t, <-errs)
	}
	s := f.pool.Stats()
	assert.Equal(t, uint64(1), s.Reloads, "the later Reloads joined the first")
	assert.Equal(t, uint64(1), s.Generation)
	assert.Equal(t, "v2", f.version(t))

	// A joiner whose context ends first returns its error; the reload
	// goes on.
	f.write(t, "v3", "time.sleep(0.5)")
	go func() { errs <- f.pool.Reload(testCtx(t)) }()
	awaitPool(t, f.pool, "a reload running", func(s Stats) bool { return s.Reloading })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, f.pool.Reload(ctx), context.DeadlineExceeded)
	assert.NoError(t, <-errs)
	assert.Equal(t, "v3", f.version(t))
}

func TestWorkerCrashDuringReload(t *testing.T) {
	f := newReloadFixture(t, 3, nil)
	stop := busyCallers(t, f.pool, 6, 20, 20*time.Second)
	f.write(t, "v2", "time.sleep(0.3)")
	reloaded := make(chan error, 1)
	go func() { reloaded <- f.pool.Reload(testCtx(t)) }()
	awaitPool(t, f.pool, "the reload rolling", func(s Stats) bool { return s.Generation == 1 })
	f.pool.mu.Lock()
	var victim int
	for _, pw := range f.pool.workers {
		if pw.gen == 0 && pw.state.serving() {
			victim = pw.proc.pid
			break
		}
	}
	f.pool.mu.Unlock()
	if victim != 0 {
		require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
	}
	require.NoError(t, <-reloaded)
	for _, o := range stop() {
		if o.err != nil && !errors.Is(o.err, ErrWorkerCrashed) {
			t.Errorf("a call failed otherwise than by the crash: %v", o.err)
		}
	}
	assert.Equal(t, "v2", f.version(t))
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 3) && s.OldGeneration == 0 })
}

func TestReloadSurgeIsValidated(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReloadSurge = -1
	_, err := New(testCtx(t), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Config.ReloadSurge is -1")
	cfg.ReloadSurge = 0
	cfg, err = cfg.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultReloadSurge, cfg.ReloadSurge)
}

func TestReloadWithSurgeAndOverflowInUse(t *testing.T) {
	var stats []Stats
	f := newReloadFixture(t, 2, func(c *Config) { c.MaxOverflow = 2; c.ReloadSurge = 2 })
	unwatch := watchSurge(t, f.pool)
	stop := busyCallers(t, f.pool, 8, 20, 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	f.write(t, "v2", "pass")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	stats = append(stats, f.pool.Stats())
	for _, o := range stop() {
		assert.NoError(t, o.err)
	}
	unwatch()
	assert.Zero(t, stats[0].OldGeneration)
	awaitPool(t, f.pool, "back at Size", func(s Stats) bool { return atRest(s, 2) })
}

func TestReloadForkServerReplacesTheTemplate(t *testing.T) {
	if testStartMethod() != StartForkServer {
		t.Skip("with -pypool.start=forkserver")
	}
	f := newReloadFixture(t, 2, nil)
	old := f.pool.forks.Load()
	require.NotNil(t, old)

	f.writeTop(t, "v2", "raise RuntimeError('broken template')", "pass")
	err := f.pool.Reload(testCtx(t))
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Contains(t, pyErr.Traceback, "broken template")
	assert.Same(t, old, f.pool.forks.Load(), "the old template stays")
	assert.Equal(t, "v1", f.version(t))

	// A template that starts, and a worker of it whose set-up fails: the
	// old template is put back, the new one stopped.
	f.write(t, "v2", "raise RuntimeError('broken set-up')")
	require.ErrorAs(t, f.pool.Reload(testCtx(t)), &pyErr)
	assert.Contains(t, pyErr.Traceback, "broken set-up")
	assert.Same(t, old, f.pool.forks.Load(), "the old template is put back")
	assert.Equal(t, "v1", f.version(t))
	f.pool.mu.Lock()
	replaced := len(f.pool.oldForks)
	f.pool.mu.Unlock()
	assert.Zero(t, replaced, "the failed reload's template, which forked no worker, was stopped")

	f.write(t, "v3", "pass")
	require.NoError(t, f.pool.Reload(testCtx(t)))
	fs := f.pool.forks.Load()
	assert.NotSame(t, old, fs, "a new template")
	assert.Equal(t, "v3", f.version(t))
	f.pool.mu.Lock()
	for proc, pw := range f.pool.workers {
		if pw.state.serving() {
			assert.Same(t, fs, forkedBy(proc.os), "every serving worker forked by the new template")
		}
	}
	f.pool.mu.Unlock()
	require.Eventually(t, old.exited, 30*time.Second, 10*time.Millisecond,
		"the old template was not stopped once its workers were gone")
}

func TestReloadAtRestStartsOneWorkerPerOldOne(t *testing.T) {
	f := newReloadFixture(t, 2, func(c *Config) { c.MaxOverflow = 1 })
	require.NoError(t, f.pool.Reload(testCtx(t)))
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 2) })
	s := f.pool.Stats()
	assert.Equal(t, uint64(2), s.StartsReload, "one new worker for each old one")
	assert.Equal(t, uint64(2), s.StopsReload)
	assert.Zero(t, s.StopsOverflow, "no new worker stopped as not needed")
}

// TestReloadOfAsyncCallsUnderLoad: with Config.AsyncCalls, a worker
// shared by async calls that keep coming is retired too: no new call is
// placed on an old-generation worker once a reload has proven a new one,
// so its calls in flight end and it is checked in; no call fails, and the
// calls begun after Reload returned are answered by the new code.
func TestReloadOfAsyncCallsUnderLoad(t *testing.T) {
	const top = "import asyncio\nasync def aversion(ms):\n    await asyncio.sleep(ms / 1000)\n    return VERSION"
	dir := t.TempDir()
	f := &reloadFixture{path: filepath.Join(dir, "reloadmod.py")}
	f.writeTop(t, "v1", top, "pass")
	cfg := testConfig(t)
	cfg.Module, cfg.PythonPath, cfg.SetUp, cfg.Size, cfg.AsyncCalls = "reloadmod", []string{dir}, "setup", 1, 8
	f.pool = newTestPool(t, cfg)

	type outcome struct {
		began   time.Time
		version string
		err     error
	}
	outcomes := make(chan outcome, 64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				o := outcome{began: time.Now()}
				got, err := f.pool.Call(ctx, "aversion", 5)
				cancel()
				o.err = err
				if err == nil {
					o.version = got.(string)
				}
				select {
				case outcomes <- o:
				case <-done:
					return
				}
			}
		}()
	}
	var all []outcome
	for range 40 { // the calls run on v1's worker
		all = append(all, <-outcomes)
	}
	f.writeTop(t, "v2", top, "pass")
	reloaded := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
		defer cancel()
		reloaded <- f.pool.Reload(ctx)
	}()
	var err error
	for waiting := true; waiting; {
		select {
		case o := <-outcomes:
			all = append(all, o)
		case err = <-reloaded:
			waiting = false
		}
	}
	now := time.Now()
	for after := 0; after < 40; {
		o := <-outcomes
		all = append(all, o)
		if o.began.After(now) {
			after++
		}
	}
	close(done)
	wg.Wait()
	require.NoError(t, err, "Reload with async calls in flight all the time")
	var failed, old int
	for _, o := range all {
		switch {
		case o.err != nil:
			failed++
			t.Errorf("a call failed: %v", o.err)
		case o.began.After(now) && o.version != "v2":
			old++
		}
	}
	assert.Zero(t, failed, "failed calls")
	assert.Zero(t, old, "calls begun after Reload returned answered by old code")
	assert.Equal(t, uint64(1), f.pool.Stats().StopsReload, "the old worker retired")
}

// TestReloadWithAnEndedContextBeginsNothing: a Reload whose ctx has ended
// returns its error at once, as the other blocking calls do; it began a
// reload that failed, logged it and, with the fork server, started a
// template for nothing.
func TestReloadWithAnEndedContextBeginsNothing(t *testing.T) {
	f := newReloadFixture(t, 1, nil)
	before := f.pool.Stats()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := f.pool.Reload(ctx)
	require.ErrorIs(t, err, context.Canceled)
	after := f.pool.Stats()
	assert.Equal(t, before.Reloads, after.Reloads, "no reload begun")
	assert.Equal(t, before.ReloadsFailed, after.ReloadsFailed, "none failed")
	assert.Equal(t, before.Generation, after.Generation)
}
