package pypool

// Tests of the pool's accounting of slots (state.go): issue 18, finding 11.

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// watchSlots samples the pool at every change of its state (changes that
// come faster than the samples coalesce) until the returned function is
// called, and fails the test when more than Size+MaxOverflow worker
// processes exist at once: by the pool's own count (serving, starting and
// stopping workers, one snapshot under its lock) or by the live worker
// processes in /proc (childProcesses, forked workers included). The
// returned function gives the most processes /proc showed at once.
func watchSlots(t testing.TB, p *Pool) (stop func() (mostSeen int)) {
	done := make(chan struct{})
	finished := make(chan struct{})
	most := 0
	go func() {
		defer close(finished)
		for {
			changed := p.awaitChange()
			s := p.Stats()
			limit := s.Size + s.MaxOverflow
			if n := s.Workers + s.Starting + s.Stopping; n > limit {
				t.Errorf("%d workers serve, start or stop, more than Size+MaxOverflow = %d: %+v", n, limit, s)
			}
			if live := childProcesses(); len(live) > limit {
				t.Errorf("%d live worker processes %v, more than Size+MaxOverflow = %d", len(live), live, limit)
			} else {
				most = max(most, len(live))
			}
			select {
			case <-changed:
			case <-done:
				return
			}
		}
	}()
	return func() int { close(done); <-finished; return most }
}

// slotHolder is a Transaction held open in its own goroutine.
type slotHolder struct {
	pid     int
	release chan struct{}
	done    chan error
}

// holdWorker checks a worker out within ctx and holds it until end; it
// returns the Transaction's error if the checkout failed.
func holdWorker(pool *Pool, ctx context.Context) (*slotHolder, error) {
	h := &slotHolder{release: make(chan struct{}), done: make(chan error, 1)}
	pids := make(chan int, 1)
	go func() {
		h.done <- pool.Transaction(ctx, func(w *Worker) error {
			pids <- w.Pid()
			<-h.release
			return nil
		})
	}()
	select {
	case h.pid = <-pids:
		return h, nil
	case err := <-h.done:
		return nil, err
	}
}

// end checks the worker in and returns the Transaction's result.
func (h *slotHolder) end() error {
	close(h.release)
	return <-h.done
}

// TestSlotsStoppedOverflowWorkerHoldsItsSlot (issue 18, finding 11): an
// overflow worker checked in while nobody waits is stopped; a checkout right
// after needs a new worker, and that start waits for the stopped one's exit,
// so that Size+MaxOverflow processes are never exceeded.
func TestSlotsStoppedOverflowWorkerHoldsItsSlot(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 1, 1
	pool := newTestPool(t, cfg)
	defer watchSlots(t, pool)()

	core, err := holdWorker(pool, testCtx(t))
	require.NoError(t, err)
	for range 5 {
		over, err := holdWorker(pool, testCtx(t))
		require.NoError(t, err)
		require.NoError(t, over.end()) // stopped: nobody waits
		again, err := holdWorker(pool, testCtx(t))
		require.NoError(t, err, "the checkout is served once the stopped worker exited")
		assert.NotEqual(t, over.pid, again.pid)
		require.NoError(t, again.end())
	}
	require.NoError(t, core.end())
	awaitPool(t, pool, "at rest with 1 worker", func(s Stats) bool { return atRest(s, 1) })
	assert.Equal(t, uint64(10), pool.Stats().StopsOverflow, "every overflow worker was stopped at its check-in")
}

// TestSlotsParallelCheckoutsAndKills (issue 18, finding 11) is a bounded
// version of poolboy's parallel property (Size 3 + MaxOverflow 2): in each
// step three goroutines check 1 or 2 workers out at once, then check each
// back in or SIGKILL it, at random. At every change of the pool's state no
// more than Size+MaxOverflow worker processes exist, stopping ones
// included.
func TestSlotsParallelCheckoutsAndKills(t *testing.T) {
	const goroutines, steps = 3, 8
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 3, 2
	pool := newTestPool(t, cfg)
	stop := watchSlots(t, pool)

	rng := rand.New(rand.NewPCG(18, 11))
	var killed sync.Map // pids
	for range steps {
		wants := make([]int, goroutines)
		total := 0
		for g := range wants {
			wants[g] = 1 + rng.IntN(2)
			total += wants[g]
		}
		// More than Size+MaxOverflow: the last checkouts must give up.
		wait := 2 * time.Second
		if total > cfg.Size+cfg.MaxOverflow {
			wait = 50 * time.Millisecond
		}
		held := make([][]*slotHolder, goroutines)
		inParallel(goroutines, func(g int) {
			for range wants[g] {
				ctx, cancel := context.WithTimeout(testCtx(t), wait)
				h, err := holdWorker(pool, ctx)
				cancel()
				if err == nil {
					held[g] = append(held[g], h)
				} else if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("checkout: %v, want a worker or context.DeadlineExceeded", err)
				}
			}
		})
		kills := make([][]bool, goroutines)
		for g := range held {
			for range held[g] {
				kills[g] = append(kills[g], rng.IntN(6) == 0)
			}
		}
		inParallel(goroutines, func(g int) {
			for i, h := range held[g] {
				if kills[g][i] {
					// A worker killed in an earlier step may have been
					// checked in and handed out before its death was seen.
					if err := syscall.Kill(h.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
						t.Errorf("kill %d: %v", h.pid, err)
					}
					killed.Store(h.pid, true)
				}
				assert.NoError(t, h.end())
			}
		})
	}
	awaitPool(t, pool, "at rest with 3 workers, none of them killed", func(s Stats) bool {
		for _, pid := range workerPids(pool) {
			if _, ok := killed.Load(pid); ok {
				return false
			}
		}
		return atRest(s, 3)
	})
	t.Logf("at most %d live worker processes at once; %+v", stop(), pool.Stats())
}

// inParallel runs f(0) .. f(n-1) in n goroutines and returns when all have.
func inParallel(n int, f func(int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

// TestSlotsWithRecycling (issue 18, finding 11): with MaxCallsPerWorker 2
// every other call recycles its worker; under 8 callers on Size 3 +
// MaxOverflow 5, a recycled worker holds its slot until it has exited, so
// that its replacement never makes more than Size+MaxOverflow processes.
func TestSlotsWithRecycling(t *testing.T) {
	const callers, calls = 8, 40
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow, cfg.MaxCallsPerWorker = 3, 5, 2
	pool := newTestPool(t, cfg)
	stop := watchSlots(t, pool)

	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= calls {
					return
				}
				out, err := pool.Call(testCtx(t), "echo", i)
				if assert.NoError(t, err) {
					assert.Equal(t, int64(i), out)
				}
			}
		}()
	}
	wg.Wait()
	awaitPool(t, pool, "at rest with 3 workers", func(s Stats) bool { return atRest(s, 3) })
	s := pool.Stats()
	t.Logf("at most %d live worker processes at once; %d recycled, %d restarts", stop(), s.StopsMaxCalls, s.Restarts)
	assert.GreaterOrEqual(t, s.StopsMaxCalls, uint64(calls/2-cfg.Size-cfg.MaxOverflow), "workers were recycled")
}
