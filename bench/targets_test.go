package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

func findTarget(t *testing.T, scenario, contender, metric string) target {
	t.Helper()
	for _, tg := range targets {
		if tg.scenario == scenario && tg.contender == contender && tg.metric == metric {
			return tg
		}
	}
	t.Fatalf("no target for %s %s %s", scenario, contender, metric)
	return target{}
}

func TestTargetVerdicts(t *testing.T) {
	throughput := findTarget(t, "throughput", "pypool", "2 workers")
	p50 := findTarget(t, "latency", "pypool", "p50")
	for _, c := range []struct {
		name   string
		t      target
		r      spread
		pinned bool
		want   string
	}{
		{"a rate above its pinned goal", throughput, spread{Median: 0.93, Min: 0.91, Max: 0.95, Rounds: 5}, true, "met"},
		{"the same rate unpinned", throughput, spread{Median: 0.93, Min: 0.91, Max: 0.95, Rounds: 5}, false, "MISSED"},
		{"a rate whose spread holds the goal", throughput, spread{Median: 0.93, Min: 0.88, Max: 0.95, Rounds: 5}, true, "undecided (goal within min–max)"},
		{"a time below its goal", p50, spread{Median: 1.1, Min: 1.05, Max: 1.12, Rounds: 7}, false, "met"},
		{"a time above its goal", p50, spread{Median: 1.2, Min: 1.16, Max: 1.25, Rounds: 7}, true, "MISSED"},
		{"too few rounds", p50, spread{Median: 1.0, Min: 1.0, Max: 1.0, Rounds: 3}, false, "(3 rounds: no verdict)"},
	} {
		if got := c.t.verdict(c.r, c.pinned); got != c.want {
			t.Errorf("%s: verdict %q, want %q", c.name, got, c.want)
		}
	}
}

// capture returns what fn prints on os.Stdout.
func capture(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	fn()
	os.Stdout = stdout
	w.Close()
	return <-done
}

func TestPrintTargetsRowsAndWarnings(t *testing.T) {
	results := []result{
		{Scenario: "latency", Contender: "pypool", Metric: "p50", Python: "pure 3.11.7",
			VsFloor:      &spread{Median: 1.1, Min: 0.9, Max: 1.3, Rounds: 5},
			VsFloorReadv: &spread{Median: 0.95, Min: 0.9, Max: 1.0, Rounds: 5}},
		{Scenario: "latency", Contender: "pypool", Metric: "p50", Pinned: true, Python: "pure 3.11.7",
			VsFloor: &spread{Median: 1.3, Min: 1.28, Max: 1.32, Rounds: 5}},
		{Scenario: "latency", Contender: "floor", Metric: "p50", VsFloor: &spread{Median: 1, Min: 1, Max: 1, Rounds: 5}},
	}
	out := capture(t, func() { printTargets(results) })
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rows []string
	for _, l := range lines {
		if strings.HasPrefix(l, "trivial call p50") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows of the p50 target, want 2 (unpinned and pinned):\n%s", len(rows), out)
	}
	if !strings.Contains(rows[0], "undecided") || !strings.Contains(rows[0], "WARNING") || !strings.Contains(rows[0], "0.95×") {
		t.Errorf("the unpinned row lacks its verdict (undecided: 0.9–1.3 holds the goal 1.15), its warning (0.9–1.3 around 1.1) or its ratio to floor readv:\n%s", rows[0])
	}
	if !strings.Contains(rows[1], "MISSED") || strings.Contains(rows[1], "WARNING") {
		t.Errorf("the pinned row should be MISSED without a warning:\n%s", rows[1])
	}
}

func TestReportRunsByInterpreter(t *testing.T) {
	a, b := machine{Python: "3.11.7", PyCodec: "pure"}, machine{Python: "3.11.2", PyCodec: "msgpack-c"}
	r := report{Machine: a, Machines: []machine{a, b}, Results: []result{
		{Scenario: "latency", Python: a.label()}, {Scenario: "new", Python: b.label()}, {Scenario: "latency", Python: b.label()},
	}}
	runs := r.runs()
	if len(runs) != 2 || len(runs[0].Results) != 1 || len(runs[1].Results) != 2 || runs[1].Machine != b {
		t.Fatalf("runs() split %d results into %v", len(r.Results), runs)
	}
	if one := (report{Machine: a, Results: r.Results}).runs(); len(one) != 1 || len(one[0].Results) != 3 {
		t.Errorf("a report of one interpreter split into %v", one)
	}
}

// TestREADMENamesEveryFlag checks that README.md documents every flag but
// the internal ones (those of the bench's own child processes), each as
// `-name`.
func TestREADMENamesEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	defineFlags(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, "internal:") {
			return
		}
		if !strings.Contains(string(readme), "`-"+f.Name+"`") {
			t.Errorf("README.md does not name the flag -%s", f.Name)
		}
	})
}
