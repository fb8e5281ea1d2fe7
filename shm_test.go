package pypool

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestSharedMem(t *testing.T, maxMessage int) *sharedMem {
	t.Helper()
	s, err := newSharedMem(maxMessage)
	if err != nil {
		t.Skipf("no shared memory on this platform: %v", err)
	}
	t.Cleanup(s.retire)
	return s
}

func TestSharedMemPutRead(t *testing.T) {
	s := newTestSharedMem(t, 64<<20)
	s.acquire()
	a := bytes.Repeat([]byte("a"), 3<<20)
	b := []byte("bee")
	offA, err := s.put(a)
	require.NoError(t, err)
	offB, err := s.put(b)
	require.NoError(t, err)
	assert.Equal(t, 0, offA)
	assert.Equal(t, alignUp(len(a), sharedAlign), offB, "values are aligned, one after the other")
	got, err := s.read(uint64(offA), uint64(len(a)), false)
	require.NoError(t, err)
	assert.Equal(t, a, got)
	got, err = s.read(uint64(offB), uint64(len(b)), false)
	require.NoError(t, err)
	assert.Equal(t, b, got)
	s.releaseCall()

	s.acquire()
	off, err := s.put(b)
	require.NoError(t, err)
	assert.Equal(t, 0, off, "each call starts again at offset 0")
	s.releaseCall()
}

func TestSharedMemRefusesBadReferences(t *testing.T) {
	s := newTestSharedMem(t, 1<<20)
	s.acquire()
	defer s.releaseCall()
	_, err := s.put([]byte("data"))
	require.NoError(t, err)
	for _, ref := range [][2]uint64{
		{0, 1 << 62},             // longer than the limit
		{1 << 63, 8},             // offset beyond the limit
		{^uint64(0) - 2, 8},      // offset + length overflows
		{uint64(s.limit) - 4, 8}, // ends past the limit
		{2 << 20, 16},            // within the limit, past the file's end
	} {
		_, err := s.read(ref[0], ref[1], false)
		assert.Error(t, err, "reference %v", ref)
	}
}

func TestSharedMemReadsWhatTheWorkerGrew(t *testing.T) {
	s := newTestSharedMem(t, 16<<20)
	s.acquire()
	defer s.releaseCall()
	_, err := s.put([]byte("x"))
	require.NoError(t, err)
	// The worker grows the file and writes past Go's mapping.
	other, err := mapShared(s.file, 1<<20)
	require.NoError(t, err)
	require.NoError(t, unmapShared(other))
	require.NoError(t, growSharedFile(s.file, 5<<20))
	other, err = mapShared(s.file, 5<<20)
	require.NoError(t, err)
	copy(other[4<<20:], "grown")
	require.NoError(t, unmapShared(other))

	got, err := s.read(4<<20, 5, false)
	require.NoError(t, err)
	assert.Equal(t, "grown", string(got))
}

func TestSharedMemCannotShrink(t *testing.T) {
	s := newTestSharedMem(t, 16<<20)
	s.acquire()
	defer s.releaseCall()
	_, err := s.put(make([]byte, 2<<20))
	require.NoError(t, err)
	assert.Error(t, s.file.Truncate(0), "the file is sealed against shrinking")
}

func TestSharedMemRetireWaitsForTheCall(t *testing.T) {
	s := newTestSharedMem(t, 1<<20)
	s.acquire()
	off, err := s.put([]byte("reply"))
	require.NoError(t, err)
	s.retire() // the worker exited, its reply not yet read
	got, err := s.read(uint64(off), 5, false)
	require.NoError(t, err)
	assert.Equal(t, "reply", string(got))
	fd := int(s.file.Fd())
	s.releaseCall()
	assert.Nil(t, s.file)
	_, err = os.Stat("/proc/self/fd/" + itoa(fd))
	assert.True(t, os.IsNotExist(err), "the memfd is closed")
	_, err = s.read(uint64(off), 5, false)
	assert.ErrorIs(t, err, errSharedClosed)
}

// TestSharedMemoryGrownBeyondTheLimit: issue 18, finding 7, in the shared
// memory itself. Once the worker grew the file beyond the limit, the next
// call's first write or read is a sharedFault wrapping ErrProtocol, even
// though Go's mapping is large enough for it; a value too large for the
// limit is ErrMessageTooLarge and no fault.
func TestSharedMemoryGrownBeyondTheLimit(t *testing.T) {
	mem := newTestSharedMem(t, 1<<20)
	mem.acquire()
	_, err := mem.put(make([]byte, mem.limit+1))
	require.ErrorIs(t, err, ErrMessageTooLarge)
	assert.False(t, isSharedFault(err), "a value too large is a fault of the memory")
	_, err = mem.put(make([]byte, 4096))
	require.NoError(t, err)
	mem.releaseCall()

	require.NoError(t, growSharedFile(mem.file, 1<<40)) // as the worker would
	mem.acquire()
	defer mem.releaseCall()
	_, err = mem.put(make([]byte, 16))
	require.ErrorIs(t, err, ErrProtocol)
	assert.True(t, isSharedFault(err))
	_, err = mem.read(0, 16, false)
	require.ErrorIs(t, err, ErrProtocol)
	assert.True(t, isSharedFault(err))
}
