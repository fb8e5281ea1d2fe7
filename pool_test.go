package pypool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCallDuplicateText(t *testing.T) {
	pool := newTestPool(t, Config{Module: "my_module", PythonPath: []string{"examples/duplicate"}, Size: 2})
	out, err := pool.Call(testCtx(t), "duplicate_text", "testing")
	require.NoError(t, err)
	assert.Equal(t, "testingtesting", out)
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	cases := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"empty module", Config{}, "Config.Module"},
		{"bad module name", Config{Module: "my-module"}, "Config.Module"},
		{"dotted path out", Config{Module: "../evil"}, "Config.Module"},
		{"negative size", Config{Module: "m", Size: -1}, "Config.Size"},
		{"negative overflow", Config{Module: "m", MaxOverflow: -2}, "Config.MaxOverflow"},
		{"unknown strategy", Config{Module: "m", Strategy: 7}, "Config.Strategy"},
		{"negative timeout", Config{Module: "m", StartTimeout: -time.Second}, "StartTimeout"},
		{"negative message size", Config{Module: "m", MaxMessageSize: -1}, "Config.MaxMessageSize"},
		{"bad env", Config{Module: "m", Env: []string{"NOEQUALS"}}, "Config.Env"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(testCtx(t), tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.field)
		})
	}
}

func TestKwargs(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	out, err := pool.Call(testCtx(t), "describe", 1, 2, 3, Kwargs{"color": "red"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"a": int64(1), "b": int64(2), "rest": []any{int64(3)},
		"options": map[string]any{"color": "red"},
	}, out)

	out, err = pool.Call(testCtx(t), "describe", "x", Kwargs{"b": "named"})
	require.NoError(t, err)
	assert.Equal(t, "named", out.(map[string]any)["b"])
}

func TestCallAs(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)

	type described struct {
		A       int               `msgpack:"a"`
		B       string            `msgpack:"b"`
		Rest    []int             `msgpack:"rest"`
		Options map[string]string `msgpack:"options"`
	}
	d, err := CallAs[described](ctx, pool, "describe", 5, "five", 6, 7, Kwargs{"k": "v"})
	require.NoError(t, err)
	assert.Equal(t, described{A: 5, B: "five", Rest: []int{6, 7}, Options: map[string]string{"k": "v"}}, d)

	n, err := CallAs[int](ctx, pool, "add", 2, 3)
	require.NoError(t, err)
	assert.Equal(t, 5, n)

	s, err := CallAs[[]string](ctx, pool, "echo", []string{"a", "b"})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b"}, s)

	m, err := CallAs[map[int]string](ctx, pool, "echo", map[int]string{1: "one"})
	require.NoError(t, err)
	assert.Equal(t, map[int]string{1: "one"}, m)

	_, err = CallAs[int](ctx, pool, "echo", "not a number")
	assert.ErrorIs(t, err, ErrResultNotDecodable)

	err = pool.Transaction(ctx, func(w *Worker) error {
		v, err := CallAs[string](ctx, w, "duplicate_text", "ab")
		assert.Equal(t, "abab", v)
		return err
	})
	require.NoError(t, err)
}

func TestPythonExceptionKeepsWorker(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	before := workerPids(pool)

	_, err := pool.Call(ctx, "fail", "bad input")
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, "exception", pyErr.Code)
	assert.Equal(t, "ValueError", pyErr.Type)
	assert.Equal(t, "bad input", pyErr.Message)
	assert.Contains(t, pyErr.Traceback, "in fail")
	assert.Contains(t, pyErr.Traceback, "ValueError: bad input")
	assert.NotContains(t, pyErr.Traceback, "pypool_runtime", "the runtime's frames are hidden")
	assert.Equal(t, "pypool: python ValueError: bad input", err.Error())
	verbose := fmt.Sprintf("%+v", pyErr)
	assert.True(t, strings.HasPrefix(verbose, "pypool: python ValueError: bad input\nTraceback"), "%%+v adds the traceback: %q", verbose)
	assert.Contains(t, verbose, "in fail")
	assert.Equal(t, err.Error(), fmt.Sprintf("%v", pyErr))

	_, err = pool.Call(ctx, "exit_call", 4)
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, "SystemExit", pyErr.Type)

	out, err := pool.Call(ctx, "duplicate_text", "ok")
	require.NoError(t, err)
	assert.Equal(t, "okok", out)
	assert.Equal(t, before, workerPids(pool), "the same worker served every call")
	assert.Zero(t, pool.Stats().Crashes)
}

func TestOnlyPublicFunctionsOfTheModule(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	before := workerPids(pool)
	for _, name := range []string{"_private", "getpid", "os.system", "pypool_testmod._private", "pypool_testmod.os.getpid",
		"pypool_testmod.getpid", "nope", "", "__import__"} {
		t.Run(name, func(t *testing.T) {
			_, err := pool.Call(ctx, name)
			require.ErrorIs(t, err, ErrFunctionNotFound)
			var pyErr *PythonError
			require.ErrorAs(t, err, &pyErr)
			assert.NotEmpty(t, pyErr.Message)
		})
	}
	out, err := pool.Call(ctx, "echo", "still alive")
	require.NoError(t, err)
	assert.Equal(t, "still alive", out)
	out, err = pool.Call(ctx, "pypool_testmod.echo", "qualified") // the configured module's own name
	require.NoError(t, err)
	assert.Equal(t, "qualified", out)
	assert.Equal(t, before, workerPids(pool))
}

func TestResultNotEncodable(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	_, err := pool.Call(testCtx(t), "unencodable")
	require.ErrorIs(t, err, ErrResultNotEncodable)
	assert.Contains(t, err.Error(), "set")
	out, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), out)
}

func TestArgumentsNotEncodable(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	for _, arg := range []any{make(chan int), func() {}, complex(1, 2)} {
		_, err := pool.Call(testCtx(t), "echo", arg)
		assert.ErrorIs(t, err, ErrArgNotEncodable, "%T", arg)
	}
	_, err := pool.Call(testCtx(t), "echo", "bad \xff utf-8")
	assert.ErrorIs(t, err, ErrBadArguments)
	out, err := pool.Call(testCtx(t), "echo", "fine")
	require.NoError(t, err)
	assert.Equal(t, "fine", out)
	assert.Zero(t, pool.Stats().Crashes)
}

func TestMessageTooLarge(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxMessageSize = 1 << 10
	pool := newTestPool(t, cfg)
	_, err := pool.Call(testCtx(t), "echo", make([]byte, 2<<10))
	assert.ErrorIs(t, err, ErrMessageTooLarge)
	_, err = pool.Call(testCtx(t), "big", 4<<10)
	assert.ErrorIs(t, err, ErrMessageTooLarge)
	out, err := pool.Call(testCtx(t), "big", 10)
	require.NoError(t, err)
	assert.Equal(t, []byte("xxxxxxxxxx"), out)
}

func TestOutputReachesLogger(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	pid := workerPids(pool)[0]

	out, err := pool.Call(testCtx(t), "chatty")
	require.NoError(t, err, "print, os.write(1) and input() must not touch the protocol")
	assert.Equal(t, map[string]any{"eof": true}, out, "input() sees end of file")

	for msg, stream := range map[string]string{
		"line from print":    "stdout",
		"line from os.write": "stdout",
		"line to stderr":     "stderr",
	} {
		attrs := rec.await(t, msg)
		assert.Equal(t, stream, attrs["stream"], msg)
		assert.Equal(t, itoa(pid), attrs["worker"], msg)
	}
}

func TestCrashMidCallIsReplaced(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)

	_, err := pool.Call(ctx, "crash", 3)
	require.ErrorIs(t, err, ErrWorkerCrashed)
	var exitErr *WorkerExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 3, exitErr.ExitCode)
	assert.Contains(t, exitErr.Stderr, "about to crash")

	awaitPool(t, pool, "back at Size, the crash counted", func(s Stats) bool {
		return s.Workers == 2 && s.Restarts == 1 && s.Crashes == 1
	})
	out, err := pool.Call(ctx, "echo", "after")
	require.NoError(t, err)
	assert.Equal(t, "after", out)
}

func TestIdleWorkerDeathIsReplacedWithoutCalls(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	victim := workerPids(pool)[0]
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))

	awaitPool(t, pool, "replaced the killed worker", func(s Stats) bool {
		return s.Crashes == 1 && s.Restarts == 1 && s.Workers == 2
	})
	assert.NotContains(t, workerPids(pool), victim)
	for range 4 { // every worker handed out is alive
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
}

func TestImportFailureCarriesTraceback(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module = "pypool_broken"
	cfg.Size = 2
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, "RuntimeError", pyErr.Type)
	assert.Contains(t, pyErr.Traceback, "pypool_broken is broken on purpose")
	assert.Contains(t, pyErr.Traceback, "pypool_broken.py")
	assert.NotContains(t, err.Error(), "\n", "the error is one line; the traceback is in the field")
	assert.Equal(t, 1, strings.Count(err.Error(), "pypool:"), "the text does not repeat itself: %s", err)
}

func TestModuleNotFoundSaysWhereItLooked(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module = "no_such_module_anywhere"
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	abs, _ := filepath.Abs("testdata/pymod")
	assert.Contains(t, err.Error(), abs, "the error lists sys.path")
}

func TestInterpreterNotFound(t *testing.T) {
	cfg := testConfig(t)
	cfg.Python = "/nonexistent/python3"
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	assert.Contains(t, err.Error(), "Config.Python")
}

func TestOverflowIsCappedAndStoppedOnReturn(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 1, 2
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)

	release := make(chan struct{})
	var holders sync.WaitGroup
	for range 3 {
		holders.Add(1)
		go func() {
			defer holders.Done()
			assert.NoError(t, pool.Transaction(ctx, func(w *Worker) error {
				<-release
				return nil
			}))
		}()
	}
	awaitPool(t, pool, "three workers checked out", func(s Stats) bool { return s.InUse == 3 })
	s := pool.Stats()
	assert.Equal(t, 3, s.Workers)
	assert.Equal(t, 2, s.Overflow)
	assert.Len(t, workerPids(pool), 3, "never more than Size+MaxOverflow processes")

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := pool.Call(short, "echo", 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a full pool makes callers wait until their deadline")
	assert.Len(t, workerPids(pool), 3)

	close(release)
	holders.Wait()
	awaitPool(t, pool, "overflow stopped", func(s Stats) bool {
		return s.Workers == 1 && s.Idle == 1 && len(workerPids(pool)) == 1
	})
}

func TestWaitingCallerGetsContextErrors(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- pool.Transaction(ctx, func(*Worker) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held

	canceled, cancel := context.WithCancel(ctx)
	go func() {
		awaitPool(t, pool, "a waiter", func(s Stats) bool { return s.Waiting == 1 })
		cancel()
	}()
	_, err := pool.Call(canceled, "echo", 1)
	assert.ErrorIs(t, err, context.Canceled)

	expired, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	_, err = pool.Call(expired, "echo", 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	close(release)
	require.NoError(t, <-done)
}

// TestFailedStartWakesWaiters covers go-commons-pool's issue #50: a caller
// waiting for a worker while another caller's worker start fails must not
// stay blocked until its deadline (here: it has none).
func TestFailedStartWakesWaiters(t *testing.T) {
	dir := t.TempDir()
	failFlag, goFlag := filepath.Join(dir, "fail"), filepath.Join(dir, "go")
	cfg := testConfig(t)
	cfg.Module = "pypool_gated"
	if testStartMethod() == StartForkServer {
		cfg.SetUp = "gate" // forked workers do not import the module: they run its set-up
	}
	cfg.MaxOverflow = 1
	cfg.Env = []string{"PYPOOL_FAIL_FLAG=" + failFlag, "PYPOOL_GO_FLAG=" + goFlag}
	pool := newTestPool(t, cfg)
	require.NoError(t, os.WriteFile(failFlag, nil, 0o644))

	ctx := testCtx(t)
	held := make(chan struct{})
	release := make(chan struct{})
	released := make(chan struct{})
	go func() {
		defer close(released)
		_ = pool.Transaction(ctx, func(*Worker) error { close(held); <-release; return nil })
	}()
	<-held

	errs := make(chan error, 2)
	for range 2 { // one starts the overflow worker, the other waits behind it
		go func() {
			_, err := pool.Call(context.Background(), "echo", 1)
			errs <- err
		}()
	}
	awaitPool(t, pool, "two callers waiting", func(s Stats) bool { return s.Waiting == 2 })
	require.NoError(t, os.WriteFile(goFlag, nil, 0o644)) // the start now fails

	for range 2 {
		err := <-errs
		require.ErrorIs(t, err, ErrWorkerStart)
		var pyErr *PythonError
		require.ErrorAs(t, err, &pyErr)
		assert.Contains(t, pyErr.Message, "start refused by the test")
	}
	assert.GreaterOrEqual(t, pool.Stats().StartFailures, uint64(1))

	require.NoError(t, os.Remove(failFlag)) // the cause goes away
	close(release)
	<-released
	out, err := pool.Call(ctx, "echo", "healed")
	require.NoError(t, err)
	assert.Equal(t, "healed", out)
}

func TestTransactionPinsOneWorker(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	err := pool.Transaction(ctx, func(w *Worker) error {
		if _, err := w.Call(ctx, "set_value", "k", "v"); err != nil {
			return err
		}
		got, err := w.Call(ctx, "get_value", "k")
		assert.Equal(t, "v", got)
		pid, _ := w.Call(ctx, "pid")
		assert.Equal(t, int64(w.Pid()), pid)
		assert.NotEmpty(t, w.PythonVersion())
		assert.NotEmpty(t, w.Codec())
		return err
	})
	require.NoError(t, err)
}

func TestTransactionChecksInOnErrorAndPanic(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	sentinel := errors.New("caller's error")
	err := pool.Transaction(ctx, func(*Worker) error { return sentinel })
	assert.ErrorIs(t, err, sentinel)
	assert.Zero(t, pool.Stats().InUse)

	assert.PanicsWithValue(t, "boom", func() {
		_ = pool.Transaction(ctx, func(*Worker) error { panic("boom") })
	})
	s := pool.Stats()
	assert.Zero(t, s.InUse)
	assert.Equal(t, 1, s.Idle)
}

func TestWorkerIsInvalidAfterItsTransaction(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	var kept *Worker
	require.NoError(t, pool.Transaction(ctx, func(w *Worker) error { kept = w; return nil }))
	_, err := kept.Call(ctx, "echo", 1)
	assert.ErrorIs(t, err, ErrWorkerReleased)
	_, err = CallAs[int](ctx, kept, "echo", 1)
	assert.ErrorIs(t, err, ErrWorkerReleased)
}

func TestDeadlineInterruptsAndKeepsWorker(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	before := workerPids(pool)
	ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "sleep", 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	out, err := pool.Call(testCtx(t), "echo", "next")
	require.NoError(t, err)
	assert.Equal(t, "next", out)
	assert.Equal(t, before, workerPids(pool), "the interrupted worker answered and was kept")
}

func TestWorkerIgnoringInterruptIsReplaced(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.InterruptGrace = 100 * time.Millisecond
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	before := workerPids(pool)
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		rec.await(t, "swallowing interrupts")
		cancel()
	}()
	_, err := pool.Call(ctx, "swallow_interrupt", 30)
	require.ErrorIs(t, err, context.Canceled)

	out, err := pool.Call(testCtx(t), "echo", "next")
	require.NoError(t, err)
	assert.Equal(t, "next", out)
	assert.NotEqual(t, before, workerPids(pool), "the stuck worker was killed and replaced")
}

func TestCloseWaitsForCallsInFlight(t *testing.T) {
	pool, err := New(testCtx(t), testConfig(t))
	require.NoError(t, err)
	pids := workerPids(pool)
	started := make(chan struct{})
	result := make(chan error)
	go func() {
		result <- pool.Transaction(testCtx(t), func(w *Worker) error {
			close(started)
			_, err := w.Call(testCtx(t), "sleep", 0.2)
			return err
		})
	}()
	<-started
	require.NoError(t, pool.Close(testCtx(t)))
	require.NoError(t, <-result)
	assertGone(t, pids)

	_, err = pool.Call(testCtx(t), "echo", 1)
	assert.ErrorIs(t, err, ErrPoolClosed)
	require.NoError(t, pool.Close(testCtx(t)), "Close twice is fine")
}

func TestCloseStopsCallsWhenItsContextEnds(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	pids := workerPids(pool)
	result := make(chan error)
	go func() {
		_, err := pool.Call(testCtx(t), "swallow_interrupt", 60)
		result <- err
	}()
	rec.await(t, "swallowing interrupts")
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, pool.Close(ctx), context.DeadlineExceeded)
	assert.ErrorIs(t, <-result, ErrPoolClosed)
	assertGone(t, pids)
}

// TestCloseWithEndedContextReportsOnlyWhatItCutOff (issue 18, finding 13):
// Close with a context that has already ended returns nil when no worker
// was checked out, every time, and ctx's error when it cut a Transaction
// off.
func TestCloseWithEndedContextReportsOnlyWhatItCutOff(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for round := range 20 {
		pool, err := New(testCtx(t), testConfig(t))
		require.NoError(t, err)
		_, err = pool.Call(testCtx(t), "echo", round)
		require.NoError(t, err)
		require.NoError(t, pool.Close(ended), "round %d: nothing was running", round)
	}

	pool, err := New(testCtx(t), testConfig(t))
	require.NoError(t, err)
	held := make(chan struct{})
	release := make(chan struct{})
	result := make(chan error)
	go func() {
		result <- pool.Transaction(testCtx(t), func(w *Worker) error {
			close(held)
			<-release
			_, err := w.Call(testCtx(t), "echo", 1)
			return err
		})
	}()
	<-held
	assert.ErrorIs(t, pool.Close(ended), context.Canceled, "Close cut the Transaction off")
	close(release)
	assert.ErrorIs(t, <-result, ErrPoolClosed, "the Transaction's worker was stopped")
}

func TestCloseWakesWaitingCallers(t *testing.T) {
	pool, err := New(testCtx(t), testConfig(t))
	require.NoError(t, err)
	held := make(chan struct{})
	done := make(chan struct{})
	go func() {
		_ = pool.Transaction(testCtx(t), func(*Worker) error { close(held); <-done; return nil })
	}()
	<-held
	result := make(chan error)
	go func() {
		_, err := pool.Call(context.Background(), "echo", 1)
		result <- err
	}()
	awaitPool(t, pool, "a waiter", func(s Stats) bool { return s.Waiting == 1 })
	closed := make(chan error)
	go func() { closed <- pool.Close(testCtx(t)) }()
	assert.ErrorIs(t, <-result, ErrPoolClosed)
	close(done)
	require.NoError(t, <-closed)
}

// TestEnvironmentCannotBreakTheRuntime sets the PYTHON* variables that would
// break a naive worker: a PYTHONPATH that shadows the runtime and msgpack, a
// PYTHONSTARTUP that raises, an ASCII-only PYTHONIOENCODING, and no
// PYTHONUNBUFFERED (which the development machines export).
func TestEnvironmentCannotBreakTheRuntime(t *testing.T) {
	evil := t.TempDir()
	for _, name := range []string{"msgpack.py", "pypool_runtime.py", "pypool_testmod.py"} {
		require.NoError(t, os.WriteFile(filepath.Join(evil, name), []byte("raise ImportError('shadowed')\n"), 0o644))
	}
	startup := filepath.Join(evil, "startup.py")
	require.NoError(t, os.WriteFile(startup, []byte("raise SystemExit('startup ran')\n"), 0o644))
	t.Setenv("PYTHONPATH", evil)
	t.Setenv("PYTHONSTARTUP", startup)
	t.Setenv("PYTHONIOENCODING", "ascii")
	t.Setenv("PYTHONUNBUFFERED", "")
	os.Unsetenv("PYTHONUNBUFFERED")

	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	out, err := pool.Call(testCtx(t), "echo", "héllo ☃")
	require.NoError(t, err)
	assert.Equal(t, "héllo ☃", out)
	_, err = pool.Call(testCtx(t), "chatty")
	require.NoError(t, err)
	rec.await(t, "line from print") // line-buffered without PYTHONUNBUFFERED
}

// TestStructTagJSON: with Config.StructTag "json", struct fields that have
// only json tags cross in both directions; without it they are matched by
// field name, and a Python key in lower case does not fill them.
func TestStructTagJSON(t *testing.T) {
	type prediction struct {
		Label string  `json:"label"`
		Score float64 `json:"score,omitempty"`
	}
	in := map[string]any{"label": "cat", "score": 0.9}

	plain := newTestPool(t, testConfig(t))
	got, err := CallAs[prediction](testCtx(t), plain, "echo", in)
	require.NoError(t, err)
	assert.Equal(t, prediction{}, got, "json tags are not msgpack tags by default")

	cfg := testConfig(t)
	cfg.StructTag = "json"
	pool := newTestPool(t, cfg)
	got, err = CallAs[prediction](testCtx(t), pool, "echo", in)
	require.NoError(t, err)
	assert.Equal(t, prediction{Label: "cat", Score: 0.9}, got)

	out, err := pool.Call(testCtx(t), "echo", prediction{Label: "dog"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"label": "dog"}, out, "arguments use the json names too, omitempty included")

	err = pool.Transaction(testCtx(t), func(w *Worker) error {
		got, err := CallAs[prediction](testCtx(t), w, "echo", in)
		assert.Equal(t, prediction{Label: "cat", Score: 0.9}, got)
		return err
	})
	require.NoError(t, err)
}

// TestKwargsMustBeLast: a Kwargs anywhere but last is an error, not a dict
// passed as a positional argument.
func TestKwargsMustBeLast(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	_, err := pool.Call(testCtx(t), "describe", Kwargs{"b": 1}, "a")
	require.ErrorIs(t, err, ErrArgNotEncodable)
	assert.Contains(t, err.Error(), "keyword arguments go last")
	out, err := pool.Call(testCtx(t), "describe", "a", Kwargs{"b": 1})
	require.NoError(t, err)
	assert.Equal(t, int64(1), out.(map[string]any)["b"])
}

// TestNestingLimit pins the limit of docs/errors.md (ErrResultNotEncodable's
// row): a result may nest 1024 containers deep, the reply's
// own array around them (msgpack >= 1.2's packer starts with a limit of
// 1024 and refuses a container once it is below 0), whatever codec the
// worker runs: the pure one, or msgpack 1.0's C extension, whose own limit
// of 511 the runtime lifts by packing deeper values with the pure packer.
func TestNestingLimit(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			_, err := pool.Call(testCtx(t), "deep", 1023) // 1024 nested lists
			require.NoError(t, err)
			_, err = pool.Call(testCtx(t), "deep", 1024) // 1025
			require.ErrorIs(t, err, ErrResultNotEncodable)
		})
	}
}

// TestMapKeysPythonMerges documents that keys Python's dict holds equal
// (1, true, 1.0) merge into one; which value survives follows Go's map
// order, which is random.
func TestMapKeysPythonMerges(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	out, err := pool.Call(testCtx(t), "echo", map[any]any{int64(1): "int", true: "bool", 1.0: "float"})
	require.NoError(t, err)
	m, ok := out.(map[any]any)
	require.True(t, ok, "%T", out)
	assert.Len(t, m, 1, "one key survives: %v", m)
}

// TestPing: a round trip through the runtime that waits for a worker like
// Call and ends with ctx's error when none is free, and ErrPoolClosed after
// Close.
func TestPing(t *testing.T) {
	pool, err := New(testCtx(t), testConfig(t))
	require.NoError(t, err)
	require.NoError(t, pool.Ping(testCtx(t)))

	release := holdWorkers(t, pool, 1)
	short, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, pool.Ping(short), context.DeadlineExceeded)
	release()

	require.NoError(t, pool.Close(testCtx(t)))
	assert.ErrorIs(t, pool.Ping(testCtx(t)), ErrPoolClosed)
}
