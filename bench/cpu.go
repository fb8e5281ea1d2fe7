package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pypool/pypool/internal/osproc"
)

// cpuCost is the CPU time per call on each side of the pipes, in µs, over
// the rounds, and its per-round ratios to the floor's.
type cpuCost struct {
	Go     spread `json:"go_us_per_call"`
	Python spread `json:"python_us_per_call"`
	// PythonPrecise: the Python side's times are the scheduler's own, in
	// nanoseconds (/proc/<pid>/task/*/schedstat). Otherwise they are clock
	// ticks of 10 ms (/proc/<pid>/stat), and PythonTicks is the fewest
	// ticks the Python side used in a round: below minTicks, its figures
	// are too coarse for a ratio.
	PythonPrecise bool    `json:"python_precise"`
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
// callers, the runtime, the garbage collector) and by some Python
// processes; precise: every Python process's time is the scheduler's own
// (processCPU).
type cpuSample struct {
	goSide, python time.Duration
	precise        bool
}

func sampleCPU(pythonPids []int) cpuSample {
	var ru syscall.Rusage
	must(0, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	s := cpuSample{goSide: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), precise: true}
	for _, pid := range pythonPids {
		d, precise, err := processCPU(pid)
		must(0, err)
		s.python += d
		s.precise = s.precise && precise
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

// processCPU is the CPU time one process has used: its threads' run times
// from /proc/<pid>/task/*/schedstat, in nanoseconds (precise), where the
// kernel keeps them (CONFIG_SCHED_INFO), else utime+stime from
// /proc/<pid>/stat, in clock ticks of 10 ms. A thread that ended is not in
// the first sum: the bench's Python processes run their calls on their
// main thread, and start no thread that ends.
func processCPU(pid int) (d time.Duration, precise bool, err error) {
	if d, err := scheduledTime(pid); err == nil {
		return d, true, nil
	}
	d, err = tickTime(pid)
	return d, false, err
}

// scheduledTime sums the first field of each thread's schedstat: the time
// it ran, in nanoseconds.
func scheduledTime(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, task.Name()))
		if errors.Is(err, fs.ErrNotExist) && len(tasks) > 1 {
			continue // a thread that ended since the listing
		}
		if err != nil {
			return 0, err
		}
		fields := strings.Fields(string(b))
		if len(fields) == 0 {
			return 0, fmt.Errorf("/proc/%d/task/%s/schedstat is empty", pid, task.Name())
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/task/%s/schedstat: %w", pid, task.Name(), err)
		}
		sum += ns
	}
	return time.Duration(sum), nil
}

// tickTime is utime+stime of one process from /proc/<pid>/stat.
func tickTime(pid int) (time.Duration, error) {
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
	ticks          int  // the fewest Python ticks in a round
	precise        bool // every round's Python times were precise (cpuSample)
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
	precise := before.precise && after.precise
	c.precise = precise && (len(c.python) == 1 || c.precise)
}

// cost summarises the rounds, with ratios to the floor's unless floor is nil.
func (c *cpuRounds) cost(floor *cpuRounds) *cpuCost {
	k := &cpuCost{Go: summarize(c.goSide), Python: summarize(c.python), PythonPrecise: c.precise, PythonTicks: c.ticks}
	if floor != nil {
		k.GoVsFloor = vsFloor(c.goSide, floor.goSide)
		if c.precise && floor.precise || min(c.ticks, floor.ticks) >= minTicks {
			k.PythonVsFloor = vsFloor(c.python, floor.python)
		}
	}
	return k
}
