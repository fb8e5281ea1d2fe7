package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestSheddingOutput runs the example briefly (half a second a set-up, two
// workers) and checks the shape of what it prints: a row per set-up and
// endpoint, each with requests made and, for the answered ones, latencies
// that are latencies. Shares and timings are printed, not judged: they
// depend on the machine (shedding_test.go in the package checks the rule
// they come from: waiting callers are served first).
func TestSheddingOutput(t *testing.T) {
	o, err := parseFlags([]string{"-duration", "1500ms", "-workers", "2", "-callers", "4"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, o); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())

	num := `(\d+(?:\.\d+)?)`
	if !regexp.MustCompile(`(?m)^set-up\s+endpoint\s+requests\s+ok %\s+ok/s\s+p50 ms\s+p99 ms$`).MatchString(out.String()) {
		t.Errorf("no header row")
	}
	for _, setup := range []string{"shared pool, NoWait", "separate pools", "bounded queue"} {
		for _, endpoint := range []string{"sheddable", "waiting"} {
			re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(setup) + `\s+` + endpoint + `\s+(\d+)\s+` + num + `\s+` + num + `\s+` + num + `\s+` + num + `$`)
			m := re.FindStringSubmatch(out.String())
			if m == nil {
				t.Errorf("no row for %s, %s", setup, endpoint)
				continue
			}
			requests, _ := strconv.Atoi(m[1])
			okPct, _ := strconv.ParseFloat(m[2], 64)
			p50, _ := strconv.ParseFloat(m[4], 64)
			p99, _ := strconv.ParseFloat(m[5], 64)
			switch {
			case requests == 0:
				t.Errorf("%s, %s: no request made", setup, endpoint)
			case okPct < 0 || okPct > 100:
				t.Errorf("%s, %s: ok %v%%", setup, endpoint, okPct)
			case okPct > 0 && (p50 <= 0 || p99 < p50):
				t.Errorf("%s, %s: p50 %v, p99 %v: not latencies", setup, endpoint, p50, p99)
			}
		}
	}
}
