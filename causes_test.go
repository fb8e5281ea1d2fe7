package pypool

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReplacementAboveSizeCountsAsCrash: a worker killed while the pool runs
// beyond Size (overflow workers in use, a caller waiting) is replaced, and
// the replacement counts as StartsCrash, not StartsOverflow: the cause that
// made a start, whatever the pool's size at the time (issue 20: during a
// crash storm every replacement counted as overflow).
func TestReplacementAboveSizeCountsAsCrash(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 1, 2
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 3) // the one of Size and 2 overflow workers
	before := pool.Stats()
	require.Equal(t, uint64(2), before.StartsOverflow)
	require.Equal(t, 2, before.OverflowInUse)

	ctx := testCtx(t)
	const kills = 2
	for i := range kills {
		if i > 0 {
			// The last round's replacement was checked in and stopped
			// (an overflow worker nobody needs): hold one more, so that
			// the pool is full again. Without it the caller could find
			// the room that stop left once its process exited, and
			// start an overflow worker of its own (seen under load:
			// StartsCrash 1, StartsOverflow 3).
			releaseFirst, releaseMore := release, holdWorkers(t, pool, 1)
			release = func() { releaseFirst(); releaseMore() }
		}
		// A caller waits for a worker; none can start (the pool is full).
		served := make(chan error, 1)
		go func() {
			_, err := pool.Call(ctx, "echo", i)
			served <- err
		}()
		awaitPool(t, pool, "a caller waiting", func(s Stats) bool { return s.Waiting == 1 })
		victim := pool.heldPid(t)
		require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))
		require.NoError(t, <-served, "the replacement served the waiting caller")
		awaitPool(t, pool, "the killed worker replaced", func(s Stats) bool {
			return s.Crashes == uint64(i+1) && s.Starting == 0
		})
	}
	s := pool.Stats()
	assert.Equal(t, uint64(kills), s.StartsCrash, "every replacement counted as a crash's: %+v", s)
	assert.Equal(t, before.StartsOverflow+kills-1, s.StartsOverflow, "no replacement counted as overflow (one start for the holder of each later round): %+v", s)
	assert.Equal(t, s.StartsCrash+s.StartsRecycle+s.StartsOverflow+s.StartsResize, s.Restarts)

	// An idle overflow worker that crashes with nobody waiting is not
	// replaced, and leaves nothing owed: the next start beyond Size for a
	// caller is overflow again.
	release()
	awaitPool(t, pool, "at rest", func(s Stats) bool { return atRest(s, 1) })
	rest := pool.Stats()
	release = holdWorkers(t, pool, 2)
	s = pool.Stats()
	release()
	assert.Equal(t, rest.StartsOverflow+1, s.StartsOverflow, "a start beyond Size for a caller: %+v", s)
	assert.Equal(t, rest.StartsCrash, s.StartsCrash)
}

// heldPid returns the pid of one of the pool's checked-out workers.
func (p *Pool) heldPid(t *testing.T) int {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for proc, pw := range p.workers {
		if pw.state == stateCheckedOut {
			return proc.pid
		}
	}
	t.Fatal("no worker checked out")
	return 0
}

// TestOverflowIdleStopsHaveTheirOwnCause: overflow workers stopped after
// Config.OverflowIdleTimeout count in StopsOverflowIdle, not in
// StopsOverflow (stopped at check-in with nobody waiting), and are not
// replaced (issue 20: they had no cause of their own).
func TestOverflowIdleStopsHaveTheirOwnCause(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 1, 2
	cfg.OverflowIdleTimeout = 200 * time.Millisecond
	pool := newTestPool(t, cfg)
	holdWorkers(t, pool, 3)()
	awaitPool(t, pool, "the idle overflow workers stopped", func(s Stats) bool { return atRest(s, 1) })
	s := pool.Stats()
	assert.Equal(t, uint64(2), s.StopsOverflowIdle, "%+v", s)
	assert.Zero(t, s.StopsOverflow, "none stopped at check-in: %+v", s)
	assert.Equal(t, uint64(2), s.Recycled, "healthy workers stopped on purpose")
	assert.Equal(t, uint64(2), s.StartsOverflow)
	assert.Zero(t, s.StartsCrash+s.StartsRecycle, "nothing replaced them: %+v", s)

	// Without the timeout, the same burst ends in StopsOverflow.
	cfg.OverflowIdleTimeout = 0
	pool = newTestPool(t, cfg)
	holdWorkers(t, pool, 3)()
	awaitPool(t, pool, "the overflow workers stopped at check-in", func(s Stats) bool { return atRest(s, 1) })
	s = pool.Stats()
	assert.Equal(t, uint64(2), s.StopsOverflow, "%+v", s)
	assert.Zero(t, s.StopsOverflowIdle, "%+v", s)
}
