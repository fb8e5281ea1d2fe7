//go:build linux

package pypool

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pypool/pypool/internal/osproc"
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

// faultSeed replays a run of TestForkServerFaultInjection: the seed it
// printed.
var faultSeed = flag.Uint64("pypool.faultseed", 0, "seed of TestForkServerFaultInjection (0: from the clock)")

// TestForkServerFaultInjection (issue 18, "How to prove it"): the template
// is SIGKILLed or SIGSTOPped (and SIGCONTed a random moment later, before or
// after the pool gives up on it) at a random point of a burst of 12 worker
// starts (Size 1, MaxOverflow 12, 12 concurrent callers), 20 rounds. The
// model allows no caller error: every call has a generous deadline, and a
// template's fault costs only starts, which fall back to exec. While the
// 12 workers are held, no pipe of a worker is open in any process but that
// worker; after Close, no process forked by a template and no worker is
// left.
func TestForkServerFaultInjection(t *testing.T) {
	const rounds, callers = 20, 6
	seed := *faultSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: -args -pypool.faultseed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	saved := forkTimeout
	forkTimeout = 300 * time.Millisecond // a stopped template is given up on within the round
	t.Cleanup(func() { forkTimeout = saved })

	cfg := forkConfig(t)
	cfg.Size, cfg.MaxOverflow = 1, callers
	// Each fork's answer comes 2 ms after the fork, so that the fault's
	// random moment often falls between a fork and its answer.
	cfg.Preload = []string{"pypool_forkfault"}
	cfg.Env = []string{"PYPOOL_FORKFAULT=slow"}
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	var conts sync.WaitGroup // pending SIGCONTs
	for round := range rounds {
		began := time.Now()
		fs := awaitForkServer(t, pool, nil) // the one running, or the next one
		fault := []string{"kill", "stop"}[rng.IntN(2)]
		delay := time.Duration(rng.Int64N(int64(20 * time.Millisecond)))
		cont := time.Duration(rng.Int64N(int64(600 * time.Millisecond)))
		errs := burst(t, pool, callers, func() {
			time.Sleep(delay) // the fault's random moment, not a synchronisation
			if fault == "kill" {
				_ = fs.cmd.Process.Kill()
				return
			}
			_ = fs.cmd.Process.Signal(syscall.SIGSTOP)
			conts.Add(1)
			time.AfterFunc(cont, func() {
				defer conts.Done()
				_ = fs.cmd.Process.Signal(syscall.SIGCONT) // ErrProcessDone once it was killed and reaped
			})
		})
		for i, err := range errs {
			require.NoError(t, err, "round %d (%s after %v): caller %d", round, fault, delay, i)
		}
		awaitPool(t, pool, "back at rest", func(s Stats) bool { return atRest(s, 1) })
		t.Logf("round %d: %s after %v (SIGCONT after %v): %v", round, fault, delay.Round(time.Microsecond), cont.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
		// A template killed young lengthens its restart backoff: start each
		// round with none, so that every round has a template to hit (the
		// backoff has tests of its own).
		pool.forkBackoff.callSucceeded()
	}
	conts.Wait()
	t.Logf("stats after %d rounds: %+v", rounds, pool.Stats())
	require.NoError(t, pool.Close(testCtx(t)))
	require.Empty(t, forkServerLeftovers(), "processes of the pool's templates left after Close")
	require.Empty(t, childProcesses(), "workers left after Close")
}

// burst has n callers each hold a worker of pool and call a short function
// on it, runs fault meanwhile, and once every caller has its answer (the
// n workers still held) checks that no worker's pipe is open in another
// process. It returns the callers' errors.
func burst(t *testing.T, pool *Pool, n int, fault func()) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make([]error, n)
	var called, done sync.WaitGroup
	release := make(chan struct{})
	called.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			answered := false
			errs[i] = pool.Transaction(ctx, func(w *Worker) error {
				_, err := w.Call(ctx, "sleep", 0.01)
				answered = true
				called.Done()
				<-release
				return err
			})
			if !answered {
				called.Done()
			}
		}()
	}
	fault()
	called.Wait()
	holders := pipeHoldersAll()
	for _, pw := range pool.serving() {
		for _, f := range []*os.File{pw.proc.toWorker, pw.proc.fromWorker} {
			if id, ok := fileIDOf(f); ok {
				for _, pid := range holders[id] {
					if pid != pw.proc.pid {
						t.Errorf("the pipe of worker %d is open in process %d too", pw.proc.pid, pid)
					}
				}
			}
		}
	}
	close(release)
	done.Wait()
	return errs
}

// fileIDOf is the device and inode of f; false once f is closed.
func fileIDOf(f *os.File) (id fileID, ok bool) {
	conn, err := f.SyscallConn()
	if err != nil {
		return id, false
	}
	err = conn.Control(func(fd uintptr) {
		var st syscall.Stat_t
		if syscall.Fstat(int(fd), &st) == nil {
			id, ok = fileID{st.Dev, st.Ino}, true
		}
	})
	return id, ok && err == nil
}

// forkServerLeftovers lists the live processes whose command line is one
// of this process's templates: templates and the workers they forked.
func forkServerLeftovers() []int {
	var found []int
	for _, pid := range allPids() {
		if isForkServerProcess(pid) && !isZombie(pid) {
			found = append(found, pid)
		}
	}
	return found
}

// fileHolders lists the processes other than this one with a descriptor
// open on f's file (pipe or memfd), from /proc/*/fd.
func fileHolders(t testing.TB, f *os.File) []int {
	t.Helper()
	id, ok := fileIDOf(f)
	require.True(t, ok, "the worker's pipe is closed")
	return pipeHoldersAll()[id]
}

// fileID names an open file: its device and inode.
type fileID struct{ dev, ino uint64 }

// pipeHoldersAll maps each file open in a process other than this one to
// the pids holding it (each pid once). A process running the test binary
// (a child between its fork and its exec) is not counted.
func pipeHoldersAll() map[fileID][]int {
	holders := make(map[fileID][]int)
	for _, pid := range allPids() {
		if pid == os.Getpid() || osproc.RunsThisProgram(pid) {
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
