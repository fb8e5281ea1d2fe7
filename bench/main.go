// Command bench measures pypool against the floor (a Go program and a
// minimal Python loop echoing length-prefixed bytes over pipes) and the
// alternatives a Go team would use instead (python3 per call, a Python HTTP
// service), side by side in one run, unpinned and pinned to one CPU.
//
//	go run ./bench            # the full run, a few minutes
//	go run ./bench -quick     # every scenario, small counts (CI)
//	go run ./bench -json      # machine-readable
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
	"strings"
	"text/tabwriter"

	"github.com/pypool/pypool"
)

func main() {
	quick := flag.Bool("quick", false, "run every scenario with small counts")
	asJSON := flag.Bool("json", false, "print JSON instead of a table")
	python := flag.String("python", "python3", "Python interpreter")
	n := flag.Int("n", 10000, "sequential calls in the latency scenario")
	only := flag.String("scenario", "latency,throughput,payload,start,recovery", "scenarios to run, comma-separated")
	pinned := flag.Bool("pinned", false, "internal: this run is already pinned to one CPU")
	noPin := flag.Bool("no-pin", false, "skip the runs pinned to one CPU")
	flag.Parse()

	b := &bench{python: resolve(*python), dir: sourceDir(), pinned: *pinned, sizes: runSizes(*quick, *n)}
	ctx := context.Background()
	scenarios := map[string]func(context.Context){
		"latency": b.latency, "throughput": b.throughput, "payload": b.payload,
		"start": b.start, "recovery": b.recovery,
	}
	selected := strings.Split(*only, ",")
	for _, name := range selected {
		run, ok := scenarios[name]
		if !ok {
			must(0, fmt.Errorf("unknown scenario %q", name))
		}
		run(ctx)
	}
	if !*pinned && !*noPin {
		b.results = append(b.results, pinnedRun(selected)...)
	}
	if *asJSON {
		must(0, json.NewEncoder(os.Stdout).Encode(map[string]any{"machine": describe(b.python, ctx), "results": b.results}))
		return
	}
	printTable(describe(b.python, ctx), b.results)
}

// pinnedRun re-runs the latency, throughput and payload scenarios under
// taskset -c 0 and returns their results: on a small virtual machine,
// cross-CPU wake-ups dominate a pipe round trip.
func pinnedRun(selected []string) []result {
	var pinnable []string
	for _, s := range selected {
		if s == "latency" || s == "throughput" || s == "payload" {
			pinnable = append(pinnable, s)
		}
	}
	taskset, err := exec.LookPath("taskset")
	if len(pinnable) == 0 || err != nil {
		fmt.Fprintln(os.Stderr, "bench: no pinned run (taskset not found or nothing to pin)")
		return nil
	}
	args := append([]string{"-c", "0", os.Args[0], "-pinned", "-json", "-scenario", strings.Join(pinnable, ",")}, passThrough()...)
	cmd := exec.Command(taskset, args...)
	cmd.Stderr = os.Stderr
	out := must(cmd.Output())
	var run struct{ Results []result }
	must(0, json.Unmarshal(out, &run))
	return run.Results
}

// passThrough returns the flags the pinned run must share.
func passThrough() []string {
	var args []string
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "quick", "python", "n":
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
}

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

func printTable(m machine, results []result) {
	fmt.Printf("machine: %s (%d CPUs), %s; Python %s at %s, codec %s; Go codec %s\n\n",
		m.CPU, m.CPUs, m.Go, m.Python, m.PythonPath, m.PyCodec, m.GoCodec)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tcontender\tpinned\tmetric\tvalue\tunit\tvs floor\t")
	for _, r := range results {
		ratio := ""
		if r.VsFloor != 0 {
			ratio = fmt.Sprintf("%.2f×", r.VsFloor)
		}
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%.1f\t%s\t%s\t\n", r.Scenario, r.Contender, r.Pinned, r.Metric, r.Value, r.Unit, ratio)
	}
	w.Flush()
	fmt.Println("\nvs floor: latency and start are ratios of times (lower is better), throughput and payload of rates (higher is better);")
	fmt.Println("start compares the time from a call that needs a new worker until it returns with the interpreter importing the module.")
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
