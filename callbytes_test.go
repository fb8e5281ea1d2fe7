package pypool

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCallBytesReusesTheBuffer: CallBytes appends a bytes result, through
// the pipes or the shared memory, to the buffer it is given, and allocates
// nothing new when the buffer is large enough.
func TestCallBytesReusesTheBuffer(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 1
	cfg.SharedMemoryThreshold = 64 << 10
	pool := newTestPool(t, cfg)
	buf := make([]byte, 0, 1<<20)
	for _, size := range []int{0, 10, 64<<10 - 1, 64 << 10, 1 << 20} { // pipes, then shared memory
		data := bytes.Repeat([]byte{byte(size)}, size)
		out, err := CallBytes(testCtx(t), pool, buf[:0], "echo", data)
		require.NoError(t, err, "%d bytes", size)
		assert.True(t, bytes.Equal(data, out), "%d bytes", size)
		if size > 0 {
			assert.Same(t, &buf[:1][0], &out[0], "%d bytes: the result is in the buffer given", size)
		}
	}
	prefix := []byte("prefix:")
	out, err := CallBytes(testCtx(t), pool, prefix, "echo", []byte("data"))
	require.NoError(t, err)
	assert.Equal(t, "prefix:data", string(out), "appended, as strconv.AppendInt does")
}

func TestCallBytesRefusesOtherResults(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	buf := []byte("kept")
	out, err := CallBytes(testCtx(t), pool, buf, "echo", "a str")
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "a Python str, not bytes")
	assert.Equal(t, "kept", string(out), "the buffer is returned unchanged")
}
