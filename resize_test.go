package pypool

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestResizeUnderLoad grows and shrinks a pool while callers keep it busy:
// no call fails, and each time the pool settles at the new size.
func TestResizeUnderLoad(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 2, 1
	pool := newTestPool(t, cfg)

	stop := make(chan struct{})
	var calls atomic.Int64
	var failures []error
	var mu sync.Mutex
	var callers sync.WaitGroup
	for i := range 6 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				out, err := pool.Call(testCtx(t), "echo", i)
				if err != nil || out != int64(i) {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
				calls.Add(1)
			}
		}()
	}
	for _, size := range []struct{ size, overflow int }{{5, 2}, {1, 0}, {3, 1}, {1, 1}} {
		before := calls.Load()
		require.NoError(t, pool.Resize(size.size, size.overflow))
		s := pool.Stats()
		assert.Equal(t, size.size, s.Size)
		assert.Equal(t, size.overflow, s.MaxOverflow)
		// Calls go on while the pool changes size.
		awaitPool(t, pool, "calls made after the resize", func(Stats) bool { return calls.Load() > before+20 })
	}
	close(stop)
	callers.Wait()
	assert.Empty(t, failures, "no call failed while the pool was resized")
	awaitPool(t, pool, "at rest at the last size", func(s Stats) bool { return atRest(s, 1) })
	assert.Len(t, childProcesses(), 1, "the workers beyond the new size were stopped")
}

// TestResizeGrowsAtOnce: growing starts the new workers without a call
// asking for them; shrinking stops idle workers at once.
func TestResizeGrowsAtOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 1
	pool := newTestPool(t, cfg)
	require.NoError(t, pool.Resize(3, 0))
	awaitPool(t, pool, "3 idle workers", func(s Stats) bool { return atRest(s, 3) })
	assert.Equal(t, uint64(2), pool.Stats().StartsResize, "the two new workers count as started by Resize")
	require.NoError(t, pool.Resize(1, 0))
	awaitPool(t, pool, "1 idle worker", func(s Stats) bool { return atRest(s, 1) })
	assert.Equal(t, uint64(2), pool.Stats().StopsResize, "the two idle workers count as stopped by Resize")
}

// TestResizeWaitsForBusyWorkers: shrinking never interrupts a call; the
// busy worker beyond the new size stops when it is checked in.
func TestResizeWaitsForBusyWorkers(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	err := pool.Transaction(testCtx(t), func(a *Worker) error {
		return pool.Transaction(testCtx(t), func(b *Worker) error {
			require.NoError(t, pool.Resize(1, 0))
			assert.Equal(t, 2, pool.Stats().InUse, "both calls' workers keep running")
			for _, w := range []*Worker{a, b} {
				_, err := w.Call(testCtx(t), "echo", 1)
				require.NoError(t, err)
			}
			return nil
		})
	})
	require.NoError(t, err)
	awaitPool(t, pool, "1 idle worker", func(s Stats) bool { return atRest(s, 1) })
}

func TestResizeRefusesBadSizesAndClosedPools(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	assert.Error(t, pool.Resize(0, 0))
	assert.Error(t, pool.Resize(1, -1))
	require.NoError(t, pool.Close(context.Background()))
	assert.ErrorIs(t, pool.Resize(2, 0), ErrPoolClosed)
}

// TestResizeShrinksUnderSustainedLoad (issue 18, finding 12): Size 4 → 1
// (MaxOverflow 0) while 6 callers keep every worker busy and callers
// waiting. Each worker beyond the new size is stopped at its check-in, even
// though callers wait: within a few check-ins the pool runs 1 worker, the
// stops count as Resize's, and every call succeeds.
func TestResizeShrinksUnderSustainedLoad(t *testing.T) {
	const callers = 6
	cfg := testConfig(t)
	cfg.Size = 4
	pool := newTestPool(t, cfg)

	stop := make(chan struct{})
	var failures atomic.Int64
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if out, err := pool.Call(testCtx(t), "echo", i); err != nil || out != int64(i) {
					t.Errorf("Call(echo, %d) = %v, %v", i, out, err)
					failures.Add(1)
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	awaitPool(t, pool, "4 workers in use and callers waiting", func(s Stats) bool { return s.InUse == 4 && s.Waiting > 0 })

	before := pool.Stats().CallsSent
	require.NoError(t, pool.Resize(1, 0))
	// Each of the 3 excess workers goes at its next check-in; the calls
	// that ended meanwhile on the others, and those counted before their
	// check-in, make up the rest of the bound.
	const bound = 3 + callers + 4
	awaitPool(t, pool, "1 worker, or the bound of check-ins passed", func(s Stats) bool {
		return (s.Workers == 1 && s.StopsResize == 3) || s.CallsSent > before+bound
	})
	s := pool.Stats()
	assert.Equal(t, 1, s.Workers, "workers after %d check-ins: %+v", s.CallsSent-before, s)
	assert.Equal(t, uint64(3), s.StopsResize, "the excess workers count as stopped by Resize")
	assert.LessOrEqual(t, s.CallsSent-before, uint64(bound))
	assert.Zero(t, failures.Load(), "no call failed")
}
