package pypool

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// observerLog is a CallObserver that keeps what it was told.
type observerLog struct {
	mu    sync.Mutex
	calls []CallInfo
}

func (o *observerLog) ObserveCall(c CallInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, c)
}

// TestDeprecatedObserveAndCalls: code written against Pool.Observe and
// Stats.Calls still runs: the observer is told of each call that ends, as
// a Tracer is, and Stats.Calls is CallsSent.
func TestDeprecatedObserveAndCalls(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	obs := &observerLog{}
	pool.Observe(obs)
	pool.Observe(nil) // ignored
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "echo", 1)
	require.NoError(t, err)
	_, err = pool.Call(ctx, "fail", "observerLog")
	require.Error(t, err)

	obs.mu.Lock()
	defer obs.mu.Unlock()
	require.Len(t, obs.calls, 2)
	assert.Equal(t, "echo", obs.calls[0].Function)
	assert.Equal(t, OutcomeOK, obs.calls[0].Outcome)
	assert.NoError(t, obs.calls[0].Err)
	assert.Equal(t, "fail", obs.calls[1].Function)
	assert.Equal(t, OutcomePythonError, obs.calls[1].Outcome)
	assert.Error(t, obs.calls[1].Err)
	for _, c := range obs.calls {
		assert.Positive(t, c.Duration)
		assert.LessOrEqual(t, c.Wait, c.Duration)
	}
	s := pool.Stats()
	assert.Equal(t, s.CallsSent, s.Calls)
	assert.EqualValues(t, 2, s.Calls)
}
