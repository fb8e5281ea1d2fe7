package pypool

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPingIsNotACall: readiness probes (Pool.Ping) are counted in Pings and
// PingFailures, not in the call counters, and tracers are told it is a
// probe (issue 20: a probe appeared in CallsStarted and in the collector's
// function slots and latency histograms).
func TestPingIsNotACall(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	obs := &observed{}
	pool.AddTracer(obs)
	ctx := testCtx(t)
	for range 3 {
		require.NoError(t, pool.Ping(ctx))
	}
	_, err := pool.Call(ctx, "echo", 1)
	require.NoError(t, err)

	s := pool.Stats()
	assert.Equal(t, uint64(3), s.Pings)
	assert.Zero(t, s.PingFailures)
	assert.Equal(t, uint64(1), s.CallsStarted, "only the Call: %+v", s)
	assert.Equal(t, uint64(1), s.CallsFinished)
	assert.Equal(t, uint64(1), s.CallsSent)
	obs.mu.Lock()
	require.Len(t, obs.calls, 4, "%+v", obs.calls)
	for i, c := range obs.calls {
		assert.Equal(t, i < 3, c.Probe, "a probe is told to tracers as one: %+v", c)
	}
	assert.Equal(t, "echo", obs.calls[3].Function)
	obs.mu.Unlock()

	// A probe that fails counts in PingFailures.
	short, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, pool.Ping(short), context.Canceled)
	require.NoError(t, pool.Close(context.Background()))
	require.ErrorIs(t, pool.Ping(ctx), ErrPoolClosed)
	s = pool.Stats()
	assert.Equal(t, uint64(5), s.Pings)
	assert.Equal(t, uint64(2), s.PingFailures)
	assert.Equal(t, uint64(1), s.CallsStarted)
	assert.Zero(t, s.Canceled, "a probe's outcome is not a call's")
}
