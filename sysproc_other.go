//go:build unix && !linux

package pypool

import (
	"os"
	"syscall"
)

// workerSysProcAttr returns the process attributes of a worker: its own
// process group. Outside Linux there is no parent-death signal; the worker
// still exits when its input reaches end of file. cred, when not nil, is the
// user and groups it runs as.
func workerSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

// setPipeSize is a no-op outside Linux.
func setPipeSize(*os.File, int) {}
