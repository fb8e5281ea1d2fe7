//go:build linux

package pypool

// audit_callctx_linux_test.go: the call's context across worker faults
// (signals), as audit_callctx_test.go's.

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAuditCallCtxFaults: the worker SIGKILLed or SIGSTOPped while a call
// with metadata runs, a Reload between calls: the next calls each see
// their own context, on the new worker.
func TestAuditCallCtxFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts workers")
	}
	pids := make(chan int, 1)
	cfg := auditCtxConfig(t)
	cfg.Callbacks = map[string]Callback{
		"started": func(_ context.Context, args []any) (any, error) {
			pids <- int(args[0].(int64))
			return nil, nil
		},
	}
	pool := newTestPool(t, cfg)
	after := func(t *testing.T) {
		t.Helper()
		got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"k": "next"}), pool, "context")
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"k": "next"}, got["metadata"])
		assert.EqualValues(t, 1, got["attempt"])
		got, err = CallAs[map[string]any](context.Background(), pool, "context")
		require.NoError(t, err)
		assert.Empty(t, got["metadata"])
		assert.Equal(t, false, got["has_deadline"])
	}
	t.Run("SIGKILL", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			_, err := pool.Call(WithMetadata(testCtx(t), map[string]string{"k": "killed"}), "hold", "started")
			done <- err
		}()
		require.NoError(t, syscall.Kill(<-pids, syscall.SIGKILL))
		require.ErrorIs(t, <-done, ErrWorkerCrashed)
		after(t)
	})
	t.Run("SIGSTOP", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(WithMetadata(context.Background(), map[string]string{"k": "stopped"}), 2*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := pool.Call(ctx, "hold", "started")
			done <- err
		}()
		pid := <-pids
		require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
		defer syscall.Kill(pid, syscall.SIGCONT)
		require.ErrorIs(t, <-done, context.DeadlineExceeded)
		after(t)
	})
	t.Run("Reload", func(t *testing.T) {
		_, err := pool.Call(WithMetadata(testCtx(t), map[string]string{"k": "before"}), "context")
		require.NoError(t, err)
		require.NoError(t, pool.Reload(testCtx(t)))
		after(t)
	})
}
