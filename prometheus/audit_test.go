package prometheus

// audit_test.go: the observability audit (round 3) of the collector:
// what docs/observability.md's Prometheus table says it exports.

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Promise (docs/observability.md, Prometheus): the table lists every
// metric with its type, its labels and their values. The attack scrapes a
// collector through a pedantic registry (what Collect sends must be what
// Describe said) and looks each metric family, and each value of its
// labels but function and pool, up in the table's row of that metric.
func TestAuditCollectorMatchesItsTable(t *testing.T) {
	pool := newPool(t, 1, 0)
	if err := call(t, pool, "echo", 1); err != nil {
		t.Fatal(err)
	}
	c := NewCollector(pool, Opts{Pool: "audit"})
	defer c.Close()
	if err := call(t, pool, "echo", 1); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("the pedantic registry refuses the scrape: %v", err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	doc, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // metric name -> its table row
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "| `pypool_") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, name := range regexp.MustCompile("`(pypool_[a-z_]+)`").FindAllStringSubmatch(cells[1], -1) {
			rows[name[1]] = line
		}
	}
	for _, f := range families {
		row, ok := rows[f.GetName()]
		if !ok {
			t.Errorf("%s is not in the table", f.GetName())
			continue
		}
		if typ := strings.ToLower(f.GetType().String()); !strings.Contains(row, "| "+typ+" |") {
			t.Errorf("%s is a %s, its row says otherwise: %s", f.GetName(), typ, row)
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "pool", "function", "le":
					continue
				case "outcome":
					if f.GetName() != "pypool_reloads_total" {
						continue // pypool.Outcome's names
					}
				}
				if !strings.Contains(row, "`"+l.GetName()+"`") || !strings.Contains(row, "`"+l.GetValue()+"`") {
					t.Errorf("%s{%s=%q} is not in its row: %s", f.GetName(), l.GetName(), l.GetValue(), row)
				}
			}
		}
	}
}
