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

// awaitExitKeepZombie is false outside Linux (no waitid with WNOWAIT here):
// a worker's group is then not killed after its own exit, only by the kill
// paths while it runs.
func awaitExitKeepZombie(int) bool { return false }

// killGroup sends SIGKILL to the process group pgid.
func killGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }
