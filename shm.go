package pypool

// shm.go is the memory a worker shares with the Go process for large
// payloads: an anonymous memory file (memfd) that both map, passed to the
// worker as its file descriptor 4 (see process.start). A large bytes value or
// array is copied into it and the msgpack frame carries only a reference
// (extShmBytes, extShmNDArray: offset and length), instead of the value
// crossing two pipes and several buffers.
//
// Within a call, Go writes the call's values from offset 0 up; the worker
// writes its reply's values after the end of the call's (see
// python/pypool_runtime/shm.py), so that a result computed from an argument
// never overwrites it. Values are copied in and out: nothing that a caller or
// a Python function keeps after the call points into the shared memory.
//
// The file is sealed against shrinking, so a mapping never reaches past its
// end; every reference from the worker is checked against the file's size
// and Config.MaxMessageSize before it is read.

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"
)

// sharedAlign aligns every value in the shared memory, so that arrays can be
// viewed in place by numpy on the other side.
const sharedAlign = 64

// sharedGrowStep is the granularity of the file's growth.
const sharedGrowStep = 1 << 20

// sharedMemoryFd is the worker's file descriptor for the shared memory
// (0-2 are stdio, 3 the worker's stdout log stream).
const sharedMemoryFd = 4

// sharedLimit is the most a worker's shared memory may grow to: a call and
// its reply each carry at most maxMessage bytes, plus alignment.
func sharedLimit(maxMessage int) int { return 2*maxMessage + 2*sharedGrowStep }

// sharedMemorySupported tells whether this system can share memory with
// workers; it is asked once per pool.
func sharedMemorySupported() bool {
	f, err := createSharedFile()
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// errSharedClosed is returned for a reference read after the shared memory
// was released.
var errSharedClosed = errors.New("the worker's shared memory is released")

// sharedFault is a failure of a worker's shared memory itself, not of a
// value that does not fit in it: the worker broke it (it grew the file
// beyond the limit, or sent a reference that is malformed or points
// outside it; the error then wraps ErrProtocol), or the system could not
// size or map it. Neither side can trust the memory any more, so the
// worker that shares it is killed and replaced: its replacement gets
// memory of its own.
type sharedFault struct{ err error }

func (e *sharedFault) Error() string { return e.err.Error() }
func (e *sharedFault) Unwrap() error { return e.err }

// isSharedFault reports whether err is, or wraps, a sharedFault.
func isSharedFault(err error) bool {
	var f *sharedFault
	return errors.As(err, &f)
}

// brokenByWorker is the sharedFault of a worker that broke the shared
// memory's protocol, wrapping ErrProtocol.
func brokenByWorker(format string, args ...any) error {
	return &sharedFault{fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)}
}

// sharedFailed is the sharedFault of a system call on the shared memory
// that failed: what it was doing, and err.
func sharedFailed(err error, format string, args ...any) error {
	return &sharedFault{fmt.Errorf("pypool: shared memory: "+format+": %w", append(args, err)...)}
}

// sharedMem is one worker's shared memory. Its methods are safe for
// concurrent use, but one call at a time uses it (process.mu).
type sharedMem struct {
	mu    sync.Mutex
	file  *os.File
	mem   []byte // the mapping of [0, len(mem)) of the file
	used  int    // end of the current call's values
	limit int    // the file never grows beyond this
	// maxMessage is Config.MaxMessageSize: the most one call or one reply
	// may carry in it.
	maxMessage int
	busy       bool // a call is using it: release waits for its end
	retired    bool // release was asked while busy
	checked    bool // the file's size was checked during the current call (checkLocked)
}

// newSharedMem creates a worker's shared memory, empty until a call needs
// it. maxMessage is Config.MaxMessageSize: a call and its reply each carry
// at most that much, so the file never needs more than twice it.
func newSharedMem(maxMessage int) (*sharedMem, error) {
	f, err := createSharedFile()
	if err != nil {
		return nil, err
	}
	return &sharedMem{file: f, limit: sharedLimit(maxMessage), maxMessage: maxMessage}, nil
}

// acquire marks the start of a call's use: values go from offset 0 again.
func (s *sharedMem) acquire() {
	s.mu.Lock()
	s.busy, s.used, s.checked = true, 0, false
	s.mu.Unlock()
}

// releaseCall marks the end of a call's use. If the worker exited during
// the call, the shared memory is closed now.
func (s *sharedMem) releaseCall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = false
	if s.retired {
		s.closeLocked()
	}
}

// retire closes the shared memory once no call uses it: at once, or at the
// end of the current call (whose reply may still be read from it).
func (s *sharedMem) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy {
		s.retired = true
		return
	}
	s.closeLocked()
}

func (s *sharedMem) closeLocked() {
	if s.file == nil {
		return
	}
	if s.mem != nil {
		_ = unmapShared(s.mem)
		s.mem = nil
	}
	s.file.Close()
	s.file = nil
}

// put copies p into the shared memory after the current call's other
// values and returns its offset.
func (s *sharedMem) put(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		return 0, errSharedClosed
	}
	if err := s.checkLocked(); err != nil {
		return 0, err
	}
	offset := alignUp(s.used, sharedAlign)
	end := offset + len(p)
	if end > len(s.mem) {
		if err := s.growLocked(end); err != nil {
			return 0, err
		}
	}
	copy(s.mem[offset:end], p)
	s.used = end
	return offset, nil
}

// checkLocked checks, at the first use of the memory in a call, that the
// worker has not grown the file beyond the limit: whether or not Go's
// mapping reaches that far, the memory is then no longer what the
// protocol allows, and the worker that did it is replaced. A call that
// does not use the memory costs nothing.
func (s *sharedMem) checkLocked() error {
	if s.checked {
		return nil
	}
	if _, err := s.fileSizeLocked(); err != nil {
		return err
	}
	s.checked = true
	return nil
}

// fileSizeLocked reads the file's size; the size is an error of the worker
// when it is beyond the limit.
func (s *sharedMem) fileSizeLocked() (int64, error) {
	size, err := sharedFileSize(s.file)
	switch {
	case err != nil:
		return 0, sharedFailed(err, "reading its size")
	case size > int64(s.limit):
		return 0, brokenByWorker("the worker grew the shared memory to %d bytes, beyond the limit of %d", size, s.limit)
	}
	return size, nil
}

// growLocked makes the file and the mapping at least need bytes long.
func (s *sharedMem) growLocked(need int) error {
	if need > s.limit {
		return fmt.Errorf("%w: %d bytes of shared memory needed, the limit is %d (twice Config.MaxMessageSize)",
			ErrMessageTooLarge, need, s.limit)
	}
	size := max(alignUp(need, sharedGrowStep), min(2*len(s.mem), s.limit))
	current, err := s.fileSizeLocked()
	switch {
	case err != nil:
		return err
	case current < int64(size):
		if err := growSharedFile(s.file, int64(size)); err != nil {
			return sharedFailed(err, "growing it to %d bytes", size)
		}
	default:
		size = int(current) // the worker grew it already: map all of it
	}
	return s.remapLocked(size)
}

func (s *sharedMem) remapLocked(size int) error {
	if s.mem != nil {
		_ = unmapShared(s.mem)
		s.mem = nil
	}
	mem, err := mapShared(s.file, size)
	if err != nil {
		return sharedFailed(err, "mapping %d bytes", size)
	}
	s.mem = mem
	return nil
}

// read returns a copy of the length bytes at offset, as the worker's
// reference says; aligned asks for a copy aligned to 8 bytes (for arrays).
func (s *sharedMem) read(offset, length uint64, aligned bool) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.sliceLocked(offset, length)
	if err != nil {
		return nil, err
	}
	return cloneShared(p, aligned), nil
}

// appendTo appends the length bytes at offset to buf.
func (s *sharedMem) appendTo(buf []byte, offset, length uint64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.sliceLocked(offset, length)
	if err != nil {
		return buf, err
	}
	return append(buf, p...), nil
}

// sliceLocked returns the mapped bytes a reference from the worker points
// to, after checking it against the file's size and the limit.
func (s *sharedMem) sliceLocked(offset, length uint64) ([]byte, error) {
	if s.file == nil {
		return nil, errSharedClosed
	}
	if err := s.checkLocked(); err != nil {
		return nil, err
	}
	if length > uint64(s.limit) || offset > uint64(s.limit)-length {
		return nil, brokenByWorker("a shared-memory reference [%d, +%d) beyond the limit of %d bytes", offset, length, s.limit)
	}
	end := int(offset + length)
	if end > len(s.mem) {
		if err := s.mapFileLocked(end); err != nil {
			return nil, err
		}
	}
	return s.mem[offset:end], nil
}

// mapFileLocked maps the whole file, which the worker grew, if it reaches
// end.
func (s *sharedMem) mapFileLocked(end int) error {
	size, err := s.fileSizeLocked()
	switch {
	case err != nil:
		return err
	case int64(end) > size:
		return brokenByWorker("a shared-memory reference ends at %d, beyond the memory's %d bytes", end, size)
	}
	return s.remapLocked(int(size))
}

// alignUp rounds n up to a multiple of align, a power of two.
func alignUp(n, align int) int { return (n + align - 1) &^ (align - 1) }

// cloneShared copies p out of the shared memory into memory of Go's own,
// aligned to 8 bytes if asked. It appends to a nil slice rather than copy
// into a made one: the runtime then does not clear memory that the copy
// overwrites at once, which for large values costs as much as the copy.
func cloneShared(p []byte, aligned bool) []byte {
	if !aligned {
		return append([]byte(nil), p...)
	}
	if len(p) == 0 {
		return []byte{}
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(p)))%8 != 0 {
		q := alignedBytes(len(p))
		copy(q, p)
		return q
	}
	// Whole words, then the bytes left over, into a []uint64's memory.
	words := append(make([]uint64, 0, (len(p)+7)/8), unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(p))), len(p)/8)...)
	q := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words[:cap(words)]))), len(p))
	copy(q[len(p)/8*8:], p[len(p)/8*8:])
	return q
}
