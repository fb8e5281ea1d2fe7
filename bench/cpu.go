package main

import (
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/pypool/pypool/internal/osproc"
)

// cpuCost is the CPU time per call on each side of the pipes, in µs, over
// the rounds, and its per-round ratios to the floor's.
type cpuCost struct {
	Go     spread `json:"go_us_per_call"`
	Python spread `json:"python_us_per_call"`
	// PythonTicks is the fewest clock ticks (10 ms) the Python side used in
	// a round: below minTicks, its figures are too coarse for a ratio.
	PythonTicks   int     `json:"python_ticks_min"`
	GoVsFloor     *spread `json:"go_vs_floor,omitempty"`
	PythonVsFloor *spread `json:"python_vs_floor,omitempty"`
}

// userHZ is the unit of /proc/<pid>/stat's utime and stime: USER_HZ, which
// the kernel fixes at 100 for user space on every architecture Go runs on.
// A Python side busy for 1 s therefore reads to about 1%.
const userHZ = 100

// minTicks is the fewest ticks a round's Python side must use for its
// ratio to the floor to be computed, and wellTicks the fewest for its
// figure not to be flagged as coarse.
const minTicks, wellTicks = 10, 50

// cpuSample is the CPU time used so far by this process (every thread: the
// callers, the runtime, the garbage collector) and by some Python processes.
type cpuSample struct{ goSide, python time.Duration }

func sampleCPU(pythonPids []int) cpuSample {
	var ru syscall.Rusage
	must(0, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	s := cpuSample{goSide: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	for _, pid := range pythonPids {
		s.python += must(processCPU(pid))
	}
	return s
}

// faultCount is the minor page faults (memory touched for the first time,
// or given back to the kernel and touched again) of this process and of
// some Python processes, so far.
type faultCount struct{ goSide, python int64 }

// pageFaults counts the minor page faults of this process and of the
// Python processes pythonPids so far (/proc/<pid>/stat's minflt).
func pageFaults(pythonPids []int) faultCount {
	var ru syscall.Rusage
	must(0, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	f := faultCount{goSide: ru.Minflt}
	for _, pid := range pythonPids {
		if fields, err := osproc.StatFields(pid); err == nil && len(fields) > 7 {
			n, _ := strconv.ParseInt(fields[7], 10, 64) // minflt, field 10 of proc(5)
			f.python += n
		}
	}
	return f
}

// minus is f - g, side by side.
func (f faultCount) minus(g faultCount) faultCount {
	return faultCount{f.goSide - g.goSide, f.python - g.python}
}

// processCPU is utime+stime of one process from /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	fields, err := osproc.StatFields(pid)
	if err != nil {
		return 0, err
	}
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// cpuRounds collects the CPU time per call of one contender, round by round.
type cpuRounds struct {
	goSide, python []float64
	ticks          int // the fewest Python ticks in a round
}

// add records one round of calls between two samples.
func (c *cpuRounds) add(before, after cpuSample, calls int) {
	perCall := func(d time.Duration) float64 { return micros(d) / float64(max(calls, 1)) }
	c.goSide = append(c.goSide, perCall(after.goSide-before.goSide))
	c.python = append(c.python, perCall(after.python-before.python))
	ticks := int((after.python - before.python) * userHZ / time.Second)
	if len(c.python) == 1 || ticks < c.ticks {
		c.ticks = ticks
	}
}

// cost summarises the rounds, with ratios to the floor's unless floor is nil.
func (c *cpuRounds) cost(floor *cpuRounds) *cpuCost {
	k := &cpuCost{Go: summarize(c.goSide), Python: summarize(c.python), PythonTicks: c.ticks}
	if floor != nil {
		k.GoVsFloor = vsFloor(c.goSide, floor.goSide)
		if min(c.ticks, floor.ticks) >= minTicks {
			k.PythonVsFloor = vsFloor(c.python, floor.python)
		}
	}
	return k
}
