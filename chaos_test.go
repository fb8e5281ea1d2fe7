package pypool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// chaosCalls, chaosDuration and chaosConcurrency size the chaos test: it
// stops at chaosCalls calls or after chaosDuration, whichever comes first,
// so that a busy machine does not stretch it. -pypool.soak=10m runs it that
// long with no call limit.
const (
	chaosCalls       = 20000
	chaosDuration    = 20 * time.Second
	chaosConcurrency = 32
	chaosKillEvery   = 20 * time.Millisecond
)

// TestChaos makes calls of every kind through a pool with overflow and
// retries while another goroutine SIGKILLs a random worker every 20 ms
// (holding off while fewer than half of Size are up). Every
// call must end with its expected result or a typed error, none may hang, and
// afterwards the pool is back at Size with no stray process.
func TestChaos(t *testing.T) {
	cfg := chaosConfig(t, 4)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	pool := newTestPool(t, cfg)
	defer watchInvariants(t, pool)()

	limit, duration := int64(chaosCalls), chaosDuration
	if *soak > 0 {
		limit, duration = math.MaxInt64, *soak
	}
	r := runChaos(pool, cfg.Size, chaosRun{calls: limit, duration: duration, killEvery: chaosKillEvery, call: chaosCall})

	t.Logf("chaos: %d calls at concurrency %d in %v, %d workers killed; stats %+v",
		r.outcomes.total(), chaosConcurrency, r.elapsed.Round(time.Millisecond), r.kills.Load(), pool.Stats())
	t.Logf("chaos outcomes:\n%s", r.outcomes)
	assert.Empty(t, r.outcomes.unexpected, "calls that ended in an unexpected way")
	assert.Positive(t, r.outcomes.total())
	assert.Positive(t, r.kills.Load())

	// A worker killed in the killer's last ticks is dead before the pool
	// knows it (its reaper drains its output first; a forked worker's exit
	// status comes from its template): until then the pool counts it among
	// its idle workers, and its shared memory is open. Await the pool's
	// handling of every kill before counting processes and files.
	awaitPool(t, pool, "back at Size, at rest, every killed worker gone", func(s Stats) bool {
		return atRest(s, cfg.Size) && !pool.holdsAny(r.killed)
	})
	kids := childProcesses()
	assert.ElementsMatch(t, workerPids(pool), kids, "no zombie or orphan: the only children are the workers")
	files, mappings := sharedMemoryInUse(t)
	assert.Equal(t, len(kids), files, "one shared memory per live worker, none from killed ones")
	assert.LessOrEqual(t, mappings, files, "no mapping outlives its shared memory")
	assert.NoError(t, pool.Close(context.Background()))
	files, mappings = sharedMemoryInUse(t)
	assert.Zero(t, files+mappings, "no shared memory left after Close")
}

// chaosConfig is the configuration of a chaos run's pool: Size size and
// as many overflow workers (stopped 200 ms after their last call), 50
// retries of a call whose worker crashed, and 200 ms of grace for an
// interrupted call.
func chaosConfig(t *testing.T, size int) Config {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = size, size
	cfg.OverflowIdleTimeout = 200 * time.Millisecond
	cfg.CrashRetries = 50
	cfg.InterruptGrace = 200 * time.Millisecond
	return cfg
}

// chaosRun is the shape of one chaos run (runChaos): its calls and its
// killer.
type chaosRun struct {
	calls     int64         // made at most
	duration  time.Duration // after which no call begins
	killEvery time.Duration // the killer's interval
	call      func(pool *Pool, i int) (kind string, err error)
}

// chaosResult is what a chaos run saw.
type chaosResult struct {
	outcomes *tally
	kills    atomic.Int64
	killed   []*process // every worker killed
	elapsed  time.Duration
}

// runChaos is the run of TestChaos and TestAsyncCallsChaos: chaosConcurrency
// goroutines make calls through pool (r.call, numbered from 1) until
// r.calls were made or r.duration has passed, while another SIGKILLs a
// random worker every r.killEvery (holding off while fewer than half of
// size are up). It returns once the callers and the killer have ended.
func runChaos(pool *Pool, size int, r chaosRun) *chaosResult {
	res := &chaosResult{outcomes: newTally()}
	start := time.Now()
	stopKiller := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		ticker := time.NewTicker(r.killEvery)
		defer ticker.Stop()
		for {
			select {
			case <-stopKiller:
				return
			case <-ticker.C:
				// On a loaded machine a start can take longer than the
				// kill interval: hold off while fewer than half of Size
				// are up, so that the callers meet killed workers, not
				// only dead ones, and CrashRetries is not exhausted by
				// starvation alone.
				if pool.Stats().Workers < size/2 {
					continue
				}
				if ws := pool.serving(); len(ws) > 0 {
					proc := ws[rand.IntN(len(ws))].proc
					if syscall.Kill(proc.pid, syscall.SIGKILL) == nil {
						res.kills.Add(1)
						res.killed = append(res.killed, proc)
					}
				}
			}
		}
	}()

	var next atomic.Int64
	until := start.Add(r.duration)
	var callers sync.WaitGroup
	for range chaosConcurrency {
		callers.Add(1)
		go func() {
			defer callers.Done()
			for i := next.Add(1); i <= r.calls && time.Now().Before(until); i = next.Add(1) {
				kind, err := r.call(pool, int(i))
				res.outcomes.add(kind, err)
			}
		}()
	}
	callers.Wait()
	close(stopKiller)
	<-killerDone
	res.elapsed = time.Since(start)
	return res
}

// callRaises calls the module's fail, which raises ValueError (the sync
// function's in pypool_testmod, the async one's in pypool_asynccalls), and
// returns nil when the caller gets that *PythonError, else what it got.
func callRaises(ctx context.Context, pool *Pool) error {
	_, err := pool.Call(ctx, "fail", "boom")
	var pyErr *PythonError
	if errors.As(err, &pyErr) && pyErr.Type == "ValueError" {
		return nil
	}
	return fmt.Errorf("want a ValueError, got %v", err)
}

// chaosCall makes call i and checks its outcome; it returns the kind of call
// and nil, or an error describing what was wrong.
func chaosCall(pool *Pool, i int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang fails the call
	defer cancel()
	switch kind := i % 100; {
	case kind < 10:
		return "raises", callRaises(ctx, pool)
	case kind < 15:
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		_, err := pool.Call(short, "sleep", 5)
		// Killed before its deadline, its retry may find the deadline gone.
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrWorkerCrashed) {
			return "sleeps past its deadline", nil
		}
		return "sleeps past its deadline", fmt.Errorf("want DeadlineExceeded, got %v", err)
	case kind < 20:
		out, err := pool.Call(ctx, "chatty")
		if err == nil && fmt.Sprint(out) == "map[eof:true]" {
			return "prints to fd 1", nil
		}
		return "prints to fd 1", fmt.Errorf("want map[eof:true], got %v, %v", out, err)
	case kind >= 21 && kind < 25:
		// Large enough for the shared memory, both ways, while workers die.
		data := bytes.Repeat([]byte{byte(i)}, 300<<10+i%4096)
		out, err := pool.Call(ctx, "echo", data)
		if err == nil && bytes.Equal(out.([]byte), data) {
			return "large echo", nil
		}
		if err != nil {
			return "large echo", fmt.Errorf("want the bytes back, got %v", err)
		}
		return "large echo", fmt.Errorf("want %d bytes of %d, got %d bytes", len(data), i%256, len(out.([]byte)))
	case kind == 20:
		// Exiting is not idempotent: no retries inside a transaction.
		err := pool.Transaction(ctx, func(w *Worker) error {
			_, err := w.Call(ctx, "crash", 3)
			return err
		})
		if errors.Is(err, ErrWorkerCrashed) || errors.Is(err, ErrWorkerStart) {
			return "exits the interpreter", nil
		}
		return "exits the interpreter", fmt.Errorf("want ErrWorkerCrashed, got %v", err)
	default:
		out, err := pool.Call(ctx, "echo", i)
		if err == nil && out == int64(i) {
			return "idempotent echo", nil
		}
		return "idempotent echo", fmt.Errorf("want %d, got %v, %v", i, out, err)
	}
}

// tally counts outcomes by kind of call.
type tally struct {
	mu         sync.Mutex
	counts     map[string]int64
	unexpected []string
}

func newTally() *tally { return &tally{counts: make(map[string]int64)} }

func (t *tally) add(kind string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts[kind]++
	if err != nil && len(t.unexpected) < 20 {
		t.unexpected = append(t.unexpected, kind+": "+err.Error())
	}
}

func (t *tally) total() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for _, c := range t.counts {
		n += c
	}
	return n
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for kind, n := range t.counts {
		lines = append(lines, fmt.Sprintf("  %-26s %6d", kind, n))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
