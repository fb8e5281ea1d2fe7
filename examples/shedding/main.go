// Command shedding measures how callers that shed load (NoWait) and
// callers that wait share workers, in the three set-ups the manual
// describes (docs/operating.md, "Deadlines and shedding in a service").
// Two endpoints of one service call the same Python function under a
// load the workers cannot keep up with: "sheddable" requests should be
// answered at once or refused (503), "waiting" requests may wait for a
// worker until their deadline.
//
//   - shared pool, NoWait: one pool; sheddable requests call with
//     pypool.NoWait, waiting ones wait. A worker checked in goes to the
//     caller waiting longest, so while a queue exists (all the time under
//     this load) the NoWait calls are refused: they starve.
//   - separate pools: the sheddable requests get a pool of their own (half
//     the workers) and call it with NoWait; the waiting ones share the
//     other half. Each endpoint gets its own share, whatever the other
//     does.
//   - bounded queue: one pool, every request waits, in a queue bounded by
//     Config.MaxWaiting, the sheddable ones with a short deadline. Refusals
//     (ErrPoolExhausted once the queue is full, or a deadline) fall on
//     both endpoints alike: shedding is fair.
//
// For each set-up and endpoint it prints the requests made, the share
// answered (ok %), how many were answered per second (ok/s: the share of
// the workers the endpoint got) and the latency of the answered ones (p50,
// p99). Every caller pauses -think between two requests, whatever the
// answer, as a client would before its next request.
//
//	go run ./examples/shedding                # 3 seconds: a second a set-up
//	go run ./examples/shedding -duration 9s   # steadier figures
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/pypool/pypool"
)

// options are the example's knobs, set by flags.
type options struct {
	Duration  time.Duration // the whole run: three set-ups of a third each
	Workers   int           // workers in all (split in two for separate pools)
	Callers   int           // callers of each endpoint
	WorkMs    int           // one request's work in Python, in ms
	Deadline  time.Duration // a waiting request's deadline
	ShedAfter time.Duration // a sheddable request's deadline in the bounded queue
	Queue     int           // Config.MaxWaiting of the bounded queue
	Think     time.Duration // a caller's pause between two requests
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(2) // the flag package has said why
	}
	if err := run(context.Background(), os.Stdout, o); err != nil {
		log.Fatal(err)
	}
}

// parseFlags reads the options from the command line.
func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("shedding", flag.ContinueOnError)
	fs.DurationVar(&o.Duration, "duration", 3*time.Second, "total run time (three set-ups)")
	fs.IntVar(&o.Workers, "workers", 4, "workers in all (half each when the pools are separate)")
	fs.IntVar(&o.Callers, "callers", 8, "concurrent callers of each endpoint")
	fs.IntVar(&o.WorkMs, "work-ms", 10, "duration of one request in Python, in ms")
	fs.DurationVar(&o.Deadline, "deadline", time.Second, "deadline of a waiting request")
	fs.DurationVar(&o.ShedAfter, "shed-after", 50*time.Millisecond, "deadline of a sheddable request in the bounded queue")
	fs.IntVar(&o.Queue, "queue", 8, "Config.MaxWaiting of the bounded queue")
	fs.DurationVar(&o.Think, "think", 5*time.Millisecond, "a caller's pause between two requests, whatever the answer")
	err := fs.Parse(args)
	return o, err
}

// endpoint is how one endpoint calls in a set-up: on which pool, with
// NoWait or not, and with which deadline.
type endpoint struct {
	pool     *pypool.Pool
	noWait   bool
	deadline time.Duration
}

// setup is one of the three set-ups: the pools it makes and how each
// endpoint calls.
type setup struct {
	name  string
	pools func(ctx context.Context, o options) (shed, wait *pypool.Pool, err error)
	shed  func(o options) (noWait bool, deadline time.Duration)
}

// run measures the three set-ups one after the other and prints a row per
// set-up and endpoint to out.
func run(ctx context.Context, out io.Writer, o options) error {
	if o.Workers < 2 {
		return fmt.Errorf("-workers is %d: the separate pools need at least 2", o.Workers)
	}
	newPool := func(ctx context.Context, size, maxWaiting int) (*pypool.Pool, error) {
		return pypool.New(ctx, pypool.Config{
			Module:     "shedding_module",
			PythonPath: []string{sourceDir()},
			Size:       size,
			MaxWaiting: maxWaiting,
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)), // the deadlines are on purpose
		})
	}
	half := o.Workers / 2
	setups := []setup{
		{"shared pool, NoWait",
			func(ctx context.Context, o options) (*pypool.Pool, *pypool.Pool, error) {
				p, err := newPool(ctx, o.Workers, 0)
				return p, p, err
			},
			func(o options) (bool, time.Duration) { return true, o.Deadline }},
		{"separate pools",
			func(ctx context.Context, o options) (*pypool.Pool, *pypool.Pool, error) {
				shed, err := newPool(ctx, half, 0)
				if err != nil {
					return nil, nil, err
				}
				wait, err := newPool(ctx, o.Workers-half, 0)
				if err != nil {
					shed.Close(context.Background())
				}
				return shed, wait, err
			},
			func(o options) (bool, time.Duration) { return true, o.Deadline }},
		{"bounded queue",
			func(ctx context.Context, o options) (*pypool.Pool, *pypool.Pool, error) {
				p, err := newPool(ctx, o.Workers, o.Queue)
				return p, p, err
			},
			func(o options) (bool, time.Duration) { return false, o.ShedAfter }},
	}

	fmt.Fprintf(out, "%d workers (%d+%d when separate); %d callers per endpoint, %v between requests; %d ms requests;\n"+
		"waiting deadline %v; bounded queue: MaxWaiting %d, sheddable deadline %v\n\n",
		o.Workers, half, o.Workers-half, o.Callers, o.Think, o.WorkMs, o.Deadline, o.Queue, o.ShedAfter)
	fmt.Fprintf(out, "%-20s %-10s %9s %7s %8s %8s %8s\n", "set-up", "endpoint", "requests", "ok %", "ok/s", "p50 ms", "p99 ms")
	phase := o.Duration / 3
	for _, s := range setups {
		shedPool, waitPool, err := s.pools(ctx, o)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		noWait, shedDeadline := s.shed(o)
		results, err := measure(ctx, phase, o, []endpoint{
			{pool: shedPool, noWait: noWait, deadline: shedDeadline},
			{pool: waitPool, deadline: o.Deadline},
		})
		shedPool.Close(context.Background())
		waitPool.Close(context.Background())
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		for i, name := range []string{"sheddable", "waiting"} {
			r := results[i]
			fmt.Fprintf(out, "%-20s %-10s %9d %7.1f %8.0f %8.1f %8.1f\n", s.name, name, r.requests,
				100*float64(len(r.ok))/float64(max(1, r.requests)), float64(len(r.ok))/phase.Seconds(),
				pct(r.ok, 50), pct(r.ok, 99))
		}
	}
	return nil
}

// result is what one endpoint saw during a set-up: the requests made and
// the latencies of those answered, in ms.
type result struct {
	requests int
	ok       []float64
}

// measure runs o.Callers callers of each endpoint for d, each making
// requests one after the other, and returns what each endpoint saw. A
// request is answered, or refused (ErrPoolExhausted, or its deadline
// passed); any other error ends the measure.
func measure(ctx context.Context, d time.Duration, o options, eps []endpoint) ([]result, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	results := make([]result, len(eps))
	var mu sync.Mutex
	var failure error
	var wg sync.WaitGroup
	for i, ep := range eps {
		for range o.Callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					ok, elapsed, err := request(ep, o.WorkMs)
					if ctx.Err() != nil {
						return // cut off by the set-up's end: not counted
					}
					mu.Lock()
					results[i].requests++
					if ok {
						results[i].ok = append(results[i].ok, float64(elapsed.Microseconds())/1000)
					}
					if err != nil && failure == nil {
						failure = err
						cancel()
					}
					mu.Unlock()
					time.Sleep(o.Think) // the caller's next request
				}
			}()
		}
	}
	wg.Wait()
	return results, failure
}

// request makes one request of endpoint ep, as an HTTP handler would with
// its own deadline, and reports whether it was answered and how long it
// took; err is an error that is neither a refusal nor a deadline.
func request(ep endpoint, workMs int) (ok bool, elapsed time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), ep.deadline)
	defer cancel()
	if ep.noWait {
		ctx = pypool.NoWait(ctx)
	}
	start := time.Now()
	_, err = pypool.CallAs[int](ctx, ep.pool, "work", workMs)
	elapsed = time.Since(start)
	switch {
	case err == nil:
		return true, elapsed, nil
	case errors.Is(err, pypool.ErrPoolExhausted), errors.Is(err, context.DeadlineExceeded):
		return false, elapsed, nil // shed: the handler answers 503
	}
	return false, elapsed, err
}

// pct returns the p-th percentile of xs (nearest rank), 0 for no values.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// sourceDir returns the directory of this file, where shedding_module.py
// is, so that the example runs from any working directory.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(file)
}
