//go:build unix

package osproc

import "syscall"

// Read is the read system call on fd, retried when a signal interrupts it:
// for a descriptor in non-blocking mode, syscall.EAGAIN says it holds no
// bytes yet. It never returns a negative count.
func Read(fd uintptr, b []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), b)
		if err == syscall.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}
