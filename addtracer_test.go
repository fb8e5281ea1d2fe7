package pypool

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAddTracerBesideConfigTracer: tracers added to a running pool are told
// after Config.Tracer, every hook of an attempt with the context their own
// TraceCallStart returned, and TraceCallEnd names the function.
func TestAddTracerBesideConfigTracer(t *testing.T) {
	pool, first := tracedPool(t, testConfig(t))
	second, third := &recordingTracer{nextID: 100}, &recordingTracer{nextID: 200}
	pool.AddTracer(second)
	pool.AddTracer(nil) // ignored
	pool.AddTracer(third)
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "echo", 1)
	require.NoError(t, err)
	_, err = pool.Call(ctx, "fail", "traced")
	require.Error(t, err)

	for i, rec := range []*recordingTracer{first, second, third} {
		ev := rec.take()
		base := []int{0, 100, 200}[i]
		require.Equal(t, []string{
			fmt.Sprintf("start:%d", base+1), fmt.Sprintf("worker:%d", base+1), fmt.Sprintf("end:%d", base+1),
			fmt.Sprintf("start:%d", base+2), fmt.Sprintf("worker:%d", base+2), fmt.Sprintf("end:%d", base+2),
		}, hooks(ev), "tracer %d", i)
		assert.Zero(t, ev[0].parent, "tracer %d was given the caller's context, not another tracer's", i)
		assert.Equal(t, "echo", ev[2].end.Function)
		assert.Equal(t, OutcomeOK, ev[2].end.Outcome)
		assert.Equal(t, "fail", ev[5].end.Function)
		assert.Equal(t, OutcomePythonError, ev[5].end.Outcome)
		for _, e := range []traceEvent{ev[2], ev[5]} {
			checkEnd(t, e)
		}
	}
}

// TestAddTracerWithoutConfigTracer: a pool without Config.Tracer traces
// from the first AddTracer on.
func TestAddTracerWithoutConfigTracer(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "echo", 1)
	require.NoError(t, err)
	rec := &recordingTracer{}
	pool.AddTracer(rec)
	_, err = pool.Call(ctx, "echo", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"start:1", "worker:1", "end:1"}, hooks(rec.take()))
}

// TestAddTracerRemove: the func AddTracer returns removes that tracer only
// (issue 20: hooks could not be removed): later calls are not told, the
// others keep their order, and removing twice is harmless.
func TestAddTracerRemove(t *testing.T) {
	pool, first := tracedPool(t, testConfig(t))
	second, third := &recordingTracer{nextID: 100}, &recordingTracer{nextID: 200}
	removeSecond := pool.AddTracer(second)
	removeThird := pool.AddTracer(third)
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "echo", 1)
	require.NoError(t, err)
	removeSecond()
	removeSecond()
	_, err = pool.Call(ctx, "echo", 2)
	require.NoError(t, err)
	assert.Equal(t, []string{"start:1", "worker:1", "end:1", "start:2", "worker:2", "end:2"}, hooks(first.take()))
	assert.Equal(t, []string{"start:101", "worker:101", "end:101"}, hooks(second.take()), "removed after the first call")
	assert.Equal(t, []string{"start:201", "worker:201", "end:201", "start:202", "worker:202", "end:202"}, hooks(third.take()))

	removeThird()
	_, err = pool.Call(ctx, "echo", 3)
	require.NoError(t, err)
	assert.Equal(t, []string{"start:3", "worker:3", "end:3"}, hooks(first.take()), "Config.Tracer stays")
	assert.Empty(t, third.take())

	// A pool without Config.Tracer: removing the last added one leaves none.
	bare := newTestPool(t, testConfig(t))
	rec := &recordingTracer{}
	remove := bare.AddTracer(rec)
	remove()
	_, err = bare.Call(ctx, "echo", 4)
	require.NoError(t, err)
	assert.Empty(t, rec.take())
	assert.Nil(t, bare.tracer())
	assert.NotPanics(t, bare.AddTracer(nil), "a nil tracer's remove func does nothing")
}

// TestAddTracerRemoveWhileCallsRun: a call that started with a tracer ends
// with it, also when the tracer is removed (or another added) meanwhile; a
// race-detector run checks the list is swapped safely.
func TestAddTracerRemoveWhileCallsRun(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	rec := &recordingTracer{}
	remove := pool.AddTracer(rec)
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() {
		_, err := pool.Call(ctx, "sleep", 0.3)
		done <- err
	}()
	awaitPool(t, pool, "the call running", func(s Stats) bool { return s.InUse == 1 })
	late := &recordingTracer{nextID: 100}
	removeLate := pool.AddTracer(late)
	remove()
	require.NoError(t, <-done)
	assert.Equal(t, []string{"start:1", "worker:1", "end:1"}, hooks(rec.take()), "the running call kept its tracers")
	assert.Empty(t, late.take(), "a tracer added during a call is not told of its end")

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				if i%2 == 0 {
					pool.AddTracer(&recordingTracer{})()
				} else {
					_, err := pool.Call(ctx, "echo", j)
					assert.NoError(t, err)
				}
			}
		}()
	}
	wg.Wait()
	removeLate()
	assert.Nil(t, pool.tracer())
}
