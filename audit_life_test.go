package pypool

// audit_life_test.go is a hostile tester's attacks on the pool's life-cycle
// and its supervisor on the exec start path: New, Close, Reload, Resize,
// overflow and its idle timeout, MaxWaiting, recycling, the crash-loop
// backoff, start failures, Ping, and Stats' counters under faults; and
// RoadRunner's pool and supervisor tests, ported where pypool has the same
// semantics.

import (
	"syscall"
	"testing"

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
// SIGKILLed from outside, so that no crash-loop backoff slows the loop.
func TestAuditLifeCrashIsCountedWhenItsCallerSeesIt(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, testConfig(t))
	for i := range 12 {
		pid := workerPids(pool)[0]
		errc := make(chan error, 1)
		go func() {
			_, err := pool.Call(testCtx(t), "sleep", 30)
			errc <- err
		}()
		awaitPool(t, pool, "the call running", func(s Stats) bool { return s.InUse == 1 })
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		require.ErrorIs(t, <-errc, ErrWorkerCrashed)
		s := pool.Stats()
		require.Equal(t, uint64(i+1), s.Crashes, "crash %d: %+v", i, s)
		require.Equal(t, int64(s.Workers), ledger(s), "crash %d: %+v", i, s)
		awaitPool(t, pool, "back at size", func(s Stats) bool { return atRest(s, 1) })
	}
}
