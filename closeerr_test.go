package pypool

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closeCutConfig is a one-worker pool of the stream module whose callback
// "crash_me" (callback_then_sleep's) tells running that Python now sleeps
// in the call, and whose callback "nested" makes a nested call of
// callback_then_sleep with its context and sends that call's error to
// nested.
func closeCutConfig(t *testing.T, method StartMethod, pool **Pool, running chan<- int, nested chan<- error) Config {
	cfg := streamConfig(t)
	cfg.StartMethod = method
	cfg.Callbacks = map[string]Callback{
		"crash_me": func(ctx context.Context, args []any) (any, error) {
			running <- 1
			return nil, nil
		},
		"nested": func(ctx context.Context, args []any) (any, error) {
			_, err := (*pool).Call(ctx, "callback_then_sleep")
			nested <- err
			return nil, err
		},
	}
	return cfg
}

// requireClosedNotCrashed checks the error of a call that Close cut off:
// ErrPoolClosed only, saying once what happened and what to do.
func requireClosedNotCrashed(t *testing.T, err error, pid int, what string) {
	t.Helper()
	require.Error(t, err, what)
	msg := err.Error()
	t.Logf("%s: %s", what, msg)
	assert.ErrorIs(t, err, ErrPoolClosed, "%s: %s", what, msg)
	assert.False(t, errors.Is(err, ErrWorkerCrashed), "%s: the pool stopped the worker, it did not crash: %s", what, msg)
	var exit *WorkerExitError
	assert.False(t, errors.As(err, &exit), "%s: no *WorkerExitError: %s", what, msg)
	assert.NotContains(t, msg, "killed by", what)
	assert.NotContains(t, msg, "crashed", what)
	assert.Equal(t, 1, strings.Count(msg, "pool closed"), "%s: %s", what, msg)
	assert.True(t, strings.HasPrefix(msg, "pypool: pool closed: Close stopped worker "+strconv.Itoa(pid)+" while it ran "), "%s: %s", what, msg)
	assert.Contains(t, msg, "to let running calls finish, give Close a longer context", what)
}

// TestCallCutOffByCloseIsPoolClosedOnly (issue 20, "errors that name the
// fix"): a call that Close stops when its context ends, in every call form
// and on both start methods, fails with ErrPoolClosed only and says so
// once, with the fix. Before, it read "pypool: pool closed: the worker was
// stopped while the call ran: pypool: worker crashed: python worker N was
// killed by signal killed" and matched ErrWorkerCrashed too.
func TestCallCutOffByCloseIsPoolClosedOnly(t *testing.T) {
	for _, method := range []StartMethod{StartExec, StartForkServer} {
		name := "exec"
		if method == StartForkServer {
			name = "forkserver"
		}
		t.Run(name, func(t *testing.T) {
			// closeSoon starts Close with a context that ends at once: the
			// running call is cut off.
			closeSoon := func(pool *Pool) <-chan error {
				closed := make(chan error, 1)
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
					defer cancel()
					closed <- pool.Close(ctx)
				}()
				return closed
			}
			newPool := func(running chan int, nested chan error) *Pool {
				var pool *Pool
				pool, err := New(testCtx(t), closeCutConfig(t, method, &pool, running, nested))
				require.NoError(t, err)
				t.Cleanup(func() { _ = pool.Close(context.Background()) })
				return pool
			}

			t.Run("Call", func(t *testing.T) {
				running := make(chan int, 1)
				pool := newPool(running, nil)
				pid := workerPids(pool)[0]
				result := make(chan error, 1)
				go func() {
					_, err := pool.Call(testCtx(t), "callback_then_sleep")
					result <- err
				}()
				<-running
				closed := closeSoon(pool)
				err := <-result
				requireClosedNotCrashed(t, err, pid, "Call")
				assert.Contains(t, err.Error(), "while it ran callback_then_sleep() (Close's context ended first)")
				assert.ErrorIs(t, <-closed, context.DeadlineExceeded)
			})

			t.Run("Stream", func(t *testing.T) {
				pool := newPool(nil, nil)
				pid := workerPids(pool)[0]
				var closed <-chan error
				var last error
				n := 0
				for _, err := range pool.Stream(testCtx(t), "pid_then_numbers", 2) {
					if err != nil {
						last = err
						break
					}
					if n++; n == 3 { // the generator now sleeps
						closed = closeSoon(pool)
					}
				}
				requireClosedNotCrashed(t, last, pid, "Stream")
				assert.Contains(t, last.Error(), "while it ran the stream pid_then_numbers()")
				assert.ErrorIs(t, <-closed, context.DeadlineExceeded)
			})

			t.Run("Transaction", func(t *testing.T) {
				running := make(chan int, 1)
				pool := newPool(running, nil)
				result := make(chan error, 1)
				var pid int
				go func() {
					result <- pool.Transaction(testCtx(t), func(w *Worker) error {
						pid = w.Pid()
						_, err := w.Call(testCtx(t), "callback_then_sleep")
						return err
					})
				}()
				<-running
				closed := closeSoon(pool)
				requireClosedNotCrashed(t, <-result, pid, "Worker.Call")
				assert.ErrorIs(t, <-closed, context.DeadlineExceeded)
			})

			t.Run("Nested", func(t *testing.T) {
				running := make(chan int, 1)
				nested := make(chan error, 1)
				pool := newPool(running, nested)
				pid := workerPids(pool)[0]
				result := make(chan error, 1)
				go func() {
					_, err := pool.Call(testCtx(t), "asks_go", "nested")
					result <- err
				}()
				<-running
				closed := closeSoon(pool)
				requireClosedNotCrashed(t, <-nested, pid, "the nested call")
				requireClosedNotCrashed(t, <-result, pid, "the outer call")
				assert.ErrorIs(t, <-closed, context.DeadlineExceeded)
			})

			t.Run("Waiting", func(t *testing.T) {
				running := make(chan int, 1)
				pool := newPool(running, nil)
				go func() { _, _ = pool.Call(testCtx(t), "callback_then_sleep") }()
				<-running
				result := make(chan error, 1)
				go func() {
					_, err := pool.Call(testCtx(t), "echo", 1)
					result <- err
				}()
				awaitPool(t, pool, "a waiter", func(s Stats) bool { return s.Waiting == 1 })
				closed := closeSoon(pool)
				err := <-result
				assert.ErrorIs(t, err, ErrPoolClosed)
				assert.False(t, errors.Is(err, ErrWorkerCrashed), "%v", err)
				<-closed
			})
		})
	}
}
