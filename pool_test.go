package pypool

// The pool's API as a user meets it: New and its validation, Call with
// Kwargs, CallAs, a Python exception, what can be called, Transaction and
// its Worker, Close, Ping. Every other subject has its own file (see
// docs/testing.md); the shared helpers are in helpers_test.go.

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
