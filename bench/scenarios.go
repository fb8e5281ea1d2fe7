package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pypool/pypool"
)

// result is one measured figure.
type result struct {
	Scenario  string  `json:"scenario"`
	Contender string  `json:"contender"`
	Pinned    bool    `json:"pinned"`
	Metric    string  `json:"metric"`
	Value     float64 `json:"value"`
	Unit      string  `json:"unit"`
	VsFloor   float64 `json:"vs_floor,omitempty"` // Value / the floor's Value, where one exists
}

// sizes of the run.
type sizes struct {
	latencyCalls, execCalls, throughputCalls, startRounds int
	payloadRounds                                         map[int]int
}

func runSizes(quick bool, n int) sizes {
	if quick {
		return sizes{latencyCalls: 300, execCalls: 5, throughputCalls: 500, startRounds: 3,
			payloadRounds: map[int]int{1 << 10: 50, 1 << 20: 5, 16 << 20: 2}}
	}
	return sizes{latencyCalls: n, execCalls: 40, throughputCalls: 4000, startRounds: 10,
		payloadRounds: map[int]int{1 << 10: 2000, 1 << 20: 100, 16 << 20: 10}}
}

type bench struct {
	python, dir string
	pinned      bool
	sizes       sizes
	results     []result
}

func (b *bench) add(r result) {
	r.Pinned = b.pinned
	b.results = append(b.results, r)
}

// must stops the program on a set-up error: a benchmark with a broken
// contender has nothing to say.
func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	return v
}

var testing = []byte("testing")

// latency: sequential trivial calls, p50 and p99.
func (b *bench) latency(ctx context.Context) {
	contenders := []struct {
		name  string
		c     contender
		calls int
	}{
		{"floor", must(startFloor(b.python)), b.sizes.latencyCalls},
		{"pypool", must(startPool(ctx, b.python, b.dir, 1, 0)), b.sizes.latencyCalls},
		{"http", must(startHTTP(b.python, b.dir, 1)), b.sizes.latencyCalls},
		{"exec-per-call", execPerCall{b.python, b.dir}, b.sizes.execCalls},
	}
	var floorP50 float64
	for _, k := range contenders {
		for range min(k.calls/10, 200) { // warm-up
			must(k.c.call(ctx, "duplicate_text", testing))
		}
		times := make([]time.Duration, k.calls)
		for i := range times {
			start := time.Now()
			must(k.c.call(ctx, "duplicate_text", testing))
			times[i] = time.Since(start)
		}
		k.c.close()
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		p50, p99 := micros(times[len(times)/2]), micros(times[len(times)*99/100])
		if k.name == "floor" {
			floorP50 = p50
		}
		b.add(result{Scenario: "latency", Contender: k.name, Metric: "p50", Value: p50, Unit: "µs", VsFloor: p50 / floorP50})
		b.add(result{Scenario: "latency", Contender: k.name, Metric: "p99", Value: p99, Unit: "µs"})
	}
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// throughput: calls/s with w workers and 4 callers per worker.
func (b *bench) throughput(ctx context.Context) {
	counts := []int{1, 2}
	if n := numCPU(); n > 2 {
		counts = append(counts, n)
	}
	for _, w := range counts {
		floors := make([]contender, w)
		for i := range floors {
			floors[i] = must(startFloor(b.python))
		}
		floorRate := b.rate(ctx, floors, 4*w)
		b.add(result{Scenario: "throughput", Contender: "floor", Metric: fmt.Sprintf("%d workers", w), Value: floorRate, Unit: "calls/s", VsFloor: 1})
		pool := must(startPool(ctx, b.python, b.dir, w, 0))
		rate := b.rate(ctx, []contender{pool}, 4*w)
		b.add(result{Scenario: "throughput", Contender: "pypool", Metric: fmt.Sprintf("%d workers", w), Value: rate, Unit: "calls/s", VsFloor: rate / floorRate})
		h := must(startHTTP(b.python, b.dir, 4*w))
		rate = b.rate(ctx, []contender{h}, 4*w)
		b.add(result{Scenario: "throughput", Contender: "http", Metric: fmt.Sprintf("%d workers", w), Value: rate, Unit: "calls/s", VsFloor: rate / floorRate})
		for _, c := range append(floors, pool, h) {
			c.close()
		}
	}
}

// rate runs throughputCalls trivial calls from callers goroutines spread
// over the contenders and returns calls per second.
func (b *bench) rate(ctx context.Context, cs []contender, callers int) float64 {
	for _, c := range cs { // warm-up: no start-up cost inside the timing
		must(c.call(ctx, "duplicate_text", testing))
	}
	var next atomic.Int64
	total := int64(b.sizes.throughputCalls)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cs[i%len(cs)]
			for next.Add(1) <= total {
				must(c.call(ctx, "duplicate_text", testing))
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// payload: echo of bytes, MB/s as payload size over the median round trip.
func (b *bench) payload(ctx context.Context) {
	floor := must(startFloor(b.python))
	pool := must(startPool(ctx, b.python, b.dir, 1, 0))
	defer floor.close()
	defer pool.close()
	for _, size := range []int{1 << 10, 1 << 20, 16 << 20} {
		data := make([]byte, size)
		var floorRate float64
		for _, k := range []struct {
			name string
			c    contender
		}{{"floor", floor}, {"pypool", pool}} {
			rounds := b.sizes.payloadRounds[size]
			times := make([]time.Duration, rounds)
			must(k.c.call(ctx, "echo", data)) // warm-up
			for i := range times {
				start := time.Now()
				if n := must(k.c.call(ctx, "echo", data)); n != size {
					must(0, fmt.Errorf("%s echoed %d bytes of %d", k.name, n, size))
				}
				times[i] = time.Since(start)
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			rate := float64(size) / times[len(times)/2].Seconds() / 1e6
			if k.name == "floor" {
				floorRate = rate
			}
			b.add(result{Scenario: "payload", Contender: k.name, Metric: sizeName(size), Value: rate, Unit: "MB/s", VsFloor: rate / floorRate})
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + " MiB"
	}
	return strconv.Itoa(n>>10) + " KiB"
}

// start: the time from asking for a worker until its first call returns
// (an overflow worker started by a call while the pool's one worker is
// busy), against the same interpreter importing the module.
func (b *bench) start(ctx context.Context) {
	p := must(startPool(ctx, b.python, b.dir, 1, 1))
	defer p.close()
	var bare, pool []time.Duration
	script := fmt.Sprintf("import sys;sys.path.insert(0,%q);import bench_module", b.dir)
	for range b.sizes.startRounds {
		t := time.Now()
		must(0, exec.Command(b.python, "-E", "-c", script).Run())
		bare = append(bare, time.Since(t))

		must(0, p.p.Transaction(ctx, func(*pypool.Worker) error {
			t = time.Now()
			_, err := p.call(ctx, "duplicate_text", testing) // starts the overflow worker
			pool = append(pool, time.Since(t))
			return err
		}))
	}
	bareMs, poolMs := millis(median(bare)), millis(median(pool))
	b.add(result{Scenario: "start", Contender: "python -c import", Metric: "median", Value: bareMs, Unit: "ms"})
	b.add(result{Scenario: "start", Contender: "pypool", Metric: "median", Value: poolMs, Unit: "ms", VsFloor: poolMs / bareMs})
}

// recovery: SIGKILL one worker of two, time until the pool is full again,
// against the time of one worker start. Both workers serve a call first: a
// worker that dies before serving any call counts towards the crash-loop
// backoff, which is not what this measures.
func (b *bench) recovery(ctx context.Context) {
	p := must(startPool(ctx, b.python, b.dir, 2, 0))
	defer p.close()
	var times []time.Duration
	for range b.sizes.startRounds {
		serveBoth(ctx, p)
		restarts := p.p.Stats().Restarts
		pids := workerPids()
		if len(pids) == 0 {
			must(0, fmt.Errorf("no worker process found"))
		}
		t := time.Now()
		must(0, syscall.Kill(pids[0], syscall.SIGKILL))
		for s := p.p.Stats(); s.Restarts == restarts || s.Workers < 2; s = p.p.Stats() {
			time.Sleep(50 * time.Microsecond)
		}
		times = append(times, time.Since(t))
	}
	b.add(result{Scenario: "recovery", Contender: "pypool", Metric: "median", Value: millis(median(times)), Unit: "ms"})
}

// serveBoth makes one call on each of the pool's two workers.
func serveBoth(ctx context.Context, p *pool) {
	must(0, p.p.Transaction(ctx, func(a *pypool.Worker) error {
		return p.p.Transaction(ctx, func(b *pypool.Worker) error {
			_, errA := a.Call(ctx, "duplicate_text", "x")
			_, errB := b.Call(ctx, "duplicate_text", "x")
			return errors.Join(errA, errB)
		})
	}))
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

// workerPids finds this program's pypool workers in /proc.
func workerPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if len(fields) > 1 && fields[1] == me && strings.Contains(string(cmdline), "pypool_runtime") {
			pid, _ := strconv.Atoi(e.Name())
			pids = append(pids, pid)
		}
	}
	return pids
}
