package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// spread summarises one figure measured once per round: the median and the
// min–max over the rounds.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Rounds int     `json:"rounds"`
}

func summarize(xs []float64) spread {
	if len(xs) == 0 {
		return spread{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Median: m, Min: s[0], Max: s[len(s)-1], Rounds: len(s)}
}

// ratios divides each round's figure by the same round's floor figure: the
// contenders run in the same rounds, so a round's load affects both sides.
// Rounds where the floor measured zero (a CPU time below one tick) are left
// out.
func ratios(xs, floor []float64) []float64 {
	var r []float64
	for i := range xs {
		if floor[i] != 0 {
			r = append(r, xs[i]/floor[i])
		}
	}
	return r
}

// vsFloor summarises ratios, or is nil when there is none.
func vsFloor(xs, floor []float64) *spread {
	if floor == nil {
		return nil
	}
	r := summarize(ratios(xs, floor))
	if r.Rounds == 0 {
		return nil
	}
	return &r
}

// unsure says whether a ratio's spread is wider than the effect it reports:
// its min–max range is wider than the distance of its median from 1.0
// (which also covers a range that crosses 1.0).
func unsure(r spread) bool {
	return r.Rounds > 0 && r.Max-r.Min > math.Abs(r.Median-1)
}

// result is one measured figure.
type result struct {
	Scenario  string `json:"scenario"`
	Contender string `json:"contender"`
	Pinned    bool   `json:"pinned"`
	Metric    string `json:"metric"`
	spread
	Value   float64  `json:"value"` // = Median, kept for older readers
	Unit    string   `json:"unit"`
	Bytes   int      `json:"bytes,omitempty"`    // the payload's size, in the sweep
	VsFloor *spread  `json:"vs_floor,omitempty"` // per-round Value / the floor's Value
	CPU     *cpuCost `json:"cpu,omitempty"`
	// VsFloorReadv and CPUVsFloorReadv are the same ratios against the
	// variant floor_readv.py, the bench's floor until issue 21, measured in
	// the same rounds: what the change of floor did to the ratios.
	VsFloorReadv    *spread  `json:"vs_floor_readv,omitempty"`
	CPUVsFloorReadv *cpuCost `json:"cpu_vs_floor_readv,omitempty"`
	// Python names the interpreter and codec of the run, as "pure 3.11.7",
	// when the bench runs several (-python with a comma).
	Python string `json:"python,omitempty"`
}

// against sets r's ratios to the variant floor from the same rounds'
// figures: readv's and r's own, and their CPU times when cpu is not nil.
func (r *result) against(readv, xs []float64, cpu, readvCPU *cpuRounds) {
	r.VsFloorReadv = vsFloor(xs, readv)
	if cpu != nil && cpu.goSide != nil && readvCPU.goSide != nil {
		r.CPUVsFloorReadv = cpu.cost(readvCPU)
	}
}

// figure makes a result from one value per round and, when floor is not
// nil, the per-round ratios to the floor's values.
func figure(scenario, contender, metric, unit string, xs, floor []float64) result {
	r := result{Scenario: scenario, Contender: contender, Metric: metric, Unit: unit, spread: summarize(xs)}
	r.Value = r.Median
	r.VsFloor = vsFloor(xs, floor)
	return r
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

type report struct {
	Machine   machine   `json:"machine"`            // the (first) interpreter's
	Machines  []machine `json:"machines,omitempty"` // each interpreter's, when several ran
	LoadStart string    `json:"loadavg_start"`
	LoadEnd   string    `json:"loadavg_end"`
	Results   []result  `json:"results"`
}

// runs splits a report of several interpreters into one per interpreter.
func (r report) runs() []report {
	if len(r.Machines) == 0 {
		return []report{r}
	}
	var out []report
	for _, m := range r.Machines {
		one := report{Machine: m, LoadStart: r.LoadStart, LoadEnd: r.LoadEnd}
		if m.LoadStart != "" {
			one.LoadStart, one.LoadEnd = m.LoadStart, m.LoadEnd
		}
		for _, x := range r.Results {
			if x.Python == m.label() {
				one.Results = append(one.Results, x)
			}
		}
		out = append(out, one)
	}
	return out
}

// first is the report of the first interpreter alone.
func (r report) first() report { return r.runs()[0] }

// printTable prints each interpreter's figures, then issue 21's targets.
func printTable(r report) {
	for i, one := range r.runs() {
		if i > 0 {
			fmt.Println()
		}
		printRun(one)
	}
	printTargets(r.Results)
}

// printRun prints one interpreter's figures, CPU times and warnings.
func printRun(r report) {
	m := r.Machine
	fmt.Printf("machine: %s (%d CPUs), %s; Python %s at %s, codec %s; Go codec %s%s\n",
		m.CPU, m.CPUs, m.Go, m.Python, m.PythonPath, m.PyCodec, m.GoCodec, floorPipeNote(m))
	fmt.Printf("load average (1, 5, 15 min): %s at start, %s at end\n\n", r.LoadStart, r.LoadEnd)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tcontender\tpinned\tmetric\tmedian\tmin–max\tunit\trounds\tvs floor\tmin–max\tvs floor readv\t")
	for _, x := range r.Results {
		vs, vsRange, vsReadv := "", "", ""
		if x.VsFloor != nil {
			vs, vsRange = fmt.Sprintf("%.2f×", x.VsFloor.Median), fmt.Sprintf("%.2f–%.2f", x.VsFloor.Min, x.VsFloor.Max)
		}
		if x.VsFloorReadv != nil {
			vsReadv = fmt.Sprintf("%.2f×", x.VsFloorReadv.Median)
		}
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\t%s–%s\t%s\t%d\t%s\t%s\t%s\t\n", x.Scenario, x.Contender, x.Pinned, x.Metric,
			num(x.Median), num(x.Min), num(x.Max), x.Unit, x.Rounds, vs, vsRange, vsReadv)
	}
	w.Flush()
	printCPU(r.Results)
	printWarnings(r.Results)
	fmt.Println("\nmedian and min–max over the rounds; vs floor: the median and min–max of the per-round ratios to the floor")
	fmt.Println("(the contenders run interleaved, round by round). latency, start and new are ratios of times (lower is better),")
	fmt.Println("throughput and payload of rates (higher is better). start: a call that needs a new (overflow) worker against")
	fmt.Println("python importing the module; new: pypool.New (Size 1) until the first Call returns, against the same command")
	fmt.Println("importing the module.")
	if hasScenario(r.Results, "sweep") {
		fmt.Println("sweep: MB/s of a bytes echo (higher is better), the payload's size over a round's median round trip, by size;")
		fmt.Println("the same floor and pypool serve every size, each size after a warm-up; pypool CallBytes appends")
		fmt.Println("each result to one reused buffer, as the floor does, instead of returning a new slice (Call).")
	}
	if hasScenario(r.Results, "array") {
		fmt.Println("array: MB/s of a 64 MiB float64 pypool.Array sent to numpy and back, its size over a round's median round trip.")
	}
}

// floorPipeNote names the floor's pipe size (-floor-pipe), "" for Linux's default.
func floorPipeNote(m machine) string {
	if m.FloorPipe == 0 {
		return ""
	}
	return fmt.Sprintf("; floor pipes of %d bytes", m.FloorPipe)
}

// hasScenario says whether results hold a figure of the scenario.
func hasScenario(results []result, scenario string) bool {
	for _, x := range results {
		if x.Scenario == scenario {
			return true
		}
	}
	return false
}

// num prints a figure with about three significant digits.
func num(x float64) string {
	switch a := math.Abs(x); {
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func printCPU(results []result) {
	var rows []result
	for _, x := range results {
		if x.CPU != nil {
			rows = append(rows, x)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Println("\nCPU time per call (median over the rounds, min–max), Go side from getrusage, Python side from /proc/<pid>/task/*/schedstat (ns; or, where the kernel has none, /proc/<pid>/stat's ticks of 10 ms):")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tcontender\tpinned\tmetric\tGo µs/call\tvs floor\tPython µs/call\tvs floor\tPython ticks/round\t")
	for _, x := range rows {
		c := x.CPU
		ticks := fmt.Sprintf("≥%d", c.PythonTicks)
		if c.PythonPrecise {
			ticks = "(ns)"
		}
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t\n", x.Scenario, x.Contender, x.Pinned, x.Metric,
			spreadText(c.Go), ratioText(c.GoVsFloor), spreadText(c.Python), ratioText(c.PythonVsFloor), ticks)
	}
	w.Flush()
}

func spreadText(s spread) string {
	return fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.Min), num(s.Max))
}

func ratioText(s *spread) string {
	if s == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

// printWarnings names every ratio whose spread is wider than its effect.
func printWarnings(results []result) {
	for _, x := range results {
		if x.Contender == "floor" {
			continue // its ratio to itself is 1 by construction
		}
		name := fmt.Sprintf("%s %s %s (pinned %v)", x.Scenario, x.Contender, x.Metric, x.Pinned)
		warn(name+" vs floor", x.VsFloor)
		if x.CPU != nil {
			warn(name+" Go CPU/call vs floor", x.CPU.GoVsFloor)
			warn(name+" Python CPU/call vs floor", x.CPU.PythonVsFloor)
		}
	}
	warnCoarse(results)
}

// warnCoarse names the Python CPU times read from too few clock ticks.
func warnCoarse(results []result) {
	var coarse []string
	for _, x := range results {
		if x.CPU != nil && !x.CPU.PythonPrecise && x.CPU.PythonTicks < wellTicks {
			coarse = append(coarse, fmt.Sprintf("%s %s %s (pinned %v, %d)", x.Scenario, x.Contender, x.Metric, x.Pinned, x.CPU.PythonTicks))
		}
	}
	if len(coarse) > 0 {
		fmt.Printf("WARNING: Python CPU times resting on fewer than %d ticks of 10 ms a round are coarse (below %d, no ratio): %s\n",
			wellTicks, minTicks, strings.Join(coarse, "; "))
	}
}

func warn(name string, r *spread) {
	if r != nil && unsure(*r) {
		fmt.Printf("WARNING: %s: the spread %.2f–%.2f is wider than the effect (median %.2f×, %.2f from 1.0): not a reproducible difference\n",
			name, r.Min, r.Max, r.Median, math.Abs(r.Median-1))
	}
}
