//go:build linux

package pypool

// helpers_linux_test.go holds the test helpers that use Linux system calls:
// the child subreaper TestMain sets (prctl) and pidfds (pidfd_open, ppoll).
// helpers_other_test.go stands in for them elsewhere, so that the tests
// compile on every supported platform (GOOS=darwin go vet ./...).

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// prSetChildSubreaper makes orphaned descendants children of this process,
// so that the tests can wait for them (TestMain sets it).
const prSetChildSubreaper = 36

// becomeSubreaper makes the test binary a child subreaper (TestMain).
func becomeSubreaper() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
	return nil
}

// openPidfd opens a pidfd for pid (pidfd_open(2)), which becomes readable
// when pid exits: an event to await for a process that is not our child.
// It is closed when the test ends.
func openPidfd(t testing.TB, pid int) *os.File {
	t.Helper()
	const sysPidfdOpen = 434 // the same on every Linux architecture
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno == syscall.ESRCH {
		return nil // gone already
	}
	require.Zero(t, errno, "pidfd_open(%d)", pid)
	f := os.NewFile(fd, "pidfd")
	t.Cleanup(func() { f.Close() })
	return f
}

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// pidfdExited waits up to timeout for the process of pidfd (nil: gone
// already) to exit and reports whether it did.
func pidfdExited(pidfd *os.File, timeout time.Duration) bool {
	if pidfd == nil {
		return true
	}
	poll := pollFd{fd: int32(pidfd.Fd()), events: 0x1} // POLLIN: it exited
	ts := syscall.NsecToTimespec(int64(timeout))
	for {
		n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&poll)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		if errno == syscall.EINTR {
			continue // the timeout is only an upper bound: a retry may wait longer, never shorter
		}
		return errno == 0 && n == 1
	}
}
