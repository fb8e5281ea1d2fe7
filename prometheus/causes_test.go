package prometheus

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/pypool/pypool"
)

// starts reads pypool_worker_starts_total{cause=cause} from c.
func starts(t *testing.T, c *Collector, cause string) float64 {
	t.Helper()
	return counterValue(t, c, "pypool_worker_starts_total", "cause", cause)
}

// counterValue reads the series of the counter name whose label key is
// value, from one scrape of c.
func counterValue(t *testing.T, c *Collector, name, key, value string) float64 {
	t.Helper()
	for _, f := range gather(t, c) {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == key && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, key, value)
	return 0
}

// TestCrashReplacementsAboveSize: workers killed while the pool runs beyond
// its size, with callers waiting, are replaced; the replacements are
// counted under cause="crash", not "overflow" (issue 20: during a crash
// storm, pypool_worker_starts_total{cause="crash"} stayed at 0).
func TestCrashReplacementsAboveSize(t *testing.T) {
	pool := newPool(t, 1, 2)
	c := NewCollector(pool, Opts{Pool: "storm"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// hold checks a worker out until done is closed and gives its pid.
	pids := make(chan int)
	done := make(chan struct{})
	held := make(chan error, 4)
	holders := 0
	hold := func() int {
		holders++
		go func() {
			held <- pool.Transaction(ctx, func(w *pypool.Worker) error {
				pids <- w.Pid()
				<-done
				return nil
			})
		}()
		return <-pids
	}
	// Hold all 3 workers (1 of Size, 2 overflow).
	var live []int
	for range 3 {
		live = append(live, hold())
	}
	if got := starts(t, c, "overflow"); got != 2 {
		t.Fatalf("overflow starts before the kills: %v, want 2", got)
	}
	for round := range 2 {
		if round > 0 {
			// The last round's replacement was checked in and stopped
			// (an overflow worker nobody needs): hold one more, so
			// that the pool is full again and the next caller waits.
			// Without it the caller could find the room that stop
			// left and start an overflow worker of its own.
			live = append(live, hold())
		}
		served := make(chan error, 1)
		go func() {
			_, err := pool.Call(ctx, "echo", round)
			served <- err
		}()
		for pool.Stats().Waiting != 1 {
			time.Sleep(5 * time.Millisecond)
		}
		if err := syscall.Kill(live[0], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		live = live[1:]
		if err := <-served; err != nil {
			t.Fatalf("the waiting caller: %v", err)
		}
	}
	close(done)
	for range holders {
		if err := <-held; err != nil {
			t.Fatal(err)
		}
	}
	if got := starts(t, c, "crash"); got != 2 {
		t.Errorf(`pypool_worker_starts_total{cause="crash"} = %v, want 2`, got)
	}
	if got := starts(t, c, "overflow"); got != 3 {
		t.Errorf(`pypool_worker_starts_total{cause="overflow"} = %v, want 3: the 3 held beyond Size, no replacement`, got)
	}
	if got := testutil.ToFloat64(c.calls.WithLabelValues("echo", "ok")); got != 2 {
		t.Errorf(`pypool_calls_total{function="echo",outcome="ok"} = %v, want 2`, got)
	}
}

// TestOverflowIdleStops: overflow workers stopped after
// Config.OverflowIdleTimeout are counted under cause="overflow_idle", apart
// from those stopped at check-in (cause="overflow").
func TestOverflowIdleStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:              "pypool_testmod",
		PythonPath:          []string{"../testdata/pymod"},
		Size:                1,
		MaxOverflow:         1,
		OverflowIdleTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
	c := NewCollector(pool, Opts{})
	got, held, first := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		first <- pool.Transaction(ctx, func(*pypool.Worker) error { close(got); <-held; return nil })
	}()
	<-got
	// The second checkout starts an overflow worker.
	err = pool.Transaction(ctx, func(*pypool.Worker) error { close(held); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for s := pool.Stats(); s.Workers+s.Stopping+s.Starting != 1 || s.Idle != 1; s = pool.Stats() {
		if ctx.Err() != nil {
			t.Fatalf("the overflow worker never stopped: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stops := func(cause string) float64 { return counterValue(t, c, "pypool_worker_stops_total", "cause", cause) }
	if got := stops("overflow_idle"); got != 1 {
		t.Errorf(`pypool_worker_stops_total{cause="overflow_idle"} = %v, want 1`, got)
	}
	if got := stops("overflow"); got != 0 {
		t.Errorf(`pypool_worker_stops_total{cause="overflow"} = %v, want 0`, got)
	}
}

// TestPingsAreNotCalls: readiness probes count in pypool_pings_total, not
// in pypool_calls_total, a function label or the histograms (issue 20: they
// appeared as function="_pypool_ping").
func TestPingsAreNotCalls(t *testing.T) {
	pool := newPool(t, 1, 0)
	c := NewCollector(pool, Opts{Pool: "probed", MaxFunctions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 3 {
		if err := pool.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := call(t, pool, "echo", 1); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(c.calls.WithLabelValues("echo", "ok")); got != 1 {
		t.Errorf(`pypool_calls_total{function="echo"} = %v, want 1: the probes took the one function slot`, got)
	}
	if n := testutil.CollectAndCount(c, "pypool_calls_total"); n != 1 {
		t.Errorf("pypool_calls_total has %d series, want 1 (echo)", n)
	}
	if n := histogram(t, c, "pypool_wait_duration_seconds").GetSampleCount(); n != 1 {
		t.Errorf("pypool_wait_duration_seconds has %d samples, want 1 (echo)", n)
	}
	if got := counterValue(t, c, "pypool_calls_started_total", "pool", "probed"); got != 1 {
		t.Errorf("pypool_calls_started_total = %v, want 1", got)
	}
	if got := counterValue(t, c, "pypool_pings_total", "pool", "probed"); got != 3 {
		t.Errorf("pypool_pings_total = %v, want 3", got)
	}
}

// TestCollectorClose: a closed collector is told of no more calls, so a
// second collector made for the same pool (after the first was
// unregistered) counts each call once, in one registry (issue 20: the
// first collector's observer could not be removed and counted forever).
func TestCollectorClose(t *testing.T) {
	pool := newPool(t, 1, 0)
	reg := prometheus.NewPedanticRegistry()
	first := NewCollector(pool, Opts{Pool: "reloaded"})
	reg.MustRegister(first)
	if err := call(t, pool, "echo", 1); err != nil {
		t.Fatal(err)
	}
	// A registration of a second collector for the same pool fails: it is
	// closed, and counts nothing.
	rejected := NewCollector(pool, Opts{Pool: "reloaded"})
	if err := reg.Register(rejected); err == nil {
		t.Fatal("a second collector of the same pool label registered")
	}
	rejected.Close()

	// A reload: the first goes, a new one comes.
	reg.Unregister(first)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	first.Close() // again: nothing
	second := NewCollector(pool, Opts{Pool: "reloaded"})
	reg.MustRegister(second)
	for range 2 {
		if err := call(t, pool, "echo", 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		c    *Collector
		want float64
	}{{"first", first, 1}, {"rejected", rejected, 0}, {"second", second, 2}} {
		if got := testutil.ToFloat64(tc.c.calls.WithLabelValues("echo", "ok")); got != tc.want {
			t.Errorf("%s collector: pypool_calls_total{function=\"echo\"} = %v, want %v", tc.name, got, tc.want)
		}
	}
	expected := `
# HELP pypool_calls_total Calls that ended (each attempt of a retried call), by function and outcome.
# TYPE pypool_calls_total counter
pypool_calls_total{function="echo",outcome="ok",pool="reloaded"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "pypool_calls_total"); err != nil {
		t.Error(err)
	}
}

// TestReloadCauses: a reload's starts and retirements are counted under
// cause="reload" in pypool_worker_starts_total and
// pypool_worker_stops_total (Stats.StartsReload, StopsReload), beside the
// reload's own metrics; before, they were in no series, and the starts by
// cause did not add up to the workers started.
func TestReloadCauses(t *testing.T) {
	pool := newPool(t, 2, 0)
	c := NewCollector(pool, Opts{Pool: "test"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pool.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := starts(t, c, "reload"); got != 2 {
		t.Errorf(`pypool_worker_starts_total{cause="reload"} = %v, want 2`, got)
	}
	if got := counterValue(t, c, "pypool_worker_stops_total", "cause", "reload"); got != 2 {
		t.Errorf(`pypool_worker_stops_total{cause="reload"} = %v, want 2`, got)
	}
	if got := counterValue(t, c, "pypool_reloads_total", "outcome", "done"); got != 1 {
		t.Errorf(`pypool_reloads_total{outcome="done"} = %v, want 1`, got)
	}
}
