package pypool

// The end of a pool: Close under every condition (calls in flight past its
// context, a context already ended, waiting callers) and the death of the
// Go process that runs it (DESIGN invariant 4). Close's basic contract is in
// pool_test.go (TestCloseWaitsForCallsInFlight).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHostDeathLeavesNoWorker kills a Go program that runs a pool (one worker
// with a child of its own, one in a call in C code) with SIGKILL and checks
// that its python3 workers, the child, the fork server's template and the
// pool's guardian die too (issue 18, findings 1 and 2), on both start
// methods.
func TestHostDeathLeavesNoWorker(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hostdeath")
	build := exec.Command("go", "build", "-o", bin, "./testdata/hostdeath")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building the host program: %s", out)

	for _, method := range []StartMethod{StartExec, StartForkServer} {
		t.Run(method.String(), func(t *testing.T) { hostDeath(t, bin, method) })
	}
}

// hostDeath kills a host program whose pool starts its workers by method,
// once one worker has a child and the other is in C code, and waits for
// all of its processes to exit.
func hostDeath(t *testing.T, bin string, method StartMethod) {
	host := exec.Command(bin, "testdata/pymod", method.String())
	stdout, err := host.StdoutPipe()
	require.NoError(t, err)
	stderr, err := host.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, host.Start())
	killed := false
	defer func() {
		if !killed {
			_ = host.Process.Kill()
			_ = host.Wait()
		}
	}()
	var pids [3]int // the workers a and b, a's child
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	_, err = fmt.Sscan(line, &pids[0], &pids[1], &pids[2])
	require.NoError(t, err)
	// Worker b is in C code once its line reached the host's log.
	logs := bufio.NewScanner(stderr)
	for logs.Scan() && !strings.Contains(logs.Text(), "entering C") {
	}
	require.NoError(t, logs.Err())
	go func() { _, _ = io.Copy(io.Discard, stderr) }()

	procs := pids[:]
	if parent := parentPid(pids[0]); parent != host.Process.Pid {
		require.Equal(t, StartForkServer, method, "only forked workers have another parent")
		procs = append(procs, parent) // the template
	}
	for _, pid := range allPids() {
		if parentPid(pid) == host.Process.Pid && isGuardian(pid) {
			procs = append(procs, pid)
		}
	}
	pidfds := make(map[int]*os.File, len(procs))
	for _, pid := range procs {
		pidfds[pid] = openPidfd(t, pid)
		require.False(t, pidfdExited(pidfds[pid], 0), "process %d runs before the host dies", pid)
	}

	require.NoError(t, host.Process.Kill())
	_ = host.Wait()
	killed = true
	requireExited(t, pidfds, "the processes of a Go program killed with SIGKILL")
}

func TestCloseStopsCallsWhenItsContextEnds(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	pids := workerPids(pool)
	result := make(chan error)
	go func() {
		_, err := pool.Call(testCtx(t), "swallow_interrupt", 60)
		result <- err
	}()
	rec.await(t, "swallowing interrupts")
	ctx, cancel := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, pool.Close(ctx), context.DeadlineExceeded)
	assert.ErrorIs(t, <-result, ErrPoolClosed)
	assertGone(t, pids)
}

// TestCloseWithEndedContextReportsOnlyWhatItCutOff (issue 18, finding 13):
// Close with a context that has already ended returns nil when no worker
// was checked out, every time, and ctx's error when it cut a Transaction
// off.
func TestCloseWithEndedContextReportsOnlyWhatItCutOff(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for round := range 20 {
		pool, err := New(testCtx(t), testConfig(t))
		require.NoError(t, err)
		_, err = pool.Call(testCtx(t), "echo", round)
		require.NoError(t, err)
		require.NoError(t, pool.Close(ended), "round %d: nothing was running", round)
	}

	pool, err := New(testCtx(t), testConfig(t))
	require.NoError(t, err)
	held := make(chan struct{})
	release := make(chan struct{})
	result := make(chan error)
	go func() {
		result <- pool.Transaction(testCtx(t), func(w *Worker) error {
			close(held)
			<-release
			_, err := w.Call(testCtx(t), "echo", 1)
			return err
		})
	}()
	<-held
	assert.ErrorIs(t, pool.Close(ended), context.Canceled, "Close cut the Transaction off")
	close(release)
	assert.ErrorIs(t, <-result, ErrPoolClosed, "the Transaction's worker was stopped")
}

func TestCloseWakesWaitingCallers(t *testing.T) {
	pool, err := New(testCtx(t), testConfig(t))
	require.NoError(t, err)
	held := make(chan struct{})
	done := make(chan struct{})
	go func() {
		_ = pool.Transaction(testCtx(t), func(*Worker) error { close(held); <-done; return nil })
	}()
	<-held
	result := make(chan error)
	go func() {
		_, err := pool.Call(context.Background(), "echo", 1)
		result <- err
	}()
	awaitPool(t, pool, "a waiter", func(s Stats) bool { return s.Waiting == 1 })
	closed := make(chan error)
	go func() { closed <- pool.Close(testCtx(t)) }()
	assert.ErrorIs(t, <-result, ErrPoolClosed)
	close(done)
	require.NoError(t, <-closed)
}
