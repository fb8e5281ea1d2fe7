package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pypool/pypool"
)

// sizes of the run. Every scenario runs its contenders interleaved, one
// after the other within a round, for rounds rounds (startRounds for the
// scenarios that start processes), so that a change of the machine's load
// shows as spread instead of as a difference between contenders.
type sizes struct {
	rounds       int           // rounds of latency, throughput and payload
	window       time.Duration // one throughput measurement
	latencyCalls int           // sequential calls per round
	execCalls    int           // the same for python per call
	startRounds  int           // rounds of start, new and recovery
	payloadCalls map[int]int   // calls per round, by payload size
	sweep        sweepPlan     // rounds and calls of the sweep
	arrayCalls   int           // round trips per round of the array scenario
}

func runSizes(quick bool, n int) sizes {
	if quick {
		return sizes{rounds: 5, window: 100 * time.Millisecond, latencyCalls: 300, execCalls: 3, startRounds: 5,
			payloadCalls: map[int]int{1 << 10: 200, 1 << 20: 10, 16 << 20: 2},
			sweep:        sweepPlan{rounds: 5, divisor: 10, largest: 16 << 20, warmCalls: 0}, arrayCalls: 1}
	}
	return sizes{rounds: 5, window: time.Second, latencyCalls: n, execCalls: 20, startRounds: 10,
		payloadCalls: map[int]int{1 << 10: 1000, 1 << 20: 40, 16 << 20: 4},
		sweep:        sweepPlan{rounds: 7, divisor: 1, largest: 64 << 20, warmCalls: 4}, arrayCalls: 4}
}

type bench struct {
	python    string // the real interpreter behind given, which most contenders run
	given     string // the -python flag as given, for the new scenario
	dir       string
	pinned    bool
	sizes     sizes
	floorPipe int // the floor's pipe size (-floor-pipe), 0 for Linux's default
	results   []result
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

// trivialArg is the argument of the trivial call, duplicate_text.
var trivialArg = []byte("testing")

// entrant is one contender of a scenario and what it measured, round by
// round.
type entrant struct {
	name     string
	cs       []contender   // several floors share the callers in throughput
	calls    int           // calls per round, where the scenario counts calls
	atLeast  time.Duration // and for at least this long
	xs, more []float64     // the scenario's figures, one per round
	cpu      cpuRounds
}

func (e *entrant) close() {
	for _, c := range e.cs {
		c.close()
	}
}

// metered runs fn, which makes calls and returns how many, and records the
// CPU time per call on both sides in e.cpu when e's Python processes are
// known.
func (e *entrant) metered(ctx context.Context, fn func() int) {
	var pids []int
	for _, c := range e.cs {
		if m, ok := c.(measured); ok {
			pids = append(pids, m.pythonPids(ctx)...)
		}
	}
	if len(pids) == 0 {
		fn()
		return
	}
	before := sampleCPU(pids)
	calls := fn()
	e.cpu.add(before, sampleCPU(pids), calls)
}

// latency measures sequential trivial calls (duplicate_text of 7 bytes), p50
// and p99 of each round, and the CPU time per call, of pypool (one worker),
// a Python HTTP service and python3 started per call, against the floor.
// A round makes at least -n calls and, but for python per call, lasts at
// least one throughput window, long enough to read the Python side's CPU
// time in clock ticks.
func (b *bench) latency(ctx context.Context) {
	n, w := b.sizes.latencyCalls, b.sizes.window
	es := []*entrant{
		{name: floorName, cs: []contender{must(startFloor(b.python, b.floorPipe))}, calls: n, atLeast: w},
		{name: floorReadvName, cs: []contender{must(startFloorReadv(b.python, b.floorPipe))}, calls: n, atLeast: w},
		{name: "pypool", cs: []contender{must(startPool(ctx, b.python, b.dir, 1, 0))}, calls: n, atLeast: w},
		{name: "http", cs: []contender{must(startHTTP(b.python, b.dir, 1))}, calls: n, atLeast: w},
		{name: "exec-per-call", cs: []contender{execPerCall{b.python, b.dir}}, calls: b.sizes.execCalls},
	}
	for _, e := range es {
		defer e.close()
		for range min(e.calls/10, 200) { // warm-up
			must(e.cs[0].call(ctx, "duplicate_text", trivialArg))
		}
	}
	for range b.sizes.rounds {
		for _, e := range es {
			b.latencyRound(ctx, e)
		}
	}
	floor, readv := es[0], es[1]
	for _, e := range es {
		p50 := figure("latency", e.name, "p50", "µs", e.xs, floor.xs)
		if e.cpu.goSide != nil {
			p50.CPU = e.cpu.cost(&floor.cpu)
		}
		p99 := figure("latency", e.name, "p99", "µs", e.more, floor.more)
		if e != floor && e != readv {
			p50.against(readv.xs, e.xs, &e.cpu, &readv.cpu)
			p99.against(readv.more, e.more, nil, nil)
		}
		b.add(p50)
		b.add(p99)
	}
}

// latencyRound times e.calls sequential calls, or more for e.atLeast, and
// records their p50 and p99.
func (b *bench) latencyRound(ctx context.Context, e *entrant) {
	times := make([]time.Duration, 0, e.calls)
	e.metered(ctx, func() int {
		for begin := time.Now(); len(times) < e.calls || time.Since(begin) < e.atLeast; {
			start := time.Now()
			must(e.cs[0].call(ctx, "duplicate_text", trivialArg))
			times = append(times, time.Since(start))
		}
		return len(times)
	})
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	e.xs = append(e.xs, micros(times[len(times)/2]))
	e.more = append(e.more, micros(times[len(times)*99/100]))
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// throughput measures calls/s of trivial calls from 4 callers per worker,
// each round a window of sizes.window, with 1, 2 and (when more) NumCPU
// workers: pypool with that many workers and the HTTP service (one
// threading server process, as many connections as callers) against as many
// floors, the callers spread over them. It also reports the CPU time per
// call.
func (b *bench) throughput(ctx context.Context) {
	counts := []int{1, 2}
	if n := numCPU(); n > 2 {
		counts = append(counts, n)
	}
	for _, w := range counts {
		b.throughputWith(ctx, w)
	}
}

func (b *bench) throughputWith(ctx context.Context, w int) {
	floors, readvs := make([]contender, w), make([]contender, w)
	for i := range floors {
		floors[i] = must(startFloor(b.python, b.floorPipe))
		readvs[i] = must(startFloorReadv(b.python, b.floorPipe))
	}
	es := []*entrant{
		{name: floorName, cs: floors},
		{name: floorReadvName, cs: readvs},
		{name: "pypool", cs: []contender{must(startPool(ctx, b.python, b.dir, w, 0))}},
		{name: "http", cs: []contender{must(startHTTP(b.python, b.dir, 4*w))}},
	}
	for _, e := range es {
		defer e.close()
		for _, c := range e.cs { // warm-up: no start-up cost inside the timing
			must(c.call(ctx, "duplicate_text", trivialArg))
		}
	}
	for range b.sizes.rounds {
		for _, e := range es {
			e.xs = append(e.xs, b.window(ctx, e, 4*w))
		}
	}
	for i, e := range es {
		r := figure("throughput", e.name, fmt.Sprintf("%d workers", w), "calls/s", e.xs, es[0].xs)
		r.CPU = e.cpu.cost(&es[0].cpu)
		if i > 1 {
			r.against(es[1].xs, e.xs, &e.cpu, &es[1].cpu)
		}
		b.add(r)
	}
}

// window runs trivial calls from callers goroutines spread over e's
// contenders for sizes.window and returns calls per second.
func (b *bench) window(ctx context.Context, e *entrant, callers int) float64 {
	var rate float64
	e.metered(ctx, func() int {
		var stop atomic.Bool
		var total atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		timer := time.AfterFunc(b.sizes.window, func() { stop.Store(true) })
		defer timer.Stop()
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, n := e.cs[i%len(e.cs)], int64(0)
				for ; !stop.Load(); n++ {
					must(c.call(ctx, "duplicate_text", trivialArg))
				}
				total.Add(n)
			}()
		}
		wg.Wait()
		rate = float64(total.Load()) / time.Since(start).Seconds()
		return int(total.Load())
	})
	return rate
}

// payload measures the echo of 1 KiB, 1 MiB and 16 MiB of bytes through one
// process, pypool against the floor: MB/s as the payload's size over the
// median round trip of each round. "pypool pipes" is pypool with the
// shared memory off, every payload through the pipes, as the floor's;
// "pypool pipes CallBytes" the same with CallBytes into one reused buffer,
// as the floor reads its results: the floor's own conditions. That one
// runs in rounds of its own, beside floors of its own, once the others'
// pools are closed: beside them, its 16 MiB buffer, kept between calls,
// made the rounds of the contenders that return a new 16 MiB slice a call
// (pypool, pypool pipes) 3 to 6 times slower, and bimodal (three runs
// each with and without it, 2026-12-06), in this process only.
func (b *bench) payload(ctx context.Context) {
	b.payloadRounds(ctx, []*entrant{
		{name: floorName, cs: []contender{must(startFloor(b.python, b.floorPipe))}},
		{name: floorReadvName, cs: []contender{must(startFloorReadv(b.python, b.floorPipe))}},
		{name: "pypool", cs: []contender{must(startPool(ctx, b.python, b.dir, 1, 0))}},
		{name: "pypool pipes", cs: []contender{must(startPoolPipes(ctx, b.python, b.dir))}},
		{name: "pypool CallBytes", cs: []contender{must(startPooledBuffer(ctx, b.python, b.dir, pypool.DefaultMaxMessageSize))}},
	}, true)
	b.payloadRounds(ctx, []*entrant{
		{name: floorName, cs: []contender{must(startFloor(b.python, b.floorPipe))}},
		{name: floorReadvName, cs: []contender{must(startFloorReadv(b.python, b.floorPipe))}},
		{name: "pypool pipes CallBytes", cs: []contender{must(startPooledBufferPipes(ctx, b.python, b.dir))}},
	}, false)
}

// payloadRounds runs the payload scenario's rounds of es, whose first two
// are the floor and its readv variant, and adds their figures (the floors'
// only if withFloors), each against the floors of its own rounds.
func (b *bench) payloadRounds(ctx context.Context, es []*entrant, withFloors bool) {
	for _, e := range es {
		defer e.close()
	}
	for _, size := range []int{1 << 10, 1 << 20, 16 << 20} {
		data := make([]byte, size)
		for _, e := range es {
			e.xs = nil
			echo(ctx, e, data) // warm-up
		}
		for range b.sizes.rounds {
			for _, e := range es {
				e.xs = append(e.xs, payloadRound(ctx, e, data, b.sizes.payloadCalls[size]))
			}
		}
		for i, e := range es {
			if i <= 1 && !withFloors {
				continue
			}
			r := figure("payload", e.name, sizeName(size), "MB/s", e.xs, es[0].xs)
			if i > 1 {
				r.against(es[1].xs, e.xs, nil, nil)
			}
			b.add(r)
		}
	}
}

// payloadRound echoes data calls times and returns MB/s over the median
// round trip.
func payloadRound(ctx context.Context, e *entrant, data []byte, calls int) float64 {
	times := make([]time.Duration, calls)
	for i := range times {
		start := time.Now()
		echo(ctx, e, data)
		times[i] = time.Since(start)
	}
	return float64(len(data)) / median(times).Seconds() / 1e6
}

func echo(ctx context.Context, e *entrant, data []byte) {
	if n := must(e.cs[0].call(ctx, "echo", data)); n != len(data) {
		must(0, fmt.Errorf("%s echoed %d bytes of %d", e.name, n, len(data)))
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + " MiB"
	}
	return strconv.Itoa(n>>10) + " KiB"
}

// importScript is what python -c runs to import the benchmark's module.
func (b *bench) importScript() string {
	return fmt.Sprintf("import sys;sys.path.insert(0,%q);import bench_module", b.dir)
}

// timeImport runs python -E -c 'import bench_module' and returns its wall time.
func (b *bench) timeImport(python string) time.Duration {
	t := time.Now()
	must(0, exec.Command(python, "-E", "-c", b.importScript()).Run())
	return time.Since(t)
}

// start measures the time from a call that needs a new worker (an overflow
// worker, started while the pool's one worker is busy) until it returns,
// against the real interpreter (as pypool runs it) importing the module.
func (b *bench) start(ctx context.Context) {
	p := must(startPool(ctx, b.python, b.dir, 1, 1))
	defer p.close()
	var bare, pool []float64
	for range b.sizes.startRounds {
		bare = append(bare, millis(b.timeImport(b.python)))
		must(0, p.p.Transaction(ctx, func(*pypool.Worker) error {
			t := time.Now()
			_, err := p.call(ctx, "duplicate_text", trivialArg) // starts the overflow worker
			pool = append(pool, millis(time.Since(t)))
			return err
		}))
	}
	b.add(figure("start", "python -c import", "median", "ms", bare, bare))
	b.add(figure("start", "pypool", "median", "ms", pool, bare))
}

// newPool ("New to first result") measures the wall time from calling
// pypool.New with Size 1 until the first Call returns, against the command
// the user gave with -python (through the same PATH lookup: a shim such as
// pyenv's included) importing the module. pypool.New runs in a fresh
// process of this program each round, as at a program's start, with each
// start method (exec, then the fork server), and again in this process
// with exec, where the pool may reuse what an earlier New learned.
func (b *bench) newPool(ctx context.Context) {
	var bare, fresh, fork, again []float64
	b.timeImport(b.given) // warm-up: page cache, .pyc files
	newInChild(b.given, pypool.StartExec)
	newInChild(b.given, pypool.StartForkServer)
	timeNew(ctx, b.given, b.dir, pypool.StartExec)
	for range b.sizes.startRounds {
		bare = append(bare, millis(b.timeImport(b.given)))
		fresh = append(fresh, millis(newInChild(b.given, pypool.StartExec)))
		fork = append(fork, millis(newInChild(b.given, pypool.StartForkServer)))
		again = append(again, millis(timeNew(ctx, b.given, b.dir, pypool.StartExec)))
	}
	b.add(figure("new", "python -c import", "median", "ms", bare, bare))
	b.add(figure("new", "pypool", "fresh process", "ms", fresh, bare))
	b.add(figure("new", "pypool", "same process", "ms", again, bare))
	b.add(figure("new", "pypool forkserver", "fresh process", "ms", fork, bare))
	b.add(figure("new", "pypool forkserver", "fresh, vs exec", "ms", fork, fresh))
}

// timeNew returns the time from pypool.New (Size 1, started with method)
// until its first Call returns. Closing the pool is not timed.
func timeNew(ctx context.Context, python, dir string, method pypool.StartMethod) time.Duration {
	t := time.Now()
	p := must(pypool.New(ctx, pypool.Config{Module: "bench_module", PythonPath: []string{dir}, Python: python, Size: 1, StartMethod: method}))
	_, err := p.Call(ctx, "duplicate_text", "x")
	d := time.Since(t)
	must(0, err)
	_ = p.Close(ctx)
	return d
}

// newInChild runs timeNew in a new process of this program (-new-once)
// and returns the time it reports.
func newInChild(python string, method pypool.StartMethod) time.Duration {
	cmd := exec.Command(os.Args[0], "-new-once", "-new-start", method.String(), "-python", python)
	cmd.Stderr = os.Stderr
	ns := must(strconv.ParseInt(strings.TrimSpace(string(must(cmd.Output()))), 10, 64))
	return time.Duration(ns)
}

// recovery measures the time from a SIGKILL of one worker of two until the
// pool is full again. Both workers serve a call first: a worker that dies
// before serving any call counts towards the crash-loop backoff, which is
// not what this measures.
func (b *bench) recovery(ctx context.Context) {
	p := must(startPool(ctx, b.python, b.dir, 2, 0))
	defer p.close()
	var times []float64
	for range b.sizes.startRounds {
		serveBoth(ctx, p)
		restarts := p.p.Stats().Restarts
		pids := p.pythonPids(ctx)
		t := time.Now()
		must(0, syscall.Kill(pids[0], syscall.SIGKILL))
		for s := p.p.Stats(); s.Restarts == restarts || s.Workers < 2; s = p.p.Stats() {
			time.Sleep(50 * time.Microsecond)
		}
		times = append(times, millis(time.Since(t)))
	}
	b.add(figure("recovery", "pypool", "median", "ms", times, nil))
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
