package pypool

// shm.go ties a worker's shared memory (internal/shm: an anonymous memory
// file that both map, passed to the worker as its file descriptor 4, see
// process.start) to the pool: a large bytes value or array is copied into
// it and the msgpack frame carries only a reference (extShmBytes,
// extShmNDArray: offset and length, see shm_codec.go), instead of the value
// crossing two pipes and several buffers. Here the memory's failures become
// the pool's errors: a sharedFault (wrapping ErrProtocol when the worker
// broke it) or ErrMessageTooLarge.

import (
	"errors"
	"fmt"
	"os"

	"github.com/pypool/pypool/internal/shm"
)

// sharedMemoryFd is the worker's file descriptor for the shared memory
// (0-2 are stdio, 3 the worker's stdout log stream).
const sharedMemoryFd = 4

// sharedLimit is the most a worker's shared memory may grow to: a call and
// its reply each carry at most maxMessage bytes, plus alignment.
func sharedLimit(maxMessage int) int { return shm.Limit(maxMessage) }

// sharedMemorySupported tells whether this system can share memory with
// workers; it is asked once per pool.
func sharedMemorySupported() bool { return shm.Supported() }

// errSharedClosed is returned for a reference read after the shared memory
// was released.
var errSharedClosed = shm.ErrClosed

// sharedFault is a failure of a worker's shared memory itself, not of a
// value that does not fit in it: the worker broke it (it grew the file
// beyond the limit, or sent a reference that is malformed or points
// outside it: the error then wraps ErrProtocol; or references that add up
// to more than Config.MaxMessageSize: ErrMessageTooLarge), or the system
// could not size or map it. Neither side can trust the memory any more, so the
// worker that shares it is killed and replaced: its replacement gets
// memory of its own.
type sharedFault struct{ err error }

// Error is the wrapped error's text.
func (e *sharedFault) Error() string { return e.err.Error() }

// Unwrap gives the wrapped error (ErrProtocol, ErrMessageTooLarge, or a
// start or size error).
func (e *sharedFault) Unwrap() error { return e.err }

// isSharedFault reports whether err is, or wraps, a sharedFault. A nil
// error, the common case on every call's path, returns before errors.As's
// target is made: it escapes, one allocation per test.
func isSharedFault(err error) bool {
	if err == nil {
		return false
	}
	var f *sharedFault
	return errors.As(err, &f)
}

// brokenByWorker is the sharedFault of a worker that broke the shared
// memory's protocol, wrapping ErrProtocol.
func brokenByWorker(format string, args ...any) error {
	return &sharedFault{fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)}
}

// sharedError is the pool's error for an error of internal/shm: a
// sharedFault for an *shm.Error (wrapping ErrProtocol when the worker broke
// the memory), ErrMessageTooLarge for an *shm.TooLargeError, else err
// itself (nil, shm.ErrClosed).
func sharedError(err error) error {
	var fault *shm.Error
	var large *shm.TooLargeError
	switch {
	case errors.As(err, &fault) && fault.Broken:
		return brokenByWorker("%s", fault.Op)
	case errors.As(err, &fault):
		return &sharedFault{fmt.Errorf("pypool: shared memory: %s: %w", fault.Op, fault.Err)}
	case errors.As(err, &large):
		return fmt.Errorf("%w: %d bytes of shared memory needed, the limit is %d (twice Config.MaxMessageSize)",
			ErrMessageTooLarge, large.Need, large.Limit)
	}
	return err
}

// sharedMem is one worker's shared memory, as the pool sees it: its
// methods are shm.Mem's, with the pool's errors. One call at a time uses it
// (process.mu).
type sharedMem struct {
	mem  *shm.Mem
	file *os.File // the memory file, passed to the worker
	// maxMessage is Config.MaxMessageSize: the most one call or one reply
	// may carry in it.
	maxMessage int
}

// newSharedMem creates a worker's shared memory, empty until a call needs
// it. maxMessage is Config.MaxMessageSize: a call and its reply each carry
// at most that much, so the file never needs more than twice it.
func newSharedMem(maxMessage int) (*sharedMem, error) {
	m, err := shm.New(maxMessage)
	if err != nil {
		return nil, err
	}
	return &sharedMem{mem: m, file: m.File(), maxMessage: maxMessage}, nil
}

// acquire marks the start of a call's use: values go from offset 0 again.
func (s *sharedMem) acquire() { s.mem.Acquire() }

// releaseCall marks the end of a call's use. If the worker exited during
// the call, the shared memory is closed now.
func (s *sharedMem) releaseCall() { s.mem.ReleaseCall() }

// retire closes the shared memory once no call uses it: at once, or at the
// end of the current call (whose reply may still be read from it).
func (s *sharedMem) retire() { s.mem.Retire() }

// put copies p into the shared memory after the current call's other
// values and returns its offset.
func (s *sharedMem) put(p []byte) (int, error) {
	offset, err := s.mem.Put(p)
	return offset, sharedError(err)
}

// read returns a copy of the length bytes at offset, as the worker's
// reference says; aligned asks for a copy aligned to 8 bytes (for arrays).
func (s *sharedMem) read(offset, length uint64, aligned bool) ([]byte, error) {
	p, err := s.mem.Read(offset, length, aligned)
	return p, sharedError(err)
}

// appendTo appends the length bytes at offset to buf.
func (s *sharedMem) appendTo(buf []byte, offset, length uint64) ([]byte, error) {
	buf, err := s.mem.AppendTo(buf, offset, length)
	return buf, sharedError(err)
}
