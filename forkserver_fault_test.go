//go:build linux

package pypool

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestForkServerDeathAfterForkKeepsDescriptorsPrivate (issue 18, finding
// 3): a template that forks a worker and dies (or stops) before it answers
// leaves a child holding the request's descriptors. The worker started
// instead must not share them: calls succeed, nothing crashes, no other
// process holds the worker's pipes, and the child is gone.
func TestForkServerDeathAfterForkKeepsDescriptorsPrivate(t *testing.T) {
	saved := forkTimeout
	forkTimeout = 300 * time.Millisecond // the stopped template is given up on sooner
	t.Cleanup(func() { forkTimeout = saved })
	for _, fault := range []string{"kill", "stop"} {
		t.Run(fault, func(t *testing.T) {
			cfg := forkConfig(t)
			cfg.Preload = []string{"pypool_forkfault"}
			cfg.Env = []string{"PYPOOL_FORKFAULT=" + fault}
			pool := newTestPool(t, cfg)
			for i := range 10 {
				got, err := pool.Call(testCtx(t), "echo", i)
				require.NoError(t, err, "call %d", i)
				require.Equal(t, int64(i), got)
			}
			require.Zero(t, pool.Stats().Crashes, "a worker was lost")
			pw := pool.serving()[0]
			for _, f := range []*os.File{pw.proc.toWorker, pw.proc.fromWorker} {
				holders := fileHolders(t, f)
				require.Equal(t, []int{pw.proc.pid}, holders, "the processes that hold the pipe of worker %d", pw.proc.pid)
			}
			require.Empty(t, forkedOrphans(), "children of dead templates left running")
		})
	}
}

// fileHolders lists the processes other than this one with a descriptor
// open on f's file (pipe or memfd), from /proc/*/fd.
func fileHolders(t testing.TB, f *os.File) []int {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Fstat(int(f.Fd()), &st))
	held := pipeHoldersAll()[fileID{st.Dev, st.Ino}]
	return held
}

// fileID names an open file: its device and inode.
type fileID struct{ dev, ino uint64 }

// pipeHoldersAll maps each file open in a process other than this one to
// the pids holding it (each pid once).
func pipeHoldersAll() map[fileID][]int {
	holders := make(map[fileID][]int)
	for _, pid := range allPids() {
		if pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		seen := make(map[fileID]bool)
		for _, e := range entries {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join(dir, e.Name()), &st) != nil {
				continue
			}
			id := fileID{st.Dev, st.Ino}
			if !seen[id] {
				seen[id] = true
				holders[id] = append(holders[id], pid)
			}
		}
	}
	return holders
}

// forkedOrphans lists the live processes forked by one of this process's
// templates (their command line is the template's) whose parent is neither
// this process (templates) nor a template (workers): children of a
// template that died.
func forkedOrphans() []int {
	var orphans []int
	for _, pid := range allPids() {
		if !isForkServerProcess(pid) || isZombie(pid) {
			continue
		}
		if parent := parentPid(pid); parent != os.Getpid() && !isForkServerProcess(parent) {
			orphans = append(orphans, pid)
		}
	}
	return orphans
}
