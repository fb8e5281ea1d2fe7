package pypool

import (
	"os"
	"syscall"
)

// workerSysProcAttr returns the process attributes of a worker. The worker
// gets its own process group, so that a terminal's Ctrl-C reaches only the Go
// program (which decides what happens) and a kill reaches the worker's own
// children too; and it dies when the thread that started it exits (see
// startLocked). cred, when not nil, is the user and groups it runs as; the
// parent-death signal holds for it too (Go sets it after the change of
// user, which would clear it).
func workerSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
}

// setPipeSize asks Linux for a larger pipe buffer (F_SETPIPE_SZ). It is an
// optimisation only: failure (for example above /proc/sys/fs/pipe-max-size)
// leaves the default size.
func setPipeSize(f *os.File, size int) {
	const fSetPipeSz = 1031
	conn, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = conn.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, uintptr(size))
	})
}
