package pypool

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPreloadWithoutForkServerIsLogged: Config.Preload and PreloadSetUp
// act only in the fork server's template; with StartExec New says so,
// once, instead of ignoring them in silence. The pool serves as usual.
func TestPreloadWithoutForkServerIsLogged(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	cfg.StartMethod, cfg.Preload = StartExec, []string{"json"}
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pool.Close(testCtx(t))) })
	record := rec.await(t, msgPreloadUnused)
	assert.Equal(t, "WARN", record["level"])
	assert.Equal(t, "[json]", record["preload"])
	assert.Len(t, rec.matching(msgPreloadUnused), 1)
	_, err = pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
}
