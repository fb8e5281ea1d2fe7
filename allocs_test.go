package pypool

import (
	"bytes"
	"context"
	"runtime"
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
	// maxAllocsWaitingCall: an empty Transaction and a call that waits
	// for its worker (TestTrivialCallAllocations/Waiting): the call's
	// maxAllocsCall, the transaction's Worker, and what the test itself
	// allocates (a channel, two closures). The waiting checkout allocates
	// no waiter (3 allocations before: the waiter and its channel).
	maxAllocsWaitingCall = maxAllocsCall + 4
)

// TestTrivialCallAllocations (issue 21): pins the allocations of a trivial
// call, so that the cuts of the per-call budget cannot come back unseen.
// Allocations are counted, not timed: the count does not depend on the
// machine's load.
func TestTrivialCallAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := duplicateConfig(t)
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
	t.Run("Waiting", func(t *testing.T) {
		// A call that waits for the one worker, held by a transaction
		// until the call is queued: its checkout allocates nothing (the
		// waiter is reused). The rest is the call's own and the test's.
		got := allocs(func() {
			done := make(chan struct{})
			_ = pool.Transaction(context.Background(), func(*Worker) error {
				go func() {
					call(context.Background())
					close(done)
				}()
				for pool.Stats().Waiting == 0 {
					runtime.Gosched()
				}
				return nil
			})
			<-done
		})
		t.Logf("%v allocations for a transaction and a call that waits for it", got)
		if got > maxAllocsWaitingCall {
			t.Errorf("a transaction and a call that waits for it allocate %v times, more than %d", got, maxAllocsWaitingCall)
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

// BenchmarkCallParallel is the throughput scenario's shape (bench/README.md):
// 2 workers and 8 callers making trivial calls, so that most checkouts
// wait for a check-in. Its allocations a call (-benchmem) include the
// waiters'.
func BenchmarkCallParallel(b *testing.B) {
	cfg := duplicateConfig(b)
	cfg.Size = 2
	pool := newTestPool(b, cfg)
	ctx := context.Background()
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := pool.Call(ctx, "duplicate_text", "testing"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestWaiterWithStartIsNotReused (issue 21): a waiter is reused once its
// checkout is over, but not one a start was ordered for (a NoWait
// checkout's): the start reads it when it ends, and a reused one would
// hand that start's worker or error to another caller.
func TestWaiterWithStartIsNotReused(t *testing.T) {
	wt := newWaiter()
	wt.decided, wt.started = true, true
	wt.release()
	if !wt.decided {
		t.Fatal("a waiter a start was ordered for was reset for reuse")
	}
	wt = newWaiter()
	wt.decided, wt.queued, wt.deadline = true, false, time.Now()
	wt.release()
	if wt.decided || !wt.deadline.IsZero() || wt.granted == nil {
		t.Fatalf("a released waiter is reset, its channel kept: %+v", wt)
	}
}

// Allocations of CallBytes echoing 1 MiB through the pipes into one reused
// buffer (BenchmarkEcho's pipes-reused-buffer; bench/README.md, "The pipe
// path's large payloads"), upper bounds as above.
const (
	// maxAllocsCallBytesPipes: the caller's variadic argument (its []any
	// and the []byte's box), CallBytes's result and its two method values
	// (decode, readFrame), and the go-commons-pool deque's node at
	// checkin: 136 bytes in all. Before issue 21 it was 6 as well, one of
	// them the 1 MiB body.
	maxAllocsCallBytesPipes = 6
	// maxBytesCallBytesPipes: bytes allocated a call. Before issue 21 the
	// frame reader handed every body above wire.LargeFrame over, and
	// CallBytes copied it into the buffer: 1 MiB a call. Now the bytes are
	// read from the pipe straight into the buffer.
	maxBytesCallBytesPipes = 4 << 10
)

// TestCallBytesPipesAllocations (issue 21): CallBytes of a 1 MiB bytes
// result through the pipes (the shared memory off) allocates no body: its
// count and its bytes are pinned, so that a fresh 1 MiB a call cannot
// come back unseen.
func TestCallBytesPipesAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := testConfig(t)
	cfg.Size = 1
	cfg.SharedMemoryThreshold = -1
	pool := newTestPool(t, cfg)
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i)
	}
	var buf []byte
	call := func() {
		var err error
		if buf, err = CallBytes(context.Background(), pool, buf[:0], "echo", data); err != nil {
			t.Fatal(err)
		}
	}
	call() // the buffer's and the encoder's first growth
	const runs = 200
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		call()
	}
	runtime.ReadMemStats(&after)
	if !bytes.Equal(buf, data) {
		t.Fatal("the result is not the argument")
	}
	got := min(testing.AllocsPerRun(runs, call), testing.AllocsPerRun(runs, call))
	perCall := (after.TotalAlloc - before.TotalAlloc) / runs
	t.Logf("%v allocations, %d bytes a call", got, perCall)
	if got > maxAllocsCallBytesPipes {
		t.Errorf("CallBytes of 1 MiB through the pipes allocates %v times, more than %d", got, maxAllocsCallBytesPipes)
	}
	if perCall > maxBytesCallBytesPipes {
		t.Errorf("CallBytes of 1 MiB through the pipes allocates %d bytes a call, more than %d", perCall, maxBytesCallBytesPipes)
	}
}

// TestCallContextAllocations (issue 23): a call whose context carries
// metadata and a trace context allocates no more than a trivial call: the
// metadata is checked and encoded once, when it is attached
// (WithMetadata), and the call copies those bytes into its frame.
func TestCallContextAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := duplicateConfig(t)
	pool := newTestPool(t, cfg)
	ctx := WithTraceContext(WithMetadata(context.Background(), map[string]string{"tenant": "acme", "request_id": "r-1"}),
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "")
	call := func() {
		if _, err := pool.Call(ctx, "duplicate_text", "testing"); err != nil {
			t.Fatal(err)
		}
	}
	call()
	got := min(testing.AllocsPerRun(2000, call), testing.AllocsPerRun(2000, call))
	t.Logf("%v allocations a call with metadata", got)
	if got > maxAllocsCall {
		t.Errorf("a trivial call with metadata allocates %v times, more than %d", got, maxAllocsCall)
	}
}

// TestWaitingCheckoutParksOnItsChannel (issue 21): a checkout that waits
// for a worker with a context that never ends (context.Background) parks
// on its waiter's channel alone, a plain receive ("chan receive"), not a
// select of it and a nil Done channel, which costs a runtime.selectgo a
// waiting call in the throughput scenario's shape (bench/README.md, the
// per-call budget); with a context that can end it selects on both.
func TestWaitingCheckoutParksOnItsChannel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := duplicateConfig(t)
	pool := newTestPool(t, cfg)
	for _, c := range []struct {
		name, wait string
		ctx        func() (context.Context, context.CancelFunc)
	}{
		{"Background", "chan receive", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
		{"WithCancel", "select", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := c.ctx()
			defer cancel()
			var state string
			done := make(chan error, 1)
			err := pool.Transaction(context.Background(), func(*Worker) error {
				go func() {
					_, err := pool.Call(ctx, "duplicate_text", "testing")
					done <- err
				}()
				for pool.Stats().Waiting == 0 {
					runtime.Gosched()
				}
				state = waitingCheckoutState(t)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if state != c.wait {
				t.Errorf("the waiting checkout is parked in [%s], want [%s]", state, c.wait)
			}
		})
	}
}

// waitingCheckoutState returns the wait reason of the goroutine parked in
// Pool.checkout, as the goroutine dump names it ("chan receive",
// "select"), once it is parked there.
func waitingCheckoutState(t *testing.T) string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range bytes.Split(buf, []byte("\n\n")) {
			if !bytes.Contains(g, []byte("pypool.(*Pool).checkout(")) {
				continue
			}
			head, _, _ := bytes.Cut(g, []byte("\n"))
			_, reason, ok := bytes.Cut(head, []byte(" ["))
			if !ok {
				continue
			}
			reason, _, _ = bytes.Cut(reason, []byte("]"))
			reason, _, _ = bytes.Cut(reason, []byte(","))
			if s := string(reason); s != "running" && s != "runnable" {
				return s
			}
		}
		runtime.Gosched()
	}
	t.Fatal("no goroutine parked in Pool.checkout")
	return ""
}
