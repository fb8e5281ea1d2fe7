package pypool

import (
	"syscall"
	"unsafe"
)

// pendingBytes returns how many bytes wait in the pipe behind fd to be read.
func pendingBytes(fd uintptr) int64 {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0
	}
	return int64(n)
}
