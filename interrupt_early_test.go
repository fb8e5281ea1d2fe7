//go:build unix

package pypool

// interrupt_early_test.go: an interrupt that reaches the worker before
// Python began the call it is for (docs/errors.md). Python tells it from
// a late one, for the call just answered, by the late interrupts Go counts
// and sends with the next call frame (protocol.go's "i";
// python/tests/test_interrupt_early.py tests the runtime's side at the
// protocol).

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// earlyInterruptGrace is Config.InterruptGrace in these tests: long enough
// that a busy machine answers an interrupt within it, so that a worker
// killed after it is one that never saw its interrupt.
const earlyInterruptGrace = 10 * time.Second

// A call whose deadline passes while its worker cannot run (SIGSTOP
// stands for a worker not scheduled on a busy host): the frame is in the
// pipe, the SIGINT pending, when the worker resumes. The worker answers
// the call as interrupted without running it and is kept: no kill, no
// replacement, the next call on the same process. Before, the SIGINT was
// handled before the call began and ignored as between calls; the call
// slept its 30 s and the worker was killed after InterruptGrace.
func TestInterruptBeforeTheCallBeganKeepsTheWorker(t *testing.T) {
	for _, form := range []string{"call", "call with a deadline", "stream", "keyword arguments"} {
		t.Run(form, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.Module = "pypool_deadlinemod"
			cfg.InterruptGrace = earlyInterruptGrace
			pool := newTestPool(t, cfg)
			pid := soleWorkerPid(t, pool)
			interruptWhileStopped(t, pool, pid, 1, func(ctx context.Context) error {
				if form == "call with a deadline" {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Minute) // a frame with the time left; cancelled first
					defer cancel()
				}
				var err error
				switch form {
				case "stream":
					_, err = collect(t, pool.Stream(ctx, "behave_gen", "c_sleep", 30))
				case "keyword arguments":
					_, err = pool.Call(ctx, "behave", Kwargs{"kind": "c_sleep", "seconds": 30})
				default:
					_, err = pool.Call(ctx, "behave", "c_sleep", 30)
				}
				return err
			})
			got, err := pool.Call(testCtx(t), "behave", "quick", 0)
			require.NoError(t, err)
			assert.Equal(t, "quick", got)
			requireWorkerKept(t, pool, pid)
			assert.Zero(t, pool.Stats().Restarts, "workers started after New")
		})
	}
}

// interruptWhileStopped runs call, which makes one call with the context
// it is given, while pool's one worker, pid, is stopped (SIGSTOP): once
// the call's frame is written whole (process.testHookWritten) the context
// is cancelled; once the pool sent its interrupt (Stats.Interrupts reaches
// interrupts) the worker resumes (SIGCONT), to find the frame and the
// SIGINT both waiting. call must return the context's error.
func interruptWhileStopped(t *testing.T, pool *Pool, pid int, interrupts uint64, call func(ctx context.Context) error) {
	t.Helper()
	written := make(chan struct{}, 1)
	proc := workerProcs(pool)[0]
	setHook := func(hook func()) {
		proc.mu.Lock()
		defer proc.mu.Unlock()
		proc.testHookWritten = hook
	}
	setHook(func() {
		select {
		case written <- struct{}{}:
		default: // a later call's
		}
	})
	defer setHook(nil)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	select {
	case <-written: // the frame is in the pipe, the worker stopped
	case err := <-done:
		require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
		t.Fatalf("the call ended before its frame was written: %v", err)
	}
	cancel()
	err := <-done
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded), "%v", err)
	awaitPool(t, pool, "the interrupt sent", func(s Stats) bool { return s.Interrupts == interrupts })
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
}

// requireWorkerKept checks that pool's one worker is still pid and that
// no worker was killed.
func requireWorkerKept(t *testing.T, pool *Pool, pid int) {
	t.Helper()
	assert.Equal(t, pid, soleWorkerPid(t, pool), "the worker was replaced")
	assert.Zero(t, pool.Stats().StopsKilled, "workers killed")
}

// soleWorkerPid is the pid of the one worker of pool.
func soleWorkerPid(t *testing.T, pool *Pool) int {
	t.Helper()
	var pid int
	require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
		pid = w.Pid()
		return nil
	}))
	return pid
}

// A SIGINT that its call did not answer as interrupted (swallowed here; or
// one that came after the reply) is counted as late by the drain and sent
// with the next call frame, once: that call and the next run as usual.
func TestLateInterruptIsCountedOnce(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.InterruptGrace = earlyInterruptGrace
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	proc := workerProcs(pool)[0]
	late := func() uint64 {
		proc.mu.Lock()
		defer proc.mu.Unlock()
		return proc.lateInterrupts
	}

	cutCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		rec.await(t, "swallowing interrupts") // inside its try block
		cancel()
	}()
	_, err := pool.Call(cutCtx, "swallow_interrupt", 1)
	require.ErrorIs(t, err, context.Canceled)
	awaitPool(t, pool, "the swallowed interrupt drained", func(s Stats) bool { return s.Interrupts == 1 && s.InUse == 0 })
	assert.Equal(t, uint64(1), late(), "late interrupts after the drain")
	for i := 0; i < 2; i++ {
		got, err := pool.Call(ctx, "echo", i)
		require.NoError(t, err)
		assert.EqualValues(t, i, got)
		assert.Zero(t, late(), "late interrupts once a call was sent")
	}
	assert.Zero(t, pool.Stats().StopsKilled, "workers killed")
}
