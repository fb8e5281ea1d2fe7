package pypool

// audit_data_test.go: a hostile tester's attacks on the codec, the shared
// memory, Config.MaxMessageSize, a worker that breaks its own protocol
// descriptors or shared memory, and the worker's output
// (testdata/pymod/pypool_auditdata.py holds the Python side).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// auditConfig is a one-worker pool of pypool_auditdata with a small
// shared-memory threshold and the callbacks its functions call.
func auditConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_auditdata"
	cfg.SharedMemoryThreshold = smallThreshold
	cfg.Callbacks = map[string]Callback{
		"echo": func(_ context.Context, args []any) (any, error) { return args[0], nil },
	}
	return cfg
}

// TestAuditSharedBytesResultAtTheMessageLimit: docs/errors.md, "call or
// reply over MaxMessageSize: ErrMessageTooLarge ... Python sends the error
// instead of the reply", and docs/types.md, "MaxMessageSize counts the
// shared bytes of a message too". A bytes result that takes the shared
// memory, of a size within a frame's few bytes of the limit, either
// arrives whole or is ErrMessageTooLarge refused by Python (the worker
// stays), whichever call form reads it, on both codecs; never
// ErrResultNotDecodable (Python counted the bytes alone, Go the frame too).
func TestAuditSharedBytesResultAtTheMessageLimit(t *testing.T) {
	const limit = 64 << 10
	forms := map[string]func(ctx context.Context, pool *Pool, n int) (int, error){
		"Call": func(ctx context.Context, pool *Pool, n int) (int, error) {
			out, err := pool.Call(ctx, "make_bytes", n)
			b, _ := out.([]byte)
			return len(b), err
		},
		"CallBytes": func(ctx context.Context, pool *Pool, n int) (int, error) {
			b, err := CallBytes(ctx, pool, nil, "make_bytes", n)
			return len(b), err
		},
		"CallAs": func(ctx context.Context, pool *Pool, n int) (int, error) {
			b, err := CallAs[[]byte](ctx, pool, "make_bytes", n)
			return len(b), err
		},
		"Call bytearray": func(ctx context.Context, pool *Pool, n int) (int, error) {
			out, err := pool.Call(ctx, "make_bytearray", n)
			b, _ := out.([]byte)
			return len(b), err
		},
	}
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			cfg := auditConfig(t)
			cfg.Python = python
			cfg.MaxMessageSize = limit
			pool := newTestPool(t, cfg)
			pids := workerPids(pool)
			for form, call := range forms {
				fits, refused := 0, 0
				for n := limit - 32; n <= limit+1; n++ {
					got, err := call(testCtx(t), pool, n)
					if err == nil {
						require.Equal(t, n, got, "%s of %d bytes", form, n)
						require.Zero(t, refused, "%s of %d bytes fits, a smaller one did not", form, n)
						fits++
						continue
					}
					require.ErrorIs(t, err, ErrMessageTooLarge, "%s of %d bytes", form, n)
					require.NotErrorIs(t, err, ErrResultNotDecodable, "%s of %d bytes", form, n)
					refused++
				}
				assert.Positive(t, fits, form)
				assert.Positive(t, refused, form)
			}
			assert.Equal(t, pids, workerPids(pool), "a result Python refused cost the worker")
		})
	}
}

// TestAuditSharedReferencesOverTheLimit: docs/errors.md, "a worker that
// still sends an oversized frame is replaced". A reply whose shared-memory
// references add up to more than MaxMessageSize (which the runtime never
// sends: only a broken or hostile worker) is ErrMessageTooLarge, not
// ErrResultNotDecodable, and a fault of the shared memory, so that the
// worker is killed and replaced (process.replied), on each decoder: Call's
// and CallAs's rewriting.
func TestAuditSharedReferencesOverTheLimit(t *testing.T) {
	mem, err := newSharedMem(4 << 10)
	if err != nil {
		t.Skipf("no shared memory on this platform: %v", err)
	}
	mem.acquire()
	defer func() { mem.releaseCall(); mem.retire() }() // closed: TestChaos counts what is left
	_, err = mem.put(make([]byte, 8<<10))
	require.NoError(t, err)
	payload, err := msgpack.Marshal([]any{0, 3 << 10})
	require.NoError(t, err)
	ref := extValue(t, extShmBytes, payload)
	reply := append([]byte{0x92}, append(ref, ref...)...) // two references of 3 KiB: 6 KiB in all
	codec := &valueCodec{shared: mem}
	_, err = decodeValue(reply, false, codec)
	require.ErrorIs(t, err, ErrMessageTooLarge, "Call's decoder")
	assert.NotErrorIs(t, err, ErrResultNotDecodable, "Call's decoder")
	assert.True(t, isSharedFault(err), "Call's decoder: the worker is kept")
	var into [][]byte
	err = decodeValueInto(reply, &into, codec)
	require.ErrorIs(t, err, ErrMessageTooLarge, "CallAs's rewriting")
	assert.NotErrorIs(t, err, ErrResultNotDecodable, "CallAs's rewriting")
	assert.True(t, isSharedFault(err), "CallAs's rewriting: the worker is kept")
}

// TestAuditCallAsNamesWhereAKeyDoesNotFit: docs/types.md, "A result that
// does not fit says where and what". A dict whose key is a tuple or bytes
// (no Go map key), nested in a result that CallAs decodes into a typed
// target, is an error that names where the dict is and what its key is,
// not msgpack's bare "invalid code=92 decoding string/bytes length".
func TestAuditCallAsNamesWhereAKeyDoesNotFit(t *testing.T) {
	pool := newTestPool(t, auditConfig(t))
	_, err := CallAs[map[string]any](testCtx(t), pool, "nested_tuple_key")
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), `result["outer"][0]: a Python dict with keys that are not str`)
	_, err = CallAs[map[string][]map[string]string](testCtx(t), pool, "nested_tuple_key")
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), `result["outer"][0]: a Python dict key [1 [2 3]] (list) does not fit Go string`)
	_, err = CallAs[map[int64]int](testCtx(t), pool, "bytes_key")
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), `result: a Python dict key [107] (bytes) does not fit Go int64`)
	out, err := CallAs[map[[2]any]string](testCtx(t), pool, "tuple_key")
	require.NoError(t, err, "a tuple key into a Go array key, as msgpack decodes it")
	assert.Equal(t, map[[2]any]string{{int8(1), int8(2)}: "x"}, out)
}

// TestAuditWorkerThatClosedItsInputCostsNoOtherCall: DESIGN.md invariant
// 11, "a fault costs at most the calls it touched, never a healthy
// caller's answer", and 9, "a call that never reached Python ...". A
// function closes (or replaces) its worker's protocol input and returns:
// its own call succeeds, and the next call, which no byte of reached that
// worker (the pipe has no reader: EPIPE before a byte was written), is
// answered by another worker instead of failing with ErrWorkerCrashed.
func TestAuditWorkerThatClosedItsInputCostsNoOtherCall(t *testing.T) {
	pool := newTestPool(t, auditConfig(t))
	for _, fn := range []string{"close_input", "devnull_over_input"} {
		for i := range 5 {
			before := workerPids(pool)
			out, err := pool.Call(testCtx(t), fn, "x")
			require.NoError(t, err, fn)
			assert.Equal(t, "x", out, fn)
			out, err = pool.Call(testCtx(t), "echo", i)
			require.NoError(t, err, "the call after %s, round %d", fn, i)
			assert.Equal(t, int64(i), out)
			assert.NotEqual(t, before, workerPids(pool), "%s: the deaf worker serves", fn)
		}
	}
}

// TestAuditHostileWritesToTheRealProtocol: DESIGN.md invariants 2 and 11
// against the real runtime (TestBadWorkerOutput uses a fake worker): a
// function that writes garbage or half a frame header to its worker's
// protocol output, closes it, or puts another file in its place (the log
// stream, /dev/null), in a plain call, a stream or after a callback, gets
// a typed error (before its deadline; at it, when the replies vanish), its worker
// is replaced, and the calls that a second worker serves meanwhile are
// undisturbed.
func TestAuditHostileWritesToTheRealProtocol(t *testing.T) {
	cfg := auditConfig(t)
	cfg.Size = 2
	cfg.InterruptGrace = 500 * time.Millisecond
	pool := newTestPool(t, cfg)
	stop := make(chan struct{})
	wait := steadyCalls(pool, "echo", stop)
	const deadline = 2 * time.Second
	cases := []struct {
		fn   string
		want error
	}{
		{"write_garbage", ErrProtocol},
		{"write_half_header", ErrMessageTooLarge}, // declares 2 GiB: nothing allocated
		{"close_output", ErrWorkerCrashed},
		{"devnull_over_output", ErrWorkerCrashed},
		{"stdout_over_output", ErrWorkerCrashed},
		{"callback_then_garbage", ErrProtocol},
		{"hide_output", context.DeadlineExceeded}, // the replies vanish: the deadline, then the kill
		{"stream_then_garbage", ErrProtocol},
	}
	for _, tc := range cases {
		t.Run(tc.fn, func(t *testing.T) {
			stats := pool.Stats()
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			var err error
			if tc.fn == "stream_then_garbage" {
				_, err = collect(t, pool.Stream(ctx, tc.fn, 3))
			} else {
				_, err = pool.Call(ctx, tc.fn, "x")
			}
			require.ErrorIs(t, err, tc.want) // any other error came before the deadline
			awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
				return s.StartsCrash > stats.StartsCrash && atRest(s, cfg.Size)
			})
		})
	}
	close(stop)
	ok, failed := wait()
	assert.Zero(t, failed, "steady calls disturbed")
	assert.Positive(t, ok)
}

// TestAuditHostileWriteInAsyncMode: with Config.AsyncCalls, an async
// function that writes garbage to its worker's protocol output fails the
// calls in flight on that worker (ErrProtocol, or ErrWorkerCrashed for
// those the loss caught), and only them: the worker is replaced and later
// calls are answered.
func TestAuditHostileWriteInAsyncMode(t *testing.T) {
	cfg := auditConfig(t)
	cfg.SharedMemoryThreshold = 0
	cfg.AsyncCalls = 4
	pool := newTestPool(t, cfg)
	for i := range 3 {
		stats := pool.Stats()
		_, err := pool.Call(testCtx(t), "async_garbage", "x")
		require.ErrorIs(t, err, ErrProtocol, "round %d", i)
		awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
			return s.StartsCrash > stats.StartsCrash && atRest(s, 1)
		})
		out, err := pool.Call(testCtx(t), "async_echo", i)
		require.NoError(t, err)
		assert.Equal(t, int64(i), out)
	}
}

// TestAuditSharedMemoryAroundNestedCalls: docs/types.md's shared memory
// ("What a function receives is a copy ... A bytes result that is one of
// the call's own arguments goes back as a reference to where it already
// is") with a callback in the middle: a function holding a large argument
// calls Go, whose callback makes nested calls on the same worker with
// large arguments and results (which cross inline); the function then
// returns its argument, or bytes made from it, and Go gets them intact,
// through Call, CallAs and CallBytes, on both codecs, around the
// threshold.
func TestAuditSharedMemoryAroundNestedCalls(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			var pool *Pool
			cfg := auditConfig(t)
			cfg.Python = python
			cfg.Callbacks["nested"] = func(ctx context.Context, args []any) (any, error) {
				n := int(args[0].(int64))
				made, err := pool.Call(ctx, "make_bytes", n)
				if err != nil {
					return nil, err
				}
				lengths, err := pool.Call(ctx, "lengths", patternBytes(n))
				if err != nil {
					return nil, err
				}
				return []any{len(made.([]byte)), lengths}, nil
			}
			pool = newTestPool(t, cfg)
			for _, size := range []int{smallThreshold - 1, smallThreshold, 256 << 10} {
				data := patternBytes(size)
				reversed := make([]byte, size)
				for i, b := range data {
					reversed[size-1-i] = b
				}
				for _, fresh := range []bool{false, true} {
					want := data
					if fresh {
						want = reversed
					}
					what := fmt.Sprintf("%d bytes, fresh %v", size, fresh)
					out, err := pool.Call(testCtx(t), "through_callback", data, size, fresh)
					require.NoError(t, err, what)
					requireSameBytes(t, want, out, what+": Call")
					typed, err := CallAs[[]byte](testCtx(t), pool, "through_callback", data, size, fresh)
					require.NoError(t, err, what)
					requireSameBytes(t, want, typed, what+": CallAs")
					buf, err := CallBytes(testCtx(t), pool, make([]byte, 0, 8), "through_callback", data, size, fresh)
					require.NoError(t, err, what)
					requireSameBytes(t, want, buf, what+": CallBytes")
				}
			}
		})
	}
}

// TestAuditWorkerSealsItsSharedMemory: docs/types.md, "a worker ... whose
// memory Go fails to size or map (the error wraps the system's)" is killed
// and replaced. A function adds a seal to its worker's shared memory
// (F_SEAL_GROW: Go cannot grow it; F_SEAL_FUTURE_WRITE: Go cannot map it
// writable again); the next call that needs more of the memory fails with
// an error that wraps EPERM, neither ErrArgNotEncodable nor
// ErrResultNotDecodable; the worker is replaced and large calls succeed on
// the new one. F_SEAL_WRITE is refused while the memory is mapped.
func TestAuditWorkerSealsItsSharedMemory(t *testing.T) {
	const fSealGrow, fSealWrite, fSealFutureWrite = 0x4, 0x8, 0x10
	pool := newTestPool(t, auditConfig(t))
	ctx := testCtx(t)
	small := patternBytes(64 << 10)
	out, err := pool.Call(ctx, "echo", small) // maps 1 MiB on both sides
	require.NoError(t, err)
	requireSameBytes(t, small, out, "before")
	refused, err := pool.Call(ctx, "shm_add_seal", fSealWrite)
	require.NoError(t, err)
	assert.NotEmpty(t, refused, "F_SEAL_WRITE on a memory mapped writable")
	for _, tc := range []struct {
		name       string
		seal, size int // size: more than the memory holds so far
	}{
		{"F_SEAL_GROW", fSealGrow, 2 << 20},
		{"F_SEAL_FUTURE_WRITE", fSealFutureWrite, 8 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stats, before := pool.Stats(), workerPids(pool)
			out, err := pool.Call(ctx, "shm_add_seal", tc.seal)
			require.NoError(t, err)
			require.Equal(t, "", out, "the seal was added")
			large := patternBytes(tc.size) // Go grows the memory for it
			_, err = pool.Call(ctx, "echo", large)
			require.Error(t, err)
			assert.ErrorIs(t, err, syscall.EPERM)
			assert.NotErrorIs(t, err, ErrArgNotEncodable)
			assert.NotErrorIs(t, err, ErrResultNotDecodable)
			awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
				return s.StopsKilled > stats.StopsKilled && atRest(s, 1)
			})
			assert.NotEqual(t, before, workerPids(pool))
			out, err = pool.Call(ctx, "echo", large)
			require.NoError(t, err, "on the new worker")
			requireSameBytes(t, large, out, "on the new worker")
		})
	}
}

// TestAuditOutputThatIsNotText: docs/observability.md, "What a worker
// prints to stdout or stderr goes to Config.Logger ..., one record per
// line, with attributes worker, stream and, for a line written during a
// call, function". Bytes that are no UTF-8 (and NUL, and a lone \r)
// arrive as they were, one record per line, naming the call; a line of
// 200,000 bytes is split into records of at most 64 KiB, each naming the
// call; a line without a newline written at the end of a call (to fd 1,
// or print(..., end="", flush=True)) is logged when the worker exits and
// names that call. Without flush, print(..., end="") stays in Python's
// buffer until the worker's exit, and names no call (as documented).
func TestAuditOutputThatIsNotText(t *testing.T) {
	lines := outputRecords(t, []auditCall{
		{"print_binary", nil},
		{"print_huge_line", []any{200000}},
		{"print_partial_raw", []any{"raw-at-exit"}}, // last: nothing follows its line
	})
	var huge int
	for msg, attrs := range lines {
		if strings.Trim(msg, "h") == "" {
			assert.LessOrEqual(t, len(msg), maxLogLine)
			assert.Equal(t, "print_huge_line", attrs["function"], "a piece of the huge line")
			huge += len(msg) * atoi(t, attrs["count"])
			delete(lines, msg)
		}
	}
	assert.Equal(t, 200000, huge, "the huge line, in pieces")
	binary := string(seq(256, func(i int) byte { return byte(i) }))
	head, tail, _ := strings.Cut(binary, "\n")
	tail = strings.TrimSuffix(tail, "\n")
	assert.Equal(t, map[string]map[string]string{
		head:               {"stream": "stdout", "function": "print_binary", "count": "1"},
		tail:               {"stream": "stdout", "function": "print_binary", "count": "1"},
		"\xff\xfe\x00junk": {"stream": "stderr", "function": "print_binary", "count": "1"},
		"raw-at-exit":      {"stream": "stdout", "function": "print_partial_raw", "count": "1"},
	}, lines)

	lines = outputRecords(t, []auditCall{{"print_partial", []any{"py-flushed", true}}})
	assert.Equal(t, map[string]map[string]string{
		"py-flushed": {"stream": "stdout", "function": "print_partial", "count": "1"},
	}, lines)
	lines = outputRecords(t, []auditCall{{"print_partial", []any{"py-buffered", false}}})
	assert.Equal(t, map[string]map[string]string{
		"py-buffered": {"stream": "stdout", "count": "1"},
	}, lines)
}

// auditCall is a function to call and its arguments.
type auditCall struct {
	fn   string
	args []any
}

// outputRecords makes the calls, in order, on a pool of its own, closes it, and returns the records of what its worker wrote, by
// message: their stream, function and how many records had that message.
func outputRecords(t *testing.T, calls []auditCall) map[string]map[string]string {
	t.Helper()
	rec := newLogRecorder()
	cfg := auditConfig(t)
	cfg.Logger = slogNew(rec)
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	for _, c := range calls {
		_, err := pool.Call(testCtx(t), c.fn, c.args...)
		require.NoError(t, err, c.fn)
	}
	require.NoError(t, pool.Close(testCtx(t)))
	lines := map[string]map[string]string{}
	for _, r := range rec.all() {
		if r.attrs["stream"] == "" {
			continue // the pool's own records
		}
		if seen, ok := lines[r.msg]; ok {
			seen["count"] = itoa(atoi(t, seen["count"]) + 1)
			continue
		}
		lines[r.msg] = map[string]string{"stream": r.attrs["stream"], "function": r.attrs["function"], "count": "1"}
		if r.attrs["function"] == "" {
			delete(lines[r.msg], "function")
		}
	}
	return lines
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

// TestAuditMessageLimitOnEveryForm: docs/errors.md, "call or reply over
// MaxMessageSize: ErrMessageTooLarge, nothing was sent / Python sends the
// error instead of the reply", on every call form and in both directions,
// through the pipes and the shared memory: arguments of Call, TryCall,
// CallAs, CallBytes, Worker.Call, Stream, StreamAs, a nested call and an
// async call; results, stream items and async results from Python. Go's
// answer to a callback that is too large reaches Python as a GoError that
// names the limit, and call_go's arguments as a ValueError. No refusal
// costs the worker.
func TestAuditMessageLimitOnEveryForm(t *testing.T) {
	const limit = 64 << 10
	over := patternBytes(limit + 1)
	for _, tc := range []struct {
		name      string
		threshold int
		async     int
	}{{"shm", smallThreshold, 0}, {"pipes", -1, 0}, {"async", 0, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			var pool *Pool
			cfg := auditConfig(t)
			cfg.MaxMessageSize = limit
			cfg.SharedMemoryThreshold = tc.threshold
			cfg.AsyncCalls = tc.async
			cfg.Callbacks["big"] = func(context.Context, []any) (any, error) { return over, nil }
			cfg.Callbacks["nested"] = func(ctx context.Context, args []any) (any, error) {
				_, err := pool.Call(ctx, "lengths", over)
				if !errors.Is(err, ErrMessageTooLarge) {
					return nil, fmt.Errorf("the nested call: %v", err)
				}
				return []any{int64(1), []any{int64(1)}}, nil
			}
			pool = newTestPool(t, cfg)
			pids := workerPids(pool)
			ctx := testCtx(t)
			tooLarge := func(what string, err error) {
				t.Helper()
				require.ErrorIs(t, err, ErrMessageTooLarge, what)
			}
			if tc.async > 0 {
				_, err := pool.Call(ctx, "async_lengths", over)
				tooLarge("an async call's argument", err)
				_, err = pool.Call(ctx, "async_make_bytes", limit+1)
				tooLarge("an async call's result", err)
				out, err := pool.Call(ctx, "async_make_bytes", 10)
				require.NoError(t, err)
				assert.Equal(t, []byte("aaaaaaaaaa"), out)
				assert.Equal(t, pids, workerPids(pool), "a refusal cost the worker")
				return
			}
			_, err := pool.Call(ctx, "lengths", over)
			tooLarge("Call's argument", err)
			_, err = pool.TryCall(ctx, "lengths", over)
			tooLarge("TryCall's argument", err)
			_, err = CallAs[[]int](ctx, pool, "lengths", Kwargs{"k": over})
			tooLarge("CallAs's keyword argument", err)
			_, err = CallBytes(ctx, pool, nil, "echo", over)
			tooLarge("CallBytes's argument", err)
			_, err = collect(t, pool.Stream(ctx, "make_items", over, 1))
			tooLarge("Stream's argument", err)
			for _, err := range StreamAs[[]byte](ctx, pool, "make_items", over, 1) {
				tooLarge("StreamAs's argument", err)
			}
			require.NoError(t, pool.Transaction(ctx, func(w *Worker) error {
				_, err := w.Call(ctx, "lengths", []any{over})
				tooLarge("Worker.Call's argument in a list", err)
				return nil
			}))

			_, err = pool.Call(ctx, "make_bytes", limit+1)
			tooLarge("Call's result", err)
			_, err = CallAs[[]byte](ctx, pool, "make_bytearray", limit+1)
			tooLarge("CallAs's result", err)
			_, err = CallBytes(ctx, pool, nil, "make_bytes", limit+1)
			tooLarge("CallBytes's result", err)
			_, err = pool.Call(ctx, "make_nested", limit/2, 2)
			tooLarge("bytes in a list", err)
			items, err := collect(t, pool.Stream(ctx, "make_items", limit+1, 2))
			tooLarge("a stream's item", err)
			assert.Empty(t, items)
			n := 0
			for item, err := range StreamAs[[]byte](ctx, pool, "make_items", limit/2, 3) {
				require.NoError(t, err, "items that fit one by one")
				assert.Len(t, item, limit/2)
				n++
			}
			assert.Equal(t, 3, n)

			_, err = pool.Call(ctx, "callback_reply_length", "big", 1)
			var perr *PythonError
			require.ErrorAs(t, err, &perr, "Go's answer to a callback")
			assert.Equal(t, "pypool.GoError", perr.Type)
			assert.Contains(t, perr.Message, "MaxMessageSize")
			_, err = pool.Call(ctx, "callback_with", "echo", limit+1)
			require.ErrorAs(t, err, &perr, "call_go's arguments")
			assert.Equal(t, "ValueError", perr.Type)
			assert.Contains(t, perr.Message, "--max-message")
			out, err := pool.Call(ctx, "callback_reply_length", "nested", 1)
			require.NoError(t, err, "a nested call's argument")
			assert.Equal(t, int64(2), out)

			assert.Equal(t, pids, workerPids(pool), "a refusal cost the worker")
			out, err = pool.Call(ctx, "echo", "still serving")
			require.NoError(t, err)
			assert.Equal(t, "still serving", out)
		})
	}
}

// TestAuditTimesAtTheEnds: docs/types.md's time rows ("aware datetime ->
// time.Time in UTC"; "nanoseconds are truncated") at the ends of Python's
// range, before 1970 and in another zone, on both codecs; a Go time that
// Python's datetime cannot hold (year 10000, year 0) is ErrBadArguments
// and keeps the worker.
func TestAuditTimesAtTheEnds(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			cfg := auditConfig(t)
			cfg.Python = python
			pool := newTestPool(t, cfg)
			out, err := pool.Call(testCtx(t), "times")
			require.NoError(t, err)
			assert.Equal(t, map[string]any{
				"min":                time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
				"max":                time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
				"epoch":              time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
				"before_epoch_micro": time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
				"zone":               time.Date(2024, 1, 1, 0, 0, 0, 1000, time.UTC),
			}, out)
			for in, want := range map[time.Time]time.Time{
				{}: {},
				time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC):         time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
				time.Date(2024, 1, 1, 0, 0, 0, 1500, time.FixedZone("W", -3600)): time.Date(2024, 1, 1, 1, 0, 0, 1000, time.UTC),
			} {
				out, err := pool.Call(testCtx(t), "echo", in)
				require.NoError(t, err, "%v", in)
				assert.Equal(t, want, out, "%v", in)
			}
			pids := workerPids(pool)
			for _, in := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC)} {
				_, err := pool.Call(testCtx(t), "echo", in)
				require.ErrorIs(t, err, ErrBadArguments, "%v", in)
			}
			assert.Equal(t, pids, workerPids(pool), "a bad argument cost the worker")
		})
	}
}

// TestAuditSharedReferenceWithoutSharedMemory: docs/errors.md, "a worker
// breaks the protocol (... a shared-memory reference malformed or out of
// range ...): ErrProtocol (never ErrArgNotEncodable or
// ErrResultNotDecodable); kills and replaces it". With the shared memory
// off (SharedMemoryThreshold -1), a worker that sends a shared-memory
// reference all the same breaks the protocol the same way, on each path
// that reads references (Call's decoder, CallAs's, CallBytes).
func TestAuditSharedReferenceWithoutSharedMemory(t *testing.T) {
	calls := map[string]func(context.Context, *Worker) error{
		"Call": func(ctx context.Context, w *Worker) error {
			_, err := w.Call(ctx, "shm_beyond_file")
			return err
		},
		"CallAs": func(ctx context.Context, w *Worker) error {
			_, err := CallAs[[]byte](ctx, w, "shm_beyond_file")
			return err
		},
		"CallAs Array": func(ctx context.Context, w *Worker) error {
			_, err := CallAs[Array](ctx, w, "shm_array_mismatch")
			return err
		},
		"CallBytes": func(ctx context.Context, w *Worker) error {
			_, err := CallBytes(ctx, w, nil, "shm_beyond_file")
			return err
		},
	}
	cfg := testConfig(t)
	cfg.SharedMemoryThreshold = -1
	pool, err := fakePoolConfig(t, cfg, "ok", 1)
	require.NoError(t, err)
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			stats := pool.Stats()
			var pid int
			err := pool.Transaction(testCtx(t), func(w *Worker) error {
				pid = w.Pid()
				return call(testCtx(t), w)
			})
			require.ErrorIs(t, err, ErrProtocol)
			assert.NotErrorIs(t, err, ErrResultNotDecodable)
			awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
				return s.StopsKilled > stats.StopsKilled && atRest(s, 1)
			})
			assert.NotContains(t, workerPids(pool), pid)
		})
	}
}

// TestAuditSharedReferenceInItemsAndCallbacks: docs/errors.md's protocol
// row again ("a shared-memory reference malformed or out of range:
// ErrProtocol; kills and replaces it"), where the runtime never puts a
// reference: a stream's ITEMS and a CALLBACK's arguments (both cross
// inline). A worker that sends one there is killed and replaced, and the
// call ends with ErrProtocol (at once: not at its deadline).
func TestAuditSharedReferenceInItemsAndCallbacks(t *testing.T) {
	pool := newTestPool(t, auditConfig(t))
	cases := map[string]func(ctx context.Context) error{
		"stream item": func(ctx context.Context) error {
			_, err := collect(t, pool.Stream(ctx, "stream_bad_reference"))
			return err
		},
		"callback argument": func(ctx context.Context) error {
			_, err := pool.Call(ctx, "callback_bad_reference", 30)
			return err
		},
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			stats, before := pool.Stats(), workerPids(pool)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := call(ctx)
			require.ErrorIs(t, err, ErrProtocol) // not the deadline
			assert.NotErrorIs(t, err, ErrResultNotDecodable)
			awaitPool(t, pool, "the worker replaced", func(s Stats) bool {
				return s.StopsKilled > stats.StopsKilled && atRest(s, 1)
			})
			assert.NotEqual(t, before, workerPids(pool))
		})
	}
}

// TestAuditCallNamesWhereAKeyIsNoGoMapKey: docs/types.md, "A result that
// does not fit says where and what", for Call itself. A dict whose key is
// a tuple or bytes decodes to no Go map; Call's error names where the dict
// is, the key and its Python type, and what to decode it into instead,
// as CallAs's does, rather than only the Go type of the key.
func TestAuditCallNamesWhereAKeyIsNoGoMapKey(t *testing.T) {
	pool := newTestPool(t, auditConfig(t))
	for fn, want := range map[string]string{
		"nested_tuple_key": `result["outer"][0]: a Python dict key [1 [2 3]] (list) can not be a key of a Go map`,
		"tuple_key":        `result: a Python dict key [1 2] (list) can not be a key of a Go map`,
		"bytes_key":        `result: a Python dict key [107] (bytes) can not be a key of a Go map`,
	} {
		_, err := pool.Call(testCtx(t), fn)
		require.ErrorIs(t, err, ErrResultNotDecodable, fn)
		assert.Contains(t, err.Error(), want, fn)
		assert.Contains(t, err.Error(), "CallAs", fn)
		for item, err := range pool.Stream(testCtx(t), "stream_of", fn) {
			require.Nil(t, item, fn)
			require.ErrorIs(t, err, ErrResultNotDecodable, fn)
			assert.Contains(t, err.Error(), want, fn)
			break
		}
	}
	out, err := CallAs[map[string]int](testCtx(t), pool, "bytes_key")
	require.NoError(t, err, "the hint's bytes key into a Go string key")
	assert.Equal(t, map[string]int{"k": 1}, out)
}
