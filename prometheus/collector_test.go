package prometheus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/pypool/pypool"
)

// newPool starts a pool of the core module's test module, closed when the
// test ends.
func newPool(t *testing.T, size, overflow int) *pypool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:      "pypool_testmod",
		PythonPath:  []string{"../testdata/pymod"},
		Size:        size,
		MaxOverflow: overflow,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close(context.Background()) })
	return pool
}

func call(t *testing.T, pool *pypool.Pool, fn string, args ...any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := pool.Call(ctx, fn, args...)
	return err
}

// TestCollectorCounts makes calls with known outcomes and compares the
// metrics read from Stats and those observed per call.
func TestCollectorCounts(t *testing.T) {
	pool := newPool(t, 1, 0)
	c := NewCollector(pool, Opts{Pool: "test"})
	for range 3 {
		if err := call(t, pool, "echo", 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := call(t, pool, "fail", "on purpose"); err == nil {
		t.Fatal("fail did not fail")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pool.Transaction(ctx, func(*pypool.Worker) error {
		_, err := pool.TryCall(ctx, "echo", 1) // the one worker is held
		return err
	}); err == nil {
		t.Fatal("TryCall was not refused")
	}

	expected := `
# HELP pypool_calls_total Calls that ended (each attempt of a retried call), by function and outcome.
# TYPE pypool_calls_total counter
pypool_calls_total{function="echo",outcome="ok",pool="test"} 3
pypool_calls_total{function="echo",outcome="rejected",pool="test"} 1
pypool_calls_total{function="fail",outcome="python_error",pool="test"} 1
# HELP pypool_calls_started_total Calls begun (a retried call counts once).
# TYPE pypool_calls_started_total counter
pypool_calls_started_total{pool="test"} 5
# HELP pypool_python_exceptions_total Calls that ended with a Python exception or a refusal of the Python runtime.
# TYPE pypool_python_exceptions_total counter
pypool_python_exceptions_total{pool="test"} 1
# HELP pypool_rejections_total Calls refused with ErrPoolExhausted.
# TYPE pypool_rejections_total counter
pypool_rejections_total{pool="test"} 1
# HELP pypool_size Configured number of workers kept running (Config.Size).
# TYPE pypool_size gauge
pypool_size{pool="test"} 1
# HELP pypool_workers Workers by state: idle, in_use (checked out, or finishing an interrupted call), starting, stopping.
# TYPE pypool_workers gauge
pypool_workers{pool="test",state="idle"} 1
pypool_workers{pool="test",state="in_use"} 0
pypool_workers{pool="test",state="starting"} 0
pypool_workers{pool="test",state="stopping"} 0
# HELP pypool_worker_starts_total Workers started, by cause: initial, crash (replacing a crashed or killed worker), recycle (replacing a recycled one), overflow, resize, reload (Pool.Reload's new workers), handover (a forked worker in place of the fork server's first worker, started by exec; not a restart).
# TYPE pypool_worker_starts_total counter
pypool_worker_starts_total{cause="crash",pool="test"} 0
pypool_worker_starts_total{cause="handover",pool="test"} 0
pypool_worker_starts_total{cause="initial",pool="test"} 1
pypool_worker_starts_total{cause="overflow",pool="test"} 0
pypool_worker_starts_total{cause="recycle",pool="test"} 0
pypool_worker_starts_total{cause="reload",pool="test"} 0
pypool_worker_starts_total{cause="resize",pool="test"} 0
# HELP pypool_async_calls Calls of async functions in flight on those workers, those being cancelled included; at most pypool_async_workers times Config.AsyncCalls (Stats.AsyncCalls).
# TYPE pypool_async_calls gauge
pypool_async_calls{pool="test"} 0
# HELP pypool_async_workers Workers in use by calls of async functions, many at once (Config.AsyncCalls; they count in pypool_workers{state="in_use"} too) (Stats.AsyncWorkers).
# TYPE pypool_async_workers gauge
pypool_async_workers{pool="test"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(expected),
		"pypool_calls_total", "pypool_calls_started_total", "pypool_python_exceptions_total",
		"pypool_rejections_total", "pypool_size", "pypool_workers", "pypool_worker_starts_total",
		"pypool_async_calls", "pypool_async_workers"); err != nil {
		t.Error(err)
	}

	// The histograms saw every call: 5 waits, and one duration series per
	// function and outcome.
	if n := testutil.CollectAndCount(c, "pypool_call_duration_seconds"); n != 3 {
		t.Errorf("pypool_call_duration_seconds has %d series, want 3", n)
	}
	h := histogram(t, c, "pypool_wait_duration_seconds")
	if got := h.GetSampleCount(); got != 5 {
		t.Errorf("pypool_wait_duration_seconds counted %d calls, want 5", got)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// TestAsyncGauges: with Config.AsyncCalls, pypool_async_workers and
// pypool_async_calls are Stats.AsyncWorkers and AsyncCalls: 3 calls held in
// flight on 2 workers (each takes an idle worker first, the third joins one
// of them), then none once they are cancelled.
func TestAsyncGauges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pypool.New(ctx, pypool.Config{
		Module:     "pypool_asynccalls",
		PythonPath: []string{"../testdata/pymod"},
		Size:       2,
		AsyncCalls: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
	c := NewCollector(pool, Opts{Pool: "fetch"})
	held, release := context.WithCancel(ctx)
	ended := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := pool.Call(held, "wait_cancel", 60)
			ended <- err
		}()
	}
	settle := func(calls, workers int) {
		t.Helper()
		for s := pool.Stats(); s.AsyncCalls != calls || s.AsyncWorkers != workers || s.InUse != workers; s = pool.Stats() {
			if ctx.Err() != nil {
				t.Fatalf("the pool never had %d async calls on %d workers: %+v", calls, workers, s)
			}
			time.Sleep(5 * time.Millisecond)
		}
		expected := fmt.Sprintf(`
# HELP pypool_async_calls Calls of async functions in flight on those workers, those being cancelled included; at most pypool_async_workers times Config.AsyncCalls (Stats.AsyncCalls).
# TYPE pypool_async_calls gauge
pypool_async_calls{pool="fetch"} %d
# HELP pypool_async_workers Workers in use by calls of async functions, many at once (Config.AsyncCalls; they count in pypool_workers{state="in_use"} too) (Stats.AsyncWorkers).
# TYPE pypool_async_workers gauge
pypool_async_workers{pool="fetch"} %d
`, calls, workers)
		if err := testutil.CollectAndCompare(c, strings.NewReader(expected), "pypool_async_calls", "pypool_async_workers"); err != nil {
			t.Error(err)
		}
	}
	settle(3, 2)
	release()
	for range 3 {
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Errorf("a held call returned %v, want context.Canceled", err)
		}
	}
	settle(0, 0)
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// gather is one scrape of c, in a registry of its own that checks it
// (pedantic).
func gather(t *testing.T, c prometheus.Collector) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// histogram gathers c and returns the one series of the histogram name.
func histogram(t *testing.T, c prometheus.Collector, name string) interface{ GetSampleCount() uint64 } {
	t.Helper()
	for _, f := range gather(t, c) {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no single series of %s", name)
	return nil
}

// TestCollectorBoundsFunctions: past MaxFunctions names, calls are
// labelled "other".
func TestCollectorBoundsFunctions(t *testing.T) {
	pool := newPool(t, 1, 0)
	c := NewCollector(pool, Opts{Pool: "bounded", MaxFunctions: 2})
	for _, fn := range []string{"pid", "echo", "duplicate_text", "pid", "add"} {
		var err error
		switch fn {
		case "pid":
			err = call(t, pool, fn)
		case "add":
			err = call(t, pool, fn, 1, 2)
		default:
			err = call(t, pool, fn, "x")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for fn, want := range map[string]float64{"pid": 2, "echo": 1, OtherFunction: 2} {
		got := testutil.ToFloat64(c.calls.WithLabelValues(fn, "ok"))
		if got != want {
			t.Errorf("pypool_calls_total{function=%q}: %v, want %v", fn, got, want)
		}
	}
	if n := testutil.CollectAndCount(c, "pypool_calls_total"); n != 3 {
		t.Errorf("pypool_calls_total has %d series, want 3", n)
	}
}

// TestTwoPoolsOneRegistry: collectors of two pools register together,
// told apart by the pool label.
func TestTwoPoolsOneRegistry(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(newPool(t, 1, 0), Opts{Pool: "reads"}))
	reg.MustRegister(NewCollector(newPool(t, 2, 0), Opts{Pool: "writes"}))
	expected := `
# HELP pypool_size Configured number of workers kept running (Config.Size).
# TYPE pypool_size gauge
pypool_size{pool="reads"} 1
pypool_size{pool="writes"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "pypool_size"); err != nil {
		t.Error(err)
	}
}

// TestScrapeSample writes a scrape of a pool that served a little traffic
// to $PYPOOL_SCRAPE_SAMPLE, for the excerpt in docs/observability.md
// (Prometheus). It is skipped without it.
func TestScrapeSample(t *testing.T) {
	path := os.Getenv("PYPOOL_SCRAPE_SAMPLE")
	if path == "" {
		t.Skip("PYPOOL_SCRAPE_SAMPLE is not set")
	}
	pool := newPool(t, 2, 2)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(pool, Opts{Pool: "numpy"}))
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 20 {
				call(t, pool, "sleep", 0.01)
			}
			call(t, pool, "fail", "sample")
		}()
	}
	for range 4 {
		<-done
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
