package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"time"
)

// profileCalls makes calls sequential calls of one contender (floor, floor
// fresh (a new slice for each result, as Call returns), floor readv,
// pypool, pypool pipes, pypool pipes with CallBytes into a reused buffer)
// with the trivial call (payload "trivial") or a bytes echo of payload
// "1KiB", "1MiB" or "16MiB", after a warm-up, and prints what one call
// costs the Go side in allocations and bytes (runtime.MemStats, exact),
// both sides in CPU time and minor page faults, and the wall time (with
// the conditions of the run). With
// cpuProfile or memProfile it writes Go's profiles of the calls alone.
// Run it under strace -f -c to count the system calls of both sides per
// call, or with a Python worker profiled (README.md, "The per-call budget").
//
// With workers > 0 the calls are made as the throughput scenario makes
// them: 4 callers a worker, each making its share of the calls, through
// one pool of that many workers (pypool) or as many floors (floor,
// floor-readv), the callers spread over them.
func profileCalls(ctx context.Context, python, contenderName, payload string, calls, workers int, cpuProfile, memProfile, traceFile string) {
	var c contender
	callers := 1
	if workers > 0 {
		callers = 4 * workers
	}
	switch contenderName {
	case floorName, "floor-readv", floorReadvName:
		start := startFloor
		if contenderName != floorName {
			start = startFloorReadv
		}
		fs := floors{}
		for range max(workers, 1) {
			fs = append(fs, must(start(python, 1<<20)))
		}
		c = fs
	case "floor-fresh":
		f := must(startFloor(python, 1<<20))
		f.fresh = true
		c = f
	case "pypool":
		c = must(startPool(ctx, python, sourceDir(), max(workers, 1), 0))
	case "pypool-pipes", "pypool pipes":
		c = must(startPoolPipes(ctx, python, sourceDir()))
	case "pypool-pipes-callbytes":
		c = must(startPooledBufferPipes(ctx, python, sourceDir()))
	case "pypool-callbytes":
		c = must(startPooledBuffer(ctx, python, sourceDir(), 64<<20))
	default:
		must(0, fmt.Errorf("-profile: unknown contender %q (floor, floor-fresh, floor-readv, pypool, pypool-callbytes, pypool-pipes, pypool-pipes-callbytes)", contenderName))
	}
	defer c.close()
	fn, arg := "duplicate_text", trivialArg
	switch payload {
	case "trivial":
	case "1KiB":
		fn, arg = "echo", make([]byte, 1<<10)
	case "1MiB":
		fn, arg = "echo", make([]byte, 1<<20)
	case "16MiB":
		fn, arg = "echo", make([]byte, 16<<20)
	default:
		must(0, fmt.Errorf("-profile-payload: %q is not trivial, 1KiB, 1MiB or 16MiB", payload))
	}
	warmUp := 1000
	if len(arg) >= 1<<20 {
		warmUp = 20
	}
	for range warmUp {
		must(c.call(ctx, fn, arg))
	}
	if memProfile != "" {
		runtime.MemProfileRate = 1
	}
	if cpuProfile != "" {
		f := must(os.Create(cpuProfile))
		must(0, pprof.StartCPUProfile(f))
		defer f.Close()
	}
	if traceFile != "" {
		f := must(os.Create(traceFile))
		must(0, trace.Start(f))
		defer f.Close()
		defer trace.Stop()
	}
	var pids []int
	if m, ok := c.(measured); ok {
		pids = m.pythonPids(ctx)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	faults0 := pageFaults(pids)
	cpu0 := sampleCPU(pids)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range callers {
		ci := c
		if fs, ok := c.(floors); ok {
			ci = fs.at(i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls/callers + btoi(i < calls%callers) {
				must(ci.call(ctx, fn, arg))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	cpu1 := sampleCPU(pids)
	faults := pageFaults(pids).minus(faults0)
	cpu := cpu1.goSide - cpu0.goSide
	runtime.ReadMemStats(&after)
	if cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if memProfile != "" {
		f := must(os.Create(memProfile))
		must(0, pprof.Lookup("allocs").WriteTo(f, 0))
		must(0, f.Close())
	}
	n := float64(calls)
	fmt.Printf("%s %s, %d calls from %d callers: %.2f allocs/call, %.0f B/call; Go CPU %.1f µs/call, Python CPU %.*f µs/call%s, wall %.1f µs/call; minor page faults/call Go %.1f, Python %.1f (load average %s)\n",
		contenderName, payload, calls, callers, float64(after.Mallocs-before.Mallocs)/n, float64(after.TotalAlloc-before.TotalAlloc)/n,
		micros(cpu)/n, pythonDigits(cpu1), micros(cpu1.python-cpu0.python)/n, pythonUnit(cpu1), micros(wall)/n, float64(faults.goSide)/n, float64(faults.python)/n, loadAvg())
}

// pythonDigits and pythonUnit say how precise a sample's Python times
// are: the scheduler's nanoseconds, or clock ticks of 10 ms.
func pythonDigits(s cpuSample) int {
	if s.precise {
		return 2
	}
	return 0
}

func pythonUnit(s cpuSample) string {
	if s.precise {
		return ""
	}
	return " (10 ms ticks)"
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// floors are floor processes, one a worker: the callers of a parallel
// -profile spread over them as the throughput scenario spreads its
// callers, caller i on floor i % len(fs) (at).
type floors []*floor

// at is the floor of caller i.
func (fs floors) at(i int) contender { return fs[i%len(fs)] }

// call is the first floor's call (the sequential -profile's).
func (fs floors) call(ctx context.Context, fn string, arg []byte) (int, error) {
	return fs[0].call(ctx, fn, arg)
}

func (fs floors) pythonPids(context.Context) []int {
	var pids []int
	for _, f := range fs {
		pids = append(pids, f.cmd.Process.Pid)
	}
	return pids
}

func (fs floors) close() {
	for _, f := range fs {
		f.close()
	}
}
