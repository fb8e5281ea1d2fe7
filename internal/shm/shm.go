// Package shm is the memory a worker shares with the Go process for large
// payloads: an anonymous memory file (memfd) that both map. Within a call,
// Go writes the call's values from offset 0 up; the worker writes its
// reply's values after the end of the call's (see
// python/pypool_runtime/shm.py), so that a result computed from an argument
// never overwrites it. Values are copied in and out: nothing that a caller
// or a Python function keeps after the call points into the shared memory.
//
// The file is sealed against shrinking, so a mapping never reaches past its
// end; every reference from the worker is checked against the file's size
// and the limit before it is read.
//
// The package knows nothing of the pool: it reports what went wrong as an
// *Error (the worker broke the memory, or a system call failed) or a
// *TooLargeError, and the caller decides what that means.
package shm

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"
)

// align aligns every value in the shared memory, so that arrays can be
// viewed in place by numpy on the other side.
const align = 64

// growStep is the granularity of the file's growth.
const growStep = 1 << 20

// Limit is the most a worker's shared memory may grow to: a call and its
// reply each carry at most maxMessage bytes, plus alignment.
func Limit(maxMessage int) int { return 2*maxMessage + 2*growStep }

// Supported tells whether this system can share memory with workers.
func Supported() bool {
	f, err := createFile()
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// ErrClosed is returned for a reference read after the shared memory was
// released.
var ErrClosed = errors.New("the worker's shared memory is released")

// Error is a failure of the shared memory itself, not of a value that does
// not fit in it: the worker broke it (Broken: it grew the file beyond the
// limit, or sent a reference that is malformed or points outside it; Op
// says how), or the system could not size or map it (Op says what was
// being done, Err the system's error).
type Error struct {
	Broken bool
	Op     string
	Err    error
}

// Error says what failed, and the system's error if any.
func (e *Error) Error() string {
	if e.Err == nil {
		return e.Op
	}
	return e.Op + ": " + e.Err.Error()
}

// Unwrap returns the system's error; nil when the worker broke the memory.
func (e *Error) Unwrap() error { return e.Err }

// brokenByWorker is the Error of a worker that broke the shared memory's
// protocol.
func brokenByWorker(format string, args ...any) error {
	return &Error{Broken: true, Op: fmt.Sprintf(format, args...)}
}

// failed is the Error of a system call on the shared memory that failed:
// what it was doing, and err.
func failed(err error, format string, args ...any) error {
	return &Error{Op: fmt.Sprintf(format, args...), Err: err}
}

// TooLargeError is returned by Put for a value that would take the memory
// beyond its limit: Need bytes were needed.
type TooLargeError struct{ Need, Limit int }

// Error says how much was needed and the limit.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%d bytes of shared memory needed, the limit is %d", e.Need, e.Limit)
}

// Mem is one worker's shared memory. Its methods are safe for concurrent
// use, but one call at a time uses it.
type Mem struct {
	mu    sync.Mutex
	file  *os.File
	mem   []byte // the mapping of [0, len(mem)) of the file
	used  int    // end of the current call's values
	limit int    // the file never grows beyond this
	// maxMessage is the most one call or one reply may carry in it.
	maxMessage int
	busy       bool // a call is using it: release waits for its end
	retired    bool // release was asked while busy
	checked    bool // the file's size was checked during the current call (checkLocked)
}

// New creates a worker's shared memory, empty until a call needs it. A call
// and its reply each carry at most maxMessage bytes, so the file never
// needs more than twice it (Limit).
func New(maxMessage int) (*Mem, error) {
	f, err := createFile()
	if err != nil {
		return nil, err
	}
	return &Mem{file: f, limit: Limit(maxMessage), maxMessage: maxMessage}, nil
}

// File is the memory file, to pass to the worker.
func (s *Mem) File() *os.File { return s.file }

// Acquire marks the start of a call's use: values go from offset 0 again.
func (s *Mem) Acquire() {
	s.mu.Lock()
	s.busy, s.used, s.checked = true, 0, false
	s.mu.Unlock()
}

// ReleaseCall marks the end of a call's use. If Retire was asked during the
// call, the shared memory is closed now.
func (s *Mem) ReleaseCall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = false
	if s.retired {
		s.closeLocked()
	}
}

// Retire closes the shared memory once no call uses it: at once, or at the
// end of the current call (whose reply may still be read from it).
func (s *Mem) Retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy {
		s.retired = true
		return
	}
	s.closeLocked()
}

func (s *Mem) closeLocked() {
	if s.file == nil {
		return
	}
	if s.mem != nil {
		_ = unmap(s.mem)
		s.mem = nil
	}
	s.file.Close()
	s.file = nil
}

// Size is the file's current size, 0 once it is closed.
func (s *Mem) Size() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		return 0, nil
	}
	return fileSize(s.file)
}

// Put copies p into the shared memory after the current call's other
// values and returns its offset.
func (s *Mem) Put(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		return 0, ErrClosed
	}
	if err := s.checkLocked(); err != nil {
		return 0, err
	}
	offset := alignUp(s.used, align)
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
// protocol allows. A call that does not use the memory costs nothing.
func (s *Mem) checkLocked() error {
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
func (s *Mem) fileSizeLocked() (int64, error) {
	size, err := fileSize(s.file)
	switch {
	case err != nil:
		return 0, failed(err, "reading its size")
	case size > int64(s.limit):
		return 0, brokenByWorker("the worker grew the shared memory to %d bytes, beyond the limit of %d", size, s.limit)
	}
	return size, nil
}

// growLocked makes the file and the mapping at least need bytes long.
func (s *Mem) growLocked(need int) error {
	if need > s.limit {
		return &TooLargeError{Need: need, Limit: s.limit}
	}
	size := max(alignUp(need, growStep), min(2*len(s.mem), s.limit))
	current, err := s.fileSizeLocked()
	switch {
	case err != nil:
		return err
	case current < int64(size):
		if err := growFile(s.file, int64(size)); err != nil {
			return failed(err, "growing it to %d bytes", size)
		}
	default:
		size = int(current) // the worker grew it already: map all of it
	}
	return s.remapLocked(size)
}

func (s *Mem) remapLocked(size int) error {
	if s.mem != nil {
		_ = unmap(s.mem)
		s.mem = nil
	}
	mem, err := mapFile(s.file, size)
	if err != nil {
		return failed(err, "mapping %d bytes", size)
	}
	s.mem = mem
	return nil
}

// Read returns a copy of the length bytes at offset, as the worker's
// reference says; aligned asks for a copy aligned to 8 bytes (for arrays).
func (s *Mem) Read(offset, length uint64, aligned bool) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.sliceLocked(offset, length)
	if err != nil {
		return nil, err
	}
	return cloneShared(p, aligned), nil
}

// AppendTo appends the length bytes at offset to buf.
func (s *Mem) AppendTo(buf []byte, offset, length uint64) ([]byte, error) {
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
func (s *Mem) sliceLocked(offset, length uint64) ([]byte, error) {
	if s.file == nil {
		return nil, ErrClosed
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
func (s *Mem) mapFileLocked(end int) error {
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

// alignedBytes returns n zeroed bytes aligned to 8 (the root package's
// alignedBytes, for Arrays, is the same).
func alignedBytes(n int) []byte {
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), n)
}
