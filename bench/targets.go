package main

import (
	"fmt"
	"os"
	"text/tabwriter"
)

// target is one of issue 21's targets: a ratio of one figure of the bench
// to its reference measured in the same run, and the goal it must reach.
type target struct {
	name                        string
	scenario, contender, metric string
	// ratio picks the ratio out of a result: its ratio to the floor by
	// default; old picks the same ratio against the variant floor
	// (floor_readv.py), nil where there is none.
	ratio, old func(result) *spread
	goal       float64 // unpinned, and pinned unless pinnedGoal is set
	pinnedGoal float64
	atLeast    bool // a rate: the ratio must be at least goal; else a time: at most
}

func vsFloorOf(r result) *spread      { return r.VsFloor }
func vsFloorReadvOf(r result) *spread { return r.VsFloorReadv }

func goCPUOf(r result) *spread {
	if r.CPU == nil {
		return nil
	}
	return r.CPU.GoVsFloor
}

func pythonCPUOf(r result) *spread {
	if r.CPU == nil {
		return nil
	}
	return r.CPU.PythonVsFloor
}

func goCPUReadvOf(r result) *spread {
	if r.CPUVsFloorReadv == nil {
		return nil
	}
	return r.CPUVsFloorReadv.GoVsFloor
}

func pythonCPUReadvOf(r result) *spread {
	if r.CPUVsFloorReadv == nil {
		return nil
	}
	return r.CPUVsFloorReadv.PythonVsFloor
}

// targets are issue 21's targets, in its order.
var targets = []target{
	{name: "throughput, 2 workers / 8 callers", scenario: "throughput", contender: "pypool", metric: "2 workers",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 1.0, pinnedGoal: 0.9, atLeast: true},
	{name: "  its Go CPU per call", scenario: "throughput", contender: "pypool", metric: "2 workers",
		ratio: goCPUOf, old: goCPUReadvOf, goal: 1.15},
	{name: "  its Python CPU per call", scenario: "throughput", contender: "pypool", metric: "2 workers",
		ratio: pythonCPUOf, old: pythonCPUReadvOf, goal: 1.15},
	{name: "trivial call p50", scenario: "latency", contender: "pypool", metric: "p50",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 1.15},
	{name: "trivial call p99", scenario: "latency", contender: "pypool", metric: "p99",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 1.3},
	{name: "1 KiB bytes echo", scenario: "payload", contender: "pypool", metric: "1 KiB",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 0.95, atLeast: true},
	{name: "1 MiB through the pipes (shared memory off), Call", scenario: "payload", contender: "pypool pipes", metric: "1 MiB",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 0.95, atLeast: true},
	{name: "  the same with CallBytes into a reused buffer", scenario: "payload", contender: "pypool pipes CallBytes", metric: "1 MiB",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 0.95, atLeast: true},
	{name: "16 MiB through the pipes (shared memory off), Call", scenario: "payload", contender: "pypool pipes", metric: "16 MiB",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 0.95, atLeast: true},
	{name: "  the same with CallBytes into a reused buffer", scenario: "payload", contender: "pypool pipes CallBytes", metric: "16 MiB",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 0.95, atLeast: true},
	{name: "1 MiB through the shared memory", scenario: "payload", contender: "pypool", metric: "1 MiB",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 3, atLeast: true},
	{name: "16 MiB through the shared memory", scenario: "payload", contender: "pypool", metric: "16 MiB",
		ratio: vsFloorOf, old: vsFloorReadvOf, goal: 3, atLeast: true},
	{name: "New (Size 1) to first result vs python -c 'import m'", scenario: "new", contender: "pypool", metric: "fresh process",
		ratio: vsFloorOf, goal: 1.2},
	{name: "  the same with the fork server, vs without", scenario: "new", contender: "pypool forkserver", metric: "fresh, vs exec",
		ratio: vsFloorOf, goal: 1.0},
}

// goalFor is t's goal in a pinned or unpinned run.
func (t target) goalFor(pinned bool) float64 {
	if pinned && t.pinnedGoal != 0 {
		return t.pinnedGoal
	}
	return t.goal
}

// met says whether a ratio's median reaches the goal.
func (t target) met(r spread, pinned bool) bool {
	if t.atLeast {
		return r.Median >= t.goalFor(pinned)
	}
	return r.Median <= t.goalFor(pinned)
}

// minRounds is the fewest rounds behind a ratio for a verdict on a target.
const minRounds = 5

// verdict is one target's row: "met" or "MISSED" when the whole min–max
// range of the rounds' ratios is on one side of the goal, else why there
// is none (too few rounds, or the goal within the spread).
func (t target) verdict(r spread, pinned bool) string {
	goal := t.goalFor(pinned)
	switch {
	case r.Rounds < minRounds:
		return fmt.Sprintf("(%d rounds: no verdict)", r.Rounds)
	case r.Min <= goal && goal <= r.Max:
		return "undecided (goal within min–max)"
	case t.met(r, pinned):
		return "met"
	}
	return "MISSED"
}

// printTargets prints every target for which the results hold a figure,
// by interpreter and pinning, with its ratio's median and min–max over the
// rounds, the verdict (met or MISSED by the whole min–max range, else
// undecided), a WARNING where the spread is wider than the effect,
// and the same ratio against the variant floor (floor_readv.py).
func printTargets(results []result) {
	type row struct {
		t target
		x result
		r spread
	}
	var rows []row
	for _, t := range targets {
		for _, x := range results {
			if x.Scenario == t.scenario && x.Contender == t.contender && x.Metric == t.metric {
				if r := t.ratio(x); r != nil {
					rows = append(rows, row{t, x, *r})
				}
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Println("\nissue 21's targets: each a ratio to the floor (floor.py) in the same run, the median of the per-round ratios (min–max);")
	fmt.Println("vs floor readv: the same ratio against the bench's floor before issue 21 (floor_readv.py), in the same rounds")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "target\tpython\tpinned\tgoal\tvs floor\tmin–max\tverdict\tspread\tvs floor readv\t")
	for _, rw := range rows {
		cmp := "≤"
		if rw.t.atLeast {
			cmp = "≥"
		}
		python := rw.x.Python
		if python == "" {
			python = "-"
		}
		unsureText := ""
		if unsure(rw.r) {
			unsureText = "WARNING: wider than the effect"
		}
		old := "-"
		if rw.t.old != nil {
			if o := rw.t.old(rw.x); o != nil {
				old = fmt.Sprintf("%.2f× (%.2f–%.2f)", o.Median, o.Min, o.Max)
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%v\t%s %.2f×\t%.2f×\t%.2f–%.2f\t%s\t%s\t%s\t\n", rw.t.name, python, rw.x.Pinned,
			cmp, rw.t.goalFor(rw.x.Pinned), rw.r.Median, rw.r.Min, rw.r.Max, rw.t.verdict(rw.r, rw.x.Pinned), unsureText, old)
	}
	w.Flush()
}
