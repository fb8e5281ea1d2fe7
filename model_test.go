package pypool

// TestPoolModel is poolboy's QuickCheck state machine (test/poolboy_eqc.erl
// in devinus/poolboy) ported to pgregory.net/rapid. The model is poolboy's:
// the list of workers checked out. From it alone follow, once the pool has
// settled after each command, every number of Stats, poolboy's status/1
// answer and the set of live worker processes.
//
// Commands and how they map onto pypool:
//
//	start_poolboy       New with Size 1..3 and MaxOverflow 0..2 (drawn). With
//	                    no pool it is the only command that applies: every
//	                    other but stop_poolboy is start_poolboy then.
//	stop_poolboy        the held transactions are ended, then Close; no child
//	                    process of the test binary may be left.
//	checkout_block      Transaction with a deadline drawn from {0, 1ms, 20ms,
//	                    200ms, 2s}; the worker is held in a goroutine inside
//	                    the transaction until a checkin command.
//	checkout_nonblock   poolboy's checkout(Pool, false). pypool has no
//	                    non-blocking Transaction, so the command is two steps:
//	                    TryCall("echo") checks the admission (ErrPoolExhausted
//	                    at once when the model is full; success otherwise,
//	                    starting an overflow worker if none is idle), then,
//	                    only when there is room, a Transaction with a generous
//	                    deadline holds a worker, which with room behaves as
//	                    TryCall's admission does (idle worker, or wait only
//	                    for the overflow start).
//	checkin             the held transaction's function returns after
//	                    checking with w.Call("pid") that its worker still
//	                    serves it.
//	kill_worker         SIGKILL of a held worker (w.Pid()): it leaves the
//	                    model at once; its transaction stays open until the
//	                    pool stops, then must see ErrWorkerCrashed from w.Call.
//	kill_idle_worker    SIGKILL of an idle worker (precondition as poolboy's:
//	                    fewer than Size workers checked out).
//	(pypool only)       Call("echo") with a deadline of 0..100µs: succeeds or
//	                    fails with context.DeadlineExceeded, never costs a
//	                    worker.
//
// poolboy's spurious_exit (a process linked to the pool dies) has no pypool
// counterpart.
//
// TestPoolModel runs twice: as above (TestPoolModel/OneCallPerWorker), and
// with Config.AsyncCalls (TestPoolModel/AsyncCalls: async_model_test.go),
// where start also draws AsyncCalls 1..3 and the module is
// pypool_asynccalls (the sync function sync_echo in place of echo), and
// where the commands above run beside those of the mode:
//
//	asyncHold    a call of an async function held in flight (wait_cancel),
//	             drawn only when it would not wait; the worker it got (told
//	             by a Tracer) must be the one the mode's rule says: an idle
//	             worker, else the one serving async calls with the fewest
//	             in flight if it has room (while overflow workers run, the
//	             one with the most that has room), else a new overflow worker.
//	asyncCancel  the context of a held call is cancelled: it returns
//	             context.Canceled, its place is freed once its task answered,
//	             and a worker left with none is checked in.
//	asyncCall    a call of an async function that runs to its end
//	             (sleep_echo), with a deadline drawn as checkoutBlock's: with
//	             room it returns its value from the worker the rule says;
//	             without room (every worker busy, none to start) it fails
//	             with context.DeadlineExceeded.
//	asyncKill    SIGKILL of a worker serving async calls: each of its calls
//	             fails with ErrWorkerCrashed, the others go on.
//
// There a worker serving async calls counts as checked out (k counts the
// Transactions held and the workers serving async calls), so every check
// above stands, and Stats.AsyncWorkers, AsyncCalls and
// Pool.AsyncCallsByWorker must be the model's after each command, with
// every held async call still in flight.
//
// Postconditions, as poolboy's: with k workers checked out, a checkout
// succeeds iff k < Size+MaxOverflow; a blocking one on a full pool fails with
// context.DeadlineExceeded, and so does one with deadline 0 (a Transaction
// whose context has ended runs nothing). With an idle worker, a deadline of
// 200ms or more must get it; without one, the overflow start may outlast a
// deadline (python3 can take seconds to start on a loaded machine), so
// either outcome is accepted and the model follows the actual one.
//
// Invariant, after every command: the pool is first awaited
// (awaitUntil, no polling, bounded by settleBound) until nothing
// starts, stops or waits, InUse is k and the killed workers are gone;
// then, exactly: Workers = max(Size, k), Idle =
// max(0, Size-k), Overflow = max(0, k-Size), InUse = k, Status() as
// poolboy's model, workerPids has Workers pids and equals the child
// processes of the test binary; Restarts lies between the starts the model
// requires (a replacement per kill that left fewer than Size workers, an
// overflow start per checkout that succeeded without an idle worker) and
// those that may have happened (plus one per checkout or call that gave up
// while it may have asked for an overflow worker): no restart without a
// cause. Crashes == kills at every step and after Close; StartFailures == 0.
//
// By default each variant runs at most modelChecks sequences of at most
// modelSteps commands (asyncModelSteps with AsyncCalls), within
// modelBudget. Run long with: go test -run TestPoolModel
// -rapid.checks=1000 (no time budget), and -rapid.steps=N to lift the cap
// of modelSteps commands per sequence (N on average, as rapid draws them).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"pgregory.net/rapid"
)

const (
	// modelChecks is the number of command sequences tried when
	// -rapid.checks is not given: every sequence starts Python processes,
	// so rapid's default of 100 would not fit a short test run.
	modelChecks = 25
	// modelBudget is the time after which, without -rapid.checks, further
	// sequences of a variant are skipped.
	modelBudget = 15 * time.Second
	// modelSteps caps the commands per sequence when -rapid.steps is not
	// given (rapid draws 30 on average); the commands past the cap do
	// nothing.
	modelSteps = 12
	// asyncModelSteps is modelSteps with AsyncCalls, which has more
	// commands.
	asyncModelSteps = 16
	// modelGrace is Config.InterruptGrace: generous, so that a loaded
	// machine does not turn an interrupted tiny call into a restart.
	modelGrace = 5 * time.Second
	// holdTimeout bounds the waits for the test's own goroutines.
	holdTimeout = time.Minute
)

// checkoutDeadlines are the deadlines of the blocking checkouts.
var checkoutDeadlines = []time.Duration{0, time.Millisecond, 20 * time.Millisecond, 200 * time.Millisecond, 2 * time.Second}

func TestPoolModel(t *testing.T) {
	t.Run("OneCallPerWorker", func(t *testing.T) { runPoolModel(t, 0) })
	t.Run("AsyncCalls", func(t *testing.T) { runPoolModel(t, 3) })
}

// runPoolModel runs the model's sequences; asyncCalls > 0: with
// Config.AsyncCalls drawn up to it, and the mode's commands.
func runPoolModel(t *testing.T, asyncCalls int) {
	maxSteps := modelSteps
	if asyncCalls > 0 {
		maxSteps = asyncModelSteps
	}
	if flagGiven("rapid.steps") {
		maxSteps = -1
	}
	// Without -rapid.checks, the sequences begun after modelBudget do
	// nothing, so that a loaded machine (where python3 may take seconds to
	// start) bounds the test's time rather than its coverage; once a
	// sequence failed, the budget is lifted so that rapid can shrink it.
	var budget time.Time
	if !flagGiven("rapid.checks") {
		setFlag(t, "rapid.checks", fmt.Sprint(modelChecks))
		budget = time.Now().Add(modelBudget)
	}
	failed := false
	ran, skipped := 0, 0
	done := map[string]int{} // the commands that ran, by name
	settle := newSettleBound(t)
	defer func() {
		t.Logf("%d command sequences ran, %d skipped past the time budget; commands run: %v", ran, skipped, done)
	}()
	rapid.Check(t, func(rt *rapid.T) {
		if !budget.IsZero() && !failed && time.Now().After(budget) {
			skipped++
			return
		}
		ran++
		m := &poolModel{t: rapidTB{TB: t, rt: rt}, rt: rt, maxSteps: maxSteps, asyncMax: asyncCalls, settle: settle}
		rt.Cleanup(m.teardown)
		passed := false
		defer func() { failed = failed || !passed }()
		commands := map[string]func(*rapid.T){
			"":                 m.check,
			"start":            m.start,
			"stop":             m.stop,
			"checkoutBlock":    m.checkoutBlock,
			"checkoutNonblock": m.checkoutNonblock,
			"checkin":          m.checkin,
			"killHeld":         m.killHeld,
			"killIdle":         m.killIdle,
			"tinyCall":         m.tinyCall,
			"reload":           m.reload,
		}
		if asyncCalls > 0 {
			m.addAsyncCommands(commands)
		}
		for name, command := range commands {
			if name == "" {
				continue
			}
			commands[name] = func(rt *rapid.T) {
				name, command := name, command
				if m.pool == nil && name != "stop" {
					// Without a pool only start applies, as poolboy's
					// preconditions say; rapid gives up after 100 skipped
					// draws in a row (it did: 100 draws of asyncCall), so
					// every command but stop is start there.
					name, command = "start", m.start
				}
				steps := m.steps
				command(rt)
				if name == "start" || name == "stop" { // not counted as steps
					steps--
				}
				done[strings.TrimSuffix(name, "Too")] += m.steps - steps
			}
		}
		rt.Repeat(commands)
		passed = true
	})
}

// poolModel is the state of one command sequence: the pool under test and
// poolboy's model of it.
type poolModel struct {
	t        testing.TB // awaitPool and testConfig want a testing.TB
	rt       *rapid.T
	maxSteps int // -1: no cap
	steps    int
	settle   *settleBound // the test's, shared by its sequences

	pool        *Pool
	size, over  int
	held        []*heldWorker // poolboy's checked_out
	dead        []*heldWorker // killed while held; their transactions are still open
	vanished    []int         // pids killed in this command: must leave the pool
	restartsMin uint64        // starts the model requires (replacements and overflow)
	restartsMax uint64        // plus starts that may have happened (checkouts that gave up)
	kills       int
	pids        map[int]bool // every worker pid seen in this pool
	reloads     int          // Pool.Reload calls, each of which completed

	// Config.AsyncCalls (async_model_test.go): asyncMax > 0 in the variant
	// with the mode, whose pools have AsyncCalls n (1..asyncMax).
	asyncMax, n int
	echo        string           // the sync function of the tiny calls and TryCall
	shared      map[int]int      // pid -> async calls in flight (the pool's AsyncCallsByWorker)
	calls       []*heldAsyncCall // held in flight
}

// heldWorker is a transaction held open in its own goroutine.
type heldWorker struct {
	pid     int
	release chan struct{} // closed to end the transaction
	done    chan error    // the Transaction's result
}

// busy reports whether a command may run: there is a pool and the sequence
// is not past its cap. Commands that need a pool are skipped (as poolboy's
// preconditions) before they draw anything.
func (m *poolModel) busy(rt *rapid.T) bool {
	if m.pool == nil {
		rt.Skip("no pool")
	}
	if m.maxSteps >= 0 && m.steps >= m.maxSteps {
		return false
	}
	m.steps++
	return true
}

func (m *poolModel) k() int       { return len(m.held) + len(m.shared) }
func (m *poolModel) limit() int   { return m.size + m.over }
func (m *poolModel) full() bool   { return m.k() >= m.limit() }
func (m *poolModel) noIdle() bool { return m.k() >= m.size }

func (m *poolModel) start(rt *rapid.T) {
	if m.pool != nil {
		rt.Skip("pool running")
	}
	size := rapid.IntRange(1, 3).Draw(rt, "size")
	over := rapid.IntRange(0, 2).Draw(rt, "maxOverflow")
	cfg := testConfig(m.t)
	cfg.Size, cfg.MaxOverflow, cfg.InterruptGrace = size, over, modelGrace
	n, echo := 0, "echo"
	if m.asyncMax > 0 {
		n, echo = rapid.IntRange(1, m.asyncMax).Draw(rt, "asyncCalls"), "sync_echo"
		cfg.Module, cfg.AsyncCalls, cfg.Tracer = "pypool_asynccalls", n, pidTracer{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), holdTimeout)
	defer cancel()
	pool, err := New(ctx, cfg)
	if err != nil {
		rt.Fatalf("New(Size %d, MaxOverflow %d, AsyncCalls %d): %v", size, over, n, err)
	}
	*m = poolModel{t: m.t, rt: m.rt, maxSteps: m.maxSteps, steps: m.steps, settle: m.settle,
		pool: pool, size: size, over: over, pids: map[int]bool{},
		asyncMax: m.asyncMax, n: n, echo: echo, shared: map[int]int{}}
}

func (m *poolModel) stop(rt *rapid.T) {
	if m.pool == nil {
		rt.Skip("no pool")
	}
	pids, pool, kills := m.pids, m.pool, m.kills
	if err := m.shutdown(); err != nil {
		rt.Fatal(err)
	}
	if s := pool.Stats(); s.Crashes != uint64(kills) {
		rt.Fatalf("after Close, Crashes = %d after %d kills", s.Crashes, kills)
	}
	if left := childProcesses(); len(left) > 0 {
		rt.Fatalf("after Close, child processes %v are alive (pool's workers were %v)", left, sortedKeys(pids))
	}
}

// shutdown ends every held transaction, then closes the pool.
func (m *poolModel) shutdown() error {
	errs := m.endAsyncCalls()
	for _, h := range m.held {
		if err := h.end(); err != nil {
			errs = append(errs, fmt.Errorf("checkin of worker %d at stop: %w", h.pid, err))
		}
	}
	for _, h := range m.dead {
		if err := h.end(); !errors.Is(err, ErrWorkerCrashed) {
			errs = append(errs, fmt.Errorf("the transaction of killed worker %d: w.Call returned %v, want ErrWorkerCrashed", h.pid, err))
		}
	}
	m.held, m.dead = nil, nil
	ctx, cancel := context.WithTimeout(context.Background(), holdTimeout)
	defer cancel()
	if err := m.pool.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("Close: %w", err))
	}
	m.pool = nil
	return errors.Join(errs...)
}

// teardown runs when the sequence ends, passed or failed.
func (m *poolModel) teardown() {
	if m.pool == nil {
		return
	}
	if err := m.shutdown(); err != nil && !m.rt.Failed() {
		m.rt.Error("teardown: ", err)
	}
}

// hold checks a worker out in a goroutine and keeps it until end. It
// returns nil and the Transaction's error if the checkout failed.
func (m *poolModel) hold(ctx context.Context) (*heldWorker, error) {
	h := &heldWorker{release: make(chan struct{}), done: make(chan error, 1)}
	pids := make(chan int, 1)
	go func() {
		h.done <- m.pool.Transaction(ctx, func(w *Worker) error {
			pids <- w.Pid()
			<-h.release
			ctx, cancel := context.WithTimeout(context.Background(), holdTimeout)
			defer cancel()
			got, err := w.Call(ctx, "pid")
			if err != nil {
				return err
			}
			if got != int64(w.Pid()) {
				return fmt.Errorf("w.Call(pid) = %v in the transaction of worker %d", got, w.Pid())
			}
			return nil
		})
	}()
	select {
	case h.pid = <-pids:
		m.pids[h.pid] = true
		return h, nil
	case err := <-h.done:
		return nil, err
	}
}

// end checks the worker in and returns the Transaction's result.
func (h *heldWorker) end() error {
	close(h.release)
	select {
	case err := <-h.done:
		return err
	case <-time.After(holdTimeout):
		return fmt.Errorf("the transaction of worker %d did not end within %v", h.pid, holdTimeout)
	}
}

func (m *poolModel) checkoutBlock(rt *rapid.T) {
	if !m.busy(rt) {
		return
	}
	d := rapid.SampledFrom(checkoutDeadlines).Draw(rt, "deadline")
	full, noIdle := m.full(), m.noIdle()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	h, err := m.hold(ctx)
	if h != nil {
		m.held = append(m.held, h) // before any verdict: teardown must end it
	}
	rt.Logf("checkout (blocking, deadline %v) with %d of %d+%d out: worker %v, err %v", d, m.k()-btoi(h != nil), m.size, m.over, pidOf(h), err)
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		rt.Fatalf("blocking checkout failed with %v, want success or context.DeadlineExceeded", err)
	case full && err == nil:
		rt.Fatalf("blocking checkout got worker %d although %d+%d workers are checked out", h.pid, m.size, m.over)
	case d == 0 && err == nil:
		rt.Fatalf("a Transaction whose context is already done ran (worker %d)", h.pid)
	case !noIdle && d >= 200*time.Millisecond && err != nil:
		rt.Fatalf("blocking checkout with an idle worker (%d of Size %d out) and deadline %v failed: %v", m.k(), m.size, d, err)
	}
	switch {
	case err == nil && noIdle:
		m.restartsMin++ // an overflow worker was started for it
		m.restartsMax++
	case err != nil && noIdle && !full && d >= 200*time.Millisecond:
		// With room, a checkout gets a worker started for it; the brief
		// took 200ms to be enough for that, but python3 can take seconds
		// to start on a loaded machine. The start must have happened
		// (Restarts, checked by the invariant) and outlasted the deadline.
		rt.Logf("the overflow start for the checkout outlasted its deadline of %v", d)
		m.restartsMin++
		m.restartsMax++
	case err != nil && noIdle && !full && d > 0:
		m.restartsMax++ // it may have asked for an overflow worker before giving up
	}
}

func (m *poolModel) checkoutNonblock(rt *rapid.T) {
	if !m.busy(rt) {
		return
	}
	full, noIdle := m.full(), m.noIdle()
	ctx, cancel := context.WithTimeout(context.Background(), holdTimeout)
	defer cancel()
	out, err := m.pool.TryCall(ctx, m.echo, "try")
	rt.Logf("TryCall with %d of %d+%d out: %v, %v", m.k(), m.size, m.over, out, err)
	if full {
		if !errors.Is(err, ErrPoolExhausted) {
			rt.Fatalf("TryCall on a full pool (%d+%d out) returned (%v, %v), want ErrPoolExhausted", m.size, m.over, out, err)
		}
		return
	}
	if err != nil || out != "try" {
		rt.Fatalf("TryCall with room (%d of %d+%d out) returned (%v, %v), want \"try\"", m.k(), m.size, m.over, out, err)
	}
	if noIdle {
		m.restartsMin++ // TryCall's overflow worker, stopped at its return
		m.restartsMax++
	}
	// The overflow worker TryCall used has been checked in and stopped;
	// the transaction needs another one.
	h, err := m.hold(ctx)
	if h != nil {
		m.held = append(m.held, h)
	}
	rt.Logf("checkout (non-blocking) with %d of %d+%d out: worker %v, err %v", m.k()-btoi(h != nil), m.size, m.over, pidOf(h), err)
	if err != nil {
		rt.Fatalf("checkout with room (%d of %d+%d out) failed: %v", m.k(), m.size, m.over, err)
	}
	if noIdle {
		m.restartsMin++
		m.restartsMax++
	}
}

// drawHeld picks one of the held workers, for checkin or killHeld; false
// when the step does not apply.
func (m *poolModel) drawHeld(rt *rapid.T) (int, bool) {
	if len(m.held) == 0 {
		rt.Skip("nothing checked out")
	}
	if !m.busy(rt) {
		return 0, false
	}
	return rapid.IntRange(0, len(m.held)-1).Draw(rt, "worker"), true
}

func (m *poolModel) checkin(rt *rapid.T) {
	i, ok := m.drawHeld(rt)
	if !ok {
		return
	}
	h := m.held[i]
	m.held = slices.Delete(m.held, i, i+1)
	err := h.end()
	rt.Logf("checkin of worker %d: %v", h.pid, err)
	if err != nil {
		rt.Fatalf("checkin of worker %d: %v", h.pid, err)
	}
}

func (m *poolModel) killHeld(rt *rapid.T) {
	i, ok := m.drawHeld(rt)
	if !ok {
		return
	}
	h := m.held[i]
	if m.k() <= m.size { // without it fewer than Size workers would be left
		m.restartsMin++
		m.restartsMax++
	}
	m.held = slices.Delete(m.held, i, i+1)
	m.dead = append(m.dead, h)
	m.kill(h.pid)
	rt.Logf("killed held worker %d", h.pid)
}

func (m *poolModel) killIdle(rt *rapid.T) {
	if m.pool != nil && m.k() >= m.size {
		rt.Skip("no idle worker") // poolboy's precondition
	}
	if !m.busy(rt) {
		return
	}
	var idle []int
	for _, pid := range workerPids(m.pool) {
		if _, async := m.shared[pid]; !async && !slices.ContainsFunc(m.held, func(h *heldWorker) bool { return h.pid == pid }) {
			idle = append(idle, pid)
		}
	}
	slices.Sort(idle)
	if len(idle) == 0 {
		rt.Fatalf("no idle worker although %d of Size %d are checked out (stats %+v)", m.k(), m.size, m.pool.Stats())
	}
	pid := idle[rapid.IntRange(0, len(idle)-1).Draw(rt, "idle worker")]
	m.restartsMin++
	m.restartsMax++
	m.kill(pid)
	rt.Logf("killed idle worker %d", pid)
}

func (m *poolModel) kill(pid int) {
	m.kills++
	m.vanished = append(m.vanished, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		m.rt.Fatalf("kill %d: %v", pid, err)
	}
}

func (m *poolModel) tinyCall(rt *rapid.T) {
	if !m.busy(rt) {
		return
	}
	d := time.Duration(rapid.IntRange(0, 100_000).Draw(rt, "deadline ns"))
	full, noIdle := m.full(), m.noIdle()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	out, err := m.pool.Call(ctx, m.echo, "tiny")
	rt.Logf("Call(%s) with deadline %v, %d of %d+%d out: %v, %v", m.echo, d, m.k(), m.size, m.over, out, err)
	switch {
	case err == nil && out != "tiny":
		rt.Fatalf("echo returned %v", out)
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		rt.Fatalf("tiny-deadline call failed with %v, want success or context.DeadlineExceeded", err)
	case err == nil && full:
		rt.Fatalf("a call ran although %d+%d workers are checked out", m.size, m.over)
	}
	switch {
	case err == nil && noIdle:
		m.restartsMin++
		m.restartsMax++
	case err != nil && noIdle && !full:
		m.restartsMax++ // it may have asked for an overflow worker before giving up
	}
}

// reload replaces every worker (Pool.Reload) while none is checked out: it
// completes, every worker that served is gone, and Restarts grows by Size
// (one new worker for each old one).
func (m *poolModel) reload(rt *rapid.T) {
	if m.pool != nil && m.k() > 0 {
		rt.Skip("workers checked out") // Reload would wait for their check-in
	}
	if !m.busy(rt) {
		return
	}
	old := workerPids(m.pool)
	ctx, cancel := context.WithTimeout(context.Background(), holdTimeout)
	defer cancel()
	if err := m.pool.Reload(ctx); err != nil {
		rt.Fatalf("Reload: %v", err)
	}
	m.reloads++
	m.restartsMin += uint64(m.size)
	m.restartsMax += uint64(m.size)
	m.vanished = append(m.vanished, old...)
	rt.Logf("reloaded: workers %v replaced", old)
	if s := m.pool.Stats(); s.Generation != uint64(m.reloads) || s.OldGeneration != 0 || s.ReloadsDone != uint64(m.reloads) {
		rt.Fatalf("after %d reloads: Generation %d, OldGeneration %d, ReloadsDone %d", m.reloads, s.Generation, s.OldGeneration, s.ReloadsDone)
	}
}

// settled is the pool at rest for the model: no start, stop or waiter in
// flight, the model's workers checked out and every killed worker gone.
func (m *poolModel) settled(s Stats) bool {
	if s.Starting != 0 || s.Stopping != 0 || s.Waiting != 0 || s.InUse != m.k() || !m.asyncSettled(s) {
		return false
	}
	pids := workerPids(m.pool)
	for _, pid := range m.vanished {
		if slices.Contains(pids, pid) {
			return false
		}
	}
	return true
}

// settleBound bounds check's waits for the pool to settle, so that a pool
// that never settles fails its sequence with the pool's Stats rather than
// hang: each wait ends after holdTimeout, and at the latest settleMargin
// before the test's own deadline (go test -timeout), which would end the
// binary with a stack dump and no word of the pool. Once a wait has
// failed, rapid shrinks the sequence by running shorter ones, each of
// which fails the same way: their waits end after settleRetry, so that
// the failure is reported in about rapid's shrink time.
type settleBound struct {
	deadline time.Time // the test's deadline less settleMargin; zero: none
	failed   bool      // a wait has failed: the sequences run are shrinking
}

const (
	settleMargin = 30 * time.Second
	settleRetry  = 5 * time.Second
)

// newSettleBound is the settleBound of a test (the TestPoolModel variant).
func newSettleBound(t *testing.T) *settleBound {
	b := &settleBound{}
	if d, ok := t.Deadline(); ok {
		b.deadline = d.Add(-settleMargin)
	}
	return b
}

// context is the context of one wait.
func (b *settleBound) context() (context.Context, context.CancelFunc) {
	wait := holdTimeout
	if b.failed {
		wait = settleRetry
	}
	until := time.Now().Add(wait)
	if !b.deadline.IsZero() && b.deadline.Before(until) {
		until = b.deadline
	}
	return context.WithDeadline(context.Background(), until)
}

// check is the invariant, run after every command: once the pool settles,
// Stats, status/1, the worker processes and Restarts are what the model says.
func (m *poolModel) check(rt *rapid.T) {
	if m.pool == nil {
		return
	}
	ctx, cancel := m.settle.context()
	defer cancel()
	start := time.Now()
	if !awaitUntil(m.pool, ctx.Done(), m.settled) {
		m.settle.failed = true
		problems, seen := m.compare()
		rt.Fatalf("the pool never settled in %v (nothing starting, stopping or waiting, InUse %d, killed workers %v gone): stats %+v, async calls by worker %v\n"+
			"model: %d of Size %d + MaxOverflow %d checked out (async calls %v of at most %d a worker), %d kills\npool:  %s\n%s",
			time.Since(start).Round(time.Millisecond), m.k(), m.vanished, m.pool.Stats(), m.pool.AsyncCallsByWorker(),
			m.k(), m.size, m.over, m.shared, m.n, m.kills, seen, strings.Join(problems, "\n"))
	}
	m.vanished = nil
	m.checkHeldCalls(rt)
	if problems, seen := m.compare(); len(problems) > 0 {
		rt.Fatalf("model: %d of Size %d + MaxOverflow %d checked out (async calls %v of at most %d a worker), %d kills, Restarts %d..%d\npool:  %s\n%s\n%s",
			m.k(), m.size, m.over, m.shared, m.n, m.kills, m.restartsMin, m.restartsMax, seen, strings.Join(problems, "\n"), m.awaitModel(2*time.Second))
	}
	for _, pid := range workerPids(m.pool) {
		m.pids[pid] = true
	}
}

// compare lists the differences between the pool and the model, and what
// it saw of the pool.
func (m *poolModel) compare() (problems []string, seen string) {
	s := m.pool.Stats()
	k := m.k()
	status := "ready"
	switch {
	case k == m.limit():
		status = "full"
	case k >= m.size:
		status = "overflow"
	}
	want := map[string]int{
		"Workers":  max(m.size, k),
		"Idle":     max(0, m.size-k),
		"Overflow": max(0, k-m.size),
		"InUse":    k,
	}
	got := map[string]int{"Workers": s.Workers, "Idle": s.Idle, "Overflow": s.Overflow, "InUse": s.InUse}
	for _, name := range []string{"Workers", "Idle", "Overflow", "InUse"} {
		if got[name] != want[name] {
			problems = append(problems, fmt.Sprintf("%s = %d, model says %d", name, got[name], want[name]))
		}
	}
	if s.Status() != status {
		problems = append(problems, fmt.Sprintf("Status() = %q, model says %q", s.Status(), status))
	}
	pids := workerPids(m.pool)
	slices.Sort(pids)
	kids := childProcesses()
	slices.Sort(kids)
	if len(pids) != s.Workers {
		problems = append(problems, fmt.Sprintf("workerPids = %v: %d processes for %d Workers", pids, len(pids), s.Workers))
	}
	if !slices.Equal(pids, kids) {
		problems = append(problems, fmt.Sprintf("child processes %v differ from workerPids %v", kids, pids))
	}
	if s.Restarts < m.restartsMin || s.Restarts > m.restartsMax {
		problems = append(problems, fmt.Sprintf("Restarts = %d, model says %d..%d (%d kills)", s.Restarts, m.restartsMin, m.restartsMax, m.kills))
	}
	// The pool counts a crash in the same step that takes the dead worker
	// out: once the kill shows, so does the crash.
	if s.Crashes != uint64(m.kills) {
		problems = append(problems, fmt.Sprintf("Crashes = %d after %d kills", s.Crashes, m.kills))
	}
	if s.StartFailures != 0 {
		problems = append(problems, fmt.Sprintf("StartFailures = %d", s.StartFailures))
	}
	problems = append(problems, m.compareAsync(s)...)
	return problems, fmt.Sprintf("%+v status %q, workers %v, child processes %v", s, s.Status(), pids, kids)
}

// awaitModel tells a transient difference from a lasting one, for the
// failure message: it waits up to bound for the pool to agree with the model.
func (m *poolModel) awaitModel(bound time.Duration) string {
	start := time.Now()
	timeout := time.After(bound)
	for {
		changed := m.pool.awaitChange()
		if problems, _ := m.compare(); len(problems) == 0 {
			return fmt.Sprintf("(transient: the pool agreed with the model %v later, stats %+v)", time.Since(start), m.pool.Stats())
		}
		select {
		case <-changed:
		case <-timeout:
			return fmt.Sprintf("(lasting: still different %v later, stats %+v)", bound, m.pool.Stats())
		}
	}
}

// rapidTB lets the package's test helpers (awaitPool, testConfig's logger)
// report to the rapid.T of the current sequence: the methods rapid.T has go
// to it; the embedded testing.TB of the enclosing test supplies the rest.
type rapidTB struct {
	testing.TB
	rt *rapid.T
}

func (r rapidTB) Helper()                           {}
func (r rapidTB) Cleanup(f func())                  { r.rt.Cleanup(f) }
func (r rapidTB) Context() context.Context          { return r.rt.Context() }
func (r rapidTB) Error(args ...any)                 { r.rt.Error(args...) }
func (r rapidTB) Errorf(format string, args ...any) { r.rt.Errorf(format, args...) }
func (r rapidTB) Fail()                             { r.rt.Fail() }
func (r rapidTB) FailNow()                          { r.rt.FailNow() }
func (r rapidTB) Failed() bool                      { return r.rt.Failed() }
func (r rapidTB) Fatal(args ...any)                 { r.rt.Fatal(args...) }
func (r rapidTB) Fatalf(format string, args ...any) { r.rt.Fatalf(format, args...) }
func (r rapidTB) Log(args ...any)                   { r.rt.Log(args...) }
func (r rapidTB) Logf(format string, args ...any)   { r.rt.Logf(format, args...) }
func (r rapidTB) Skip(args ...any)                  { r.rt.Skip(args...) }
func (r rapidTB) SkipNow()                          { r.rt.SkipNow() }
func (r rapidTB) Skipf(format string, args ...any)  { r.rt.Skipf(format, args...) }

// flagGiven reports whether the flag was set on the command line or by
// rapid's environment variable (rapid.checks: RAPID_CHECKS).
func flagGiven(name string) bool {
	given := os.Getenv(strings.ToUpper(strings.ReplaceAll(name, ".", "_"))) != ""
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// setFlag sets a flag for the test and restores it afterwards.
func setFlag(t *testing.T, name, value string) {
	f := flag.Lookup(name)
	if f == nil {
		t.Fatalf("no flag %s", name)
	}
	old := f.Value.String()
	// Value.Set, not flag.Set: the flag must not count as given next time.
	if err := f.Value.Set(value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })
}

func pidOf(h *heldWorker) any {
	if h == nil {
		return "none"
	}
	return h.pid
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func sortedKeys(m map[int]bool) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
