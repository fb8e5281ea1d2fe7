package main

// The fork server's scenarios (Config.StartMethod): each runs the default
// method (exec) and the fork server side by side, round by round.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pypool/pypool"
	"github.com/pypool/pypool/internal/osproc"
)

var startMethods = []pypool.StartMethod{pypool.StartExec, pypool.StartForkServer}

// methodPool starts a pool of module with method.
func (b *bench) methodPool(ctx context.Context, module string, method pypool.StartMethod, size, overflow int) *pool {
	p := must(pypool.New(ctx, pypool.Config{
		Module: module, PythonPath: []string{b.dir}, Python: b.python,
		Size: size, MaxOverflow: overflow, StartMethod: method,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), // the chaos scenario's crashes
	}))
	return &pool{p, size}
}

// forkStart measures the time from a call that needs a new worker (an
// overflow worker, started while the pool's one worker is busy) until it
// returns, with a module whose import takes about 300 ms.
func (b *bench) forkStart(ctx context.Context) {
	pools := make([]*pool, len(startMethods))
	times := make([][]float64, len(startMethods))
	for i, m := range startMethods {
		pools[i] = b.methodPool(ctx, "bench_slowimport", m, 1, 1)
		defer pools[i].close()
	}
	bare := []float64{}
	for range b.sizes.startRounds {
		bare = append(bare, millis(b.timeModule(b.python, "bench_slowimport")))
		for i, p := range pools {
			must(0, p.p.Transaction(ctx, func(*pypool.Worker) error {
				t := time.Now()
				_, err := p.call(ctx, "duplicate_text", trivialArg) // starts the overflow worker
				times[i] = append(times[i], millis(time.Since(t)))
				return err
			}))
			atRest(p) // the overflow worker's exit does not overlap the next round
		}
	}
	b.add(figure("forkstart", "python -c import (300 ms module)", "median", "ms", bare, bare))
	for i, m := range startMethods {
		b.add(figure("forkstart", "pypool "+m.String(), "median", "ms", times[i], bare))
	}
}

// atRest waits until p runs Size workers and stops none.
func atRest(p *pool) {
	for s := p.p.Stats(); s.Workers != p.size || s.Stopping > 0 || s.Starting > 0; s = p.p.Stats() {
		time.Sleep(time.Millisecond)
	}
}

// timeModule runs python -E -c 'import module' and returns its wall time.
func (b *bench) timeModule(python, module string) time.Duration {
	t := time.Now()
	script := strings.Replace(b.importScript(), "import bench_module", "import "+module, 1)
	must(0, exec.Command(python, "-E", "-c", script).Run())
	return time.Since(t)
}

// forkRecovery measures the time from a SIGKILL of one worker of two until
// the pool is full again, for both methods, with the 300 ms module.
func (b *bench) forkRecovery(ctx context.Context) {
	pools := make([]*pool, len(startMethods))
	times := make([][]float64, len(startMethods))
	for i, m := range startMethods {
		pools[i] = b.methodPool(ctx, "bench_slowimport", m, 2, 0)
		defer pools[i].close()
	}
	for range b.sizes.startRounds {
		for i, p := range pools {
			serveBoth(ctx, p)
			restarts := p.p.Stats().Restarts
			pids := p.pythonPids(ctx)
			t := time.Now()
			must(0, syscall.Kill(pids[0], syscall.SIGKILL))
			for s := p.p.Stats(); s.Restarts == restarts || s.Workers < 2; s = p.p.Stats() {
				time.Sleep(50 * time.Microsecond)
			}
			times[i] = append(times[i], millis(time.Since(t)))
			atRest(p)
		}
	}
	for i, m := range startMethods {
		b.add(figure("forkrecovery", "pypool "+m.String(), "median", "ms", times[i], nil))
	}
}

// forkMemory reports the proportional set size (PSS, /proc/PID/smaps_rollup)
// per worker of a pool of 4 whose module allocates 100 MB at import: the
// fork server's workers share the template's pages. Each round starts the
// pools anew; the template's own PSS is added to the fork server's total.
func (b *bench) forkMemory(ctx context.Context) {
	const size = 4
	rounds := max(1, b.sizes.startRounds/3)
	per := make([][]float64, len(startMethods))
	for range rounds {
		for i, m := range startMethods {
			p := b.methodPool(ctx, "bench_bigimport", m, size, 0)
			var total float64
			for _, pid := range p.pythonPids(ctx) {
				total += float64(pssBytes(pid)) / 1e6
			}
			if m == pypool.StartForkServer {
				total += float64(pssBytes(templatePid(p.pythonPids(ctx)[0]))) / 1e6
			}
			per[i] = append(per[i], total/size)
			p.close()
		}
	}
	for i, m := range startMethods {
		b.add(figure("forkmemory", "pypool "+m.String(), "PSS per worker", "MB", per[i], per[0]))
	}
}

// pssBytes reads a process's proportional set size.
func pssBytes(pid int) int64 {
	data := must(os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup"))
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == "Pss:" {
			return must(strconv.ParseInt(fields[1], 10, 64)) << 10
		}
	}
	must(0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid))
	return 0
}

// templatePid is a forked worker's parent.
func templatePid(pid int) int {
	fields := must(osproc.StatFields(pid))
	return must(strconv.Atoi(fields[1]))
}

// forkChaos makes calls without retries through a pool of 4 (overflow 4)
// while a worker is SIGKILLed every 20 ms, and reports the share of calls
// that succeeded, for both methods, a window each, round by round.
func (b *bench) forkChaos(ctx context.Context) {
	window := 10 * b.sizes.window
	shares := make([][]float64, len(startMethods))
	for range max(1, b.sizes.startRounds/3) {
		for i, m := range startMethods {
			p := b.methodPool(ctx, "bench_module", m, 4, 4)
			shares[i] = append(shares[i], 100*chaosShare(ctx, p, window))
			p.close()
		}
	}
	for i, m := range startMethods {
		b.add(figure("forkchaos", "pypool "+m.String(), "calls ok, kill every 20 ms", "%", shares[i], nil))
	}
}

// chaosShare runs 8 callers for window while a worker dies every 20 ms, and
// returns the share of calls that succeeded.
func chaosShare(ctx context.Context, p *pool, window time.Duration) float64 {
	var ok, all atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ticker := time.NewTicker(20 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				if pids := workerPidsOf(p.p); len(pids) > 0 {
					_ = syscall.Kill(pids[rand.IntN(len(pids))], syscall.SIGKILL)
				}
			}
		}
	}()
	until := time.Now().Add(window)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := p.call(cctx, "duplicate_text", trivialArg)
				cancel()
				all.Add(1)
				if err == nil {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(window)
	close(stop)
	wg.Wait()
	return float64(ok.Load()) / float64(max(1, all.Load()))
}

// workerPidsOf lists the pool's worker processes from /proc: this
// process's children but for fork server templates, and the templates'
// children. Only one pool runs at a time in this scenario.
func workerPidsOf(*pypool.Pool) []int {
	me := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	parents := map[int]int{}
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if fields, err := osproc.StatFields(pid); err == nil && len(fields) > 1 && fields[0] != "Z" {
				parents[pid], _ = strconv.Atoi(fields[1])
			}
		}
	}
	var pids []int
	for pid, parent := range parents {
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		template := strings.Contains(string(cmdline), "pypool_runtime.forkserver")
		if (parent == me && !template) || (parents[parent] == me && template) {
			pids = append(pids, pid)
		}
	}
	return pids
}
