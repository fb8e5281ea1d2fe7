//go:build linux && (amd64 || arm64)

package shm

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// memfd_create(2) and the seal that forbids shrinking, which the syscall
// package does not name on every architecture.
const (
	mfdCloexec      = 0x1
	mfdAllowSealing = 0x2
	fAddSeals       = 1033 // F_LINUX_SPECIFIC_BASE + 9
	fSealShrink     = 0x2
)

// createFile makes the anonymous memory file shared with one worker.
// It is sealed against shrinking: the worker can grow it but never cut it
// under a mapping, which would make reading it fault (SIGBUS).
func createFile() (*os.File, error) {
	name := []byte("pypool\x00")
	fd, _, errno := syscall.Syscall(sysMemfdCreate, uintptr(unsafe.Pointer(&name[0])), mfdCloexec|mfdAllowSealing, 0)
	if errno != 0 {
		return nil, fmt.Errorf("memfd_create: %w", errno)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, fAddSeals, fSealShrink); errno != 0 {
		syscall.Close(int(fd))
		return nil, fmt.Errorf("sealing the shared memory: %w", errno)
	}
	return os.NewFile(fd, "pypool-shm"), nil
}

// mapFile maps size bytes of f, shared with the worker.
func mapFile(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

func unmap(mem []byte) error { return syscall.Munmap(mem) }

// fileSize is f's current size.
func fileSize(f *os.File) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	return st.Size, nil
}

// growFile makes f size bytes long.
func growFile(f *os.File, size int64) error { return syscall.Ftruncate(int(f.Fd()), size) }
