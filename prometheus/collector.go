// Package prometheus exports a pypool.Pool's Stats and per-call latencies
// as Prometheus metrics. It is a module of its own, so that the pypool
// package does not depend on client_golang:
//
//	pool, err := pypool.New(ctx, cfg)
//	...
//	prometheus.MustRegister(pypoolprom.NewCollector(pool, pypoolprom.Opts{Pool: "numpy"}))
//
// (with pypoolprom "github.com/pypool/pypool/prometheus"). Every metric has
// the label pool; the per-call ones also function (the first
// Opts.MaxFunctions function names seen, then "other") and outcome
// (pypool.Outcome: ok, python_error, crashed, deadline, canceled, rejected, closed, start_failed, error).
//
// The counters read from Stats count from the pool's New; the per-call
// histograms and pypool_calls_total count from NewCollector, through the
// pool's one hook into its calls, a pypool.Tracer (pypool.Pool.AddTracer):
// like the spans of the otel subpackage, they count each attempt of a call
// (one per call unless Config.CrashRetries retried it after a crash) and not
// the calls a Go callback makes inside the call that waits for it.
// Readiness probes (pypool.Pool.Ping) are not calls: they count in
// pypool_pings_total and pypool_ping_failures_total only, never in a
// function label or a histogram.
package prometheus

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/pypool/pypool"
)

// Opts configures a Collector.
type Opts struct {
	// Pool is the value of the pool label: which pool of the program the
	// metrics are about. Default "default".
	Pool string
	// MaxFunctions bounds the function label: the first MaxFunctions
	// distinct function names called keep their name, later ones are
	// counted as "other". Default 50.
	MaxFunctions int
	// CallBuckets are the buckets of pypool_call_duration_seconds, in
	// seconds. Default DefaultCallBuckets.
	CallBuckets []float64
	// WaitBuckets are the buckets of pypool_wait_duration_seconds, in
	// seconds. Default DefaultWaitBuckets.
	WaitBuckets []float64
}

// Default buckets: calls go through a pipe round trip of tens of
// microseconds up to Python work of many seconds; waits are 0 while a
// worker is idle and up to a worker start (hundreds of ms) or a deadline.
var (
	DefaultCallBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	DefaultWaitBuckets = []float64{.0001, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
)

// OtherFunction is the function label of the calls to functions beyond
// Opts.MaxFunctions.
const OtherFunction = "other"

// Collector is a prometheus.Collector for one pool. Create it with
// NewCollector and register it; it is told about every call of the pool
// from then on, as a pypool.Tracer, until Close.
type Collector struct {
	pool  *pypool.Pool
	descs descs

	callDuration *prometheus.HistogramVec // pool, function, outcome
	waitDuration prometheus.Histogram     // pool
	calls        *prometheus.CounterVec   // pool, function, outcome

	maxFunctions int
	mu           sync.RWMutex
	functions    map[string]struct{} // names that keep their label

	detach func() // removes the collector from the pool's tracers
}

// NewCollector returns a collector of pool's metrics, and adds it to pool's
// tracers (pypool.Pool.AddTracer), which tell it each call's function, wait,
// duration and outcome until Collector.Close removes it.
func NewCollector(pool *pypool.Pool, opts Opts) *Collector {
	if opts.Pool == "" {
		opts.Pool = "default"
	}
	if opts.MaxFunctions <= 0 {
		opts.MaxFunctions = 50
	}
	if opts.CallBuckets == nil {
		opts.CallBuckets = DefaultCallBuckets
	}
	if opts.WaitBuckets == nil {
		opts.WaitBuckets = DefaultWaitBuckets
	}
	poolLabel := prometheus.Labels{"pool": opts.Pool}
	c := &Collector{
		pool:  pool,
		descs: newDescs(opts.Pool),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "pypool_call_duration_seconds",
			Help:        "Duration of calls (each attempt of a retried call), as the caller saw it: waiting for a worker, then Python.",
			Buckets:     opts.CallBuckets,
			ConstLabels: poolLabel,
		}, []string{"function", "outcome"}),
		waitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "pypool_wait_duration_seconds",
			Help:        "Time each call waited for a worker (0 when one was idle).",
			Buckets:     opts.WaitBuckets,
			ConstLabels: poolLabel,
		}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "pypool_calls_total",
			Help:        "Calls that ended (each attempt of a retried call), by function and outcome.",
			ConstLabels: poolLabel,
		}, []string{"function", "outcome"}),
		maxFunctions: opts.MaxFunctions,
		functions:    make(map[string]struct{}),
	}
	c.detach = pool.AddTracer(c)
	return c
}

// Close detaches c from its pool: c is told of no more calls, so its
// per-call metrics (pypool_calls_total and the histograms) stop where they
// are; a scrape still reads the pool's Stats. Close it when it is no longer
// registered, so that a collector made again for the same pool (after a
// reload, or a registration that failed) does not leave the old one
// counting beside it:
//
//	prometheus.Unregister(c)
//	c.Close()
//
// Close returns nil (it implements io.Closer); calling it again does
// nothing.
func (c *Collector) Close() error {
	c.detach()
	return nil
}

var _ pypool.Tracer = (*Collector)(nil)

// TraceCallStart implements pypool.Tracer: the collector keeps nothing
// between the hooks.
func (c *Collector) TraceCallStart(ctx context.Context, _ *pypool.Pool, _ pypool.TraceCallStartData) context.Context {
	return ctx
}

// TraceCallWorker implements pypool.Tracer; the wait is counted at the end.
func (c *Collector) TraceCallWorker(context.Context, *pypool.Pool, pypool.TraceCallWorkerData) {}

// TraceCallEnd implements pypool.Tracer: it counts the call, its duration
// and its wait for a worker; a readiness probe (data.Probe) is not a call.
func (c *Collector) TraceCallEnd(_ context.Context, _ *pypool.Pool, data pypool.TraceCallEndData) {
	if data.Probe {
		return // Pool.Ping: counted in pypool_pings_total, from Stats
	}
	fn := c.functionLabel(data.Function)
	outcome := data.Outcome.String()
	c.callDuration.WithLabelValues(fn, outcome).Observe(data.Duration.Seconds())
	c.calls.WithLabelValues(fn, outcome).Inc()
	c.waitDuration.Observe(data.Wait.Seconds())
}

// functionLabel is fn, or OtherFunction once MaxFunctions other names
// have been seen.
func (c *Collector) functionLabel(fn string) string {
	c.mu.RLock()
	_, ok := c.functions[fn]
	full := len(c.functions) >= c.maxFunctions
	c.mu.RUnlock()
	switch {
	case ok:
		return fn
	case full:
		return OtherFunction
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.functions[fn]; !ok {
		if len(c.functions) >= c.maxFunctions {
			return OtherFunction
		}
		c.functions[fn] = struct{}{}
	}
	return fn
}

// descs are the metrics read from Stats at each scrape. They carry the
// pool label as a constant label, so that the collectors of several pools
// can be registered together.
type descs struct {
	size, maxOverflow, workers, overflow, overflowInUse, waiting                    *prometheus.Desc
	callsStarted, callsFinished, callsSent, python, rejections, deadlines, canceled *prometheus.Desc
	interrupts, waits, waitSeconds, crashes, startFailures, starts, stops           *prometheus.Desc
	pings, pingFailures                                                             *prometheus.Desc
	generation, oldGeneration, reloads                                              *prometheus.Desc
	asyncWorkers, asyncCalls                                                        *prometheus.Desc
}

func newDescs(pool string) descs {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, prometheus.Labels{"pool": pool})
	}
	return descs{
		size:          desc("pypool_size", "Configured number of workers kept running (Config.Size)."),
		maxOverflow:   desc("pypool_max_overflow", "Configured limit of workers beyond the size (Config.MaxOverflow)."),
		workers:       desc("pypool_workers", "Workers by state: idle, in_use (checked out, or finishing an interrupted call), starting, stopping.", "state"),
		overflow:      desc("pypool_overflow_workers", "Workers running beyond the size, idle or in use."),
		overflowInUse: desc("pypool_overflow_in_use", "Callers served beyond the size."),
		waiting:       desc("pypool_waiting_callers", "Callers waiting for a worker."),

		callsStarted:  desc("pypool_calls_started_total", "Calls begun (a retried call counts once)."),
		callsFinished: desc("pypool_calls_finished_total", "Calls returned, whatever their outcome."),
		callsSent:     desc("pypool_calls_sent_total", "Calls sent to a worker, every attempt of a retried call (Stats.CallsSent)."),
		python:        desc("pypool_python_exceptions_total", "Calls that ended with a Python exception or a refusal of the Python runtime."),
		rejections:    desc("pypool_rejections_total", "Calls refused with ErrPoolExhausted."),
		deadlines:     desc("pypool_deadline_exceeded_total", "Calls ended by their context's deadline."),
		canceled:      desc("pypool_canceled_total", "Calls ended by the cancellation of their context."),
		interrupts:    desc("pypool_interrupts_total", "Calls cut off while Python ran them (KeyboardInterrupt sent)."),
		pings:         desc("pypool_pings_total", "Readiness probes (Pool.Ping): not calls, in none of the call metrics."),
		pingFailures:  desc("pypool_ping_failures_total", "Readiness probes that returned an error."),
		waits:         desc("pypool_waits_total", "Checkouts that waited for a worker."),
		waitSeconds:   desc("pypool_wait_seconds_total", "Total time checkouts waited for a worker."),
		crashes:       desc("pypool_crashes_total", "Workers that died without being asked to."),
		startFailures: desc("pypool_start_failures_total", "Worker starts that failed."),
		starts:        desc("pypool_worker_starts_total", "Workers started, by cause: initial, crash (replacing a crashed or killed worker), recycle (replacing a recycled one), overflow, resize, reload (Pool.Reload's new workers), handover (a forked worker in place of the fork server's first worker, started by exec; not a restart).", "cause"),
		generation:    desc("pypool_generation", "The generation new workers start in: 0 from New on, one more for each Pool.Reload that got a new worker running (Stats.Generation)."),
		oldGeneration: desc("pypool_old_generation_workers", "Workers of an older generation still serving or starting: a reload's progress (Stats.OldGeneration)."),
		reloads:       desc("pypool_reloads_total", "Pool.Reload runs that ended, by outcome: done (every worker replaced), failed (the new code did not start, a context ended, or Close).", "outcome"),
		asyncWorkers:  desc("pypool_async_workers", "Workers in use by calls of async functions, many at once (Config.AsyncCalls; they count in pypool_workers{state=\"in_use\"} too) (Stats.AsyncWorkers)."),
		asyncCalls:    desc("pypool_async_calls", "Calls of async functions in flight on those workers, those being cancelled included; at most pypool_async_workers times Config.AsyncCalls (Stats.AsyncCalls)."),
		stops:         desc("pypool_worker_stops_total", "Workers stopped, by cause: overflow (at check-in, nobody waiting), overflow_idle (after Config.OverflowIdleTimeout), max_calls, max_memory, max_lifetime, killed (unknown state), close, resize, reload (retired by Pool.Reload), handover (the fork server's first worker, started by exec, once a forked one could take its place). Crashes are pypool_crashes_total.", "cause"),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, d := range []*prometheus.Desc{
		d.size, d.maxOverflow, d.workers, d.overflow, d.overflowInUse, d.waiting,
		d.callsStarted, d.callsFinished, d.callsSent, d.python, d.rejections,
		d.deadlines, d.canceled, d.interrupts, d.waits, d.waitSeconds,
		d.crashes, d.startFailures, d.starts, d.stops, d.pings, d.pingFailures,
		d.generation, d.oldGeneration, d.reloads, d.asyncWorkers, d.asyncCalls,
	} {
		ch <- d
	}
	c.callDuration.Describe(ch)
	c.waitDuration.Describe(ch)
	c.calls.Describe(ch)
}

// Collect implements prometheus.Collector: one Stats snapshot per scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stats()
	d := &c.descs
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(d.size, s.Size)
	gauge(d.maxOverflow, s.MaxOverflow)
	gauge(d.workers, s.Idle, "idle")
	gauge(d.workers, s.InUse, "in_use")
	gauge(d.workers, s.Starting, "starting")
	gauge(d.workers, s.Stopping, "stopping")
	gauge(d.overflow, s.Overflow)
	gauge(d.overflowInUse, s.OverflowInUse)
	gauge(d.waiting, s.Waiting)
	gauge(d.asyncWorkers, s.AsyncWorkers)
	gauge(d.asyncCalls, s.AsyncCalls)

	counter(d.callsStarted, s.CallsStarted)
	counter(d.callsFinished, s.CallsFinished)
	counter(d.callsSent, s.CallsSent)
	counter(d.python, s.PythonExceptions)
	counter(d.rejections, s.Rejections)
	counter(d.deadlines, s.DeadlineExceeded)
	counter(d.canceled, s.Canceled)
	counter(d.interrupts, s.Interrupts)
	counter(d.pings, s.Pings)
	counter(d.pingFailures, s.PingFailures)
	counter(d.waits, s.WaitCount)
	ch <- prometheus.MustNewConstMetric(d.waitSeconds, prometheus.CounterValue, s.WaitDuration.Seconds())
	counter(d.crashes, s.Crashes)
	counter(d.startFailures, s.StartFailures)
	counter(d.starts, s.StartsInitial, "initial")
	counter(d.starts, s.StartsCrash, "crash")
	counter(d.starts, s.StartsRecycle, "recycle")
	counter(d.starts, s.StartsOverflow, "overflow")
	counter(d.starts, s.StartsResize, "resize")
	counter(d.starts, s.StartsReload, "reload")
	counter(d.starts, s.StartsHandover, "handover")
	counter(d.stops, s.StopsOverflow, "overflow")
	counter(d.stops, s.StopsOverflowIdle, "overflow_idle")
	counter(d.stops, s.StopsMaxCalls, "max_calls")
	counter(d.stops, s.StopsMaxMemory, "max_memory")
	counter(d.stops, s.StopsMaxLifetime, "max_lifetime")
	counter(d.stops, s.StopsKilled, "killed")
	counter(d.stops, s.StopsClose, "close")
	counter(d.stops, s.StopsResize, "resize")
	counter(d.stops, s.StopsReload, "reload")
	counter(d.stops, s.StopsHandover, "handover")
	gauge(d.generation, int(s.Generation))
	gauge(d.oldGeneration, s.OldGeneration)
	counter(d.reloads, s.ReloadsDone, "done")
	counter(d.reloads, s.ReloadsFailed, "failed")

	c.callDuration.Collect(ch)
	c.waitDuration.Collect(ch)
	c.calls.Collect(ch)
}
