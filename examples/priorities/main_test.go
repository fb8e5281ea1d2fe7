package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestPrioritiesOutput runs the example for three seconds, a second a phase
// (under the load of the rest of the suite, a shorter phase once served no
// read at all), and checks the shape of what it prints: the three phases,
// each with writes measured and five latency figures, reads served while
// they flood, and the crash summary. Timings are printed, not judged: they
// depend on the machine.
func TestPrioritiesOutput(t *testing.T) {
	o, err := parseFlags([]string{"-duration", "3s", "-readers", "8", "-read-ms", "10", "-crash-rate", "0.02"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, o); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	num := `(\d+(?:\.\d+)?)`
	for _, phase := range []string{"no reads", "reads flooding, own write pool", "reads flooding, writes shared"} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(phase) + `\s+(\d+)` + `\s+` + num + `\s+` + num + `\s+` + num + `\s+` + num + `\s+(\d+)$`)
		m := re.FindStringSubmatch(out.String())
		if m == nil {
			t.Errorf("no row for phase %q", phase)
			continue
		}
		if writes, _ := strconv.Atoi(m[1]); writes == 0 {
			t.Errorf("phase %q: no write measured", phase)
		}
		if reads, _ := strconv.Atoi(m[6]); (phase == "no reads") != (reads == 0) {
			t.Errorf("phase %q: %d reads served", phase, reads)
		}
		p50, _ := strconv.ParseFloat(m[2], 64)
		max, _ := strconv.ParseFloat(m[5], 64)
		if p50 <= 0 || max < p50 {
			t.Errorf("phase %q: p50 %v, max %v: not latencies", phase, p50, max)
		}
	}
	for _, want := range []string{`(?m)^write latency \(ms\)\s+writes\s+p50\s+p90\s+p99\s+max\s+reads$`,
		`(?m)^reads failed: \d+; read workers crashed and replaced: \d+`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("no line matching %s", want)
		}
	}
}
