package pypool

// async_model_test.go is TestPoolModel's part for Config.AsyncCalls
// (TestPoolModel/AsyncCalls, model_test.go's comment): the commands of the
// mode (asyncHold, asyncCancel, asyncCall, asyncKill) and the model's
// checks of it, methods of poolModel beside poolboy's commands.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"pgregory.net/rapid"
)

// addAsyncCommands adds the mode's commands to a sequence's.
func (m *poolModel) addAsyncCommands(commands map[string]func(*rapid.T)) {
	commands["asyncHold"] = m.asyncHold
	commands["asyncHoldToo"] = m.asyncHold // twice as likely as the others: the workers fill
	commands["asyncCancel"] = m.asyncCancel
	commands["asyncCall"] = m.asyncCall
	commands["asyncKill"] = m.asyncKill
}

// heldAsyncCall is a call of wait_cancel in flight in its goroutine.
type heldAsyncCall struct {
	pid    int // 0 until the Tracer told it
	cancel context.CancelFunc
	done   chan error
}

// pidReportKey is the key of the context value of a call of the model: a
// chan int to which pidTracer sends the pid of the worker the call got.
type pidReportKey struct{}

// pidTracer tells the model which worker each of its calls of async
// functions got (Config.Tracer of the pools with AsyncCalls).
type pidTracer struct{}

func (pidTracer) TraceCallStart(ctx context.Context, _ *Pool, _ TraceCallStartData) context.Context {
	return ctx
}

func (pidTracer) TraceCallWorker(ctx context.Context, _ *Pool, d TraceCallWorkerData) {
	if pids, ok := ctx.Value(pidReportKey{}).(chan int); ok {
		select {
		case pids <- d.Pid:
		default:
		}
	}
}

func (pidTracer) TraceCallEnd(context.Context, *Pool, TraceCallEndData) {}

// Where the next call of an async function goes, as the model says.
const (
	placeIdle   = "an idle worker"
	placeShared = "the worker serving async calls the rule picks, with"
	placeNew    = "a new overflow worker"
	placeNone   = "nowhere: it waits"
)

// asyncPlace is where the next call of an async function goes: an idle
// worker first, else a place on a worker serving async calls that has room
// (want: its calls in flight), the one with the fewest, or, while overflow
// workers run (more workers than Size, all busy), the one with the most,
// so that the others drain (sharedRoomLocked's preferPlace); else a worker
// started for it if the pool may grow, else it waits.
func (m *poolModel) asyncPlace() (where string, want int) {
	if m.k() < m.size {
		return placeIdle, 0
	}
	overflow := m.k() > m.size
	want = -1
	for _, calls := range m.shared {
		if calls < m.n && (want < 0 || preferPlace(calls, want, overflow)) {
			want = calls
		}
	}
	switch {
	case want >= 0:
		return placeShared, want
	case !m.full():
		return placeNew, 0
	}
	return placeNone, 0
}

// placed fails the sequence unless the call went to pid as where says.
func (m *poolModel) placed(rt *rapid.T, what, where string, want, pid int) {
	calls, shared := m.shared[pid]
	held := slices.ContainsFunc(m.held, func(h *heldWorker) bool { return h.pid == pid })
	switch {
	case where == placeShared && (!shared || calls != want):
		rt.Fatalf("the %s went to worker %d (async calls %v), not to %s %d calls", what, pid, m.shared, where, want)
	case where != placeShared && (shared || held):
		rt.Fatalf("the %s went to busy worker %d (async calls %v), not to %s", what, pid, m.shared, where)
	case where == placeIdle && !m.pids[pid]:
		rt.Fatalf("the %s went to new worker %d, not to %s", what, pid, where)
	case where == placeNew && m.pids[pid]:
		rt.Fatalf("the %s went to worker %d, which served before, not to %s", what, pid, where)
	}
}

// asyncHold holds a call of an async function in flight, when it would
// not wait; it must go where asyncPlace says.
func (m *poolModel) asyncHold(rt *rapid.T) {
	if m.pool == nil {
		rt.Skip("no pool")
	}
	where, want := m.asyncPlace()
	if where == placeNone {
		rt.Skip("it would wait")
	}
	if !m.busy(rt) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &heldAsyncCall{cancel: cancel, done: make(chan error, 1)}
	m.calls = append(m.calls, c) // before any verdict: teardown must end it
	pids := make(chan int, 1)
	go func() {
		_, err := m.pool.Call(context.WithValue(ctx, pidReportKey{}, pids), "wait_cancel", 60)
		c.done <- err
	}()
	select {
	case c.pid = <-pids:
	case err := <-c.done:
		rt.Fatalf("the held async call ended: %v", err)
	case <-time.After(holdTimeout):
		rt.Fatalf("the async call got no worker within %v", holdTimeout)
	}
	rt.Logf("async call held on worker %d (%s; async calls were %v)", c.pid, where, m.shared)
	m.placed(rt, "held async call", where, want, c.pid)
	m.shared[c.pid]++
	m.pids[c.pid] = true
	if where == placeNew {
		m.restartsMin++
		m.restartsMax++
	}
}

// asyncCancel cancels the context of a held call: it returns at once with
// context.Canceled; its place is freed once its task has answered.
func (m *poolModel) asyncCancel(rt *rapid.T) {
	if len(m.calls) == 0 {
		rt.Skip("no async call held")
	}
	if !m.busy(rt) {
		return
	}
	i := rapid.IntRange(0, len(m.calls)-1).Draw(rt, "call")
	c := m.calls[i]
	m.calls = slices.Delete(m.calls, i, i+1)
	c.cancel()
	select {
	case err := <-c.done:
		rt.Logf("cancelled an async call on worker %d: %v", c.pid, err)
		if !errors.Is(err, context.Canceled) {
			rt.Fatalf("a cancelled async call on worker %d returned %v, want context.Canceled", c.pid, err)
		}
	case <-time.After(holdTimeout):
		rt.Fatalf("a cancelled async call on worker %d did not return", c.pid)
	}
	if m.shared[c.pid]--; m.shared[c.pid] == 0 {
		delete(m.shared, c.pid)
	}
}

// asyncCall makes a call of an async function that runs to its end, with a
// deadline drawn as checkoutBlock's: with room it must return its value
// (given 2s), from where asyncPlace says; without, it must fail with
// context.DeadlineExceeded.
func (m *poolModel) asyncCall(rt *rapid.T) {
	if !m.busy(rt) {
		return
	}
	d := rapid.SampledFrom(checkoutDeadlines).Draw(rt, "deadline")
	where, want := m.asyncPlace()
	pids := make(chan int, 1)
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), pidReportKey{}, pids), d)
	defer cancel()
	out, err := m.pool.Call(ctx, "sleep_echo", 0, "finished")
	pid := 0
	select {
	case pid = <-pids:
	default:
	}
	rt.Logf("async call (deadline %v, %s; async calls %v): worker %d, %v, %v", d, where, m.shared, pid, out, err)
	switch {
	case err == nil && out != "finished":
		rt.Fatalf("sleep_echo returned %v", out)
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		rt.Fatalf("async call failed with %v, want success or context.DeadlineExceeded", err)
	case err == nil && where == placeNone:
		rt.Fatalf("an async call ran on worker %d with no room (async calls %v of at most %d, %d of %d+%d out)", pid, m.shared, m.n, m.k(), m.size, m.over)
	case err == nil && d == 0:
		rt.Fatalf("an async call whose context is already done ran (worker %d)", pid)
	case err != nil && d >= 2*time.Second && (where == placeIdle || where == placeShared):
		rt.Fatalf("an async call with room on %s failed: %v", where, err)
	}
	if pid != 0 {
		m.placed(rt, "async call", where, want, pid)
	}
	if where != placeNew {
		return
	}
	switch { // as checkoutBlock's
	case err == nil || d >= 2*time.Second:
		m.restartsMin++
		m.restartsMax++
	case d > 0:
		m.restartsMax++
	}
}

// asyncKill kills a worker serving async calls: each of its calls fails
// with ErrWorkerCrashed.
func (m *poolModel) asyncKill(rt *rapid.T) {
	if len(m.shared) == 0 {
		rt.Skip("no worker serves async calls")
	}
	if !m.busy(rt) {
		return
	}
	pid := rapid.SampledFrom(slices.Sorted(maps.Keys(m.shared))).Draw(rt, "async worker")
	if m.k() <= m.size { // without it fewer than Size workers would be left
		m.restartsMin++
		m.restartsMax++
	}
	delete(m.shared, pid)
	m.kill(pid)
	rt.Logf("killed worker %d serving async calls", pid)
	kept := m.calls[:0]
	for _, c := range m.calls {
		if c.pid != pid {
			kept = append(kept, c)
			continue
		}
		select {
		case err := <-c.done:
			if !errors.Is(err, ErrWorkerCrashed) {
				rt.Fatalf("an async call on killed worker %d returned %v, want ErrWorkerCrashed", pid, err)
			}
		case <-time.After(holdTimeout):
			rt.Fatalf("an async call on killed worker %d did not end", pid)
		}
	}
	m.calls = kept
}

// endAsyncCalls cancels every held call, at the sequence's end.
func (m *poolModel) endAsyncCalls() (errs []error) {
	for _, c := range m.calls {
		c.cancel()
		select {
		case err := <-c.done:
			if c.pid != 0 && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("a held async call on worker %d returned %w at stop, want context.Canceled", c.pid, err))
			}
		case <-time.After(holdTimeout):
			errs = append(errs, fmt.Errorf("a held async call on worker %d did not end at stop", c.pid))
		}
	}
	m.calls, m.shared = nil, nil
	return errs
}

// compareAsync lists the differences between the pool's async calls
// (Stats.AsyncWorkers, AsyncCalls, Pool.AsyncCallsByWorker) and the
// model's; none without the mode.
func (m *poolModel) compareAsync(s Stats) (problems []string) {
	total := 0
	for _, calls := range m.shared {
		total += calls
	}
	if s.AsyncWorkers != len(m.shared) {
		problems = append(problems, fmt.Sprintf("AsyncWorkers = %d, model says %d", s.AsyncWorkers, len(m.shared)))
	}
	if s.AsyncCalls != total {
		problems = append(problems, fmt.Sprintf("AsyncCalls = %d, model says %d", s.AsyncCalls, total))
	}
	if by := m.pool.AsyncCallsByWorker(); !maps.Equal(by, m.shared) {
		problems = append(problems, fmt.Sprintf("AsyncCallsByWorker = %v, model says %v", by, m.shared))
	}
	return problems
}

// asyncSettled reports whether the pool's async calls are the model's: a
// cancelled call keeps its place until its task answered.
func (m *poolModel) asyncSettled(s Stats) bool { return len(m.compareAsync(s)) == 0 }

// checkHeldCalls fails the sequence if a held call has ended: none ends
// but by asyncCancel or asyncKill.
func (m *poolModel) checkHeldCalls(rt *rapid.T) {
	for _, c := range m.calls {
		select {
		case err := <-c.done:
			rt.Fatalf("the async call held on worker %d ended: %v", c.pid, err)
		default:
		}
	}
}
