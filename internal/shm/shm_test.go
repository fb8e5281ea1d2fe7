package shm

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestMem(t *testing.T, maxMessage int) *Mem {
	t.Helper()
	s, err := New(maxMessage)
	if err != nil {
		t.Skipf("no shared memory on this platform: %v", err)
	}
	t.Cleanup(s.Retire)
	return s
}

func TestSharedMemPutRead(t *testing.T) {
	s := newTestMem(t, 64<<20)
	s.Acquire()
	a := bytes.Repeat([]byte("a"), 3<<20)
	b := []byte("bee")
	offA, err := s.Put(a)
	require.NoError(t, err)
	offB, err := s.Put(b)
	require.NoError(t, err)
	assert.Equal(t, 0, offA)
	assert.Equal(t, alignUp(len(a), align), offB, "values are aligned, one after the other")
	got, err := s.Read(uint64(offA), uint64(len(a)), false)
	require.NoError(t, err)
	assert.Equal(t, a, got)
	got, err = s.Read(uint64(offB), uint64(len(b)), false)
	require.NoError(t, err)
	assert.Equal(t, b, got)
	s.ReleaseCall()

	s.Acquire()
	off, err := s.Put(b)
	require.NoError(t, err)
	assert.Equal(t, 0, off, "each call starts again at offset 0")
	s.ReleaseCall()
}

func TestSharedMemRefusesBadReferences(t *testing.T) {
	s := newTestMem(t, 1<<20)
	s.Acquire()
	defer s.ReleaseCall()
	_, err := s.Put([]byte("data"))
	require.NoError(t, err)
	for _, ref := range [][2]uint64{
		{0, 1 << 62},             // longer than the limit
		{1 << 63, 8},             // offset beyond the limit
		{^uint64(0) - 2, 8},      // offset + length overflows
		{uint64(s.limit) - 4, 8}, // ends past the limit
		{2 << 20, 16},            // within the limit, past the file's end
	} {
		_, err := s.Read(ref[0], ref[1], false)
		assert.Error(t, err, "reference %v", ref)
	}
}

func TestSharedMemReadsWhatTheWorkerGrew(t *testing.T) {
	s := newTestMem(t, 16<<20)
	s.Acquire()
	defer s.ReleaseCall()
	_, err := s.Put([]byte("x"))
	require.NoError(t, err)
	// The worker grows the file and writes past Go's mapping.
	other, err := mapFile(s.file, 1<<20)
	require.NoError(t, err)
	require.NoError(t, unmap(other))
	require.NoError(t, growFile(s.file, 5<<20))
	other, err = mapFile(s.file, 5<<20)
	require.NoError(t, err)
	copy(other[4<<20:], "grown")
	require.NoError(t, unmap(other))

	got, err := s.Read(4<<20, 5, false)
	require.NoError(t, err)
	assert.Equal(t, "grown", string(got))
}

func TestSharedMemCannotShrink(t *testing.T) {
	s := newTestMem(t, 16<<20)
	s.Acquire()
	defer s.ReleaseCall()
	_, err := s.Put(make([]byte, 2<<20))
	require.NoError(t, err)
	assert.Error(t, s.file.Truncate(0), "the file is sealed against shrinking")
}

func TestSharedMemRetireWaitsForTheCall(t *testing.T) {
	s := newTestMem(t, 1<<20)
	s.Acquire()
	off, err := s.Put([]byte("reply"))
	require.NoError(t, err)
	s.Retire() // the worker exited, its reply not yet read
	got, err := s.Read(uint64(off), 5, false)
	require.NoError(t, err)
	assert.Equal(t, "reply", string(got))
	fd := int(s.file.Fd())
	s.ReleaseCall()
	assert.Nil(t, s.file)
	_, err = os.Stat("/proc/self/fd/" + strconv.Itoa(fd))
	assert.True(t, os.IsNotExist(err), "the memfd is closed")
	_, err = s.Read(uint64(off), 5, false)
	assert.ErrorIs(t, err, ErrClosed)
}
