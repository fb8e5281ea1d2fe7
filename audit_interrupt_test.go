//go:build unix

package pypool

// audit_interrupt_test.go: the audit of the early interrupt (an interrupt
// that reaches the worker before its call began, interrupt_early_test.go):
// the late interrupts Go counts and the SIGINTs the worker counts between
// calls must match, or a call Go never interrupted is answered
// "interrupted", or an early interrupt is lost and its worker killed.
// The functions are testdata/pymod/pypool_auditinterrupt.py's.

import (
	"context"
	"math/rand"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// auditInterruptPool is a pool of one worker of pypool_auditinterrupt,
// its log recorded, with earlyInterruptGrace; async: Config.AsyncCalls 2.
func auditInterruptPool(t *testing.T, async bool, callbacks map[string]Callback) (*Pool, *logRecorder) {
	t.Helper()
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Module = "pypool_auditinterrupt"
	cfg.InterruptGrace = earlyInterruptGrace
	cfg.Logger = slogNew(rec)
	cfg.Callbacks = callbacks
	if async {
		cfg.AsyncCalls = 2
	}
	return newTestPool(t, cfg), rec
}

// lateInterruptsOf is proc's count of late interrupts not sent yet.
func lateInterruptsOf(proc *process) uint64 {
	proc.mu.Lock()
	defer proc.mu.Unlock()
	return proc.lateInterrupts
}

// cancelOn cancels once the worker wrote line on its stderr.
func cancelOn(t *testing.T, rec *logRecorder, line string, cancel func()) {
	go func() {
		rec.await(t, line)
		cancel()
	}()
}

// A call whose context ends while the runtime encodes its result (the
// SIGINT lands after the function returned: the worker counts it between
// calls) is answered with its result, which Go's drain counts as a late
// interrupt and sends with the next call frame; the next calls run. In
// the async mode (Config.AsyncCalls) a Transaction's call of an async
// function comes between: its frame goes to the worker's loop thread,
// which does not look at the count. Before the fix, Go sent the count on
// that frame and reset it, the worker kept its SIGINT, and the next call,
// which Go never interrupted, was answered "interrupted before the call
// began".
func TestAuditInterruptLateThenATaskCall(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(modeName(async), func(t *testing.T) {
			t.Parallel()
			pool, rec := auditInterruptPool(t, async, nil)
			ctx := testCtx(t)
			pid := soleWorkerPid(t, pool)
			proc := workerProcs(pool)[0]

			callCutOff(t, pool, rec, "late_reply", "encoding the late reply")
			require.Equal(t, uint64(1), lateInterruptsOf(proc), "late interrupts after the drain")

			require.NoError(t, pool.Transaction(ctx, func(w *Worker) error {
				got, err := w.Call(ctx, "aecho", "task")
				if err == nil {
					assert.Equal(t, "task", got)
				}
				return err
			}))
			for i := range 2 {
				got, err := pool.Call(ctx, "echo", i)
				require.NoError(t, err, "call %d after the late interrupt", i)
				assert.EqualValues(t, i, got)
			}
			requireWorkerKept(t, pool, pid)
		})
	}
}

// With Config.AsyncCalls, a Stream of an async function (its coroutine
// awaited by the main thread, then its async generator iterated there):
// its context ends while an item is awaited. The worker must be
// interrupted (SIGINT cancels the awaited item) and kept. Before the fix,
// Go took the stream for a task on the worker's loop thread (its function
// is async): it sent no SIGINT, only a CANCEL that the loop thread, which
// had handed the input to the main thread, never read, and the worker was
// killed after Config.InterruptGrace.
func TestAuditInterruptStreamOfAnAsyncFunctionInAsyncMode(t *testing.T) {
	t.Parallel()
	pool, rec := auditInterruptPool(t, true, nil)
	ctx := testCtx(t)
	pid := soleWorkerPid(t, pool)

	streamCutOff(t, pool, rec, "slow_items", "awaiting the second item")

	got, err := pool.Call(ctx, "echo", "next")
	require.NoError(t, err)
	assert.Equal(t, "next", got)
	requireWorkerKept(t, pool, pid)
}

// A nested call (in a callback) cut off by its outer call's context:
// its SIGINT interrupts the nested call, whose reply is "interrupted",
// and the outer call's reply is the callback's GoError. The SIGINT was
// the nested call's, not late: the next call's early interrupt (its
// worker stopped when its context ended, as in interrupt_early_test.go)
// must still answer it and keep the worker. Before the fix, the drain
// counted a late interrupt from the outer reply alone, sent it with the
// next call, which then took its own early SIGINT for that late one: it
// ran its 30 s and the worker was killed after Config.InterruptGrace.
func TestAuditInterruptNestedCutOffThenAnEarlyInterrupt(t *testing.T) {
	t.Parallel()
	var pool *Pool
	pool, rec := auditInterruptPool(t, false, map[string]Callback{
		"nest": func(ctx context.Context, args []any) (any, error) {
			return pool.Call(ctx, "nested_sleep", 30)
		},
	})
	ctx := testCtx(t)
	pid := soleWorkerPid(t, pool)
	proc := workerProcs(pool)[0]

	cutCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	cancelOn(t, rec, "nested call sleeping", cancel)
	_, err := pool.Call(cutCtx, "ask", "nest")
	require.ErrorIs(t, err, context.Canceled)
	awaitPool(t, pool, "the nested call drained", func(s Stats) bool { return s.Interrupts == 1 && s.InUse == 0 })
	assert.Zero(t, lateInterruptsOf(proc), "late interrupts after the drain")

	earlyInterruptKeepsTheWorker(t, pool, pid, 2)
}

// earlyInterruptKeepsTheWorker cuts off a call of sleep(30) on pool's one
// worker, pid, while the worker is stopped (SIGSTOP) with the frame in its
// pipe, as TestInterruptBeforeTheCallBeganKeepsTheWorker does: the call
// must be answered, the worker kept (interrupts: Stats.Interrupts then).
func earlyInterruptKeepsTheWorker(t *testing.T, pool *Pool, pid int, interrupts uint64) {
	t.Helper()
	interruptWhileStopped(t, pool, pid, interrupts, func(ctx context.Context) error {
		_, err := pool.Call(ctx, "sleep", 30)
		return err
	})
	got, err := pool.Call(testCtx(t), "echo", "after")
	require.NoError(t, err)
	assert.Equal(t, "after", got)
	requireWorkerKept(t, pool, pid)
}

// A late interrupt, then the next call's early one. The late one is
// either a SIGINT that came while the runtime sent a stream's last items
// (kept pending, Interrupts.busy) and that the stream ended without acting
// on, or one the user's code swallowed (KeyboardInterrupt caught, and it
// returned within Config.InterruptGrace). Its call's reply is not
// "interrupted", so Go counts it as late; the worker must count it too, or
// the next call's early interrupt is taken for it. Before the fixes, the
// runtime dropped the pending SIGINT without counting it, and did not
// count a swallowed one (docs/errors.md named that as a limit): the next
// call ran its 30 s and its worker was killed after InterruptGrace.
func TestAuditInterruptLateThenAnEarlyInterrupt(t *testing.T) {
	for name, cutOff := range map[string]func(*testing.T, *Pool, *logRecorder){
		"pending at a stream's end": func(t *testing.T, pool *Pool, rec *logRecorder) {
			streamCutOff(t, pool, rec, "late_items", "encoding the late item")
		},
		"swallowed": func(t *testing.T, pool *Pool, rec *logRecorder) {
			callCutOff(t, pool, rec, "swallow", "swallowing the interrupt")
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool, rec := auditInterruptPool(t, false, nil)
			pid := soleWorkerPid(t, pool)
			cutOff(t, pool, rec)
			require.Equal(t, uint64(1), lateInterruptsOf(workerProcs(pool)[0]), "late interrupts after the drain")
			earlyInterruptKeepsTheWorker(t, pool, pid, 2)
		})
	}
}

// Every call form cut off at random instants, one after another on one
// worker, with and without Config.AsyncCalls: a call, a call whose
// callback calls the worker (its interrupt swallowed, or not), a
// Transaction's call of an async function, a stream, a call that swallows
// its interrupt. A call fails only with its context's error, the call
// after each, never cut off, always runs (no spurious "interrupted before
// the call began"), and no worker is killed: the two counts stay matched
// through their combinations (written after the fixes above; it held).
func TestAuditInterruptMixedCutOffs(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(modeName(async), func(t *testing.T) {
			t.Parallel()
			var pool *Pool
			pool, _ = auditInterruptPool(t, async, map[string]Callback{
				"nest": func(ctx context.Context, _ []any) (any, error) {
					return pool.Call(ctx, "echo", "nested")
				},
			})
			for i := range 280 {
				ctx, cancel := context.WithCancel(testCtx(t))
				time.AfterFunc(time.Duration(rand.Intn(2000))*time.Microsecond, cancel)
				var err error
				kind := i % 7
				switch kind {
				case 0:
					_, err = pool.Call(ctx, "echo", i)
				case 1:
					_, err = pool.Call(ctx, "ask", "nest")
				case 2:
					_, err = pool.Call(ctx, "ask_swallowing", "nest")
				case 3:
					err = pool.Transaction(ctx, func(w *Worker) error {
						_, err := w.Call(ctx, "aecho", i)
						return err
					})
				case 4:
					for _, e := range pool.Stream(ctx, "two_items") {
						if e != nil {
							err = e
							break
						}
					}
				case 5:
					_, err = pool.Call(ctx, "sleep", 0.001)
				case 6:
					_, err = pool.Call(ctx, "swallow_quick")
				}
				if err != nil && ctx.Err() == nil {
					t.Fatalf("iteration %d (form %d): %v, its context alive", i, kind, err)
				}
				cancel()
				v, err := pool.Call(testCtx(t), "echo", i)
				require.NoError(t, err, "the call after iteration %d (form %d)", i, kind)
				require.EqualValues(t, i, v)
			}
			t.Logf("%d calls cut off", pool.Stats().Interrupts)
			assert.Zero(t, pool.Stats().StopsKilled, "workers killed")
		})
	}
}

// The early interrupt's outcome as the pool tells it (docs/observability.md):
// a call cut off by its deadline, then one cancelled, each while the
// worker could not run: Stats counts each once (DeadlineExceeded, then
// Canceled; Interrupts; no StopsKilled), and each has its Debug record
// "call interrupted" with its cause, none "worker killed". It held; the
// early interrupt's tests checked neither the outcome counters nor the
// records.
func TestAuditInterruptEarlyOutcomeInStatsAndLogs(t *testing.T) {
	t.Parallel()
	pool, rec := auditInterruptPool(t, false, nil)
	ctx := testCtx(t)
	pid := soleWorkerPid(t, pool)
	proc := workerProcs(pool)[0]
	written := make(chan struct{}, 1)
	proc.mu.Lock()
	proc.testHookWritten = func() {
		select {
		case written <- struct{}{}:
		default:
		}
	}
	proc.mu.Unlock()

	for i, cause := range []error{context.DeadlineExceeded, context.Canceled} {
		require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
		cutCtx, cancel := context.WithCancel(ctx)
		if cause == context.DeadlineExceeded {
			cutCtx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
		}
		done := make(chan error, 1)
		go func() {
			_, err := pool.Call(cutCtx, "sleep", 30)
			done <- err
		}()
		<-written
		if cause == context.Canceled {
			cancel()
		}
		require.ErrorIs(t, <-done, cause)
		cancel()
		awaitPool(t, pool, "the interrupt sent", func(s Stats) bool { return s.Interrupts == uint64(i+1) })
		require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
		awaitPool(t, pool, "the worker back", func(s Stats) bool { return s.InUse == 0 && s.Idle == 1 })
		rec.awaitMatch(t, msgCallInterrupted, "cause", cause.Error())
	}
	s := pool.Stats()
	assert.Equal(t, uint64(1), s.DeadlineExceeded, "DeadlineExceeded")
	assert.Equal(t, uint64(1), s.Canceled, "Canceled")
	assert.Equal(t, uint64(2), s.Interrupts, "Interrupts")
	assert.Zero(t, s.StopsKilled, "StopsKilled")
	assert.Empty(t, rec.matching(msgWorkerKilled), "worker killed records")
	for _, attrs := range rec.matching(msgCallInterrupted) {
		assert.Equal(t, "DEBUG", attrs["level"], attrs)
		assert.Equal(t, "sleep", attrs["function"], attrs)
		assert.NotEmpty(t, attrs["answered_in"], attrs)
	}
	assert.Equal(t, pid, soleWorkerPid(t, pool), "the worker was replaced")
}

// cutOffOn runs call, which makes one call with the context it is given,
// cancels that context when the worker logs line, and waits until the
// cut-off call drained: its one interrupt answered, its worker back in the
// pool.
func cutOffOn(t *testing.T, pool *Pool, rec *logRecorder, line string, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	cancelOn(t, rec, line, cancel)
	require.ErrorIs(t, call(ctx), context.Canceled)
	awaitPool(t, pool, "the cut-off call drained", func(s Stats) bool { return s.Interrupts == 1 && s.InUse == 0 })
}

// streamCutOff is cutOffOn for a Stream of fn.
func streamCutOff(t *testing.T, pool *Pool, rec *logRecorder, fn, line string) {
	t.Helper()
	cutOffOn(t, pool, rec, line, func(ctx context.Context) error {
		_, err := collect(t, pool.Stream(ctx, fn))
		return err
	})
}

// callCutOff is cutOffOn for a Call of fn.
func callCutOff(t *testing.T, pool *Pool, rec *logRecorder, fn, line string) {
	t.Helper()
	cutOffOn(t, pool, rec, line, func(ctx context.Context) error {
		_, err := pool.Call(ctx, fn)
		return err
	})
}

// modeName names a subtest by Config.AsyncCalls (async) or without.
func modeName(async bool) string {
	if async {
		return "async mode"
	}
	return "one call at a time"
}
