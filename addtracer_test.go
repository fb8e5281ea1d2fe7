package pypool

import (
	"fmt"
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
