package pypool

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// prSetChildSubreaper makes orphaned descendants children of this process,
// so that the test can wait for them.
const prSetChildSubreaper = 36

// TestHostDeathLeavesNoWorker kills a Go program that runs a pool (one worker
// idle, one in a call) with SIGKILL and checks its python3 workers die too.
func TestHostDeathLeavesNoWorker(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hostdeath")
	build := exec.Command("go", "build", "-o", bin, "./testdata/hostdeath")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building the host program: %s", out)

	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	require.Zero(t, errno, "prctl(PR_SET_CHILD_SUBREAPER)")

	for _, method := range []StartMethod{StartExec, StartForkServer} {
		t.Run(method.String(), func(t *testing.T) { hostDeath(t, bin, method) })
	}
}

// hostDeath kills a host program whose pool starts its workers by method,
// and waits for its workers (and its fork server's template) to exit.
func hostDeath(t *testing.T, bin string, method StartMethod) {
	host := exec.Command(bin, "testdata/pymod", method.String())
	stdout, err := host.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, host.Start())
	var pids [2]int
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	_, err = fmt.Sscan(line, &pids[0], &pids[1])
	require.NoError(t, err)
	procs := pids[:]
	if parent := parentPid(pids[0]); parent != host.Process.Pid {
		require.Equal(t, StartForkServer, method, "only forked workers have another parent")
		// The template first: its workers are reparented to this process
		// only once it has exited.
		procs = append([]int{parent}, procs...)
	}

	require.NoError(t, host.Process.Kill())
	_ = host.Wait()
	// The workers (and the template) are now orphans reparented to this
	// test process: wait for their exit, with a bound in case they survived.
	for _, pid := range procs {
		exited := make(chan error, 1)
		go func() {
			var status syscall.WaitStatus
			_, err := syscall.Wait4(pid, &status, 0, nil)
			exited <- err
		}()
		select {
		case err := <-exited:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d outlived its Go program by 10s", pid)
		}
	}
}
