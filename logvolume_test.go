package pypool

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The bound docs/observability.md states for the pool's own records at
// level Info and above, under a storm of deadlines: records and bytes per
// second, averaged over the run.
const (
	maxLogRecordsPerSecond = 5
	maxLogBytesPerSecond   = 8 << 10
)

// countingHandler formats records as JSON, as a service would, and counts
// the pool's own records ("pypool: ...") and their bytes; what the
// workers write (their stdout and stderr lines) is the user's and is
// counted apart.
type countingHandler struct {
	inner slog.Handler
	c     *logCounts
}

// logCounts are a countingHandler's counters, shared by its derived
// handlers.
type logCounts struct {
	mu         sync.Mutex
	buf        bytes.Buffer
	records    int
	bytes      int
	byMessage  map[string]int
	output     int // records of the workers' output
	debugCount int // the pool's records below the handler's level
}

func newCountingHandler() *countingHandler {
	c := &logCounts{byMessage: map[string]int{}}
	return &countingHandler{inner: slog.NewJSONHandler(&c.buf, &slog.HandlerOptions{Level: slog.LevelInfo}), c: c}
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	own := strings.HasPrefix(r.Message, "pypool:")
	switch {
	case r.Level < slog.LevelInfo:
		if own {
			h.c.debugCount++
		}
		return nil
	case !own:
		h.c.output++
		return nil
	}
	h.c.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	h.c.records++
	h.c.bytes += h.c.buf.Len()
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "function" || a.Key == "event" {
			key += " " + a.Value.String()
		}
		return true
	})
	h.c.byMessage[key]++
	return nil
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{inner: h.inner.WithAttrs(as), c: h.c}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{inner: h.inner.WithGroup(name), c: h.c}
}

// TestLogVolumeUnderDeadlines: a pool whose callers' deadlines are
// routinely exceeded (many callers with short deadlines against a function
// that sleeps, and a few whose function ignores KeyboardInterrupt, so that
// their workers are killed) logs, at level Info and above, no more than
// maxLogRecordsPerSecond records and maxLogBytesPerSecond bytes per
// second. The bound is on volume: how many calls the run makes depends on
// the machine, and more calls must not mean more records.
func TestLogVolumeUnderDeadlines(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test")
	}
	h := newCountingHandler()
	cfg := testConfig(t)
	cfg.Logger = slog.New(h)
	cfg.Size = 4
	cfg.InterruptGrace = 100 * time.Millisecond
	pool := newTestPool(t, cfg)

	const (
		run      = 3 * time.Second
		sleepers = 12
		stubborn = 2
	)
	var (
		mu       sync.Mutex
		deadline int
		wg       sync.WaitGroup
	)
	stop := time.Now().Add(run)
	caller := func(fn string, arg any, timeout time.Duration) {
		defer wg.Done()
		for time.Now().Before(stop) {
			ctx, cancel := context.WithTimeout(testCtx(t), timeout)
			_, err := pool.Call(ctx, fn, arg)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				mu.Lock()
				deadline++
				mu.Unlock()
			}
		}
	}
	began := time.Now()
	for range sleepers {
		wg.Add(1)
		go caller("sleep", 5, 20*time.Millisecond)
	}
	for range stubborn {
		wg.Add(1)
		go caller("swallow_interrupt", 5, 20*time.Millisecond)
	}
	wg.Wait()
	elapsed := time.Since(began).Seconds()

	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	perSecond := float64(h.c.records) / elapsed
	bytesPerSecond := float64(h.c.bytes) / elapsed
	t.Logf("%d deadlines in %.1fs: %d records (%.1f/s), %d bytes (%.0f B/s) at Info and above; %d below; %d output lines; by message, function and event: %v",
		deadline, elapsed, h.c.records, perSecond, h.c.bytes, bytesPerSecond, h.c.debugCount, h.c.output, h.c.byMessage)
	require.Positive(t, deadline, "the storm happened")
	assert.LessOrEqual(t, perSecond, float64(maxLogRecordsPerSecond), "records per second at Info and above")
	assert.LessOrEqual(t, bytesPerSecond, float64(maxLogBytesPerSecond), "bytes per second at Info and above")
}
