package pypool

// audit_callctx_test.go: hostile uses of the call's context
// (docs/call-context.md): limits at and past their bounds, a call's
// context never seen by another call on the same worker, threads and
// tasks that outlive their call, every call form, faults.

import (
	"strings"
	"testing"

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
