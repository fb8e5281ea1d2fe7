package pypool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// stormDuration is how long the callers of TestDeadlineStorm keep
	// calling.
	stormDuration = 10 * time.Second
	stormCallers  = 64
	// stormMaxDeadline and stormMaxSleep bound the drawn call deadline and
	// the drawn duration of Python's sleep: most calls are cut off, while
	// waiting for a worker or while Python sleeps.
	stormMaxDeadline = 50 * time.Millisecond
	stormMaxSleep    = 100 * time.Millisecond
	// stormTimers is the number of goroutines measuring bare timers. The
	// bound compares the maximum lateness of ~25000 calls with the maximum
	// lateness of the bare timers, so they must sample the scheduler as
	// densely as the callers do: with 4 timer goroutines (~1500 timers) a
	// loaded machine once gave calls 216ms against timers 163ms, the
	// stall that delayed the calls falling between the sparser timers.
	stormTimers = stormCallers
	// stormGrace is Config.InterruptGrace: generous, so that a loaded
	// machine does not turn an interrupted call into a restart.
	stormGrace = 2 * time.Second
)

// TestDeadlineStorm: 64 callers call sleep with short deadlines on a pool of
// 4+2 workers. Every call ends in success or context.DeadlineExceeded, no
// later after its deadline than lateBound of a bare timer's lateness, and
// afterwards the pool is at rest with no worker lost, crashed or replaced.
func TestDeadlineStorm(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = 4, 2
	cfg.InterruptGrace = stormGrace
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	defer watchInvariants(t, pool)()
	defer dumpLogOnFailure(t, rec)

	stop := make(chan struct{})
	timers := make(chan timerLateness, stormTimers)
	for range stormTimers {
		go func() { timers <- measureTimers(stop) }()
	}

	results := make(chan stormResult, stormCallers)
	begin := time.Now()
	for range stormCallers {
		go func() {
			r := stormResult{maxLate: -time.Hour}
			for time.Since(begin) < stormDuration {
				r.call(pool)
			}
			results <- r
		}()
	}
	total := stormResult{maxLate: -time.Hour}
	for range stormCallers {
		total.merge(<-results)
	}
	close(stop)
	var bare timerLateness
	for range stormTimers {
		bare.merge(<-timers)
	}

	t.Logf("%d calls: %d ok, %d timed out, %d other errors; max lateness of a call %v (after its deadline), of %d bare timers %v; slack %v",
		total.calls, total.ok, total.timedOut, len(total.bad), total.maxLate, bare.n, bare.max, stormSlack)
	w := total.worst
	t.Logf("latest call: deadline %v, sleep %v, error %v, returned %v after its deadline; bare timers due from 100ms before its deadline to its return were at most %v late",
		w.d, w.sleep, w.err, total.maxLate, bare.maxBetween(w.deadline.Add(-100*time.Millisecond), w.deadline.Add(total.maxLate)))
	for _, err := range total.bad {
		t.Errorf("a call failed with %v: want success or context.DeadlineExceeded", err)
	}
	assert.LessOrEqual(t, total.maxLate, lateBound(bare.max),
		"a call returned %v after its deadline; bare timers were at most %v late", total.maxLate, bare.max)

	awaitPool(t, pool, "at rest with Size workers", func(s Stats) bool {
		return s.Workers == cfg.Size && s.Idle == cfg.Size && s.InUse == 0 &&
			s.Starting == 0 && s.Stopping == 0 && s.Waiting == 0
	})
	s := pool.Stats()
	t.Logf("stats at rest: %+v", s)
	assert.Zero(t, s.Crashes, "crashes")
	assert.Zero(t, s.StartFailures, "start failures")
	// Interrupted workers answer their KeyboardInterrupt within
	// InterruptGrace and stay: no worker is replaced. Stats.Restarts can
	// not show it here, as it also counts the overflow workers started
	// for the storm ("workers started after New, to replace or add to the
	// first ones"); the pool warns in its log at every replacement (a
	// worker that did not answer its interrupt, or crashed) and counts
	// recycled ones. TestDeadlineStormSize1, without overflow, asserts
	// Restarts == 0.
	assert.Zero(t, s.Recycled, "recycled")
	assert.Empty(t, poolWarnings(rec), "the pool's warnings and errors")
	assertProcessesAreWorkers(t, pool)
}

// TestDeadlineStormSize1 reproduces the finding: calls whose deadline
// passes around the moment the call frame is written must not cost the only
// worker; the pool is back at one idle worker by itself.
func TestDeadlineStormSize1(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.InterruptGrace = stormGrace
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	defer dumpLogOnFailure(t, rec)

	var ok, timedOut int
	for i := range 300 {
		d := rand.N(60 * time.Microsecond)
		ctx, cancel := context.WithTimeout(context.Background(), d)
		out, err := pool.Call(ctx, "echo", i)
		cancel()
		switch {
		case err == nil:
			ok++
			require.Equal(t, int64(i), out)
		case errors.Is(err, context.DeadlineExceeded):
			timedOut++
		default:
			t.Fatalf("call %d (deadline %v) failed with %v: want success or context.DeadlineExceeded", i, d, err)
		}
	}
	t.Logf("300 calls: %d ok, %d timed out", ok, timedOut)
	awaitPool(t, pool, "one idle worker at rest", func(s Stats) bool {
		return s.Workers == 1 && s.Idle == 1 && s.InUse == 0 &&
			s.Starting == 0 && s.Stopping == 0 && s.Waiting == 0
	})
	s := pool.Stats()
	t.Logf("stats at rest: %+v", s)
	assert.Zero(t, s.Restarts, "restarts")
	assert.Zero(t, s.Crashes, "crashes")
	assert.Empty(t, poolWarnings(rec), "the pool's warnings and errors")
	assertProcessesAreWorkers(t, pool)
}

// stormResult counts one caller's calls.
type stormResult struct {
	calls, ok, timedOut int
	maxLate             time.Duration // return time minus deadline, the largest
	worst               stormCall     // the call that returned maxLate after its deadline
	bad                 []error       // neither success nor DeadlineExceeded
}

// stormCall describes one call.
type stormCall struct {
	deadline time.Time
	d, sleep time.Duration
	err      error
}

func (r *stormResult) call(pool *Pool) {
	d := rand.N(stormMaxDeadline + 1)
	sleep := rand.N(stormMaxSleep + 1)
	deadline := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	out, err := pool.Call(ctx, "sleep", sleep.Seconds())
	late := time.Since(deadline)
	cancel()
	r.calls++
	if late > r.maxLate {
		r.maxLate = late
		r.worst = stormCall{deadline: deadline, d: d, sleep: sleep, err: err}
	}
	switch {
	case err == nil && out == "slept":
		r.ok++
	case errors.Is(err, context.DeadlineExceeded):
		r.timedOut++
	case err == nil:
		r.bad = append(r.bad, fmt.Errorf("sleep returned %v", out))
	default:
		r.bad = append(r.bad, err)
	}
}

func (r *stormResult) merge(o stormResult) {
	r.calls += o.calls
	r.ok += o.ok
	r.timedOut += o.timedOut
	if o.maxLate > r.maxLate {
		r.maxLate, r.worst = o.maxLate, o.worst
	}
	r.bad = append(r.bad, o.bad...)
}

// assertProcessesAreWorkers checks that the child processes of the test
// binary are exactly the pool's workers.
func assertProcessesAreWorkers(t *testing.T, pool *Pool) {
	t.Helper()
	pids, kids := workerPids(pool), childProcesses()
	slices.Sort(pids)
	slices.Sort(kids)
	assert.Equal(t, pids, kids, "child processes vs the pool's workers")
}

// poolWarnings returns the messages the pool itself logged at level Warn or
// above (the workers' stderr lines are logged at Warn too, with their text).
func poolWarnings(rec *logRecorder) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var msgs []string
	for _, r := range rec.records {
		if r.Message == msgCallInterrupted || r.Message == msgPythonStack {
			continue // expected in a storm of deadlines; a kill logs msgWorkerKilled
		}
		if r.Level >= slog.LevelWarn && strings.HasPrefix(r.Message, "pypool:") {
			msgs = append(msgs, r.Message)
		}
	}
	return msgs
}
