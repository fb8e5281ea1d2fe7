// Command priorities shows the first rule of running pypool for two kinds of
// calls: give the calls that must not wait (the writes) a small pool of their
// own, and let the calls that may wait or be retried (the reads) flood
// another one. It measures the write latency three times: with no reads,
// with reads saturating their own pool, and with the writes sent to the
// saturated read pool instead, which is what the dedicated pool avoids.
//
//	go run ./examples/priorities                # 6 seconds
//	go run ./examples/priorities -duration 30s  # longer phases, steadier percentiles
//
// The reads run with Config.CrashRetries: a read worker dies now and then
// (-crash-rate) and the read is tried again on another worker, so that no
// read fails. Writes get no retries: a write whose worker died may have
// written, and only the caller can decide what to do.
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
	"sync/atomic"
	"time"

	"github.com/pypool/pypool"
)

// options are the example's knobs, set by flags.
type options struct {
	Duration  time.Duration // the whole run: three phases of a third each
	Readers   int           // goroutines calling read in a loop
	ReadMs    int           // how long one read sleeps in Python
	CrashRate float64       // chance that a read kills its worker
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
	fs := flag.NewFlagSet("priorities", flag.ContinueOnError)
	fs.DurationVar(&o.Duration, "duration", 6*time.Second, "total run time (three phases)")
	fs.IntVar(&o.Readers, "readers", 32, "concurrent read callers")
	fs.IntVar(&o.ReadMs, "read-ms", 20, "duration of one read in Python, in ms")
	fs.Float64Var(&o.CrashRate, "crash-rate", 0.01, "chance that a read crashes its worker")
	err := fs.Parse(args)
	return o, err
}

// run starts the two pools, runs the three phases and prints their write
// latencies to out.
func run(ctx context.Context, out io.Writer, o options) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil)) // the crashes are on purpose
	newPool := func(size, retries int) (*pypool.Pool, error) {
		return pypool.New(ctx, pypool.Config{
			Module:       "priorities_module",
			PythonPath:   []string{sourceDir()},
			Size:         size,
			CrashRetries: retries,
			Logger:       quiet,
		})
	}
	// Writes: a small pool of their own. Reads: a bigger one, shared by
	// many callers, whose calls are idempotent and may be retried.
	writes, err := newPool(1, 0)
	if err != nil {
		return err
	}
	defer writes.Close(context.Background())
	reads, err := newPool(2, 3)
	if err != nil {
		return err
	}
	defer reads.Close(context.Background())

	phase := o.Duration / 3
	fmt.Fprintf(out, "write pool: %d worker; read pool: %d workers, CrashRetries 3, %d read callers of %d ms reads\n\n",
		writes.Stats().Size, reads.Stats().Size, o.Readers, o.ReadMs)
	fmt.Fprintf(out, "%-34s %7s %8s %8s %8s %8s %8s\n", "write latency (ms)", "writes", "p50", "p90", "p99", "max", "reads")

	phases := []struct {
		name  string
		flood bool
		pool  *pypool.Pool // where the writes go
	}{
		{"no reads", false, writes},
		{"reads flooding, own write pool", true, writes},
		{"reads flooding, writes shared", true, reads},
	}
	var readErrs atomic.Int64
	for _, ph := range phases {
		lat, nReads, err := measure(ctx, ph.pool, reads, ph.flood, phase, o, &readErrs)
		if err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		fmt.Fprintf(out, "%-34s %7d %8.1f %8.1f %8.1f %8.1f %8d\n", ph.name, len(lat),
			pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 100), nReads)
	}
	s := reads.Stats()
	fmt.Fprintf(out, "\nreads failed: %d; read workers crashed and replaced: %d (their reads retried)\n",
		readErrs.Load(), s.Crashes)
	return nil
}

// measure makes writes on wp one after the other for d, while (with
// flood) o.Readers goroutines make reads on rp, and returns the writes'
// latencies in ms and the number of reads served.
func measure(ctx context.Context, wp, rp *pypool.Pool, flood bool, d time.Duration, o options, readErrs *atomic.Int64) ([]float64, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	var nReads atomic.Int64
	if flood {
		for i := 0; i < o.Readers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					_, err := rp.Call(ctx, "read", fmt.Sprint("key", i), o.ReadMs, o.CrashRate)
					switch {
					case err == nil:
						nReads.Add(1)
					case ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded):
						log.Printf("read failed: %v", err) // not cut off by the phase's end: a real failure
						readErrs.Add(1)
					}
				}
			}()
		}
		time.Sleep(min(d/5, 200*time.Millisecond)) // let the reads fill the queue
	}
	var lat []float64
	var err error
	for ctx.Err() == nil {
		// Each write has its own deadline, longer than the phase: a write
		// cut off by the phase's end is not counted.
		wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
		t0 := time.Now()
		_, werr := wp.Call(wctx, "write", "k", "v")
		elapsed := time.Since(t0)
		wcancel()
		if werr != nil {
			err = werr
			break
		}
		lat = append(lat, float64(elapsed.Microseconds())/1000)
		time.Sleep(5 * time.Millisecond) // a write every few ms, not a flood
	}
	cancel()
	wg.Wait()
	return lat, nReads.Load(), err
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

// sourceDir returns the directory of this file, where priorities_module.py
// is, so that the example runs from any working directory.
func sourceDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(file)
}
