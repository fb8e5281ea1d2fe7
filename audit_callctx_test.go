package pypool

// audit_callctx_test.go: hostile uses of the call's context
// (docs/call-context.md): limits at and past their bounds, a call's
// context never seen by another call on the same worker, threads and
// tasks that outlive their call, every call form, faults.

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
		"Unicode":   {"ключ": "值🙂", "\u2028": "\ufeff", "\uffff": "\U0010ffff"},
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
		"Surrogate": {map[string]string{"k": "\xed\xa0\x80"}, "UTF-8"},
		"Overlong":  {map[string]string{"\xc0\x80": "v"}, "UTF-8"},
	} {
		t.Run("Past"+name, func(t *testing.T) {
			_, err := pool.Call(WithMetadata(testCtx(t), c.md), "context")
			var me *MetadataError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, c.limit, me.Limit)
			if c.limit != "UTF-8" { // there Key is the refused key itself
				assert.True(t, utf8.ValidString(me.Key), "the error's Key is valid UTF-8: %q", me.Key)
			}
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

// TestAuditCallCtxThreads: a thread the call starts sees no call, unless
// it runs in a copy of the call's context (docs: "unless it runs the
// thread in a copy of the context"); once the call is over, neither sees
// it, nor the call that runs then.
func TestAuditCallCtxThreads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	md := func(t *testing.T, v string) context.Context {
		return WithMetadata(testCtx(t), map[string]string{"k": v})
	}
	t.Run("PlainThread", func(t *testing.T) {
		for _, ctx := range []context.Context{md(t, "1"), context.Background()} {
			got, err := pool.Call(ctx, "in_thread", false)
			require.NoError(t, err)
			assert.Nil(t, got)
		}
	})
	t.Run("CopiedContext", func(t *testing.T) {
		got, err := CallAs[map[string]any](md(t, "1"), pool, "in_thread", true)
		require.NoError(t, err)
		assert.Equal(t, "in_thread", got["function"])
		assert.Equal(t, map[string]any{"k": "1"}, got["metadata"])
	})
	t.Run("CopiedContextOfACallWithout", func(t *testing.T) {
		// No deadline, no metadata: the worker's fast path, which sets no
		// ContextVar: as outside a call (docs/call-context.md).
		got, err := CallAs[map[string]any](context.Background(), pool, "in_thread", true)
		require.NoError(t, err)
		assert.Nil(t, got)
	})
	for _, copied := range []bool{false, true} {
		for _, laterCtx := range []bool{false, true} {
			t.Run(fmt.Sprintf("AfterTheCall/copied=%v/later=%v", copied, laterCtx), func(t *testing.T) {
				_, err := pool.Call(md(t, "first"), "start_late_thread", copied)
				require.NoError(t, err)
				ctx := context.Background()
				if laterCtx {
					ctx = md(t, "second")
				}
				got, err := CallAs[map[string]map[string]any](ctx, pool, "read_late_thread")
				require.NoError(t, err)
				assert.Equal(t, map[string]any{"cc": nil, "remaining": nil, "trace_context": map[string]any{}}, got["late"])
				assert.Equal(t, "read_late_thread", got["now"]["function"])
			})
		}
	}
}

// TestAuditCallCtxStreamClosedEarly: a stream's generator, closed when Go
// stops reading, runs its clean-up in the stream's context.
func TestAuditCallCtxStreamClosedEarly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	for _, ctx := range []context.Context{WithMetadata(testCtx(t), map[string]string{"s": "1"}), context.Background()} {
		for range pool.Stream(ctx, "stream_closed", 1000) {
			break
		}
		got, err := CallAs[map[string]any](context.Background(), pool, "last_closed")
		require.NoError(t, err)
		assert.Equal(t, "stream_closed", got["function"])
		assert.Equal(t, Metadata(ctx), func() map[string]string {
			if len(got["metadata"].(map[string]any)) == 0 {
				return nil
			}
			return map[string]string{"s": got["metadata"].(map[string]any)["s"].(string)}
		}())
	}
	// A stream whose ctx is cancelled while Python makes items.
	_, err := pool.Call(testCtx(t), "reset_closed")
	require.NoError(t, err)
	pid, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(WithMetadata(testCtx(t), map[string]string{"s": "2"}))
	defer cancel()
	n := 0
	for _, err := range pool.Stream(ctx, "stream_closed", 1000) {
		if err != nil {
			break
		}
		if n++; n == 1 {
			cancel()
		}
	}
	again, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	closed, err := pool.Call(context.Background(), "last_closed")
	require.NoError(t, err)
	if again == pid { // the same worker: the generator's clean-up ran in the stream's context
		require.IsType(t, map[string]any{}, closed)
		assert.Equal(t, "stream_closed", closed.(map[string]any)["function"])
		assert.Equal(t, map[string]any{"s": "2"}, closed.(map[string]any)["metadata"])
	}
	got, err := CallAs[map[string]any](context.Background(), pool, "context")
	require.NoError(t, err)
	assert.Empty(t, got["metadata"])
}

// TestAuditCallCtxBackgroundTask: an async function's task that outlives
// its call sees no call afterwards, not the call that runs then.
func TestAuditCallCtxBackgroundTask(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	for _, async := range []int{0, 4} {
		t.Run(fmt.Sprintf("AsyncCalls=%d", async), func(t *testing.T) {
			cfg := auditCtxConfig(t)
			cfg.AsyncCalls = async
			pool := newTestPool(t, cfg)
			got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"k": "1"}), pool, "start_task")
			require.NoError(t, err)
			assert.Equal(t, "start_task", got["function"])
			read, err := CallAs[map[string]map[string]any](WithMetadata(testCtx(t), map[string]string{"k": "2"}), pool, "read_task")
			require.NoError(t, err)
			assert.Nil(t, read["late"], "the task's call is over")
			assert.Equal(t, map[string]any{"k": "2"}, read["now"]["metadata"])
		})
	}
}

// TestAuditCallCtxAsyncCallsEachTheirOwn: with Config.AsyncCalls, calls in
// flight at once on one worker each see their own context, with or
// without one, before and after they all started.
func TestAuditCallCtxAsyncCallsEachTheirOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	const n = 16
	cfg := auditCtxConfig(t)
	cfg.AsyncCalls = n
	pool := newTestPool(t, cfg)
	var wg sync.WaitGroup
	results := make([]map[string]map[string]any, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if i%2 == 0 { // deadlines 1000 s apart: each task's remaining() is its own
				c, cancel := context.WithTimeout(context.Background(), time.Duration(i+1)*1000*time.Second)
				defer cancel()
				ctx = WithMetadata(c, map[string]string{"i": itoa(i)})
			}
			results[i], errs[i] = CallAs[map[string]map[string]any](ctx, pool, "wait_all", n, i)
		}()
	}
	wg.Wait()
	for i := 2; i < n; i += 2 {
		assert.Less(t, results[i-2]["after"]["remaining"], results[i]["after"]["remaining"], "%d", i)
		assert.Less(t, results[i]["after"]["remaining"], float64((i+1)*1000)+1, "%d", i)
	}
	for i := range n {
		require.NoError(t, errs[i])
		for _, when := range []string{"before", "after"} {
			got := results[i][when]
			require.NotNil(t, got, "%d %s", i, when)
			assert.Equal(t, "wait_all", got["function"])
			if i%2 == 0 {
				assert.Equal(t, map[string]any{"i": itoa(i)}, got["metadata"], "%d %s", i, when)
				assert.Equal(t, true, got["has_deadline"])
			} else {
				assert.Empty(t, got["metadata"], "%d %s", i, when)
				assert.Equal(t, false, got["has_deadline"])
			}
		}
	}
}

// TestAuditCallCtxRetryKeepsMetadata: the retry of a call whose worker
// crashed carries the same metadata and deadline, attempt 2.
func TestAuditCallCtxRetryKeepsMetadata(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	for _, async := range []int{0, 4} {
		t.Run(fmt.Sprintf("AsyncCalls=%d", async), func(t *testing.T) {
			cfg := auditCtxConfig(t)
			cfg.CrashRetries = 1
			cfg.AsyncCalls = async
			pool := newTestPool(t, cfg)
			flag := filepath.Join(t.TempDir(), "crash")
			require.NoError(t, os.WriteFile(flag, nil, 0o644))
			fn := "crash_once"
			if async > 0 {
				fn = "async_crash_once"
			}
			ctx := WithTraceContext(WithMetadata(testCtx(t), map[string]string{"k": "v"}), testTraceparent, "")
			got, err := CallAs[map[string]any](ctx, pool, fn, flag)
			require.NoError(t, err)
			assert.EqualValues(t, 2, got["attempt"])
			assert.Equal(t, map[string]any{"k": "v"}, got["metadata"])
			assert.Equal(t, true, got["has_deadline"])
			assert.Equal(t, testTraceparent, got["traceparent"])
			got, err = CallAs[map[string]any](context.Background(), pool, "context")
			require.NoError(t, err)
			assert.EqualValues(t, 1, got["attempt"])
			assert.Empty(t, got["metadata"])
		})
	}
}

// TestAuditCallCtxForkServer: the fork server's workers read the context.
func TestAuditCallCtxForkServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := auditCtxConfig(t)
	cfg.StartMethod = StartForkServer
	pool := newTestPool(t, cfg)
	got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"fork": "yes"}), pool, "context")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"fork": "yes"}, got["metadata"])
	assert.Equal(t, true, got["has_deadline"])
	got, err = CallAs[map[string]any](context.Background(), pool, "context")
	require.NoError(t, err)
	assert.Empty(t, got["metadata"])
	assert.Equal(t, false, got["has_deadline"])
}

// TestAuditCallCtxNestedChains: nested calls that drop the deadline
// (context.WithoutCancel: a frame without a context, inside a call with
// one), add metadata, or break a limit; each call sees its own context
// before and after its own nested calls, from a plain function, a stream's
// generator and an async function.
func TestAuditCallCtxNestedChains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	var pool *Pool
	var mu sync.Mutex
	var seen []map[string]string
	cfg := auditCtxConfig(t)
	cfg.Callbacks = map[string]Callback{
		"drop": func(ctx context.Context, _ []any) (any, error) {
			return pool.Call(context.WithoutCancel(ctx), "nest2", "add")
		},
		"add": func(ctx context.Context, _ []any) (any, error) {
			mu.Lock()
			seen = append(seen, Metadata(ctx))
			mu.Unlock()
			return pool.Call(WithMetadata(ctx, map[string]string{"b": "2"}), "context")
		},
		"bad": func(ctx context.Context, _ []any) (any, error) {
			return pool.Call(WithMetadata(ctx, map[string]string{"": "x"}), "context")
		},
	}
	pool = newTestPool(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	got, err := CallAs[map[string]any](ctx, pool, "nest2", "drop")
	require.NoError(t, err)
	for _, when := range []string{"before", "after"} {
		outer := got[when].(map[string]any)
		assert.Equal(t, "nest2", outer["function"], when)
		assert.Equal(t, true, outer["has_deadline"], when)
		assert.Empty(t, outer["metadata"], when)
	}
	mid := got["inner"].(map[string]any)
	for _, when := range []string{"before", "after"} {
		m := mid[when].(map[string]any)
		assert.Equal(t, "nest2", m["function"], when)
		assert.Equal(t, true, m["has_deadline"], "WithoutCancel: still the callback's deadline, %s", when)
		assert.Empty(t, m["metadata"], when)
	}
	innermost := mid["inner"].(map[string]any)
	assert.Equal(t, "context", innermost["function"])
	assert.Equal(t, map[string]any{"b": "2"}, innermost["metadata"])
	assert.Equal(t, true, innermost["has_deadline"])

	got, err = CallAs[map[string]any](WithMetadata(ctx, map[string]string{"a": "1"}), pool, "nest2", "bad")
	require.NoError(t, err)
	assert.Contains(t, got["inner"].(map[string]any)["error"], "empty key")
	assert.Equal(t, map[string]any{"a": "1"}, got["after"].(map[string]any)["metadata"])

	t.Run("TracedOuterFastInner", func(t *testing.T) {
		// The outer frame carries only the Tracer's trace context; nested
		// frames without a deadline or metadata come inside it.
		cfg := auditCtxConfig(t)
		cfg.Tracer = traceContextTracer{}
		var traced *Pool
		cfg.Callbacks = map[string]Callback{
			"plain": func(ctx context.Context, _ []any) (any, error) { return traced.Call(ctx, "nest2", "plain2") },
			"plain2": func(ctx context.Context, _ []any) (any, error) {
				return traced.Call(WithMetadata(ctx, map[string]string{"deep": "1"}), "context")
			},
		}
		traced = newTestPool(t, cfg)
		got, err := CallAs[map[string]any](context.Background(), traced, "nest2", "plain")
		require.NoError(t, err)
		for _, when := range []string{"before", "after"} {
			outer := got[when].(map[string]any)
			assert.Equal(t, "nest2", outer["function"], when)
			assert.Equal(t, testTraceparent, outer["traceparent"], when)
			mid := got["inner"].(map[string]any)[when].(map[string]any)
			assert.Equal(t, "nest2", mid["function"], when)
			assert.Empty(t, mid["metadata"], when)
			assert.Equal(t, false, mid["has_deadline"], when)
		}
		deep := got["inner"].(map[string]any)["inner"].(map[string]any)
		assert.Equal(t, "context", deep["function"])
		assert.Equal(t, map[string]any{"deep": "1"}, deep["metadata"])
	})
	t.Run("Stream", func(t *testing.T) {
		items, err := collect(t, pool.Stream(WithMetadata(ctx, map[string]string{"a": "s"}), "stream_nest", "add", 2))
		require.NoError(t, err)
		require.Len(t, items, 3)
		for i, item := range items {
			m := item.(map[string]any)
			own := m["item"].(map[string]any)
			assert.Equal(t, "stream_nest", own["function"], i)
			assert.Equal(t, map[string]any{"a": "s"}, own["metadata"], i)
			if inner, _ := m["inner"].(map[string]any); inner != nil {
				assert.Equal(t, map[string]any{"a": "s", "b": "2"}, inner["metadata"], i)
			}
		}
	})
	t.Run("Async", func(t *testing.T) {
		for _, c := range []context.Context{context.Background(), WithMetadata(ctx, map[string]string{"a": "x"})} {
			got, err := CallAs[map[string]any](c, pool, "async_nest", "add")
			require.NoError(t, err)
			for _, when := range []string{"before", "after"} {
				m := got[when].(map[string]any)
				assert.Equal(t, "async_nest", m["function"], when)
				assert.Equal(t, len(Metadata(c)), len(m["metadata"].(map[string]any)), when)
			}
			assert.Equal(t, "context", got["inner"].(map[string]any)["function"])
		}
	})
}

// TestAuditCallCtxDeadlines: a deadline years away, one already passed,
// none; and a call after a call that ran out of time.
func TestAuditCallCtxDeadlines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	far, cancel := context.WithDeadline(context.Background(), time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	defer cancel()
	got, err := CallAs[map[string]any](far, pool, "context")
	require.NoError(t, err)
	left, ok := got["remaining"].(float64)
	require.True(t, ok, "%v", got["remaining"])
	assert.Greater(t, left, 100*365*24*3600.0, "years left")

	sent := pool.Stats().CallsSent
	past, cancel2 := context.WithDeadline(WithMetadata(context.Background(), map[string]string{"k": "v"}), time.Now().Add(-time.Hour))
	defer cancel2()
	_, err = pool.Call(past, "context")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, sent, pool.Stats().CallsSent, "nothing sent")

	cancelled, cancel3 := context.WithCancel(WithMetadata(context.Background(), map[string]string{"": "bad"}))
	cancel3()
	_, err = pool.Call(cancelled, "context")
	var me *MetadataError
	assert.ErrorAs(t, err, &me, "the metadata's error, before anything else")

	got, err = CallAs[map[string]any](context.Background(), pool, "context")
	require.NoError(t, err)
	assert.Nil(t, got["remaining"])
}

// TestAuditCallCtxConcurrentContexts: contexts derived from one parent by
// many goroutines at once, each calling with its own metadata on a pool
// of two workers, each call seeing its own (go test -race).
func TestAuditCallCtxConcurrentContexts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts workers")
	}
	cfg := auditCtxConfig(t)
	cfg.Size = 2
	pool := newTestPool(t, cfg)
	parent := WithTraceContext(WithMetadata(testCtx(t), map[string]string{"p": "1"}), testTraceparent, "")
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := WithMetadata(parent, map[string]string{"i": itoa(i)})
			if i%3 == 0 {
				ctx = WithTraceContext(ctx, testTraceparent, "g="+itoa(i))
			}
			for range 5 {
				got, err := CallAs[map[string]any](ctx, pool, "context")
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, map[string]any{"p": "1", "i": itoa(i)}, got["metadata"])
				assert.Equal(t, testTraceparent, got["traceparent"])
				if i%3 == 0 {
					assert.Equal(t, "g="+itoa(i), got["tracestate"])
				} else {
					assert.Equal(t, "", got["tracestate"])
				}
			}
			assert.Equal(t, map[string]string{"p": "1", "i": itoa(i)}, Metadata(ctx))
		}()
	}
	wg.Wait()
	assert.Equal(t, map[string]string{"p": "1"}, Metadata(parent))
}

// TestAuditCallCtxMoreForms: TryCall, an async generator's stream, and a
// Worker's Call and Stream in a transaction, with good and with bad
// metadata (refused before anything is sent, the transaction's worker
// still serving); with Config.AsyncCalls and the fork server too.
func TestAuditCallCtxMoreForms(t *testing.T) {
	if testing.Short() {
		t.Skip("starts workers")
	}
	for _, mode := range []string{"Plain", "AsyncCalls", "ForkServerAsyncCalls"} {
		t.Run(mode, func(t *testing.T) {
			cfg := auditCtxConfig(t)
			if mode != "Plain" {
				cfg.AsyncCalls = 4
			}
			if mode == "ForkServerAsyncCalls" {
				cfg.StartMethod = StartForkServer
			}
			pool := newTestPool(t, cfg)
			good := WithMetadata(testCtx(t), map[string]string{"g": "1"})
			bad := WithMetadata(testCtx(t), map[string]string{"g": "\xff"})
			got, err := pool.TryCall(good, "context")
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"g": "1"}, got.(map[string]any)["metadata"])
			_, err = pool.TryCall(bad, "context")
			assert.ErrorAs(t, err, new(*MetadataError))

			items, err := collect(t, pool.Stream(good, "async_stream", 3))
			require.NoError(t, err)
			require.Len(t, items, 3)
			for _, item := range items {
				assert.Equal(t, map[string]any{"g": "1"}, item.(map[string]any)["metadata"])
				assert.Equal(t, "async_stream", item.(map[string]any)["function"])
			}

			sent := pool.Stats().CallsSent
			require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
				_, err := w.Call(bad, "context")
				assert.ErrorAs(t, err, new(*MetadataError))
				_, err = collect(t, w.Stream(bad, "stream_closed", 1))
				assert.ErrorAs(t, err, new(*MetadataError))
				_, err = CallBytes(bad, w, nil, "context")
				assert.ErrorAs(t, err, new(*MetadataError))
				got, err := CallAs[map[string]any](good, w, "context")
				require.NoError(t, err)
				assert.Equal(t, map[string]any{"g": "1"}, got["metadata"])
				return nil
			}))
			assert.Equal(t, sent+1, pool.Stats().CallsSent, "only the good call was sent")

		})
	}
}

// TestAuditCallCtxAsyncFastPath: an async function, an async generator
// or a sync function's coroutine called without any context (the fast
// path) still sees its name, as every call does, in every form.
func TestAuditCallCtxAsyncFastPath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts workers")
	}
	for _, async := range []int{0, 4} {
		t.Run(fmt.Sprintf("AsyncCalls=%d", async), func(t *testing.T) {
			cfg := auditCtxConfig(t)
			cfg.AsyncCalls = async
			pool := newTestPool(t, cfg)
			for _, ctx := range []context.Context{context.Background(), WithMetadata(context.Background(), map[string]string{"k": "v"})} {
				items, err := collect(t, pool.Stream(ctx, "async_stream", 2))
				require.NoError(t, err)
				for _, item := range items {
					require.NotNil(t, item, "stream item")
					assert.Equal(t, "async_stream", item.(map[string]any)["function"])
				}
				items, err = collect(t, pool.Stream(ctx, "async_items", 2))
				require.NoError(t, err)
				for _, item := range items {
					require.NotNil(t, item, "an async function's streamed value")
					assert.Equal(t, "async_items", item.(map[string]any)["function"])
				}
				got, err := CallAs[map[string]any](ctx, pool, "returns_coroutine")
				require.NoError(t, err)
				require.NotNil(t, got, "a sync function's coroutine")
				assert.Equal(t, "returns_coroutine", got["function"])
				got, err = CallAs[map[string]any](ctx, pool, "start_task")
				require.NoError(t, err)
				require.NotNil(t, got, "async call")
				assert.Equal(t, "start_task", got["function"])
				_, err = pool.Call(ctx, "read_task")
				require.NoError(t, err)
				require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
					got, err := CallAs[map[string]any](ctx, w, "start_task")
					require.NoError(t, err)
					require.NotNil(t, got, "async call in a transaction")
					assert.Equal(t, "start_task", got["function"])
					_, err = w.Call(ctx, "read_task")
					return err
				}))
			}
		})
	}
}

// TestAuditCallCtxSetUp: Config.SetUp runs outside any call (docs: "in
// Config.SetUp"), with every start method and with Config.AsyncCalls.
func TestAuditCallCtxSetUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts workers")
	}
	for name, configure := range map[string]func(*Config){
		"Exec":         func(*Config) {},
		"AsyncCalls":   func(c *Config) { c.AsyncCalls = 2 },
		"ForkServer":   func(c *Config) { c.StartMethod = StartForkServer },
		"PreloadSetUp": func(c *Config) { c.StartMethod, c.PreloadSetUp = StartForkServer, true },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := auditCtxConfig(t)
			cfg.SetUp = "setup"
			configure(&cfg)
			pool := newTestPool(t, cfg)
			got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"k": "v"}), pool, "setup_saw")
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"sync": nil, "remaining": nil, "async": nil}, got)
		})
	}
}

// TestAuditCallCtxTransactionContexts: in a transaction, each call
// carries its own ctx's context, not the transaction's; a callback of a
// call on w reads that call's metadata, and a nested call on w with the
// callback's context carries it merged.
func TestAuditCallCtxTransactionContexts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	var seen map[string]string
	var w0 *Worker
	cfg := auditCtxConfig(t)
	cfg.Callbacks = map[string]Callback{
		"add": func(ctx context.Context, _ []any) (any, error) {
			seen = Metadata(ctx)
			return w0.Call(WithMetadata(ctx, map[string]string{"n": "1"}), "context")
		},
	}
	pool := newTestPool(t, cfg)
	txCtx := WithMetadata(testCtx(t), map[string]string{"tx": "1"})
	require.NoError(t, pool.Transaction(txCtx, func(w *Worker) error {
		w0 = w
		got, err := CallAs[map[string]any](context.Background(), w, "context")
		require.NoError(t, err)
		assert.Empty(t, got["metadata"], "not the transaction's ctx")
		assert.Equal(t, false, got["has_deadline"])
		got, err = CallAs[map[string]any](WithMetadata(context.Background(), map[string]string{"c": "1"}), w, "nest2", "add")
		require.NoError(t, err)
		assert.Equal(t, map[string]any{"c": "1", "n": "1"}, got["inner"].(map[string]any)["metadata"])
		assert.Equal(t, map[string]any{"c": "1"}, got["after"].(map[string]any)["metadata"])
		return nil
	}))
	assert.Equal(t, map[string]string{"c": "1"}, seen)
}

// TestAuditCallCtxMergeCannotRemove: a refused key stays in every derived
// context; a refused value can be replaced; an empty value is a value.
func TestAuditCallCtxMergeCannotRemove(t *testing.T) {
	badKey := WithMetadata(context.Background(), map[string]string{"": "x"})
	_, err := callContextOf(WithMetadata(badKey, map[string]string{"ok": "1"}), nil, 0)
	assert.ErrorAs(t, err, new(*MetadataError))
	_, err = callContextOf(WithTraceContext(badKey, testTraceparent, ""), nil, 0)
	assert.ErrorAs(t, err, new(*MetadataError), "a trace context keeps the refused metadata")

	badValue := WithMetadata(context.Background(), map[string]string{"k": "\xff"})
	fixed := WithMetadata(badValue, map[string]string{"k": "ok"})
	cc, err := callContextOf(fixed, nil, 0)
	require.NoError(t, err)
	assert.NotNil(t, cc.meta)
	assert.Equal(t, map[string]string{"k": "ok"}, Metadata(fixed))

	empty := WithMetadata(fixed, map[string]string{"k": ""})
	assert.Equal(t, map[string]string{"k": ""}, Metadata(empty))
	cc, err = callContextOf(empty, nil, 0)
	require.NoError(t, err)
	assert.NotNil(t, cc.meta, "an empty value is sent")
}

// TestAuditCallCtxAsyncCancelAndThreads: with Config.AsyncCalls, a task
// that Go cancels runs its clean-up in its own context; a thread of
// asyncio.to_thread sees its call's.
func TestAuditCallCtxAsyncCancelAndThreads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := auditCtxConfig(t)
	cfg.AsyncCalls = 4
	pool := newTestPool(t, cfg)
	for i := range 2 {
		ctx, cancel := context.WithCancel(WithMetadata(testCtx(t), map[string]string{"c": itoa(i)}))
		done := make(chan error, 1)
		go func() {
			_, err := pool.Call(ctx, "wait_cancel", itoa(i))
			done <- err
		}()
		_, err := pool.Call(testCtx(t), "waiting", itoa(i)) // in its try block: its finally will run
		require.NoError(t, err)
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		awaitPool(t, pool, "the call over", func(s Stats) bool { return s.AsyncCalls == 0 })
	}
	for i := range 2 {
		got, err := CallAs[map[string]any](testCtx(t), pool, "cancelled", itoa(i))
		require.NoError(t, err)
		assert.Equal(t, "wait_cancel", got["function"])
		assert.Equal(t, map[string]any{"c": itoa(i)}, got["metadata"])
	}
	for _, ctx := range []context.Context{WithMetadata(testCtx(t), map[string]string{"t": "1"}), context.Background()} {
		got, err := CallAs[map[string]any](ctx, pool, "to_thread")
		require.NoError(t, err)
		require.NotNil(t, got)
		assert.Equal(t, "to_thread", got["function"])
		assert.Equal(t, len(Metadata(ctx)), len(got["metadata"].(map[string]any)))
	}
}

// TestAuditCallCtxDeepNesting: nested calls 20 deep, each adding a key:
// each level sees its own keys after its nested call returned.
func TestAuditCallCtxDeepNesting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	const depth = 20
	var pool *Pool
	cfg := auditCtxConfig(t)
	cfg.Callbacks = map[string]Callback{
		"down": func(ctx context.Context, args []any) (any, error) {
			d := int(args[0].(int64))
			return pool.Call(WithMetadata(ctx, map[string]string{"d" + itoa(d-1): "x"}), "recurse", d-1)
		},
	}
	pool = newTestPool(t, cfg)
	levels, err := CallAs[[]map[string]any](WithMetadata(testCtx(t), map[string]string{"d" + itoa(depth): "x"}), pool, "recurse", depth)
	require.NoError(t, err)
	require.Len(t, levels, depth+1)
	for i, level := range levels { // the deepest first
		md := level["metadata"].(map[string]any)
		assert.Len(t, md, depth+1-i, "level %d", i)
		assert.Contains(t, md, "d"+itoa(i), "level %d", i)
		assert.NotContains(t, md, "d"+itoa(i-1), "level %d", i)
	}
}

// TestAuditCallCtxDeadlineWhileQueued: a call with metadata whose deadline
// passes while it waits for the pool's only worker fails with its
// context's error and sends nothing; the calls after it see their own.
func TestAuditCallCtxDeadlineWhileQueued(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	sent := pool.Stats().CallsSent
	release := holdWorkers(t, pool, 1)
	ctx, cancel := context.WithTimeout(WithMetadata(context.Background(), map[string]string{"q": "1"}), 100*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "context")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	release()
	assert.Equal(t, sent, pool.Stats().CallsSent, "nothing sent")
	got, err := CallAs[map[string]any](context.Background(), pool, "context")
	require.NoError(t, err)
	assert.Empty(t, got["metadata"])
	assert.Equal(t, false, got["has_deadline"])
}

// TestAuditCallCtxMetadataBeyondMaxMessageSize: metadata within its own
// limits in a frame above Config.MaxMessageSize fails that call with
// ErrMessageTooLarge, as a large argument does; the worker serves on.
func TestAuditCallCtxMetadataBeyondMaxMessageSize(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := auditCtxConfig(t)
	cfg.MaxMessageSize = 4 << 10
	pool := newTestPool(t, cfg)
	pid, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	_, err = pool.Call(WithMetadata(testCtx(t), map[string]string{"big": strings.Repeat("x", MaxMetadataSize-3)}), "context")
	require.ErrorIs(t, err, ErrMessageTooLarge)
	again, err := pool.Call(testCtx(t), "pid")
	require.NoError(t, err)
	assert.Equal(t, pid, again, "the same worker")
	got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"k": "v"}), pool, "context")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"k": "v"}, got["metadata"])
}

// attemptTracer gives each attempt a span id of its own (its attempt's
// number), and puts a tracestate on the first only.
type attemptTracer struct{ nopTracer }

func (attemptTracer) TraceCallStart(ctx context.Context, _ *Pool, data TraceCallStartData) context.Context {
	state := ""
	if data.Attempt == 0 {
		state = "first=1"
	}
	return WithTraceContext(ctx, attemptTraceparent(data.Attempt), state)
}

func attemptTraceparent(attempt int) string {
	return fmt.Sprintf("00-0af7651916cd43dd8448eb211c80319c-%016x-01", attempt+1)
}

// TestAuditCallCtxTraceOfEachAttempt: a retried call's second attempt
// carries its own span's trace context, not the first's (nor its
// tracestate), with the caller's metadata.
func TestAuditCallCtxTraceOfEachAttempt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := auditCtxConfig(t)
	cfg.CrashRetries = 1
	cfg.Tracer = attemptTracer{}
	pool := newTestPool(t, cfg)
	flag := filepath.Join(t.TempDir(), "crash")
	require.NoError(t, os.WriteFile(flag, nil, 0o644))
	got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"k": "v"}), pool, "crash_once", flag)
	require.NoError(t, err)
	assert.EqualValues(t, 2, got["attempt"])
	assert.Equal(t, attemptTraceparent(1), got["traceparent"])
	assert.Equal(t, "", got["tracestate"])
	assert.Equal(t, map[string]any{"k": "v"}, got["metadata"])
	got, err = CallAs[map[string]any](context.Background(), pool, "context")
	require.NoError(t, err)
	assert.Equal(t, attemptTraceparent(0), got["traceparent"])
	assert.Equal(t, "first=1", got["tracestate"])
}

// TestAuditCallCtxTraceparentBounds: a later version's traceparent up to
// 512 bytes of printable ASCII is sent, one byte more or any other byte is
// not; a tracestate likewise.
func TestAuditCallCtxTraceparentBounds(t *testing.T) {
	head := "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-"
	for s, want := range map[string]bool{
		head + strings.Repeat("a", maxTraceHeader-len(head)):   true,
		head + strings.Repeat("a", maxTraceHeader-len(head)+1): false,
		head + "a\tb":            false,
		head + "\x7f":            false,
		head + "é":               false,
		head[:len(head)-1]:       true,
		head[:len(head)-1] + " ": false,
	} {
		assert.Equal(t, want, validTraceparent(s), "%q", s)
	}
	ctx := WithTraceContext(context.Background(), testTraceparent, strings.Repeat("s", maxTraceHeader))
	assert.Equal(t, strings.Repeat("s", maxTraceHeader), metaOf(ctx).tracestate)
	ctx = WithTraceContext(context.Background(), testTraceparent, strings.Repeat("s", maxTraceHeader+1))
	assert.Equal(t, "", metaOf(ctx).tracestate)
	assert.Equal(t, testTraceparent, metaOf(ctx).traceparent, "the traceparent goes without it")
}

// TestAuditCallCtxMetadataMappingIsNotEncodable: the metadata mapping
// itself is not a result (docs: copy it with dict()); the worker serves on.
func TestAuditCallCtxMetadataMappingIsNotEncodable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	pool := newTestPool(t, auditCtxConfig(t))
	_, err := pool.Call(WithMetadata(testCtx(t), map[string]string{"k": "v"}), "own_metadata")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "mappingproxy")
	got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"k": "w"}), pool, "context")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"k": "w"}, got["metadata"])
}

// TestAuditCallCtxAsyncCallsNested: with Config.AsyncCalls, a sync
// function's callback calls an async function on the same worker (its
// coroutine awaited on the loop for the main thread): the nested call
// sees its own context, the outer call its own after it.
func TestAuditCallCtxAsyncCallsNested(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	var pool *Pool
	cfg := auditCtxConfig(t)
	cfg.AsyncCalls = 2
	cfg.Callbacks = map[string]Callback{
		"add": func(ctx context.Context, _ []any) (any, error) {
			return pool.Call(WithMetadata(ctx, map[string]string{"n": "1"}), "async_context")
		},
	}
	pool = newTestPool(t, cfg)
	got, err := CallAs[map[string]any](WithMetadata(testCtx(t), map[string]string{"o": "1"}), pool, "nest2", "add")
	require.NoError(t, err)
	inner := got["inner"].(map[string]any)
	assert.Equal(t, "async_context", inner["function"])
	assert.Equal(t, map[string]any{"o": "1", "n": "1"}, inner["metadata"])
	assert.Equal(t, map[string]any{"o": "1"}, got["after"].(map[string]any)["metadata"])
	assert.Equal(t, "nest2", got["after"].(map[string]any)["function"])
}

// TestAuditCallCtxAllLimitsAtOnce: 64 keys of 128 bytes with empty values
// are 8 KiB exactly, every limit at its bound: sent whole; one value byte
// more is refused.
func TestAuditCallCtxAllLimitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	md := map[string]string{}
	for i := range MaxMetadataEntries {
		k := fmt.Sprintf("%03d", i)
		md[k+strings.Repeat("k", MaxMetadataKeySize-len(k))] = ""
	}
	pool := newTestPool(t, auditCtxConfig(t))
	got, err := CallAs[map[string]any](WithMetadata(testCtx(t), md), pool, "context")
	require.NoError(t, err)
	assert.Len(t, got["metadata"], MaxMetadataEntries)
	for k := range md {
		md[k] = "v"
		break
	}
	_, err = pool.Call(WithMetadata(testCtx(t), md), "context")
	var me *MetadataError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, "MaxMetadataSize", me.Limit)
}

// TestAuditCallCtxEncodingHook: a set_default hook that reads the call's
// context while the worker encodes a result or a stream's items sees the
// call whose frame carried a context, on every path (docs: a call of the
// fast path's is None there).
func TestAuditCallCtxEncodingHook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := auditCtxConfig(t)
	cfg.Module = "pypool_auditctx_hook"
	pool := newTestPool(t, cfg)
	ctx := WithMetadata(testCtx(t), map[string]string{"k": "v"})
	want := map[string]any{"function": "marker", "metadata": map[string]any{"k": "v"}}
	got, err := pool.Call(ctx, "marker")
	require.NoError(t, err)
	assert.Equal(t, want, got)
	got, err = pool.Call(ctx, "marker", Kwargs{})
	require.NoError(t, err)
	assert.Equal(t, want, got)
	items, err := collect(t, pool.Stream(ctx, "marker_item", 1))
	require.NoError(t, err)
	assert.Equal(t, []any{map[string]any{"function": "marker_item", "metadata": map[string]any{"k": "v"}}}, items)
	got, err = pool.Call(context.Background(), "marker")
	require.NoError(t, err)
	assert.Nil(t, got, "the fast path: as between calls")
}

// TestAuditCallCtxExceptionStr: an exception's __str__, as the worker
// describes it, sees its call, with a context or on the fast path.
func TestAuditCallCtxExceptionStr(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := auditCtxConfig(t)
	cfg.Module = "pypool_auditctx_hook"
	pool := newTestPool(t, cfg)
	_, err := pool.Call(WithMetadata(testCtx(t), map[string]string{"k": "v"}), "raises")
	assert.ErrorContains(t, err, "seen raises")
	_, err = pool.Call(context.Background(), "raises")
	assert.ErrorContains(t, err, "seen raises")
}

// TestAuditCallCtxQualifiedName: with Config.Modules, current_call().function
// is the name as Go wrote it, "module.function", on both paths.
func TestAuditCallCtxQualifiedName(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a worker")
	}
	cfg := auditCtxConfig(t)
	cfg.Module = ""
	cfg.Modules = []string{"pypool_auditctx", "pypool_ctxmod"}
	pool := newTestPool(t, cfg)
	for _, ctx := range []context.Context{context.Background(), WithMetadata(testCtx(t), map[string]string{"k": "v"})} {
		got, err := CallAs[map[string]any](ctx, pool, "pypool_ctxmod.context")
		require.NoError(t, err)
		assert.Equal(t, "pypool_ctxmod.context", got["function"])
		got, err = CallAs[map[string]any](ctx, pool, "pypool_auditctx.context")
		require.NoError(t, err)
		assert.Equal(t, "pypool_auditctx.context", got["function"])
	}
}
