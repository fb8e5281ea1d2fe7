package main

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
)

// sweepReport is a report with the sweep results of two contenders,
// unpinned and pinned, three sizes each, and one result of another
// scenario that the plot must leave out.
func sweepReport() report {
	r := report{Machine: machine{CPU: "Test CPU <&>", CPUs: 2, Go: "go1.x", Python: "3.11.7", PyCodec: "pure"}}
	r.Results = append(r.Results, result{Scenario: "latency", Contender: "floor", Metric: "p50", spread: spread{Median: 30, Min: 29, Max: 31}})
	for _, pinned := range []bool{false, true} {
		for _, size := range []int{1 << 20, 1 << 10, 4 << 10} { // out of order on purpose
			for _, name := range []string{"floor", "pypool"} {
				mbs := float64(size) / 1e4
				r.Results = append(r.Results, result{Scenario: "sweep", Contender: name, Pinned: pinned, Bytes: size,
					Metric: sizeName(size), spread: spread{Median: mbs, Min: mbs * 0.8, Max: mbs * 1.3, Rounds: 7}})
			}
		}
	}
	return r
}

// elements parses svg as XML and counts its elements by name.
func elements(t *testing.T, svg string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return counts
		}
		if err != nil {
			t.Fatalf("the SVG is not XML: %v\n%s", err, svg)
		}
		if el, ok := tok.(xml.StartElement); ok {
			counts[el.Name.Local]++
		}
	}
}

func TestPlotOnePolylinePerSeries(t *testing.T) {
	c := sweepChart(sweepReport())
	if len(c.series) != 4 {
		t.Fatalf("%d series, want 4 (floor and pypool, unpinned and pinned)", len(c.series))
	}
	svg := c.svg()
	counts := elements(t, svg)
	if counts["svg"] != 1 || counts["polyline"] != 4 {
		t.Errorf("%d svg and %d polyline elements, want 1 and 4", counts["svg"], counts["polyline"])
	}
	if counts["circle"] != 12 {
		t.Errorf("%d median dots, want 12 (4 series of 3 sizes)", counts["circle"])
	}
	for _, want := range []string{"2 CPUs", "Python 3.11.7", "Test CPU &lt;&amp;&gt;", "pypool (pinned)", "1 KiB", "1 MiB"} {
		if !strings.Contains(svg, want) {
			t.Errorf("the SVG lacks %q", want)
		}
	}
}

func TestPlotPointsInSizeOrder(t *testing.T) {
	for _, sr := range sweepChart(sweepReport()).series {
		for i := 1; i < len(sr.points); i++ {
			if sr.points[i-1].x >= sr.points[i].x {
				t.Errorf("%s: points not in increasing size: %v", sr.name, sr.points)
			}
		}
	}
}

func TestPlotWithoutSweepIsAnError(t *testing.T) {
	r := sweepReport()
	r.Results = r.Results[:1]
	if err := writePlot(t.TempDir()+"/x.svg", r); err == nil {
		t.Error("writePlot without sweep results succeeded")
	}
}
