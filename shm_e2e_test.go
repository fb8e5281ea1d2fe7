package pypool

// shm_e2e_test.go: the shared memory through real workers
// (testdata/pymod/pypool_datamod.py) on each interpreter of
// interpreters(t), with bytes; numpy_test.go does it with arrays.

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSharedMemoryEchoQuick(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			data := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
			out, err := pool.Call(testCtx(t), "echo", data)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, out.([]byte)))
		})
	}
}

// sharedFileSizes is the total size of the pool's workers' shared-memory
// files: 0 until a value went through one (they start empty).
func sharedFileSizes(t *testing.T, p *Pool) int64 {
	t.Helper()
	var total int64
	for _, pw := range p.serving() {
		s := pw.proc.shm
		if s == nil {
			continue
		}
		n, err := s.mem.Size()
		require.NoError(t, err)
		total += n
	}
	return total
}

// TestSharedMemoryBytesAroundTheThreshold: bytes of threshold-1, threshold
// and threshold+1 bytes, both ways, at a small and at the default
// threshold: below it nothing touches the shared memory, from it on the
// argument arrives through it and results leave through it.
func TestSharedMemoryBytesAroundTheThreshold(t *testing.T) {
	for name, python := range interpreters(t) {
		for _, tc := range []struct {
			name      string
			threshold int // Config's
			effective int
		}{
			{"shm-1KiB", smallThreshold, smallThreshold},
			{"shm-default", 0, DefaultSharedMemoryThreshold},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				pool := dataPool(t, python, tc.threshold)
				ctx := testCtx(t)
				got, err := pool.Call(ctx, "shared_memory_threshold")
				require.NoError(t, err)
				require.Equal(t, int64(tc.effective), got)
				for _, size := range []int{tc.effective - 1, tc.effective, tc.effective + 1} {
					data := patternBytes(size)
					what := fmt.Sprintf("%d bytes", size)
					via, err := pool.Call(ctx, "via_shared_memory", data)
					require.NoError(t, err, what)
					assert.Equal(t, size >= tc.effective, via, "%s: the argument came through the shared memory", what)

					requireEchoAndPatterned(t, ctx, pool, data, what)
					typed, err := CallAs[[]byte](ctx, pool, "patterned", size)
					require.NoError(t, err, what)
					requireSameBytes(t, data, typed, what+" made in Python, CallAs")

					if size < tc.effective {
						assert.Zero(t, sharedFileSizes(t, pool), "%s: below the threshold, the shared memory stays empty", what)
					} else {
						assert.NotZero(t, sharedFileSizes(t, pool), "%s: the shared memory was used", what)
					}
				}
			})
		}
	}
}

// shmMaxMessage is the Config.MaxMessageSize of TestSharedMemoryBytes'
// pools: larger than its values, smaller than the ones that must be refused.
const shmMaxMessage = 1 << 20

// TestSharedMemoryBytes runs the checks below through one worker per
// interpreter and shared-memory setting (default threshold, 1 KiB, off),
// with MaxMessageSize at 1 MiB.
func TestSharedMemoryBytes(t *testing.T) {
	for name, python := range interpreters(t) {
		for _, tc := range thresholdCases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				cfg := dataConfig(t, python, tc.threshold)
				cfg.MaxMessageSize = shmMaxMessage
				pool := newTestPool(t, cfg)
				t.Run("ResultsThatAreNotTheArgument", func(t *testing.T) { sharedResultsNotTheArgument(t, pool) })
				t.Run("Kwargs", func(t *testing.T) { sharedKwargs(t, pool) })
				t.Run("ResultTooLarge", func(t *testing.T) { sharedResultTooLarge(t, pool) })
				t.Run("ArgumentTooLarge", func(t *testing.T) { sharedArgumentTooLarge(t, pool) })
			})
		}
	}
}

// sharedResultsNotTheArgument: results computed from a large bytes argument
// (slices, a reversed copy, concatenations, a bytearray), made anew, or
// inside a list, come back right.
func sharedResultsNotTheArgument(t *testing.T, pool *Pool) {
	ctx := testCtx(t)
	data := patternBytes(largeBytes)
	other := bytes.Repeat([]byte("ab"), 50000)

	out, err := pool.Call(ctx, "slice_of", data, 100, len(data)-100)
	require.NoError(t, err)
	requireSameBytes(t, data[100:len(data)-100], out, "slice")
	out, err = pool.Call(ctx, "slice_of", data, 0, len(data))
	require.NoError(t, err)
	requireSameBytes(t, data, out, "whole slice")
	out, err = pool.Call(ctx, "slice_of", data, 5, 2000)
	require.NoError(t, err)
	requireSameBytes(t, data[5:2000], out, "small slice")

	reversed := slices.Clone(data)
	slices.Reverse(reversed)
	out, err = pool.Call(ctx, "reversed_bytes", data)
	require.NoError(t, err)
	requireSameBytes(t, reversed, out, "reversed")

	out, err = pool.Call(ctx, "concat", data, other)
	require.NoError(t, err)
	requireSameBytes(t, append(slices.Clone(data), other...), out, "concat")
	out, err = pool.Call(ctx, "concat", other, data)
	require.NoError(t, err)
	requireSameBytes(t, append(slices.Clone(other), data...), out, "concat the other way")
	out, err = pool.Call(ctx, "concat", data, data)
	require.NoError(t, err)
	requireSameBytes(t, append(slices.Clone(data), data...), out, "concat with itself")

	out, err = pool.Call(ctx, "bytearray_of", data)
	require.NoError(t, err)
	requireSameBytes(t, data, out, "bytearray")

	out, err = pool.Call(ctx, "big", largeBytes)
	require.NoError(t, err)
	requireSameBytes(t, bytes.Repeat([]byte("x"), largeBytes), out, "made anew")

	out, err = pool.Call(ctx, "bytes_in_list", data)
	require.NoError(t, err)
	list := out.([]any)
	requireSameBytes(t, data, list[0], "in a list")
	assert.Equal(t, int64(len(data)), list[1])

	// After a result that was the argument, a call whose result is not.
	out, err = pool.Call(ctx, "echo", data)
	require.NoError(t, err)
	requireSameBytes(t, data, out, "echo")
	out, err = pool.Call(ctx, "slice_of", other, 1, len(other))
	require.NoError(t, err)
	requireSameBytes(t, other[1:], out, "slice after echo")
}

// sharedKwargs: large bytes as keyword arguments, with positional ones,
// both ways.
func sharedKwargs(t *testing.T, pool *Pool) {
	ctx := testCtx(t)
	large, small := patternBytes(largeBytes), []byte("small")
	out, err := pool.Call(ctx, "lengths", large, small, Kwargs{"large": large, "small": small, "other": patternBytes(2000)})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"args":   []any{int64(len(large)), int64(len(small))},
		"kwargs": map[string]any{"large": int64(len(large)), "small": int64(len(small)), "other": int64(2000)},
	}, out)

	out, err = pool.Call(ctx, "kwargs_echo", Kwargs{"large": large, "small": small})
	require.NoError(t, err)
	m := out.(map[string]any)
	requireSameBytes(t, large, m["large"], "large kwarg")
	requireSameBytes(t, small, m["small"], "small kwarg")

	out, err = pool.Call(ctx, "describe_kwargs", Kwargs{"large": large})
	require.NoError(t, err)
	d := out.(map[string]any)["large"].(map[string]any)
	assert.Equal(t, "bytes", d["type"])
	assert.Equal(t, int64(len(large)), d["len"])
	assert.Equal(t, large[:8], d["head"])
	assert.Equal(t, large[len(large)-8:], d["tail"])
}

// sharedResultTooLarge: a bytes result larger than Config.MaxMessageSize
// is ErrMessageTooLarge (Python's message_too_large), made anew or from an
// argument that fits, through the shared memory or not; the worker stays.
func sharedResultTooLarge(t *testing.T, pool *Pool) {
	pids := workerPids(pool)
	data := patternBytes(600 << 10)
	for what, args := range map[string][]any{
		"big":       {"big", shmMaxMessage + 1},
		"patterned": {"patterned", shmMaxMessage + 1},
		"repeated":  {"repeated", data, 2}, // the argument fits, twice it does not
	} {
		_, err := pool.Call(testCtx(t), args[0].(string), args[1:]...)
		require.ErrorIs(t, err, ErrMessageTooLarge, what)
		var pe *PythonError
		require.ErrorAs(t, err, &pe, what)
		assert.Equal(t, "message_too_large", pe.Code, what)
	}
	out, err := pool.Call(testCtx(t), "repeated", data, 1)
	require.NoError(t, err)
	requireSameBytes(t, data, out, "once")
	assert.Equal(t, pids, workerPids(pool), "the worker stays")
}

// sharedArgumentTooLarge: an argument larger than Config.MaxMessageSize is
// refused with ErrMessageTooLarge before anything is sent: the worker does
// not see the call.
func sharedArgumentTooLarge(t *testing.T, pool *Pool) {
	ws := pool.serving()
	require.Len(t, ws, 1)
	proc := ws[0].proc
	served := proc.served.Load()
	tooLarge := patternBytes(shmMaxMessage + 1)
	for what, args := range map[string][]any{
		"bytes":          {tooLarge},
		"two halves":     {tooLarge[:600<<10], tooLarge[600<<10:]},
		"kwargs":         {Kwargs{"data": tooLarge}},
		"array":          {ArrayOf(make([]float64, shmMaxMessage/8+1))},
		"in a list":      {[]any{"x", tooLarge}},
		"array in a map": {map[string]any{"a": ArrayOf(make([]uint8, shmMaxMessage+1))}},
	} {
		_, err := pool.Call(testCtx(t), "lengths", args...)
		require.ErrorIs(t, err, ErrMessageTooLarge, what)
	}
	assert.Equal(t, served, proc.served.Load(), "no call reached the worker")
	out, err := pool.Call(testCtx(t), "lengths", tooLarge[:1000])
	require.NoError(t, err)
	assert.Equal(t, []any{int64(1000)}, out.(map[string]any)["args"])
	assert.Equal(t, served+1, proc.served.Load())
}

// TestSharedMemoryDisabled: SharedMemoryThreshold -1 gives the workers no
// shared memory; large values still cross, through the pipes.
func TestSharedMemoryDisabled(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			files, maps := sharedMemoryInUse(t)
			pool := dataPool(t, python, -1)
			ctx := testCtx(t)
			threshold, err := pool.Call(ctx, "shared_memory_threshold")
			require.NoError(t, err)
			assert.Nil(t, threshold)
			data := patternBytes(largeBytes)
			via, err := pool.Call(ctx, "via_shared_memory", data)
			require.NoError(t, err)
			assert.Equal(t, false, via)
			requireEchoAndPatterned(t, ctx, pool, data, "without shared memory")
			nowFiles, nowMaps := sharedMemoryInUse(t)
			assert.Equal(t, files, nowFiles, "no memfd")
			assert.Equal(t, maps, nowMaps, "no mapping")
			for _, pw := range pool.serving() {
				assert.Nil(t, pw.proc.shm)
			}
		})
	}
}

// TestSharedMemoryNoLeaksAfterClose: after workers used their shared
// memory, one of them crashed and was replaced, and the pool closed, no
// memfd and no mapping is left in this process.
func TestSharedMemoryNoLeaksAfterClose(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			files, maps := sharedMemoryInUse(t)
			cfg := dataConfig(t, python, smallThreshold)
			cfg.Size = 2
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			pool, err := New(ctx, cfg)
			require.NoError(t, err)
			closed := false
			defer func() {
				if !closed {
					pool.Close(ctx)
				}
			}()
			data := patternBytes(largeBytes)
			for range 4 {
				out, err := pool.Call(ctx, "echo", []any{data, ArrayOf(make([]float64, 1<<16))})
				require.NoError(t, err)
				requireSameBytes(t, data, out.([]any)[0], "echo")
			}
			inUse, _ := sharedMemoryInUse(t)
			assert.Equal(t, files+2, inUse, "one memfd per worker")

			_, err = pool.Call(ctx, "exit_now", 3)
			require.ErrorIs(t, err, ErrWorkerCrashed)
			awaitPool(t, pool, "back to 2 idle workers", func(s Stats) bool { return atRest(s, 2) })
			out, err := pool.Call(ctx, "echo", data)
			require.NoError(t, err)
			requireSameBytes(t, data, out, "echo after the crash")
			inUse, _ = sharedMemoryInUse(t)
			assert.Equal(t, files+2, inUse, "the crashed worker's memfd is closed")

			closed = true
			require.NoError(t, pool.Close(ctx))
			nowFiles, nowMaps := sharedMemoryInUse(t)
			assert.Equal(t, files, nowFiles, "memfds left open after Close")
			assert.Equal(t, maps, nowMaps, "mappings left after Close")
		})
	}
}

// TestSharedMemoryCallOnAWorkerThatDied: a large argument for a worker that
// died before the call (its shared memory released with it) is a crash,
// which Call retries, not an argument error.
func TestSharedMemoryCallOnAWorkerThatDied(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 1
	pool := newTestPool(t, cfg)
	large := bytes.Repeat([]byte("x"), 1<<20)
	err := pool.Transaction(testCtx(t), func(w *Worker) error {
		require.NoError(t, syscall.Kill(w.Pid(), syscall.SIGKILL))
		<-w.pw.proc.exited
		_, err := w.Call(testCtx(t), "echo", large)
		return err
	})
	require.ErrorIs(t, err, ErrWorkerCrashed)
	out, err := pool.Call(testCtx(t), "echo", large)
	require.NoError(t, err, "the pool replaced the worker")
	assert.Equal(t, len(large), len(out.([]byte)))
}

// TestSharedMemoryGrownByTheWorker: issue 18, finding 7. A Python function
// grows its worker's shared memory far beyond its limit (os.ftruncate(fd,
// 1 << 40)). The next call that needs the memory finds it, whether Go
// writes a large argument (of a call or a stream) or reads a large result,
// and even when Go's mapping is large enough already: ErrProtocol, neither
// ErrArgNotEncodable nor ErrResultNotDecodable; the worker is killed and
// replaced, and large calls succeed on the new one.
func TestSharedMemoryGrownByTheWorker(t *testing.T) {
	data := patternBytes(largeBytes)
	for what, call := range map[string]func(context.Context, *Pool) error{
		"argument": func(ctx context.Context, pool *Pool) error {
			_, err := pool.Call(ctx, "lengths", data)
			return err
		},
		"result": func(ctx context.Context, pool *Pool) error {
			_, err := pool.Call(ctx, "patterned", len(data))
			return err
		},
		"stream argument": func(ctx context.Context, pool *Pool) error {
			for _, err := range pool.Stream(ctx, "each_length", data) {
				return err
			}
			return nil
		},
	} {
		t.Run(what, func(t *testing.T) {
			pool := dataPool(t, "python3", smallThreshold)
			ctx := testCtx(t)
			before, stats := workerPids(pool), pool.Stats()
			_, err := pool.Call(ctx, "lengths", data, make(chan int))
			require.ErrorIs(t, err, ErrArgNotEncodable, "an argument that does not encode")
			_, err = pool.Call(ctx, "grow_shared_memory", int64(1)<<40)
			require.NoError(t, err)
			require.Equal(t, before, workerPids(pool), "a bad argument or the function cost the worker")

			err = call(ctx, pool)
			require.ErrorIs(t, err, ErrProtocol)
			assert.NotErrorIs(t, err, ErrArgNotEncodable, "the argument is blamed")
			assert.NotErrorIs(t, err, ErrResultNotDecodable, "the result is blamed")
			awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
				return s.StopsKilled == stats.StopsKilled+1 && s.StartsCrash == stats.StartsCrash+1 && atRest(s, 1)
			})
			assert.NotEqual(t, before, workerPids(pool), "the same worker")
			for range 3 {
				requireEchoAndPatterned(t, ctx, pool, data, "on the new worker")
			}
		})
	}
}

// TestSharedMemoryInvalidReference: issue 18, finding 7. A reply whose
// shared-memory reference is invalid (beyond the limit, beyond the
// memory's end, malformed, an array whose shape does not take the bytes
// referenced, into a memory the worker grew beyond its limit), sent by the
// fake worker, is ErrProtocol, not ErrResultNotDecodable, in each path
// that reads references (Call's decoder, CallAs's rewriting and its
// single-array path, CallBytes); the worker is killed and replaced. Each
// case runs on a worker of its own, pinned by a transaction.
func TestSharedMemoryInvalidReference(t *testing.T) {
	cases := []struct {
		fn   string
		call func(context.Context, *Worker, string) error
	}{
		{"shm_beyond_limit", func(ctx context.Context, w *Worker, fn string) error {
			_, err := w.Call(ctx, fn)
			return err
		}},
		{"shm_beyond_file", func(ctx context.Context, w *Worker, fn string) error {
			_, err := CallAs[any](ctx, w, fn)
			return err
		}},
		{"shm_malformed", func(ctx context.Context, w *Worker, fn string) error {
			_, err := CallBytes(ctx, w, nil, fn)
			return err
		}},
		{"shm_array_mismatch", func(ctx context.Context, w *Worker, fn string) error {
			_, err := CallAs[Array](ctx, w, fn)
			return err
		}},
		{"shm_grown", func(ctx context.Context, w *Worker, fn string) error {
			_, err := w.Call(ctx, fn)
			return err
		}},
	}
	pool, err := fakePool(t, "ok", len(cases))
	require.NoError(t, err)
	awaitPool(t, pool, "all workers idle", func(s Stats) bool { return atRest(s, len(cases)) })
	stats := pool.Stats()
	var broken []int
	for _, tc := range cases {
		t.Run(tc.fn, func(t *testing.T) {
			err := pool.Transaction(testCtx(t), func(w *Worker) error {
				broken = append(broken, w.Pid())
				return tc.call(testCtx(t), w, tc.fn)
			})
			require.ErrorIs(t, err, ErrProtocol)
			assert.NotErrorIs(t, err, ErrResultNotDecodable)
		})
	}
	awaitPool(t, pool, "the workers replaced", func(s Stats) bool {
		return s.StopsKilled == stats.StopsKilled+uint64(len(cases)) && s.StartsCrash == stats.StartsCrash+uint64(len(cases)) &&
			atRest(s, len(cases))
	})
	for _, pid := range broken {
		assert.NotContains(t, workerPids(pool), pid, "a worker that sent an invalid reference serves")
	}
	out, err := pool.Call(testCtx(t), "echo", "still serving")
	require.NoError(t, err)
	assert.Equal(t, "still serving", out)
}

// requireEchoAndPatterned checks that data crosses to Python and back
// (echo), and that Python makes the same bytes (patterned, the pattern of
// patternBytes); what names the case in failures.
func requireEchoAndPatterned(t *testing.T, ctx context.Context, pool *Pool, data []byte, what string) {
	t.Helper()
	out, err := pool.Call(ctx, "echo", data)
	require.NoError(t, err, what)
	requireSameBytes(t, data, out, what+" echoed")
	out, err = pool.Call(ctx, "patterned", len(data))
	require.NoError(t, err, what)
	requireSameBytes(t, data, out, what+" made in Python")
}
