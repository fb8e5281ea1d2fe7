package pypool

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetUpRunsInEveryWorker: Config.SetUp runs once in each worker, with
// Config.SetUpArgs (a trailing Kwargs as keyword arguments), before the
// worker serves calls.
func TestSetUpRunsInEveryWorker(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	cfg.SetUp = "set_value"
	cfg.SetUpArgs = []any{"model", Kwargs{"value": []any{"weights", 3}}}
	pool := newTestPool(t, cfg)
	err := pool.Transaction(testCtx(t), func(a *Worker) error {
		return pool.Transaction(testCtx(t), func(b *Worker) error {
			for _, w := range []*Worker{a, b} {
				out, err := w.Call(testCtx(t), "get_value", "model")
				require.NoError(t, err)
				assert.Equal(t, []any{"weights", int64(3)}, out, "worker %d", w.Pid())
			}
			return nil
		})
	})
	require.NoError(t, err)
}

// TestSetUpFailureIsAStartFailure: an exception in the set-up fails New as
// an import error does, with the traceback.
func TestSetUpFailureIsAStartFailure(t *testing.T) {
	cfg := testConfig(t)
	cfg.SetUp = "fail"
	cfg.SetUpArgs = []any{"no model file"}
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.True(t, errors.As(err, &pyErr), "%v", err)
	assert.Equal(t, "ValueError", pyErr.Type)
	assert.Contains(t, pyErr.Traceback, "no model file")
	assert.Contains(t, err.Error(), "the set-up pypool_testmod.fail failed (Config.SetUp): python ValueError: no model file")

	cfg.SetUp, cfg.SetUpArgs = "no_such_function", nil
	_, err = New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	assert.Contains(t, err.Error(), "has no function 'no_such_function'")
}

func TestSetUpConfigIsChecked(t *testing.T) {
	cfg := testConfig(t)
	cfg.SetUp = "os.system"
	_, err := New(context.Background(), cfg)
	assert.ErrorContains(t, err, "Config.SetUp")
	cfg.SetUp, cfg.SetUpArgs = "", []any{1}
	_, err = New(context.Background(), cfg)
	assert.ErrorContains(t, err, "Config.SetUpArgs is set but Config.SetUp is empty")
	cfg.SetUp, cfg.SetUpArgs = "set_value", []any{make(chan int)}
	_, err = New(context.Background(), cfg)
	assert.ErrorIs(t, err, ErrArgNotEncodable)
}
