package pypool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStreamItems(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	items, err := collect(t, pool.Stream(ctx, "numbers", 1000))
	require.NoError(t, err)
	require.Len(t, items, 1000)
	for i, item := range items {
		require.Equal(t, int64(i), item)
	}
	// An iterator that is not a generator streams too; an empty one ends at once.
	items, err = collect(t, pool.Stream(ctx, "iterator", 3))
	require.NoError(t, err)
	require.Equal(t, []any{int64(0), int64(1), int64(2)}, items)
	items, err = collect(t, pool.Stream(ctx, "numbers", 0))
	require.NoError(t, err)
	require.Empty(t, items)
	items, err = collect(t, pool.Stream(ctx, "numbers", Kwargs{"n": 2}))
	require.NoError(t, err)
	require.Equal(t, []any{int64(0), int64(1)}, items)
	// The worker serves calls as before.
	v, err := pool.Call(ctx, "events_seen")
	require.NoError(t, err)
	require.Equal(t, []any{}, v)
}

func TestStreamNotIterator(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	_, err := collect(t, pool.Stream(ctx, "not_iterator"))
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	require.Equal(t, "TypeError", pyErr.Type)
	require.Contains(t, pyErr.Message, "not an iterator")
	_, err = collect(t, pool.Stream(ctx, "no_such_function"))
	require.ErrorIs(t, err, ErrFunctionNotFound)
	// A generator called with Call says to stream it.
	_, err = pool.Call(ctx, "numbers", 3)
	require.ErrorIs(t, err, ErrResultNotEncodable)
	require.Contains(t, err.Error(), "Pool.Stream")
}

func TestStreamBreakRunsFinally(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	pid := workerPids(pool)[0]
	n := 0
	for item, err := range pool.Stream(ctx, "tracked", 100000) {
		require.NoError(t, err)
		require.Equal(t, int64(n), item)
		if n++; n == 10 {
			break
		}
	}
	// Back in the pool, healthy, the generator closed: its finally ran.
	require.True(t, atRest(pool.Stats(), 1), "%+v", pool.Stats())
	v, err := pool.Call(ctx, "events_seen")
	require.NoError(t, err)
	require.Equal(t, []any{"finally"}, v)
	require.Equal(t, []int{pid}, workerPids(pool))
	require.Zero(t, pool.Stats().Crashes)
}

func TestStreamPanicInLoop(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	func() {
		defer func() { require.Equal(t, "boom", recover()) }()
		for range pool.Stream(ctx, "tracked", 100000) {
			panic("boom")
		}
	}()
	require.True(t, atRest(pool.Stats(), 1), "%+v", pool.Stats())
	v, err := pool.Call(ctx, "events_seen")
	require.NoError(t, err)
	require.Equal(t, []any{"finally"}, v)
}

func TestStreamRaisesMidway(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	items, err := collect(t, pool.Stream(ctx, "raises_after", 5))
	require.Equal(t, []any{int64(0), int64(1), int64(2), int64(3), int64(4)}, items)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	require.Equal(t, "ValueError", pyErr.Type)
	require.Equal(t, "broke after 5", pyErr.Message)
	require.Contains(t, pyErr.Traceback, "raises_after")
	// An item that does not encode: the items before it, then the error.
	items, err = collect(t, pool.Stream(ctx, "unencodable_at", 3))
	require.Equal(t, []any{int64(0), int64(1), int64(2)}, items)
	require.ErrorIs(t, err, ErrResultNotEncodable)
	require.Contains(t, err.Error(), "item 3")
	_, err = pool.Call(ctx, "pid")
	require.NoError(t, err)
}

// TestStreamDeadline: the items of a stream cut off arrive as they are
// produced; the cut ends the stream, and the interrupted worker comes
// back. The stream is cancelled once its first item has arrived, by a
// goroutine of the test: a deadline could pass, on a busy machine, before
// Python had made one (TestDeadlineInvariant cuts streams by deadlines).
func TestStreamDeadline(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	first := make(chan struct{})
	go func() {
		select {
		case <-first:
		case <-ctx.Done():
		}
		cancel()
	}()
	var items []any
	var err error
	for item, ierr := range pool.Stream(ctx, "slow", 1000, 0.05) {
		if err = ierr; err != nil {
			break
		}
		if items = append(items, item); len(items) == 1 {
			close(first)
		}
	}
	require.ErrorIs(t, err, context.Canceled)
	require.NotEmpty(t, items, "the items before the cut arrive as they are produced")
	require.Less(t, len(items), 1000)
	// The interrupted worker drains and comes back.
	awaitPool(t, pool, "the worker back after its interrupt", func(s Stats) bool { return atRest(s, 1) })
	_, err = pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	require.Zero(t, pool.Stats().Crashes)

	// Canceled by the loop's own context while the body runs.
	ctx2, cancel2 := context.WithCancel(testCtx(t))
	defer cancel2()
	n := 0
	for _, err := range pool.Stream(ctx2, "numbers", 100000) {
		if err != nil {
			require.ErrorIs(t, err, context.Canceled)
			break
		}
		if n++; n == 3 {
			cancel2()
		}
	}
	awaitPool(t, pool, "the worker back after the cancellation", func(s Stats) bool { return atRest(s, 1) })
}

func TestStreamAs(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	type record struct {
		ID   int    `msgpack:"id"`
		Name string `msgpack:"name"`
	}
	var got []record
	for r, err := range StreamAs[record](ctx, pool, "records", 3) {
		require.NoError(t, err)
		got = append(got, r)
	}
	require.Equal(t, []record{{0, "item 0"}, {1, "item 1"}, {2, "item 2"}}, got)
	// An item that does not fit T ends the loop with the decoding error.
	var errs []error
	for _, err := range StreamAs[string](ctx, pool, "numbers", 5) {
		errs = append(errs, err)
	}
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], ErrResultNotDecodable)
	require.True(t, atRest(pool.Stats(), 1))
}

func TestWorkerStream(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	err := pool.Transaction(ctx, func(w *Worker) error {
		var sum int64
		for item, err := range w.Stream(ctx, "numbers", 10) {
			if err != nil {
				return err
			}
			sum += item.(int64)
			if item == int64(5) {
				_, err := w.Call(ctx, "pid")
				require.ErrorIs(t, err, ErrWorkerBusy)
			}
		}
		require.Equal(t, int64(45), sum)
		v, err := w.Call(ctx, "pid")
		require.NoError(t, err)
		require.Equal(t, int64(w.Pid()), v)
		for n, err := range StreamAs[int](ctx, w, "numbers", 3) {
			require.NoError(t, err)
			_ = n
		}
		return nil
	})
	require.NoError(t, err)
	var released *Worker
	_ = pool.Transaction(ctx, func(w *Worker) error { released = w; return nil })
	_, err = collect(t, released.Stream(ctx, "numbers", 3))
	require.ErrorIs(t, err, ErrWorkerReleased)
}

func TestStreamWorkerKilled(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	n := 0
	var last error
	for item, err := range pool.Stream(ctx, "pid_then_numbers", 5) {
		if err != nil {
			last = err
			break
		}
		if n == 0 {
			require.NoError(t, syscall.Kill(int(item.(int64)), syscall.SIGKILL))
		}
		n++
	}
	require.ErrorIs(t, last, ErrWorkerCrashed)
	awaitPool(t, pool, "a replacement", func(s Stats) bool { return atRest(s, 1) })
	_, err := pool.Call(ctx, "pid")
	require.NoError(t, err)
}

func TestStreamClosedPool(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	require.NoError(t, pool.Close(testCtx(t)))
	_, err := collect(t, pool.Stream(testCtx(t), "numbers", 3))
	require.True(t, errors.Is(err, ErrPoolClosed), "%v", err)
}

// procStatusKB reads a "Vm...:" field of /proc/<pid>/status, in KiB.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc/%d/status (%v): memory cannot be measured here", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			require.NoError(t, err)
			return kb
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// streamMemoryItems is how many items TestStreamBoundedMemory streams
// (about 2 s under -race).
const streamMemoryItems = 1_000_000

// TestStreamBoundedMemory streams a million small items through a loop
// that checks each (slower than the generator produces them, under -race
// by far): neither the worker's peak memory nor the Go heap may grow by
// more than a few MiB. Buffering the sequence would take over 100 MiB.
func TestStreamBoundedMemory(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	pid := workerPids(pool)[0]
	_, err := collect(t, pool.Stream(ctx, "small_items", 1000)) // warm up the code paths
	require.NoError(t, err)
	pyBefore := procStatusKB(t, pid, "VmRSS")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	goBefore, goPeak := ms.HeapInuse, ms.HeapInuse
	n := 0
	for item, err := range pool.Stream(ctx, "small_items", streamMemoryItems) {
		require.NoError(t, err)
		if pair := item.([]any); pair[0] != int64(n) || len(pair[1].([]byte)) != 16 {
			t.Fatalf("item %d is %v", n, item)
		}
		if n++; n%(streamMemoryItems/10) == 0 {
			runtime.ReadMemStats(&ms)
			goPeak = max(goPeak, ms.HeapInuse)
		}
	}
	require.Equal(t, streamMemoryItems, n)
	pyPeak := procStatusKB(t, pid, "VmHWM")
	t.Logf("%d items: worker RSS %d KiB before, peak %d KiB; Go heap in use %d KiB before, peak %d KiB",
		n, pyBefore, pyPeak, goBefore>>10, goPeak>>10)
	const boundMiB = 32
	require.Less(t, pyPeak-pyBefore, int64(boundMiB<<10), "the worker's memory grew with the stream")
	require.Less(t, int64(goPeak)-int64(goBefore), int64(boundMiB<<20), "the Go heap grew with the stream")
}

// TestStreamAsyncGenerator streams an async generator: on the worker's
// event loop when the runtime has pypool_runtime/aio.py (sync_iter), else
// the documented TypeError.
func TestStreamAsyncGenerator(t *testing.T) {
	pool := newTestPool(t, streamConfig(t))
	ctx := testCtx(t)
	items, err := collect(t, pool.Stream(ctx, "async_numbers", 3))
	require.NoError(t, err)
	require.Equal(t, []any{int64(0), int64(1), int64(2)}, items)
	for range pool.Stream(ctx, "async_numbers", 100) {
		break // aclose() runs the async generator's finally
	}
	v, err := pool.Call(ctx, "events_seen")
	require.NoError(t, err)
	require.Equal(t, []any{"async finally", "async finally"}, v)
	// An async function's value is awaited, then streamed.
	items, err = collect(t, pool.Stream(ctx, "awaited_numbers", 2))
	require.NoError(t, err)
	require.Equal(t, []any{int64(0), int64(1)}, items)
}

// TestStreamTraced: a stream is one traced call, from the loop's start to
// its end, in a transaction too.
func TestStreamTraced(t *testing.T) {
	pool, rec := tracedPool(t, streamConfig(t))
	ctx := testCtx(t)
	pid := workerPids(pool)[0]
	for range pool.Stream(ctx, "numbers", 10, Kwargs{}) {
		break
	}
	_, err := collect(t, pool.Stream(ctx, "raises_after", 1))
	require.Error(t, err)
	require.NoError(t, pool.Transaction(ctx, func(w *Worker) error {
		_, err := collect(t, w.Stream(ctx, "numbers", 3))
		return err
	}))
	ev := rec.take()
	require.Equal(t, []string{"start:1", "worker:1", "end:1", "start:2", "worker:2", "end:2", "start:3", "worker:3", "end:3"}, hooks(ev))
	assert.Equal(t, TraceCallStartData{Function: "numbers", Args: 1, Kwargs: 0}, ev[0].start)
	assert.Equal(t, pid, ev[1].worker.Pid)
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomeOK, ev[2].end.Outcome)
	assert.Equal(t, OutcomePythonError, ev[5].end.Outcome)
	assert.True(t, ev[6].start.Transaction)
	assert.Equal(t, OutcomeOK, ev[8].end.Outcome)
}

// TestStreamMix runs streams and callbacks side by side on two workers,
// each ending its own way (to the end, a break, an exception, a deadline,
// a cancellation from the loop, a callback per item), and checks that each
// ends as it should and that the pool ends at rest, without a crash.
func TestStreamMix(t *testing.T) {
	cfg := streamConfig(t)
	cfg.Size = 2
	cfg.Callbacks = map[string]Callback{
		"double": func(ctx context.Context, args []any) (any, error) { return args[0].(int64) * 2, nil },
	}
	pool := newTestPool(t, cfg)
	const rounds = 12
	var wg sync.WaitGroup
	errs := make(chan error, 6*rounds)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				if err := mixRound(pool, (g+r)%6); err != nil {
					errs <- fmt.Errorf("goroutine %d round %d: %w", g, r, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	awaitPool(t, pool, "the pool at rest", func(s Stats) bool { return atRest(s, 2) })
	require.Zero(t, pool.Stats().Crashes)
}

func mixRound(pool *Pool, kind int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch kind {
	case 0: // to the end
		n := 0
		for _, err := range pool.Stream(ctx, "numbers", 5000) {
			if err != nil {
				return err
			}
			n++
		}
		if n != 5000 {
			return fmt.Errorf("%d items", n)
		}
	case 1: // a break
		for range pool.Stream(ctx, "tracked", 1_000_000) {
			break
		}
	case 2: // an exception half-way
		_, err := collectItems(pool.Stream(ctx, "raises_after", 100))
		var pyErr *PythonError
		if !errors.As(err, &pyErr) {
			return fmt.Errorf("raises_after: %v", err)
		}
	case 3: // a deadline
		short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
		defer stop()
		_, err := collectItems(pool.Stream(short, "slow", 100, 0.01))
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("slow: %v", err)
		}
	case 4: // canceled from the loop's body
		own, stop := context.WithCancel(ctx)
		n := 0
		for _, err := range pool.Stream(own, "numbers", 1_000_000) {
			if err != nil {
				break
			}
			if n++; n == 100 {
				stop()
			}
		}
		stop()
	case 5: // a callback per item
		items, err := collectItems(pool.Stream(ctx, "streams_callbacks", 20))
		if err != nil || len(items) != 20 || items[19] != int64(38) {
			return fmt.Errorf("streams_callbacks: %v %v", items, err)
		}
	}
	return nil
}

func collectItems(seq func(func(any, error) bool)) ([]any, error) {
	var items []any
	for item, err := range seq {
		if err != nil {
			return items, err
		}
		items = append(items, item)
	}
	return items, nil
}

// TestStreamBreakSlowGenerator: a break while the generator takes long to
// make its next item: after InterruptGrace the generator is interrupted,
// and the same worker comes back from its drain.
func TestStreamBreakSlowGenerator(t *testing.T) {
	cfg := streamConfig(t)
	cfg.InterruptGrace = 200 * time.Millisecond
	pool := newTestPool(t, cfg)
	pid := workerPids(pool)[0]
	for item, err := range pool.Stream(testCtx(t), "first_then_stuck", 30) {
		require.NoError(t, err)
		require.Equal(t, int64(0), item)
		break
	}
	awaitPool(t, pool, "the worker back after its drain", func(s Stats) bool { return atRest(s, 1) })
	require.Equal(t, []int{pid}, workerPids(pool))
	_, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	require.Zero(t, pool.Stats().Crashes)
}

// TestStreamModules: a generator of another configured module, named
// "module.function", streams as a call of it would run.
func TestStreamModules(t *testing.T) {
	cfg := testConfig(t)
	cfg.Modules = []string{"pypool_streammod"}
	pool := newTestPool(t, cfg)
	items, err := collect(t, pool.Stream(testCtx(t), "pypool_streammod.numbers", 3))
	require.NoError(t, err)
	require.Equal(t, []any{int64(0), int64(1), int64(2)}, items)
	_, err = collect(t, pool.Stream(testCtx(t), "os.walk", "."))
	require.ErrorIs(t, err, ErrFunctionNotFound)
}
