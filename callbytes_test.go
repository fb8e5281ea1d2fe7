package pypool

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/pypool/pypool/internal/wire"

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

// TestCallBytesThroughThePipesReadsIntoTheBuffer (issue 21): with the
// shared memory off, a large bytes result is read from the pipe straight
// into the buffer given (its spare capacity, grown as append grows it),
// after what the buffer holds; a large result of another type, or a
// bytearray, takes the reader's path and gives the same results as before.
func TestCallBytesThroughThePipesReadsIntoTheBuffer(t *testing.T) {
	cfg := testConfig(t)
	cfg.Size = 1
	cfg.SharedMemoryThreshold = -1
	cfg.Module, cfg.PythonPath = "pypool_datamod", []string{"testdata/pymod"}
	pool := newTestPool(t, cfg)
	for _, size := range []int{64<<10 - 1, 64 << 10, 1 << 20, 16 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		buf := make([]byte, 0, size)
		out, err := CallBytes(testCtx(t), pool, buf, "echo", data)
		require.NoError(t, err, "%d bytes", size)
		require.True(t, bytes.Equal(data, out), "%d bytes", size)
		assert.Same(t, &buf[:1][0], &out[0], "%d bytes: in the buffer given", size)

		out, err = CallBytes(testCtx(t), pool, []byte("prefix:"), "echo", data)
		require.NoError(t, err, "%d bytes", size)
		require.Equal(t, "prefix:", string(out[:7]))
		require.True(t, bytes.Equal(data, out[7:]), "%d bytes after a prefix, the buffer grown", size)

		out, err = CallBytes(testCtx(t), pool, []byte("kept"), "bytearray_of", data)
		require.NoError(t, err, "%d bytes", size)
		require.True(t, bytes.Equal(data, out[4:]), "%d bytes of a bytearray", size)

		out, err = CallBytes(testCtx(t), pool, []byte("kept"), "echo", strings.Repeat("s", size))
		require.ErrorIs(t, err, ErrResultNotDecodable, "%d bytes of a str", size)
		assert.Equal(t, "kept", string(out))
	}
}

// TestCallBytesCutOffMidReply (issue 21): a CallBytes call cut off while its
// large reply is half read leaves the caller's buffer alone once it has
// returned (the drain reads the rest of the frame into the reader's own
// buffer), and the worker, which answers the interrupt, is drained and
// kept, as for any cut-off call.
func TestCallBytesCutOffMidReply(t *testing.T) {
	cfg := testConfig(t)
	cfg.SharedMemoryThreshold = -1
	rec := newLogRecorder()
	cfg.Logger = slogNew(rec)
	defer dumpLogOnFailure(t, rec)
	pool, err := fakePoolConfig(t, cfg, "ok", 1)
	require.NoError(t, err)
	before := workerPids(pool)
	const size = 4 << 20
	buf := make([]byte, 0, size+64)
	// The call is cut off once the worker has written half its reply, of
	// which Go has then read all but what the 1 MiB pipe holds (a
	// deadline instead would cut it off before any, on a busy machine).
	ctx, cancel := context.WithCancel(testCtx(t))
	go cancelOnRecord(ctx, cancel, rec, "half_reply: half sent")
	out, err := CallBytes(ctx, pool, buf, "half_reply", size)
	cancel()
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, out)
	spare := buf[:cap(buf)]
	assert.Contains(t, string(spare[:size/4]), "yyyy", "the first half was read into the buffer")
	for i := range spare {
		spare[i] = 'x' // the caller's again
	}

	got, err := CallBytes(testCtx(t), pool, nil, "echo", []byte("next"))
	require.NoError(t, err)
	assert.Equal(t, "next", string(got))
	assert.Equal(t, before, workerPids(pool), "the interrupted worker was drained and kept")
	assert.Equal(t, -1, bytes.IndexFunc(spare, func(r rune) bool { return r != 'x' }), "the buffer was not written after CallBytes returned")
}

// TestResultBytesHead: only the head of the RESULT of the call's id whose
// value is a bin filling the rest of the body is split.
func TestResultBytesHead(t *testing.T) {
	head := func(id uint64, value []byte) []byte {
		b := wire.AppendUint([]byte{0x93, kindResult}, id)
		return append(append(b, value...), make([]byte, wire.HeadSize)...)[:wire.HeadSize]
	}
	bin32 := func(n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{0xc6}, n) }
	const size = 1 << 20
	assert.Equal(t, 8, resultBytesHead(head(7, bin32(size-8)), size, 7), "[3, 7, bin32]")
	assert.Equal(t, 10, resultBytesHead(head(300, bin32(size-10)), size, 300), "a 3-byte id")
	const n16 = 60000
	assert.Equal(t, 6, resultBytesHead(head(7, []byte{0xc5, n16 >> 8, n16 & 0xff}), n16+6, 7), "bin16")
	for name, h := range map[string][]byte{
		"another id":            head(8, bin32(size-8)),
		"shorter than the body": head(7, bin32(size-9)),
		"longer than the body":  head(7, bin32(size-7)),
		"a str":                 head(7, binary.BigEndian.AppendUint32([]byte{0xdb}, size-8)),
		"an ERROR":              append([]byte{0x93, kindError, 7}, bin32(size-8)...),
		"not an array of 3":     append([]byte{0x94, kindResult, 7}, bin32(size-8)...),
		"a cut header":          []byte{0x93, kindResult, 7, 0xc6, 0},
		"empty":                 nil,
	} {
		assert.Equal(t, -1, resultBytesHead(h, size, 7), name)
	}
}

// cancelOnRecord calls cancel once rec holds a record whose message is msg,
// or when ctx ends.
func cancelOnRecord(ctx context.Context, cancel context.CancelFunc, rec *logRecorder, msg string) {
	defer cancel()
	for len(rec.matching(msg)) == 0 {
		select {
		case <-rec.added:
		case <-ctx.Done():
			return
		}
	}
}
