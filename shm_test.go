package pypool

import (
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

// TestSharedMemoryGrownBeyondTheLimit: issue 18, finding 7, in the shared
// memory itself. Once the worker grew the file beyond the limit, the next
// call's first write or read is a sharedFault wrapping ErrProtocol, even
// though Go's mapping is large enough for it; a value too large for the
// limit is ErrMessageTooLarge and no fault.
func TestSharedMemoryGrownBeyondTheLimit(t *testing.T) {
	mem := newTestSharedMem(t, 1<<20)
	mem.acquire()
	_, err := mem.put(make([]byte, sharedLimit(1<<20)+1))
	require.ErrorIs(t, err, ErrMessageTooLarge)
	assert.False(t, isSharedFault(err), "a value too large is a fault of the memory")
	_, err = mem.put(make([]byte, 4096))
	require.NoError(t, err)
	mem.releaseCall()

	require.NoError(t, mem.file.Truncate(1<<40)) // as the worker would
	mem.acquire()
	defer mem.releaseCall()
	_, err = mem.put(make([]byte, 16))
	require.ErrorIs(t, err, ErrProtocol)
	assert.True(t, isSharedFault(err))
	_, err = mem.read(0, 16, false)
	require.ErrorIs(t, err, ErrProtocol)
	assert.True(t, isSharedFault(err))
}
