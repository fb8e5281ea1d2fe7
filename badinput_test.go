package pypool

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// steadyCalls makes echo calls on pool until stop is closed and reports how
// many failed: the bad inputs must not disturb other calls.
func steadyCalls(pool *Pool, fn string, stop <-chan struct{}) (wait func() (ok, failed int64)) {
	var okCount, failCount atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := pool.Call(ctx, fn, i)
			cancel()
			if err == nil && out == int64(i) {
				okCount.Add(1)
			} else {
				failCount.Add(1)
			}
		}
	}()
	return func() (int64, int64) { wg.Wait(); return okCount.Load(), failCount.Load() }
}

// TestBadWorkerOutput: a worker that breaks the protocol gives its caller a
// clear error, is replaced, and disturbs no other call.
func TestBadWorkerOutput(t *testing.T) {
	pool, err := fakePool(t, "ok", 2)
	require.NoError(t, err)
	stop := make(chan struct{})
	wait := steadyCalls(pool, "echo", stop)
	cases := []struct {
		fn   string
		want error
	}{
		{"garbage", ErrProtocol},            // undecodable frame
		{"truncated", ErrWorkerCrashed},     // frame cut off by the worker's exit
		{"longer", ErrProtocol},             // frame longer than declared
		{"unknown_kind", ErrProtocol},       // unknown message kind
		{"wrong_id", ErrProtocol},           // reply to another call
		{"huge_length", ErrMessageTooLarge}, // huge declared length: nothing allocated
		{"short_error", ErrProtocol},        // ERROR with missing fields
		{"not_an_array", ErrProtocol},       // body is not a message
		{"too_deep", ErrResultNotDecodable}, // 20,000 nested arrays
		{"close_stdout", ErrWorkerCrashed},  // worker closed its protocol output
		{"exit", ErrWorkerCrashed},          // worker exited mid-call
	}
	for _, tc := range cases {
		t.Run(tc.fn, func(t *testing.T) {
			_, err := pool.Call(testCtx(t), tc.fn, "x")
			require.ErrorIs(t, err, tc.want)
		})
	}
	close(stop)
	ok, failed := wait()
	assert.Zero(t, failed, "steady calls disturbed")
	assert.Positive(t, ok)
	awaitPool(t, pool, "back at Size", func(s Stats) bool { return s.Workers == 2 })
}

func TestBadHandshake(t *testing.T) {
	cases := []struct {
		hello string
		want  error
	}{
		{"bad-version", ErrProtocol},         // wrong protocol version
		{"garbage", ErrProtocol},             // first frame is no handshake
		{"exit", ErrWorkerStart},             // dies before the handshake (see below)
		{"silent", context.DeadlineExceeded}, // never answers: StartTimeout
	}
	for _, tc := range cases {
		t.Run(tc.hello, func(t *testing.T) {
			_, err := fakePool(t, tc.hello, 1)
			require.ErrorIs(t, err, ErrWorkerStart)
			require.ErrorIs(t, err, tc.want)
		})
	}
	_, err := fakePool(t, "exit", 1)
	var exitErr *WorkerExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 7, exitErr.ExitCode)
	assert.Contains(t, exitErr.Stderr, "fake worker: exiting before the handshake")
}

// TestBadCallInput: bad arguments, results and behaviour of user code each
// give a clear error while other calls on the pool go on undisturbed.
func TestBadCallInput(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	stop := make(chan struct{})
	wait := steadyCalls(pool, "echo", stop)
	nested := any(nil)
	for range 1100 {
		nested = []any{nested}
	}
	pyErr := func(typ string) func(*testing.T, error) {
		return func(t *testing.T, err error) {
			var e *PythonError
			require.ErrorAs(t, err, &e)
			assert.Equal(t, typ, e.Type)
		}
	}
	is := func(target error) func(*testing.T, error) {
		return func(t *testing.T, err error) { require.ErrorIs(t, err, target) }
	}
	cases := []struct {
		name  string
		fn    string
		args  []any
		check func(*testing.T, error)
	}{
		{"channel argument", "echo", []any{make(chan int)}, is(ErrArgNotEncodable)},
		{"function argument", "echo", []any{func() {}}, is(ErrArgNotEncodable)},
		{"complex argument", "echo", []any{complex(1, 2)}, is(ErrArgNotEncodable)},
		{"non-UTF-8 string", "echo", []any{"\xc3\x28"}, is(ErrBadArguments)},
		{"non-UTF-8 map key", "echo", []any{map[string]int{"\xff": 1}}, is(ErrBadArguments)},
		{"1100 levels deep: deeper than Python's unpacker goes", "echo", []any{nested}, is(ErrBadArguments)},
		{"set result", "unencodable", nil, is(ErrResultNotEncodable)},
		{"set of custom objects", "custom_objects", nil, is(ErrResultNotEncodable)},
		{"lone surrogate", "bad_str", nil, is(ErrResultNotEncodable)},
		{"int beyond 64 bits", "add", []any{uint64(math.MaxUint64), 1}, is(ErrResultNotEncodable)},
		{"recursion error", "recurse", []any{0}, pyErr("RecursionError")},
		{"sys.exit in a call", "exit_call", []any{2}, pyErr("SystemExit")},
		{"exception", "fail", []any{"x"}, pyErr("ValueError")},
		{"wrong arity", "add", []any{1}, pyErr("TypeError")},
		{"unknown function", "no_such_function", nil, is(ErrFunctionNotFound)},
		{"private function", "_private", nil, is(ErrFunctionNotFound)},
		{"imported function", "getpid", nil, is(ErrFunctionNotFound)},
		{"dotted path", "os.system", []any{"true"}, is(ErrFunctionNotFound)},
		{"oversized argument", "echo", []any{make([]byte, DefaultMaxMessageSize+1)}, is(ErrMessageTooLarge)},
		{"os._exit", "crash", []any{5}, is(ErrWorkerCrashed)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pool.Call(testCtx(t), tc.fn, tc.args...)
			tc.check(t, err)
		})
	}
	close(stop)
	ok, failed := wait()
	assert.Zero(t, failed, "steady calls disturbed")
	assert.Positive(t, ok)
}

func TestModuleFailingHalfWay(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module = "pypool_broken"
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, "import_failed", pyErr.Code)
	assert.False(t, errors.Is(err, ErrWorkerCrashed))
}
