package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pypool/pypool"
)

// The start-up timeline (README.md, "The start-up budget"): where the time
// from pypool.New (Size 1) to its first result goes, phase by phase, from
// the pool's own Debug records, each timed as it is logged.

// phaseNames are the timeline's phases, in order. New starts its guardian,
// then its worker's interpreter, and checks the runtime's install while
// the interpreter starts; the interpreter holds until the check is done
// (bootstrapHold in runtime.go).
var phaseNames = []string{
	"New to the worker's exec done (interpreter found, spec, guardian, pipes, shared memory, fork, exec)",
	"New to the runtime installed (install check: base, verify, sweep; beside the interpreter's start)",
	"New to the guardian started (its fork and exec; before the worker's)",
	"the worker's exec to its HELLO (interpreter, held for the check, runtime, codec, module)",
	"HELLO to the first result (handshake, first call)",
}

// timedRecords is a slog.Handler that keeps the time each record was
// handled, by message.
type timedRecords struct {
	mu    sync.Mutex
	at    map[string]time.Time
	start time.Duration // the "start" attribute of the worker's record
}

func (h *timedRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *timedRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *timedRecords) WithGroup(string) slog.Handler            { return h }
func (h *timedRecords) Handle(_ context.Context, r slog.Record) error {
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.at[r.Message]; !ok {
		h.at[r.Message] = now
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "start" {
				h.start = a.Value.Duration()
			}
			return true
		})
	}
	return nil
}

// timeNewPhases is timeNew with the phases of phaseNames, in ns, after the
// total.
func timeNewPhases(ctx context.Context, python, dir string, method pypool.StartMethod) []int64 {
	h := &timedRecords{at: map[string]time.Time{}}
	t := time.Now()
	p := must(pypool.New(ctx, pypool.Config{Module: "bench_module", PythonPath: []string{dir}, Python: python, Size: 1, StartMethod: method, Logger: slog.New(h)}))
	_, err := p.Call(ctx, "duplicate_text", "x")
	end := time.Now()
	must(0, err)
	_ = p.Close(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	guard, worker := h.at["pypool: guardian started"], h.at["pypool: worker started"]
	if guard.IsZero() || worker.IsZero() {
		must(0, fmt.Errorf("-new-phases: the pool logged no guardian or worker start"))
	}
	installed, ok := h.at["pypool: runtime installed"]
	if !ok { // a pypool without that record: its install check ended before the guardian's start
		installed = t
	}
	exec := worker.Add(-h.start)
	return []int64{int64(end.Sub(t)), int64(exec.Sub(t)), int64(installed.Sub(t)), int64(guard.Sub(t)), int64(h.start), int64(end.Sub(worker))}
}

// newTimeline runs rounds of python -E -c 'import bench_module' and, in a
// fresh process each, pypool.New (Size 1) to its first result, interleaved,
// and prints the medians of the phases and their min–max.
func newTimeline(python string, rounds int) {
	dir := sourceDir()
	b := &bench{python: python, dir: dir}
	b.timeImport(python) // warm-up: page cache, .pyc files
	newPhasesInChild(python)
	var imports []float64
	phases := make([][]float64, len(phaseNames)+1)
	for range rounds {
		imports = append(imports, millis(b.timeImport(python)))
		for i, ns := range newPhasesInChild(python) {
			phases[i] = append(phases[i], float64(ns)/1e6)
		}
	}
	fmt.Printf("New (Size 1) to its first result, in a fresh process, against python -E -c 'import bench_module': %s, %d rounds interleaved, medians (min–max); load average %s\n", python, rounds, loadAvg())
	row := func(name string, xs []float64) {
		fmt.Printf("  %-92s %7.2f ms (%.2f–%.2f)  %5.2f× the import\n", name, medianOf(xs), slices.Min(xs), slices.Max(xs), medianOf(xs)/medianOf(imports))
	}
	row("python -E -c 'import bench_module'", imports)
	row("New to the first result", phases[0])
	for i, name := range phaseNames {
		row("  "+name, phases[i+1])
	}
}

// medianOf is the median of xs (the upper one of an even count).
func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// newPhasesInChild runs timeNewPhases in a new process of this program.
func newPhasesInChild(python string) []int64 {
	cmd := exec.Command(os.Args[0], "-new-once", "-new-phases", "-python", python)
	cmd.Stderr = os.Stderr
	var out []int64
	for _, f := range strings.Fields(string(must(cmd.Output()))) {
		out = append(out, must(strconv.ParseInt(f, 10, 64)))
	}
	return out
}
