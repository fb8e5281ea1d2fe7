package main

import (
	"context"
	"runtime"
)

// sweepStep is one payload size of the sweep and the calls a round of the
// full run makes with it.
type sweepStep struct{ size, calls int }

// sweepSteps are the sweep's payload sizes, 1 KiB to 64 MiB in powers of
// 4, smallest first. Small payloads get many calls, so that a round's
// median round trip rests on enough samples; large ones fewer, so that the
// sweep stays bounded in time: a 64 MiB echo takes about half a second on
// either contender, and 16 MiB keeps 8 because pypool's round trips there
// vary several-fold from call to call.
var sweepSteps = []sweepStep{
	{1 << 10, 1000}, {4 << 10, 1000}, {16 << 10, 1000}, {64 << 10, 500}, {256 << 10, 250},
	{1 << 20, 100}, {4 << 20, 30}, {16 << 20, 8}, {64 << 20, 1},
}

// sweepMaxMessage is the message limit of the sweep's pool: the largest
// payload and room for the call's envelope around it (frame header,
// msgpack headers, the function's name), which the default limit of
// exactly 64 MiB lacks. The floor has no limit but its 4-byte length.
const sweepMaxMessage = 64<<20 + 64<<10

// sweepPlan sizes a run's sweep: its rounds, a divisor of sweepSteps'
// calls (at least one call remains), and the largest payload it sweeps
// (-quick stops at 16 MiB: a 64 MiB echo takes a second while it is cold).
//
// Before its rounds, each size is echoed warmCalls times, or a tenth of a
// round if more: on both sides of the pipes the first few round trips of a
// new, larger size are several times slower than the next ones (fresh
// pages, allocators adapting their thresholds), for the floor as much as
// for pypool.
type sweepPlan struct {
	rounds    int
	divisor   int
	largest   int
	warmCalls int
}

// calls is the number of calls a round makes in step s.
func (p sweepPlan) calls(s sweepStep) int {
	return max(s.calls/p.divisor, 1)
}

// warmUp is the number of calls that precede the rounds of step s.
func (p sweepPlan) warmUp(s sweepStep) int {
	return max(p.calls(s)/10, p.warmCalls)
}

// sweep measures MB/s (the payload's size over the median round trip of a
// round) of a bytes echo through one process for every size of
// sweepSteps, pypool against the floor. The same two contenders serve
// every size, smallest first, as a long-running program's worker would.
func (b *bench) sweep(ctx context.Context) {
	es := []*entrant{
		{name: "floor", cs: []contender{must(startFloor(b.python, b.floorPipe))}},
		{name: "pypool", cs: []contender{must(startPoolLimit(ctx, b.python, b.dir, 1, 0, sweepMaxMessage))}},
		{name: "pypool CallBytes", cs: []contender{must(startPooledBuffer(ctx, b.python, b.dir, sweepMaxMessage))}},
	}
	for _, e := range es {
		defer e.close()
	}
	for _, step := range sweepSteps {
		if step.size <= b.sizes.sweep.largest {
			b.sweepStep(ctx, es, step)
		}
	}
}

// sweepStep measures one payload size: a warm-up, then the rounds, the
// contenders taking turns. Each round starts after a garbage collection,
// so that no contender pays for the garbage another one left.
func (b *bench) sweepStep(ctx context.Context, es []*entrant, step sweepStep) {
	plan := b.sizes.sweep
	data := make([]byte, step.size)
	for _, e := range es {
		e.xs = nil
		for range plan.warmUp(step) {
			echo(ctx, e, data)
		}
	}
	for round := range plan.rounds {
		for _, e := range inTurn(es, round) {
			runtime.GC()
			e.xs = append(e.xs, payloadRound(ctx, e, data, plan.calls(step)))
		}
	}
	for _, e := range es {
		r := figure("sweep", e.name, sizeName(step.size), "MB/s", e.xs, es[0].xs)
		r.Bytes = step.size
		b.add(r)
	}
}

// inTurn returns es in order in even rounds and reversed in odd ones, so
// that no contender always runs first, right after a size's warm-up or
// another contender's round.
func inTurn(es []*entrant, round int) []*entrant {
	if round%2 == 0 {
		return es
	}
	r := make([]*entrant, len(es))
	for i, e := range es {
		r[len(es)-1-i] = e
	}
	return r
}
