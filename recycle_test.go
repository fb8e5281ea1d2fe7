package pypool

// Recycling healthy workers on purpose (supervise.go): MaxCallsPerWorker,
// MaxWorkerLifetime, MaxWorkerMemory, OverflowIdleTimeout.

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMaxCallsPerWorkerRecycles(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxCallsPerWorker = 3
	pool := newTestPool(t, cfg)
	first := workerPids(pool)
	for range 3 {
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
	awaitPool(t, pool, "recycled and refilled", func(s Stats) bool {
		return s.Recycled == 1 && s.Restarts == 1 && s.Workers == 1 && len(workerPids(pool)) == 1
	})
	assert.NotEqual(t, first, workerPids(pool))
	assert.Zero(t, pool.Stats().Crashes, "recycling is not a crash")
	_, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
}

func TestMaxWorkerLifetimeRecyclesIdleWorkers(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxWorkerLifetime = 200 * time.Millisecond
	pool := newTestPool(t, cfg)
	first := workerPids(pool)[0]
	awaitPool(t, pool, "the old worker replaced", func(s Stats) bool {
		pids := workerPids(pool)
		return s.Recycled >= 1 && s.Workers == 1 && len(pids) == 1 && pids[0] != first
	})
	_, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
}

func TestMaxWorkerMemoryRecyclesAfterTheCall(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	pid := 0
	{
		probe := newTestPool(t, cfg)
		pid = workerPids(probe)[0]
		rss, err := residentBytes(pid)
		require.NoError(t, err)
		cfg.MaxWorkerMemory = rss + 64<<20
	}
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	first := workerPids(pool)
	out, err := pool.Call(testCtx(t), "hog", 128)
	require.NoError(t, err, "the call over the limit completes")
	assert.Equal(t, int64(1), out)
	awaitPool(t, pool, "the hog replaced", func(s Stats) bool {
		return s.Recycled == 1 && s.Restarts == 1 && s.Workers == 1 && len(workerPids(pool)) == 1
	})
	assert.NotEqual(t, first, workerPids(pool))
	// Its stack as it was recycled (idle, between calls), tagged with the
	// call that went over the limit.
	stack := rec.awaitMatch(t, msgPythonStack, "event", dumpRecycled)
	assert.Equal(t, "hog", stack["function"])
	assert.Equal(t, itoa(first[0]), stack["worker"])
	assert.Contains(t, stack["stack"], "in serve")
	assert.Contains(t, rec.await(t, msgWorkerStopped)["cause"], "MaxWorkerMemory")
}

func TestOverflowIdleTimeoutAvoidsChurn(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxOverflow = 2
	cfg.OverflowIdleTimeout = 300 * time.Millisecond
	pool := newTestPool(t, cfg)
	release := holdWorkers(t, pool, 3)
	release()
	s := pool.Stats()
	assert.Equal(t, 3, s.Workers, "overflow workers linger after the burst")
	assert.Equal(t, 3, s.Idle)

	// Another burst reuses them: no new process.
	before, restarts := workerPids(pool), pool.Stats().Restarts
	release = holdWorkers(t, pool, 3)
	release()
	assert.ElementsMatch(t, before, workerPids(pool))
	assert.Equal(t, restarts, pool.Stats().Restarts)

	awaitPool(t, pool, "overflow stopped after idling", func(s Stats) bool {
		return s.Workers == 1 && s.Recycled == 2 && len(workerPids(pool)) == 1
	})
}
