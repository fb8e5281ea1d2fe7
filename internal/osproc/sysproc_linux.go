package osproc

import (
	"os"
	"syscall"
	"unsafe"
)

// SysProcAttr returns the process attributes of a worker. The worker
// gets its own process group, so that a terminal's Ctrl-C reaches only the Go
// program (which decides what happens) and a kill reaches the worker's own
// children too; and it dies when the thread that started it exits (see
// StartOnLockedThread). cred, when not nil, is the user and groups it runs
// as; the parent-death signal holds for it too (Go sets it after the change
// of user, which would clear it).
func SysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
}

// SetPipeSize asks Linux for a larger pipe buffer (F_SETPIPE_SZ). It is an
// optimisation only: failure (for example above /proc/sys/fs/pipe-max-size)
// leaves the default size.
func SetPipeSize(f *os.File, size int) {
	const fSetPipeSz = 1031
	conn, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = conn.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, uintptr(size))
	})
}

// AwaitExitKeepZombie waits until the child pid has exited without reaping
// it (waitid with WNOWAIT): its pid, and the number of the process group it
// leads, stay reserved until it is reaped. false if the wait failed.
func AwaitExitKeepZombie(pid int) bool {
	const (
		pPid    = 1         // P_PID
		wExited = 4         // WEXITED
		wNoWait = 0x1000000 // WNOWAIT
	)
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPid, uintptr(pid), uintptr(unsafe.Pointer(&info)), wExited|wNoWait, 0, 0)
		switch errno {
		case 0:
			return true
		case syscall.EINTR:
			continue
		}
		return false
	}
}

// KillGroup sends SIGKILL to the process group pgid; one that is gone
// already (ESRCH) or empty is fine.
func KillGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }
