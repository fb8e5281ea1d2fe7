package pypool

// callctx_test.go: the call's context inside Python (callctx.go,
// python/pypool_runtime/callctx.py): every call form carries the deadline,
// the attempt, the metadata and the trace context; a call without them
// sends the frame it sent before; metadata beyond the limits fails before
// any worker is used.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// ctxConfig is a one-worker pool of testdata/pymod/pypool_ctxmod.py.
func ctxConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_ctxmod"
	return cfg
}

// callContextOfPython calls pypool_ctxmod.context and returns what Python saw.
func callContextOfPython(t *testing.T, ctx context.Context, c Caller) map[string]any {
	t.Helper()
	got, err := CallAs[map[string]any](ctx, c, "context")
	require.NoError(t, err)
	return got
}

const testTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestCallContextReachesPython(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, ctxConfig(t))

	t.Run("Nothing", func(t *testing.T) {
		// The fast path: Go sends no context, Python knows the name.
		got, err := pool.Call(context.Background(), "context")
		require.NoError(t, err)
		m := got.(map[string]any)
		assert.Equal(t, "context", m["function"])
		assert.EqualValues(t, 1, m["attempt"])
		assert.Empty(t, m["metadata"])
		assert.Nil(t, m["remaining"])
		assert.Equal(t, false, m["has_deadline"])
		assert.Equal(t, "", m["traceparent"])
		assert.Empty(t, m["trace_context"])
		assert.Equal(t, true, m["readonly"])
	})
	t.Run("DeadlineAndMetadata", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ctx = WithMetadata(ctx, map[string]string{"tenant": "acme", "request_id": "r-1"})
		m := callContextOfPython(t, ctx, pool)
		assert.Equal(t, "context", m["function"])
		assert.EqualValues(t, 1, m["attempt"])
		assert.Equal(t, map[string]any{"tenant": "acme", "request_id": "r-1"}, m["metadata"])
		left, ok := m["remaining"].(float64)
		require.True(t, ok, "remaining: %v", m["remaining"])
		assert.True(t, left > 20 && left <= 30, "remaining %v of 30 s", left)
		assert.Equal(t, true, m["readonly"], "the metadata mapping is read-only")
	})
	t.Run("KwargsGeneralPath", func(t *testing.T) {
		ctx := WithMetadata(context.Background(), map[string]string{"k": "v"})
		got, err := CallAs[map[string]any](ctx, pool, "context", Kwargs{"x": 1})
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"k": "v"}, got["metadata"])
		assert.Nil(t, got["remaining"])
	})
	t.Run("Remaining", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		left, err := CallAs[float64](ctx, pool, "remaining")
		require.NoError(t, err)
		assert.True(t, left > 0 && left <= 5, "remaining %v", left)
		got, err := pool.Call(context.Background(), "remaining")
		require.NoError(t, err)
		assert.Nil(t, got, "no deadline: None")
	})
	t.Run("CallTimeoutIsTheDeadline", func(t *testing.T) {
		cfg := ctxConfig(t)
		cfg.CallTimeout = 7 * time.Second
		p := newTestPool(t, cfg)
		left, err := CallAs[float64](context.Background(), p, "remaining")
		require.NoError(t, err)
		assert.True(t, left > 0 && left <= 7, "remaining %v", left)
	})
	t.Run("CallBytes", func(t *testing.T) {
		ctx := WithMetadata(context.Background(), map[string]string{"blob": "héllo"})
		buf, err := CallBytes(ctx, pool, nil, "metadata_bytes", "blob")
		require.NoError(t, err)
		assert.Equal(t, "héllo", string(buf))
	})
	t.Run("Stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(WithMetadata(context.Background(), map[string]string{"s": "1"}), 30*time.Second)
		defer cancel()
		items, err := collect(t, pool.Stream(ctx, "stream_context", 2))
		require.NoError(t, err)
		require.Len(t, items, 2)
		for _, item := range items {
			m := item.(map[string]any)
			assert.Equal(t, "stream_context", m["function"])
			assert.Equal(t, map[string]any{"s": "1"}, m["metadata"])
			assert.Equal(t, true, m["has_deadline"])
		}
		// StreamAs, without anything: the context is the name only.
		for m, err := range StreamAs[map[string]any](context.Background(), pool, "stream_context", 1) {
			require.NoError(t, err)
			assert.Equal(t, "stream_context", m["function"])
			assert.Equal(t, false, m["has_deadline"])
		}
	})
	t.Run("WorkerInTransaction", func(t *testing.T) {
		ctx := WithMetadata(testCtx(t), map[string]string{"tx": "yes"})
		require.NoError(t, pool.Transaction(ctx, func(w *Worker) error {
			m := callContextOfPython(t, ctx, w)
			assert.Equal(t, map[string]any{"tx": "yes"}, m["metadata"])
			assert.Equal(t, true, m["has_deadline"])
			return nil
		}))
	})
	t.Run("Async", func(t *testing.T) {
		ctx := WithMetadata(testCtx(t), map[string]string{"a": "sync"})
		m, err := CallAs[map[string]any](ctx, pool, "async_context")
		require.NoError(t, err)
		assert.Equal(t, "async_context", m["function"])
		assert.Equal(t, "async_context", m["task_function"], "a task the coroutine starts inherits the context")
		assert.Equal(t, map[string]any{"a": "sync"}, m["metadata"])
		// Without a context: the fast path's name.
		m, err = CallAs[map[string]any](context.Background(), pool, "async_context")
		require.NoError(t, err)
		assert.Equal(t, "async_context", m["function"])
		assert.Equal(t, "async_context", m["task_function"])
	})
	t.Run("TraceContext", func(t *testing.T) {
		ctx := WithTraceContext(context.Background(), testTraceparent, "congo=t61rcWkgMzE")
		m := callContextOfPython(t, ctx, pool)
		assert.Equal(t, testTraceparent, m["traceparent"])
		assert.Equal(t, "congo=t61rcWkgMzE", m["tracestate"])
		assert.Equal(t, map[string]any{"traceparent": testTraceparent, "tracestate": "congo=t61rcWkgMzE"}, m["trace_context"])
		// Malformed: not sent, the call goes on.
		m = callContextOfPython(t, WithTraceContext(context.Background(), "00-xyz", ""), pool)
		assert.Equal(t, "", m["traceparent"])
	})
	t.Run("OutsideACall", func(t *testing.T) {
		got, err := CallAs[map[string]any](context.Background(), pool, "outside")
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"current_call": nil, "remaining": nil, "trace_context": map[string]any{}}, got)
	})
}

// TestCallContextOfANestedCall: a call made with a callback's context has
// its own context (its name, the callback's deadline, the outer metadata
// merged with its own), and the outer call's is back after it.
func TestCallContextOfANestedCall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	var pool *Pool
	var seen []map[string]string // the metadata of the callback's ctx
	cfg := ctxConfig(t)
	cfg.Callbacks = map[string]Callback{
		"inner": func(ctx context.Context, _ []any) (any, error) {
			seen = append(seen, Metadata(ctx))
			return pool.Call(WithMetadata(ctx, map[string]string{"inner": "2"}), "context")
		},
	}
	pool = newTestPool(t, cfg)
	ctx := WithMetadata(testCtx(t), map[string]string{"outer": "1"})
	got, err := CallAs[map[string]map[string]any](ctx, pool, "nested", "inner")
	require.NoError(t, err)
	inner, outer := got["inner"], got["outer"]
	assert.Equal(t, "context", inner["function"])
	assert.Equal(t, map[string]any{"outer": "1", "inner": "2"}, inner["metadata"])
	assert.Equal(t, true, inner["has_deadline"])
	assert.Equal(t, "nested", outer["function"])
	assert.Equal(t, map[string]any{"outer": "1"}, outer["metadata"])

	// Without anything on the outer call (the fast path), the nested call's
	// own context, then the outer call's name again.
	got, err = CallAs[map[string]map[string]any](context.Background(), pool, "nested", "inner")
	require.NoError(t, err)
	assert.Equal(t, "context", got["inner"]["function"])
	assert.Equal(t, "nested", got["outer"]["function"])
	assert.Equal(t, false, got["outer"]["has_deadline"])
	assert.Equal(t, []map[string]string{{"outer": "1"}, nil}, seen, "a callback's ctx carries its call's metadata")
}

// TestCallContextAttemptOfARetry: a call retried under Config.CrashRetries
// tells Python its attempt.
func TestCallContextAttemptOfARetry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := ctxConfig(t)
	cfg.CrashRetries = 1
	pool := newTestPool(t, cfg)
	flag := filepath.Join(t.TempDir(), "crash")
	require.NoError(t, os.WriteFile(flag, nil, 0o644))
	m, err := CallAs[map[string]any](context.Background(), pool, "crash_once", flag)
	require.NoError(t, err)
	assert.EqualValues(t, 2, m["attempt"])
	assert.Equal(t, "crash_once", m["function"])
	m, err = CallAs[map[string]any](context.Background(), pool, "crash_once", flag)
	require.NoError(t, err)
	assert.EqualValues(t, 1, m["attempt"])
}

// TestCallContextTracerSetsTraceContext: a Tracer's TraceCallStart that
// puts a trace context on its context (as the otel adapter does) sends it.
func TestCallContextTracerSetsTraceContext(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := ctxConfig(t)
	cfg.Tracer = traceContextTracer{}
	pool := newTestPool(t, cfg)
	m := callContextOfPython(t, WithMetadata(testCtx(t), map[string]string{"k": "v"}), pool)
	assert.Equal(t, testTraceparent, m["traceparent"])
	assert.Equal(t, map[string]any{"k": "v"}, m["metadata"], "the metadata of the caller's context stays")
}

type traceContextTracer struct{ nopTracer }

func (traceContextTracer) TraceCallStart(ctx context.Context, _ *Pool, _ TraceCallStartData) context.Context {
	return WithTraceContext(ctx, testTraceparent, "")
}

// TestMetadataLimits: metadata that breaks a limit fails with a
// *MetadataError naming it, before any worker is used: the pool's only
// worker is held, and the call does not wait for it.
func TestMetadataLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, ctxConfig(t))
	many := map[string]string{}
	for i := range MaxMetadataEntries + 1 {
		many["k"+itoa(i)] = "v"
	}
	cases := []struct {
		name  string
		md    map[string]string
		limit string
	}{
		{"Entries", many, "MaxMetadataEntries"},
		{"KeySize", map[string]string{strings.Repeat("k", MaxMetadataKeySize+1): "v"}, "MaxMetadataKeySize"},
		{"Size", map[string]string{"a": strings.Repeat("x", MaxMetadataSize)}, "MaxMetadataSize"},
		{"EmptyKey", map[string]string{"": "v"}, "empty key"},
		{"ValueUTF8", map[string]string{"bad": "\xff"}, "UTF-8"},
		{"KeyUTF8", map[string]string{"\xfe": "v"}, "UTF-8"},
	}
	sent := pool.Stats().CallsSent
	release := holdWorkers(t, pool, 1)
	defer release()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := WithMetadata(testCtx(t), c.md)
			for _, call := range []func() error{
				func() error { _, err := pool.Call(ctx, "context"); return err },
				func() error { _, err := CallBytes(ctx, pool, nil, "metadata_bytes", "k"); return err },
				func() error { _, err := collect(t, pool.Stream(ctx, "stream_context", 1)); return err },
			} {
				err := call()
				var me *MetadataError
				require.ErrorAs(t, err, &me)
				assert.Equal(t, c.limit, me.Limit)
				assert.ErrorIs(t, err, ErrArgNotEncodable)
				assert.Contains(t, err.Error(), c.limit)
				assert.Equal(t, OutcomeOf(ErrArgNotEncodable), OutcomeOf(err), "as an argument that does not encode")
			}
		})
	}
	assert.Equal(t, sent, pool.Stats().CallsSent, "no call was sent")
}

func TestWithMetadataMerges(t *testing.T) {
	ctx := WithMetadata(context.Background(), map[string]string{"a": "1", "b": "1"})
	inner := WithMetadata(ctx, map[string]string{"b": "2", "c": "2"})
	assert.Equal(t, map[string]string{"a": "1", "b": "1"}, Metadata(ctx), "the outer context is unchanged")
	assert.Equal(t, map[string]string{"a": "1", "b": "2", "c": "2"}, Metadata(inner))
	md := map[string]string{"x": "1"}
	copied := WithMetadata(context.Background(), md)
	md["x"] = "changed"
	assert.Equal(t, map[string]string{"x": "1"}, Metadata(copied), "WithMetadata copies")
	Metadata(copied)["x"] = "changed"
	assert.Equal(t, map[string]string{"x": "1"}, Metadata(copied), "Metadata returns a copy")
	assert.Nil(t, Metadata(context.Background()))
	traced := WithTraceContext(inner, testTraceparent, "")
	assert.Equal(t, Metadata(inner), Metadata(traced), "the trace context keeps the metadata")
	again := WithMetadata(traced, map[string]string{"d": "3"})
	assert.Equal(t, testTraceparent, metaOf(again).traceparent, "the metadata keeps the trace context")
}

func TestValidTraceparent(t *testing.T) {
	for s, want := range map[string]bool{
		testTraceparent: true,
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00":       true,
		"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra": true,
		"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra": false,
		"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01":       false,
		"00-00000000000000000000000000000000-b7ad6b7169203331-01":       false,
		"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01":       false,
		"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01":       false,
		"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01":       false,
		"":       false,
		"00-abc": false,
	} {
		assert.Equal(t, want, validTraceparent(s), s)
	}
}

// TestCallFrameWithoutContextIsUnchanged: a call without a deadline, a
// retry, metadata or a trace context encodes exactly as before the call
// context (the Python fast paths check the frame's first and last bytes);
// one with them has one more element, the context map.
func TestCallFrameWithoutContextIsUnchanged(t *testing.T) {
	e := newCallEncoder(DefaultMaxMessageSize, nil)
	frame, err := e.encodeCall(7, "f", []any{"x"}, nil, 0, callContext{attempt: 1}, time.Time{})
	require.NoError(t, err)
	want, err := msgpack.Marshal([]any{kindCall, 7, "f", []any{"x"}, nil})
	require.NoError(t, err)
	assert.Equal(t, want, frame[frameHeaderSize:])

	cc, err := callContextOf(WithMetadata(context.Background(), nil), nil, 0)
	require.NoError(t, err)
	assert.Nil(t, cc.meta, "empty metadata sends nothing")

	cc, err = callContextOf(WithTraceContext(WithMetadata(context.Background(), map[string]string{"k": "v"}), testTraceparent, "s=1"), nil, 1)
	require.NoError(t, err)
	frame, err = e.encodeCall(7, "f", []any{"x"}, nil, 0, cc, time.Now().Add(time.Minute))
	require.NoError(t, err)
	var got []any
	require.NoError(t, msgpack.Unmarshal(frame[frameHeaderSize:], &got))
	require.Len(t, got, 6)
	context := got[5].(map[string]any)
	assert.EqualValues(t, 2, context["a"])
	assert.InDelta(t, 60, context["r"], 1)
	assert.Equal(t, map[string]any{"k": "v"}, context["m"])
	assert.Equal(t, testTraceparent, context["tp"])
	assert.Equal(t, "s=1", context["ts"])

	// A STREAM: after the window.
	frame, err = e.encodeCall(8, "g", nil, nil, 4, callContext{attempt: 1}, time.Now().Add(time.Second))
	require.NoError(t, err)
	got = nil
	require.NoError(t, msgpack.Unmarshal(frame[frameHeaderSize:], &got))
	require.Len(t, got, 7)
	assert.EqualValues(t, 4, got[5])
	assert.Contains(t, got[6], "r")
	assert.False(t, bytes.Equal(frame, want))
}

// TestMetadataErrorMessages: the error names the key and the limit.
func TestMetadataErrorMessages(t *testing.T) {
	_, err := callContextOf(WithMetadata(context.Background(), map[string]string{"bad": "\xff"}), nil, 0)
	assert.EqualError(t, err, `pypool: call metadata key "bad": the value is not valid UTF-8 (Python receives str) (UTF-8)`)
	_, err = callContextOf(WithMetadata(context.Background(), map[string]string{"a": strings.Repeat("x", MaxMetadataSize)}), nil, 0)
	assert.EqualError(t, err, "pypool: call metadata: keys and values are 8193 bytes, at most 8192 (MaxMetadataSize)")
	assert.True(t, errors.Is(err, ErrArgNotEncodable))
}
