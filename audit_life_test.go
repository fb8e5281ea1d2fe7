package pypool

// audit_life_test.go is a hostile tester's attacks on the pool's life-cycle
// and its supervisor on the exec start path: New, Close, Reload, Resize,
// overflow and its idle timeout, MaxWaiting, recycling, the crash-loop
// backoff, start failures, Ping, and Stats' counters under faults; and
// RoadRunner's pool and supervisor tests, ported where pypool has the same
// semantics.

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ledger is Stats' account of worker starts less worker ends: at rest, and
// at every instant a caller sees, it is Workers (stats.go: "At rest,
// StartsInitial + Restarts + StartsHandover less Crashes and the stops
// above (Recycled aside) are Workers").
func ledger(s Stats) int64 {
	starts := s.StartsInitial + s.Restarts + s.StartsHandover
	ends := s.Crashes + s.StopsKilled + s.StopsMaxCalls + s.StopsMaxMemory + s.StopsMaxLifetime +
		s.StopsOverflow + s.StopsOverflowIdle + s.StopsResize + s.StopsClose + s.StopsReload + s.StopsHandover
	return int64(starts) - int64(ends)
}

// A worker that dies during a call is counted in Stats.Crashes by the time
// its caller has the error: the caller sees the worker gone from Workers,
// so the crash that took it must be counted too (before the fix, the
// check-in of the dead worker freed its slot and the count waited for
// the exit watcher: Workers 0, Stopping 1, Crashes 0). The worker is
// SIGKILLed from outside, so that no crash-loop backoff slows the loop,
// once Python runs the call (a worker killed before the call reached it
// would be retried on another: ErrWorkerCrashed is for a call it ran).
func TestAuditLifeCrashIsCountedWhenItsCallerSeesIt(t *testing.T) {
	t.Parallel()
	running := make(chan struct{})
	pool := newTestPool(t, auditCallsConfig(t, map[string]Callback{"running": signalCallback(running)}))
	for i := range 12 {
		pid := workerPids(pool)[0]
		errc := make(chan error, 1)
		go func() {
			_, err := pool.Call(testCtx(t), "signal_then_sleep", "running", 30)
			errc <- err
		}()
		<-running
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		require.ErrorIs(t, <-errc, ErrWorkerCrashed)
		s := pool.Stats()
		require.Equal(t, uint64(i+1), s.Crashes, "crash %d: %+v", i, s)
		require.Equal(t, int64(s.Workers), ledger(s), "crash %d: %+v", i, s)
		awaitPool(t, pool, "back at size", func(s Stats) bool { return atRest(s, 1) })
	}
}

// watchLedger checks, on a snapshot taken at every change of the pool's
// state until the returned function is called, that Stats' counters
// agree with its gauges at every instant: the starts less the ends are
// the workers that serve, and the totals are their parts' sums.
func watchLedger(t *testing.T, p *Pool) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			changed := p.awaitChange()
			s := p.Stats()
			if ledger(s) != int64(s.Workers) {
				t.Errorf("starts less ends (%d) are not Workers: %+v", ledger(s), s)
			}
			if s.Recycled != s.StopsMaxCalls+s.StopsMaxMemory+s.StopsMaxLifetime+s.StopsOverflowIdle+s.StopsReload {
				t.Errorf("Recycled is not the sum of its parts: %+v", s)
			}
			if s.CallsFinished > s.CallsStarted {
				t.Errorf("more calls finished than started: %+v", s)
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

// Stats' counters agree with its gauges at every instant while workers
// are killed from outside, recycled, stopped as idle overflow and resized
// away under load.
func TestAuditLifeStatsLedgerHoldsUnderFaults(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 2, 2
	cfg.MaxCallsPerWorker = 4
	cfg.OverflowIdleTimeout = 100 * time.Millisecond
	pool := newTestPool(t, cfg)
	stop := watchLedger(t, pool)
	defer stop()

	var wg sync.WaitGroup
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				ctx, cancel := context.WithTimeout(testCtx(t), time.Duration(20+(g*7+i)%60)*time.Millisecond)
				_, _ = pool.Call(ctx, "sleep", 0.01*float64((g+i)%5))
				cancel()
			}
		}()
	}
	for i, size := range []int{3, 1, 2, 1, 2} {
		if pids := workerPids(pool); len(pids) > 0 {
			_ = syscall.Kill(pids[i%len(pids)], syscall.SIGKILL)
		}
		require.NoError(t, pool.Resize(size, 2))
		awaitPool(t, pool, "a worker serving", func(s Stats) bool { return s.Workers > 0 })
	}
	wg.Wait()
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 2) })
	s := pool.Stats()
	require.Equal(t, int64(2), ledger(s), "%+v", s)
}

// lifeFlagConfig is a pool of pypool_lifeflag, whose import raises while
// the file flag exists.
func lifeFlagConfig(t *testing.T) (cfg Config, flag string) {
	flag = filepath.Join(t.TempDir(), "broken")
	cfg = testConfig(t)
	cfg.Module = "pypool_lifeflag"
	cfg.Env = []string{"PYPOOL_BREAK_FLAG=" + flag}
	return cfg, flag
}

// RoadRunner's TestSupervisedPool_ExecTTL_WorkerRestarted: a worker that
// passes Config.MaxWorkerLifetime during a call finishes the call (no
// interrupt: a busy worker is only replaced at its check-in), and is
// replaced then.
func TestAuditLifeBusyWorkerPastItsLifetimeFinishesItsCall(t *testing.T) {
	t.Parallel()
	cfg, _ := lifeFlagConfig(t)
	cfg.MaxWorkerLifetime = 300 * time.Millisecond // at most 330 ms with its jitter
	pool := newTestPool(t, cfg)
	for round := range 1 {
		before, err := pool.Call(testCtx(t), "pid")
		require.NoError(t, err)
		out, err := pool.Call(testCtx(t), "sleep", 0.5)
		require.NoError(t, err, "round %d: the call that outlives its worker's lifetime completes", round)
		require.Equal(t, 0.5, out)
		awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
			return s.StopsMaxLifetime >= uint64(round+1) && atRest(s, 1)
		})
		after, err := pool.Call(testCtx(t), "pid")
		require.NoError(t, err)
		require.NotEqual(t, before, after, "round %d", round)
		s := pool.Stats()
		require.Zero(t, s.Interrupts+s.Crashes+s.StopsKilled, "%+v", s)
	}
}

// RoadRunner's TestSupervisedPool_AllocateFailedOK, with Ping: the module
// breaks on disk while Config.MaxWorkerLifetime recycles its worker, so
// the replacement cannot start. Ping and calls fail with the import's
// error (not a timeout: Ping's doc promises the start error while the
// module cannot be imported), and once the module is mended, the pool
// heals by itself.
func TestAuditLifeRecyclingWhileTheModuleIsBrokenHeals(t *testing.T) {
	t.Parallel()
	cfg, flag := lifeFlagConfig(t)
	cfg.MaxWorkerLifetime = 200 * time.Millisecond
	pool := newTestPool(t, cfg)
	require.NoError(t, os.WriteFile(flag, nil, 0o644))
	awaitPool(t, pool, "the replacement failing", func(s Stats) bool { return s.StartFailures >= 1 && s.Workers == 0 })

	var pyErr *PythonError
	err := pool.Ping(testCtx(t))
	require.ErrorAs(t, err, &pyErr, "Ping: %v", err)
	require.Contains(t, pyErr.Message, "broken while its flag file exists")
	require.ErrorIs(t, err, ErrWorkerStart)
	_, err = pool.Call(testCtx(t), "echo", 1)
	require.ErrorAs(t, err, &pyErr, "Call: %v", err)
	require.ErrorIs(t, err, ErrWorkerStart)

	require.NoError(t, os.Remove(flag))
	awaitPool(t, pool, "healed", func(s Stats) bool { return s.Workers == 1 })
	require.NoError(t, pool.Ping(testCtx(t)))
	_, err = pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	s := pool.Stats()
	require.GreaterOrEqual(t, s.PingFailures, uint64(1), "%+v", s)
	require.GreaterOrEqual(t, s.StopsMaxLifetime, uint64(1), "%+v", s)
	require.Zero(t, s.Crashes, "%+v", s)
}

// New whose context ends while its worker imports fails with an error
// that wraps ErrWorkerStart and ctx's error, as New's doc promises ("the
// first start error, transient or not, wrapping ErrWorkerStart"), and
// names that context, not Config.StartTimeout. Before the fix, a
// cancelled New gave "pypool: starting a worker: context canceled"
// (no ErrWorkerStart), and a New whose deadline passed, when the pipe's
// timer fired before ctx's, blamed StartTimeout ("did not finish
// importing within 1m0s (Config.StartTimeout)").
func TestAuditLifeNewWhoseContextEndsFailsWithErrWorkerStart(t *testing.T) {
	t.Parallel()
	flag := filepath.Join(t.TempDir(), "hold")
	require.NoError(t, os.WriteFile(flag, nil, 0o644)) // every import waits
	cfg := testConfig(t)
	cfg.Module = "pypool_slowstart"
	cfg.Env = []string{"PYPOOL_HOLD_FLAG=" + flag}
	cfg.StartTimeout = time.Minute
	check := func(err, want error) {
		t.Helper()
		require.ErrorIs(t, err, ErrWorkerStart)
		require.ErrorIs(t, err, want)
		require.NotContains(t, err.Error(), "StartTimeout")
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(testCtx(t), 150*time.Millisecond)
		pool, err := New(ctx, cfg)
		cancel()
		require.Nil(t, pool)
		check(err, context.DeadlineExceeded)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	time.AfterFunc(150*time.Millisecond, cancel)
	pool, err := New(ctx, cfg)
	require.Nil(t, pool)
	check(err, context.Canceled)
}

// Ping's probe is not a call of the module (Ping's doc): a readiness
// probe does not use up Config.MaxCallsPerWorker, so that probes alone
// never recycle a worker. Before the fix, every probe counted as a call
// served: 3 pings recycled a worker of MaxCallsPerWorker 3.
func TestAuditLifePingsDoNotUseUpMaxCallsPerWorker(t *testing.T) {
	t.Parallel()
	cfg, _ := lifeFlagConfig(t)
	cfg.MaxCallsPerWorker = 3
	pool := newTestPool(t, cfg)
	first := workerPids(pool)[0]
	for range 6 {
		require.NoError(t, pool.Ping(testCtx(t)))
	}
	for range 2 {
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
	s := pool.Stats()
	require.Zero(t, s.StopsMaxCalls, "%+v", s)
	require.Equal(t, []int{first}, workerPids(pool))
	_, err := pool.Call(testCtx(t), "echo", 1) // the third call of the module
	require.NoError(t, err)
	awaitPool(t, pool, "recycled after its third call", func(s Stats) bool { return s.StopsMaxCalls == 1 && atRest(s, 1) })
}

// A worker that dies by itself soon after its start is a crash loop that
// backs off (invariant 3), even while a readiness probe pings it: a probe
// runs none of the module's code, so it neither ends the backoff nor
// makes the worker's death that of a worker that served. Before the fix,
// each ping that succeeded started the delays over and each death counted
// as that of a worker that served: the streak never grew past 1.
func TestAuditLifePingsDoNotEndACrashLoopsBackoff(t *testing.T) {
	t.Parallel()
	cfg, _ := lifeFlagConfig(t)
	cfg.Env = append(cfg.Env, "PYPOOL_DIE_AFTER=0.3")
	pool := newTestPool(t, cfg)
	streak := func() int {
		pool.backoff.mu.Lock()
		defer pool.backoff.mu.Unlock()
		return pool.backoff.streak
	}
	for streak() < 3 && pool.Stats().Crashes < 6 {
		ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
		_ = pool.Ping(ctx)
		cancel()
	}
	s := pool.Stats()
	require.GreaterOrEqual(t, streak(), 3, "the backoff of a crash loop pinged all along: %+v", s)
	require.NotZero(t, s.Pings-s.PingFailures, "some pings reached a worker: %+v", s)
}

// Stats' ledger holds at every instant through a Reload whose workers are
// killed from outside while it rolls, and through a Close whose context
// ends while calls run: at the end every worker is counted as stopped.
func TestAuditLifeStatsLedgerHoldsThroughReloadAndClose(t *testing.T) {
	t.Parallel()
	cfg, _ := lifeFlagConfig(t)
	cfg.Size, cfg.MaxOverflow = 2, 1
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	stop := watchLedger(t, pool)
	defer stop()

	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				_, _ = pool.Call(testCtx(t), "sleep", 0.02)
			}
		}()
	}
	reloaded := make(chan error, 1)
	go func() { reloaded <- pool.Reload(testCtx(t)) }()
	awaitPool(t, pool, "the reload rolling", func(s Stats) bool { return s.Generation > 0 || !s.Reloading })
	for _, pid := range workerPids(pool)[:1] {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	require.NoError(t, <-reloaded)
	require.Zero(t, pool.Stats().OldGeneration)

	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	_ = pool.Close(ctx) // it may cut off calls: its error says so
	close(done)
	wg.Wait()
	s := pool.Stats()
	require.Zero(t, s.Workers+s.Starting+s.Stopping, "%+v", s)
	require.Equal(t, int64(0), ledger(s), "%+v", s)
}

// RoadRunner's Test_StaticPool_Replace_Worker (MaxJobs 1): with
// MaxCallsPerWorker 1 and no jitter, every call runs on a worker of its
// own, none fails, and Stats counts one recycle and one restart per call.
func TestAuditLifeEveryCallOnAFreshWorker(t *testing.T) {
	t.Parallel()
	cfg, _ := lifeFlagConfig(t)
	cfg.MaxCallsPerWorker = 1
	pool := newTestPool(t, cfg)
	seen := map[any]bool{}
	for i := range 4 {
		pid, err := pool.Call(testCtx(t), "pid")
		require.NoError(t, err, "call %d", i)
		require.False(t, seen[pid], "call %d ran on a worker that served already", i)
		seen[pid] = true
	}
	awaitPool(t, pool, "the last one replaced", func(s Stats) bool { return s.StopsMaxCalls == 4 && atRest(s, 1) })
	s := pool.Stats()
	require.Equal(t, uint64(4), s.StartsRecycle, "%+v", s)
	require.Equal(t, int64(1), ledger(s), "%+v", s)
}

// A Stats snapshot taken while calls end never shows more outcomes than
// calls finished (Stats: each call that started is counted in
// CallsFinished and in at most one outcome counter), nor more calls
// finished than started. Before the fix, about one snapshot in a hundred
// taken during a burst of refused TryCalls counted a rejection whose call
// was not yet finished.
func TestAuditLifeStatsOutcomesNeverExceedCallsFinished(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, testConfig(t))
	release := holdWorkers(t, pool, 1) // every TryCall is refused at once
	defer release()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3000 {
				_, _ = pool.TryCall(testCtx(t), "echo", 1)
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	for {
		s := pool.Stats()
		outcomes := s.PythonExceptions + s.Rejections + s.DeadlineExceeded + s.Canceled
		require.LessOrEqual(t, outcomes, s.CallsFinished, "%+v", s)
		require.LessOrEqual(t, s.CallsFinished, s.CallsStarted, "%+v", s)
		select {
		case <-done:
			require.Equal(t, uint64(6000), pool.Stats().Rejections)
			return
		default:
		}
	}
}

// A Stats snapshot never shows an interrupt whose call's outcome it does
// not show: every call cut off while Python ran it (Interrupts) ended
// with its context (DeadlineExceeded or Canceled). Before the fix, the
// check-in counted the interrupt before the call counted its outcome,
// and snapshots taken between them showed Interrupts 2 with
// DeadlineExceeded 1.
func TestAuditLifeStatsInterruptsNeverExceedTheirOutcomes(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Millisecond)
				_, _ = pool.Call(ctx, "sleep", 0.05)
				cancel()
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	for {
		s := pool.Stats()
		require.LessOrEqual(t, s.Interrupts, s.DeadlineExceeded+s.Canceled, "%+v", s)
		select {
		case <-done:
			return
		default:
		}
	}
}
