//go:build unix && !linux

package osproc

import (
	"os"
	"syscall"
)

// SysProcAttr returns the process attributes of a worker: its own
// process group. Outside Linux there is no parent-death signal; the worker
// still exits when its input reaches end of file. cred, when not nil, is the
// user and groups it runs as.
func SysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

// SetPipeSize is a no-op outside Linux.
func SetPipeSize(*os.File, int) {}

// AwaitExitKeepZombie is false outside Linux (no waitid with WNOWAIT here):
// a worker's group is then not killed after its own exit, only by the kill
// paths while it runs.
func AwaitExitKeepZombie(int) bool { return false }

// KillGroup sends SIGKILL to the process group pgid.
func KillGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }
