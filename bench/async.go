package main

import (
	"context"
	"sync"
	"time"

	"github.com/pypool/pypool"
)

// asyncCalls is the async scenario: Config.AsyncCalls (async workers that
// serve many calls at once) against one call per worker, in one run, with
// the module bench_async.py:
//
//   - 200 concurrent calls of `await asyncio.sleep(0.1)` on 2 workers, in
//     seconds per round of 200 (one call per worker: about 10 s, so that
//     mode makes one round only, -quick none);
//   - the trivial async call (bytes echoed by an async def) with one caller,
//     in µs per call, the two modes interleaved round by round, with the
//     Python side's CPU time per call.
func (b *bench) asyncCalls(ctx context.Context) {
	newPool := func(asyncCalls int) *pypool.Pool {
		return must(pypool.New(ctx, pypool.Config{Module: "bench_async", PythonPath: []string{b.dir}, Python: b.python,
			Size: 2, AsyncCalls: asyncCalls}))
	}
	on, off := newPool(200), newPool(0)
	defer on.Close(context.Background())
	defer off.Close(context.Background())

	burst := func(p *pypool.Pool) float64 {
		start := time.Now()
		var wg sync.WaitGroup
		for range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				must(p.Call(ctx, "sleep", 0.1))
			}()
		}
		wg.Wait()
		return time.Since(start).Seconds()
	}
	var xs, offXs []float64
	for i := range b.sizes.rounds {
		xs = append(xs, burst(on))
		if i == 0 && b.sizes.rounds >= 5 && b.sizes.latencyCalls > 1000 { // not with -quick: 10 s
			offXs = append(offXs, burst(off))
		}
	}
	b.add(figure("async", "pypool AsyncCalls 200, 2 workers", "200 concurrent asyncio.sleep(0.1)", "s", xs, nil))
	if len(offXs) > 0 {
		b.add(figure("async", "pypool one call per worker, 2 workers", "200 concurrent asyncio.sleep(0.1)", "s", offXs, nil))
	}

	calls := b.sizes.latencyCalls
	pids := func(p *pypool.Pool) []int {
		// Both workers: a sync call takes the one a caller would.
		var ps []int
		for range 2 {
			ps = append(ps, int(must(pypool.CallAs[int64](ctx, p, "pid"))))
		}
		return ps
	}
	onPids, offPids := pids(on), pids(off)
	var onLat, offLat, onCPU, offCPU []float64
	arg := []byte("testing")
	round := func(p *pypool.Pool, ps []int, lat, cpu *[]float64) {
		before := sampleCPU(ps)
		start := time.Now()
		for range calls {
			must(p.Call(ctx, "trivial", arg))
		}
		d := time.Since(start)
		after := sampleCPU(ps)
		*lat = append(*lat, micros(d)/float64(calls))
		*cpu = append(*cpu, micros(after.python-before.python)/float64(calls))
	}
	for range b.sizes.rounds {
		round(on, onPids, &onLat, &onCPU)
		round(off, offPids, &offLat, &offCPU)
	}
	b.add(figure("async", "pypool AsyncCalls 200", "trivial async call, one caller", "µs", onLat, offLat))
	b.add(figure("async", "pypool one call per worker", "trivial async call, one caller", "µs", offLat, nil))
	b.add(figure("async", "pypool AsyncCalls 200", "Python CPU per trivial async call", "µs", onCPU, offCPU))
	b.add(figure("async", "pypool one call per worker", "Python CPU per trivial async call", "µs", offCPU, nil))
}
