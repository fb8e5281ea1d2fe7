package pypool

import (
	"context"
	"testing"
	"time"
)

// Allocations of a trivial call's Go side (bench/README.md, "The per-call
// budget"), as BenchmarkCall and BenchmarkCallWithDeadline count them.
// They are upper bounds: a change that adds one fails here, not silently
// in a benchmark nobody reads.
const (
	// maxAllocsCall: the result (the string and its any box) and the
	// go-commons-pool deque's node at checkin.
	maxAllocsCall = 3
	// maxAllocsCallWithDeadline: maxAllocsCall, the caller's own
	// context.WithTimeout (4), and the deadline's watch: context.AfterFunc's
	// (4) and the context's Done channel, made because the watch asks for it.
	maxAllocsCallWithDeadline = 12
)

// TestTrivialCallAllocations (issue 21): pins the allocations of a trivial
// call, so that the cuts of the per-call budget cannot come back unseen.
// Allocations are counted, not timed: the count does not depend on the
// machine's load.
func TestTrivialCallAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := testConfig(t)
	cfg.Module, cfg.PythonPath = "my_module", []string{"examples/duplicate"}
	pool := newTestPool(t, cfg)
	call := func(ctx context.Context) {
		if _, err := pool.Call(ctx, "duplicate_text", "testing"); err != nil {
			t.Fatal(err)
		}
	}
	call(context.Background()) // the first call's one-time allocations
	// allocs counts every goroutine's allocations: the least of two runs,
	// so that a goroutine left by an earlier test cannot fail this one.
	allocs := func(f func()) float64 {
		return min(testing.AllocsPerRun(2000, f), testing.AllocsPerRun(2000, f))
	}

	t.Run("Background", func(t *testing.T) {
		got := allocs(func() { call(context.Background()) })
		t.Logf("%v allocations a call", got)
		if got > maxAllocsCall {
			t.Errorf("a trivial call allocates %v times, more than %d", got, maxAllocsCall)
		}
	})
	t.Run("WithDeadline", func(t *testing.T) {
		got := allocs(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			call(ctx)
			cancel()
		})
		t.Logf("%v allocations a call", got)
		if got > maxAllocsCallWithDeadline {
			t.Errorf("a trivial call with a deadline allocates %v times, more than %d", got, maxAllocsCallWithDeadline)
		}
	})
}
