// Command bench measures pypool against the floor (a Go program and the
// simplest Python loop echoing length-prefixed bytes over pipes, floor.py)
// and the alternatives a Go team would use instead (python3 per call, a
// Python HTTP service), side by side in one run, unpinned and pinned to one
// CPU, with each interpreter of -python (by default python3 and Debian's
// /usr/bin/python3, which has the msgpack C extension).
//
//	go run ./bench                                     # the full run, several minutes
//	go run ./bench -quick                              # every scenario, small counts (CI)
//	go run ./bench -json                               # machine-readable
//	go run ./bench -scenario sweep -plot sweep.svg     # MB/s by payload size, and its plot
//
// Each scenario runs its contenders interleaved, round by round, and prints
// every figure's median and its min–max over the rounds, the per-round
// ratios to the floor (and to the variant floor floor_readv.py, the bench's
// floor before issue 21), the CPU time per call on the Go and the Python
// side, and a warning for every ratio whose spread is wider than its
// effect. It ends with issue 21's targets: each ratio, its goal, met or
// MISSED, and a WARNING where the spread is wider than the effect.
//
// The sweep scenario echoes bytes of 1 KiB to 64 MiB (powers of 4; -quick
// stops at 16 MiB) through pypool (Call, and CallBytes into one reused
// buffer) and the floor; -plot FILE.svg draws its MB/s by payload size,
// pinned and unpinned, as an SVG. The array scenario sends a 64 MiB float64
// pypool.Array to numpy and back (it needs numpy: -python's, else
// /usr/bin/python3's). The stream scenario streams a million small items
// from a Python generator into a Go loop (Pool.Stream), in items/s.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/pypool/pypool"
)

// options are the bench's flags.
type options struct {
	quick, asJSON, pinned, newOnce, newPhases, noPin                               *bool
	python, only, plot, newStart, profile, profilePayload, cpuProf, memProf, trace *string
	n, profileCalls, profileWorkers, floorPipe, newTimeline                        *int
}

// defineFlags defines the bench's flags on fs. A flag whose usage starts
// with "internal:" is for the bench's own child processes; README.md names
// every other one (TestREADMENamesEveryFlag).
func defineFlags(fs *flag.FlagSet) *options {
	return &options{
		quick:          fs.Bool("quick", false, "run every scenario with small counts (5 rounds, short windows)"),
		asJSON:         fs.Bool("json", false, "print JSON instead of a table"),
		python:         fs.String("python", defaultPythons, "Python interpreter(s), comma-separated: each runs the scenarios in its own process of the bench, and the targets table has rows for each; a missing one is skipped"),
		n:              fs.Int("n", 10000, "sequential calls in the latency scenario"),
		only:           fs.String("scenario", "latency,throughput,payload,start,new,recovery,sweep,array,stream", "scenarios to run, comma-separated"),
		plot:           fs.String("plot", "", "write the sweep's MB/s by payload size to this SVG file (needs the sweep scenario; the first interpreter's)"),
		pinned:         fs.Bool("pinned", false, "internal: this run is already pinned to one CPU"),
		newOnce:        fs.Bool("new-once", false, "internal: print the nanoseconds from pypool.New until its first result"),
		newPhases:      fs.Bool("new-phases", false, "internal: with -new-once, print the phases of -new-timeline after the total"),
		newTimeline:    fs.Int("new-timeline", 0, "instead of the scenarios, this many interleaved rounds of python -E -c 'import bench_module' and of pypool.New (Size 1) to its first result in a fresh process, and the medians of New's phases (README.md, the start-up budget); the first -python only"),
		newStart:       fs.String("new-start", "exec", "internal: the start method of -new-once, exec or forkserver"),
		noPin:          fs.Bool("no-pin", false, "skip the runs pinned to one CPU"),
		profile:        fs.String("profile", "", "instead of the scenarios, make -profile-calls sequential calls of this contender (floor, floor-fresh, floor-readv, pypool, pypool-pipes, pypool-pipes-callbytes) and print their Go allocations, both sides' CPU and page faults per call (README.md, the per-call budget)"),
		profilePayload: fs.String("profile-payload", "trivial", "with -profile: trivial (duplicate_text of 7 bytes), or a bytes echo of 1KiB, 1MiB or 16MiB"),
		profileCalls:   fs.Int("profile-calls", 20000, "with -profile: the calls measured, after a warm-up of 1000 (20 from 1MiB)"),
		profileWorkers: fs.Int("profile-workers", 0, "with -profile: 0, sequential calls from one caller; else the throughput scenario's shape, this many workers (pypool) or floors and 4 callers each"),
		cpuProf:        fs.String("cpuprofile", "", "with -profile: write Go's CPU profile of the calls to this file"),
		memProf:        fs.String("memprofile", "", "with -profile: write Go's allocation profile of the calls to this file (every allocation sampled)"),
		trace:          fs.String("trace", "", "with -profile: write Go's execution trace of the calls to this file (go tool trace; the goroutine switches and system calls of a call)"),
		floorPipe:      fs.Int("floor-pipe", 1<<20, "the floor's pipe size in bytes (F_SETPIPE_SZ): by default pypool's own, so that the floor uses the same pipes (DESIGN.md); 0: Linux's default, 64 KiB"),
	}
}

func main() {
	o := defineFlags(flag.CommandLine)
	quick, asJSON, python, n, only, plot := o.quick, o.asJSON, o.python, o.n, o.only, o.plot
	pinned, newOnce, newStart, noPin, floorPipe := o.pinned, o.newOnce, o.newStart, o.noPin, o.floorPipe
	profile, profilePayload, profileCallCount, cpuProfile, memProfile := o.profile, o.profilePayload, o.profileCalls, o.cpuProf, o.memProf
	flag.Usage = usage
	flag.Parse()

	ctx := context.Background()
	if *newOnce {
		method := pypool.StartExec
		if *newStart == pypool.StartForkServer.String() {
			method = pypool.StartForkServer
		}
		if *o.newPhases {
			for _, ns := range timeNewPhases(ctx, *python, sourceDir(), method) {
				fmt.Print(ns, " ")
			}
			fmt.Println()
			return
		}
		fmt.Println(timeNew(ctx, *python, sourceDir(), method).Nanoseconds())
		return
	}
	if *o.newTimeline > 0 {
		newTimeline(strings.Split(*python, ",")[0], *o.newTimeline)
		return
	}
	if *profile != "" {
		profileCalls(ctx, resolve(strings.Split(*python, ",")[0]), *profile, *profilePayload, *profileCallCount, *o.profileWorkers, *cpuProfile, *memProfile, *o.trace)
		return
	}
	selected := strings.Split(*only, ",")
	if *plot != "" && !slices.Contains(selected, "sweep") {
		must(0, fmt.Errorf("-plot draws the sweep: add sweep to -scenario"))
	}
	var r report
	if pythons := available(strings.Split(*python, ",")); len(pythons) > 1 {
		r = eachPython(pythons)
	} else {
		r = run(ctx, pythons[0], selected, runSizes(*quick, *n), *pinned, *noPin, *floorPipe)
	}
	if *plot != "" {
		must(0, writePlot(*plot, r.first()))
	}
	if *asJSON {
		must(0, json.NewEncoder(os.Stdout).Encode(r))
		return
	}
	printTable(r)
}

// defaultPythons are the interpreters of issue 21's targets: the one on
// PATH (pyenv's, with pypool's pure-Python codec) and Debian's, with the
// msgpack C extension (python3-msgpack).
const defaultPythons = "python3,/usr/bin/python3"

// available returns the interpreters of names that exist, once each by
// the real executable they run (resolve); the first one even if it does
// not exist, so that its error shows.
func available(names []string) []string {
	if len(names) == 1 {
		return names
	}
	var out []string
	seen := map[string]bool{}
	for i, name := range names {
		if _, err := exec.LookPath(name); err != nil && i > 0 {
			fmt.Fprintf(os.Stderr, "bench: %s not found, skipped\n", name)
			continue
		}
		if real := resolve(name); !seen[real] {
			seen[real] = true
			out = append(out, name)
		}
	}
	return out
}

// run runs the selected scenarios with one interpreter, unpinned, then
// (unless pinned or noPin) the pinnable ones again pinned to one CPU.
func run(ctx context.Context, python string, selected []string, sz sizes, pinned, noPin bool, floorPipe int) report {
	loadStart := loadAvg()
	b := &bench{python: resolve(python), given: python, dir: sourceDir(), pinned: pinned, sizes: sz, floorPipe: floorPipe}
	scenarios := map[string]func(context.Context){
		"latency": b.latency, "throughput": b.throughput, "payload": b.payload,
		"start": b.start, "new": b.newPool, "recovery": b.recovery, "sweep": b.sweep,
		"array": b.array, "stream": b.stream, "forkstart": b.forkStart, "forkrecovery": b.forkRecovery,
		"forkmemory": b.forkMemory, "forkchaos": b.forkChaos,
		"async": b.asyncCalls, // async.go: Config.AsyncCalls
	}
	for _, name := range selected {
		if _, ok := scenarios[name]; !ok {
			must(0, fmt.Errorf("unknown scenario %q", name))
		}
	}
	for _, name := range selected {
		scenarios[name](ctx)
	}
	if !pinned && !noPin {
		b.results = append(b.results, pinnedRun(selected, python)...)
	}
	m := describe(b.python, ctx)
	m.FloorPipe = floorPipe
	return report{Machine: m, LoadStart: loadStart, LoadEnd: loadAvg(), Results: b.results}
}

// eachPython runs the bench once per interpreter, each in its own process
// of this program (-json), one after the other, and merges their reports:
// each result names its interpreter and codec (result.Python).
func eachPython(pythons []string) report {
	var all report
	all.LoadStart = loadAvg()
	for _, python := range pythons {
		args := append([]string{"-json", "-python", python}, passThrough("scenario", "no-pin")...)
		cmd := exec.Command(os.Args[0], args...)
		cmd.Stderr = os.Stderr
		var r report
		must(0, json.Unmarshal(must(cmd.Output()), &r))
		label := r.Machine.label()
		r.Machine.LoadStart, r.Machine.LoadEnd = r.LoadStart, r.LoadEnd
		for i := range r.Results {
			r.Results[i].Python = label
		}
		if len(all.Machines) == 0 {
			all.Machine = r.Machine
		}
		all.Machines = append(all.Machines, r.Machine)
		all.Results = append(all.Results, r.Results...)
	}
	all.LoadEnd = loadAvg()
	return all
}

// usage prints how to run the bench and its flags.
func usage() {
	out := flag.CommandLine.Output()
	fmt.Fprintln(out, `usage: go run ./bench [flags]

  go run ./bench                                    every scenario, unpinned and pinned to one CPU, python3 and /usr/bin/python3
  go run ./bench -quick                             the same with small counts (5 rounds, short windows)
  go run ./bench -scenario latency,throughput,payload,new    what issue 21's targets need
  go run ./bench -scenario sweep -plot sweep.svg    MB/s by payload size (1 KiB to 64 MiB), and its plot

flags:`)
	flag.PrintDefaults()
}

// pinnedRun re-runs the latency, throughput, payload and sweep scenarios
// under taskset -c 0 and returns their results: on a small virtual
// machine, cross-CPU wake-ups dominate a pipe round trip.
func pinnedRun(selected []string, python string) []result {
	var pinnable []string
	for _, s := range selected {
		if s == "latency" || s == "throughput" || s == "payload" || s == "sweep" || s == "array" {
			pinnable = append(pinnable, s)
		}
	}
	taskset, err := exec.LookPath("taskset")
	if len(pinnable) == 0 || err != nil {
		fmt.Fprintln(os.Stderr, "bench: no pinned run (taskset not found or nothing to pin)")
		return nil
	}
	args := append([]string{"-c", "0", os.Args[0], "-pinned", "-json", "-python", python, "-scenario", strings.Join(pinnable, ",")}, passThrough()...)
	cmd := exec.Command(taskset, args...)
	cmd.Stderr = os.Stderr
	out := must(cmd.Output())
	var run struct{ Results []result }
	must(0, json.Unmarshal(out, &run))
	return run.Results
}

// passThrough returns the flags a run in another process of this program
// must share: those that size the run, and the extra ones named.
func passThrough(extra ...string) []string {
	var args []string
	flag.Visit(func(f *flag.Flag) {
		if slices.Contains([]string{"quick", "n", "floor-pipe"}, f.Name) || slices.Contains(extra, f.Name) {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return args
}

type machine struct {
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	Go         string `json:"go"`
	Python     string `json:"python"`
	PythonPath string `json:"python_path"`
	PyCodec    string `json:"python_codec"`
	GoCodec    string `json:"go_codec"`
	FloorPipe  int    `json:"floor_pipe_size,omitempty"` // -floor-pipe, when set
	// LoadStart and LoadEnd are the load averages around this
	// interpreter's run, when several ran one after the other.
	LoadStart string `json:"loadavg_start,omitempty"`
	LoadEnd   string `json:"loadavg_end,omitempty"`
}

// label names the interpreter and its codec, as "pure 3.11.7".
func (m machine) label() string { return m.PyCodec + " " + m.Python }

func describe(python string, ctx context.Context) machine {
	m := machine{CPU: cpuModel(), CPUs: runtime.NumCPU(), Go: runtime.Version(), PythonPath: python,
		GoCodec: "github.com/vmihailenco/msgpack/v5 (encode), pypool's decoder"}
	p := must(startPool(ctx, python, sourceDir(), 1, 0))
	defer p.close()
	_ = p.p.Transaction(ctx, func(w *pypool.Worker) error {
		m.Python, m.PyCodec = w.PythonVersion(), w.Codec()
		return nil
	})
	return m
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return "unknown"
}

func numCPU() int { return runtime.NumCPU() }

// resolve returns the real interpreter behind a name such as python3, as
// pypool itself does, so that every contender starts the same executable.
func resolve(python string) string {
	out := must(exec.Command(python, "-E", "-c", "import sys;print(sys.executable)").Output())
	return strings.TrimSpace(string(out))
}

// sourceDir is this file's directory, where bench_module.py is.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "bench"
	}
	return filepath.Dir(file)
}
