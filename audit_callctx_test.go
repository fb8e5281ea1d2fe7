package pypool

// audit_callctx_test.go: hostile uses of the call's context
// (docs/call-context.md): limits at and past their bounds, a call's
// context never seen by another call on the same worker, threads and
// tasks that outlive their call, every call form, faults.

import (
	"context"
	"maps"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func auditCtxConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_auditctx"
	return cfg
}

// TestAuditCallCtxHostileTraceparent: a traceparent of a later version
// passes the W3C check on its first 55 bytes; what follows must not make
// the call fail (docs: "it never fails a call").
func TestAuditCallCtxHostileTraceparent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	head := "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for name, tp := range map[string]string{
		"InvalidUTF8": head + "-\xff\xfe",
		"Control":     head + "-\x00\n",
		"Huge":        head + "-" + strings.Repeat("a", 2<<20),
	} {
		t.Run(name, func(t *testing.T) {
			ctx := WithMetadata(WithTraceContext(testCtx(t), tp, ""), map[string]string{"k": "v"})
			got, err := CallAs[map[string]any](ctx, pool, "context")
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"k": "v"}, got["metadata"])
			assert.Equal(t, "", got["traceparent"], "not of the W3C form: not sent")
		})
	}
	// A later version's printable fields go as they are.
	got, err := CallAs[map[string]any](WithTraceContext(testCtx(t), head+"-x=1", ""), pool, "context")
	require.NoError(t, err)
	assert.Equal(t, head+"-x=1", got["traceparent"])
	got, err = CallAs[map[string]any](testCtx(t), pool, "context")
	require.NoError(t, err, "the worker still serves")
	assert.Equal(t, "context", got["function"])
}

// TestAuditCallCtxLimitsAtBounds: metadata exactly at each limit reaches
// Python whole; one past fails with the limit's name.
func TestAuditCallCtxLimitsAtBounds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	entries := map[string]string{}
	for i := range MaxMetadataEntries {
		entries["k"+itoa(i)] = "v"
	}
	longKey := strings.Repeat("k", MaxMetadataKeySize)
	size := map[string]string{"a": strings.Repeat("x", MaxMetadataSize-1)}
	for name, md := range map[string]map[string]string{
		"Entries":   entries,
		"KeySize":   {longKey: "v"},
		"KeySizeMB": {strings.Repeat("é", MaxMetadataKeySize/2): "v"},
		"Size":      size,
		"NUL":       {"a\x00b": "\x00", "empty": ""},
		"Unicode":   {"ключ": "值🙂", "\u2028": "\ufeff"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := CallAs[map[string]any](WithMetadata(testCtx(t), md), pool, "context")
			require.NoError(t, err)
			want := map[string]any{}
			for k, v := range md {
				want[k] = v
			}
			assert.Equal(t, want, got["metadata"])
		})
	}
	for name, c := range map[string]struct {
		md    map[string]string
		limit string
	}{
		"Entries":   {maps.Collect(func(yield func(string, string) bool) { maps.All(entries)(yield); yield("one", "more") }), "MaxMetadataEntries"},
		"KeySize":   {map[string]string{longKey + "k": "v"}, "MaxMetadataKeySize"},
		"KeySizeMB": {map[string]string{"k" + strings.Repeat("é", MaxMetadataKeySize/2): "v"}, "MaxMetadataKeySize"},
		"Size":      {map[string]string{"ab": size["a"]}, "MaxMetadataSize"},
	} {
		t.Run("Past"+name, func(t *testing.T) {
			_, err := pool.Call(WithMetadata(testCtx(t), c.md), "context")
			var me *MetadataError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, c.limit, me.Limit)
			assert.True(t, utf8.ValidString(me.Key), "the error's Key is valid UTF-8: %q", me.Key)
			assert.True(t, utf8.ValidString(err.Error()))
		})
	}
}

// TestAuditCallCtxNoLeakBetweenCalls: on one worker, a call without a
// context after one with it sees none, in every form and on every path
// (the fast path, keyword arguments, a stream, CallBytes), and what a
// call changes of its CallContext is not seen by the next.
func TestAuditCallCtxNoLeakBetweenCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	rich := func(t *testing.T) context.Context {
		return WithTraceContext(WithMetadata(testCtx(t), map[string]string{"tenant": "acme"}), testTraceparent, "s=1")
	}
	clean := func(t *testing.T, got map[string]any, function string) {
		t.Helper()
		assert.Equal(t, function, got["function"])
		assert.Empty(t, got["metadata"])
		assert.Equal(t, false, got["has_deadline"])
		assert.Equal(t, "", got["traceparent"])
		assert.Equal(t, "", got["tracestate"])
		assert.EqualValues(t, 1, got["attempt"])
	}
	forms := map[string]func(ctx context.Context) (map[string]any, error){
		"Call": func(ctx context.Context) (map[string]any, error) { return CallAs[map[string]any](ctx, pool, "context") },
		"Kwargs": func(ctx context.Context) (map[string]any, error) {
			return CallAs[map[string]any](ctx, pool, "with_kwargs", Kwargs{"x": 1})
		},
		"Stream": func(ctx context.Context) (map[string]any, error) {
			for m, err := range StreamAs[map[string]any](ctx, pool, "stream_closed", 1) {
				return m, err
			}
			return nil, nil
		},
		"Transaction": func(ctx context.Context) (got map[string]any, err error) {
			err = pool.Transaction(ctx, func(w *Worker) error {
				got, err = CallAs[map[string]any](ctx, w, "context")
				return err
			})
			return got, err
		},
	}
	for before, withCtx := range forms {
		for after, without := range forms {
			t.Run(before+"Then"+after, func(t *testing.T) {
				_, err := withCtx(rich(t))
				require.NoError(t, err)
				got, err := without(context.Background())
				require.NoError(t, err)
				clean(t, got, map[string]string{"Call": "context", "Kwargs": "with_kwargs", "Stream": "stream_closed", "Transaction": "context"}[after])
			})
		}
	}
	t.Run("Mutated", func(t *testing.T) {
		changed, err := CallAs[[]string](rich(t), pool, "mutate")
		require.NoError(t, err)
		assert.NotContains(t, changed, "metadata[]", "the metadata mapping is read-only")
		got, err := CallAs[map[string]any](context.Background(), pool, "context")
		require.NoError(t, err)
		clean(t, got, "context")
		got, err = CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"b": "2"}), pool, "context")
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"b": "2"}, got["metadata"])
	})
}
