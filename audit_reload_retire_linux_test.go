package pypool

// audit_reload_retire_linux_test.go: a reload retires an old worker only
// once a new one is proven to take its place (docs/reloading.md), so a
// busy pool never drops below Size ready workers, and a new worker that
// fails mid-roll is the reload's failure, not the pool's.

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAuditReloadFailingMidRoll: the reload's first new worker is proven,
// a later one's SetUp raises (the files changed again mid-reload): Reload
// returns that start error, no call fails, the pool keeps serving at
// Size, and the next Reload of fixed code completes.
func TestAuditReloadFailingMidRoll(t *testing.T) {
	f := newReloadFixture(t, 3, nil)
	top := brokenAfterFirstSetUp(t)
	stop := busyCallers(t, f.pool, 4, 5, 20*time.Second)
	f.writeTop(t, "v2", top, "_setup2()")
	err := f.pool.Reload(testCtx(t))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Contains(t, pyErr.Traceback, "a later worker is broken")
	s := f.pool.Stats()
	t.Logf("after the failed reload: %+v", s)
	assert.Equal(t, uint64(1), s.ReloadsFailed)
	assert.Positive(t, s.StartsReload, "its first worker started")
	for _, o := range stop() {
		assert.NoError(t, o.err)
	}
	f.reloadTo(t, "v3")
	awaitPool(t, f.pool, "at rest", func(s Stats) bool { return atRest(s, 3) && s.OldGeneration == 0 })
	assert.Equal(t, uint64(2), f.pool.Stats().Generation)
}

// TestAuditReloadNeverRetiresBeforeAReplacementIsProven: "each new worker
// is started and proven before an old one is retired": while a reload of
// a busy pool runs, the pool never has fewer than Size ready workers
// (no caller waits for a start because of it).
func TestAuditReloadNeverRetiresBeforeAReplacementIsProven(t *testing.T) {
	f := newReloadFixture(t, 3, nil)
	stop := busyCallers(t, f.pool, 3, 20, 20*time.Second)
	awaitPool(t, f.pool, "every worker busy", func(s Stats) bool { return s.InUse == 3 })
	f.write(t, "v2", "time.sleep(0.3)")
	done, finished := make(chan struct{}), make(chan struct{})
	var fewest Stats
	fewest.Workers = 3
	go func() {
		defer close(finished)
		for {
			changed := f.pool.awaitChange()
			if s := f.pool.Stats(); s.Workers < fewest.Workers {
				fewest = s
			}
			select {
			case <-changed:
			case <-done:
				return
			}
		}
	}()
	err := f.pool.Reload(testCtx(t))
	close(done)
	<-finished
	require.NoError(t, err)
	for _, o := range stop() {
		assert.NoError(t, o.err)
	}
	assert.Equal(t, 3, fewest.Workers, "an old worker retired before its replacement was proven: %+v", fewest)
}
