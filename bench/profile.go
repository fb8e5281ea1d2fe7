package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
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
func profileCalls(ctx context.Context, python, contenderName, payload string, calls int, cpuProfile, memProfile string) {
	var c contender
	switch contenderName {
	case floorName:
		c = must(startFloor(python, 1<<20))
	case "floor-fresh":
		f := must(startFloor(python, 1<<20))
		f.fresh = true
		c = f
	case "floor-readv", floorReadvName:
		c = must(startFloorReadv(python, 1<<20))
	case "pypool":
		c = must(startPool(ctx, python, sourceDir(), 1, 0))
	case "pypool-pipes", "pypool pipes":
		c = must(startPoolPipes(ctx, python, sourceDir()))
	case "pypool-pipes-callbytes":
		c = must(startPooledBufferPipes(ctx, python, sourceDir()))
	default:
		must(0, fmt.Errorf("-profile: unknown contender %q (floor, floor-fresh, floor-readv, pypool, pypool-pipes, pypool-pipes-callbytes)", contenderName))
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
	for range calls {
		must(c.call(ctx, fn, arg))
	}
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
	fmt.Printf("%s %s, %d calls: %.2f allocs/call, %.0f B/call; Go CPU %.1f µs/call, Python CPU %.0f µs/call (10 ms ticks), wall %.1f µs/call; minor page faults/call Go %.1f, Python %.1f (load average %s)\n",
		contenderName, payload, calls, float64(after.Mallocs-before.Mallocs)/n, float64(after.TotalAlloc-before.TotalAlloc)/n,
		micros(cpu)/n, micros(cpu1.python-cpu0.python)/n, micros(wall)/n, float64(faults.goSide)/n, float64(faults.python)/n, loadAvg())
}
