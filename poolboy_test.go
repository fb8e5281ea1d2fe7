package pypool

// A port of poolboy's eunit suite (devinus/poolboy, test/poolboy_tests.erl,
// read at commit 00f70ec4d858; its worker is test/poolboy_test_worker.erl)
// to pypool. Each eunit case that has a meaning here is one Go test, named
// TestPoolboy + the case's name in CamelCase, and asserts what pool-spec.md
// says of the same situation.
//
// How poolboy's calls map to ours:
//
//	new_pool(Size, MaxOverflow[, Strategy])  newTestPool with Config.Size, MaxOverflow, Strategy;
//	                                         poolboy's 10-worker pools are scaled down to 5
//	poolboy:checkout(Pool)                   pbCheckout: a goroutine holding pool.Transaction
//	                                         until the test releases it
//	poolboy:checkin(Pool, W), checkin_worker pbHolder.checkin: the transaction's fn returns and
//	                                         Transaction has returned; then pbAwait the settled
//	                                         state instead of checkin_worker's timer:sleep(500)
//	poolboy:checkout(Pool, false) = full     pool.TryCall(ctx, "pid") fails with ErrPoolExhausted
//	poolboy:checkout(Pool, false) = Worker   there is no API that holds a worker without blocking:
//	                                         TryCall(ctx, "sleep", 60) in a goroutine holds the
//	                                         worker it took (or had started) for as long as the
//	                                         call runs; cancelling its ctx ends the call (the
//	                                         worker is interrupted and checked in)
//	poolboy:checkout(Pool, true, Timeout),   a ctx ending the wait (cancelled by the test once
//	poolboy:transaction(Pool, Fun, Timeout)  the caller is seen waiting, or already expired)
//	poolboy:transaction(Pool, Fun)           pool.Transaction
//	get_avail_workers                        Stats().Idle
//	get_all_workers                          Stats().Workers, and as many pids in workerPids and
//	                                         processes in childProcesses
//	get_all_monitors (owners of checked-out  Stats().InUse
//	  workers)
//	get_monitors (all the pool's monitors:   Stats().InUse + Stats().Waiting
//	  owners and waiting callers)
//	poolboy:status(Pool)                     {s.Status(), s.Idle, s.Overflow, s.InUse}
//	kill_worker(W) (the worker's die call,   syscall.Kill(pid, SIGKILL) (pool-spec rule 5: death
//	  then awaiting its 'DOWN')              from outside), then await its pid's removal
//	timer:sleep to let the pool settle       pbAwait (awaitPool), never time.Sleep
//	is_process_alive(W)                      W's pid among childProcesses()
//	a process dying while it holds a worker  runtime.Goexit inside the Transaction
//	throw inside poolboy:transaction         panic inside pool.Transaction, recovered by the test
//	pool_call(Pid, stop)                     pool.Close, at the test's cleanup (newTestPool)
//
// Besides poolboy's own assertions, every settled state is checked against
// pool-spec rule 1 (no start or stop in flight, Overflow = max(0,
// Workers-Size), exactly Workers processes alive), and Stats().Restarts
// (every worker started after New: replacements and overflow workers) is
// asserted after each step, so that a pool that reaches the right counts by
// starting workers it did not need fails.
//
// Not ported:
//
//	pool_extend_one      poolboy:extend_one/1 adds a worker beyond the configured ones on
//	                     demand; pypool has no such API (its worker count is Size plus the
//	                     overflow that checkouts start).
//	pool_shrink_one      poolboy:shrink_one/1 stops an idle worker on demand; pypool has no
//	                     such API.
//	pool_returns_status, its Pool3 = new_pool(0, 2) and Pool4 = new_pool(0, 0): pypool has no
//	                     pool without core workers (Config.Size 0 means the number of CPUs).
//	                     Its Pool and Pool2 parts are ported.
//	The suite's foreach setup and teardown: registering the pool as {local, poolboy_test},
//	                     error_logger:tty and the stop of a registered leftover pool. pypool
//	                     pools are values, not registered names; newTestPool closes each pool
//	                     at the test's end and TestMain checks that no process is left.
//	The test worker's init/1 with {locker, _} args (worker_args reaching the worker's start):
//	                     no case of this suite uses it, and pypool workers take no start
//	                     arguments (Config.Env is their only input).

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pbHolder is one poolboy:checkout(Pool): a goroutine that holds a worker in
// a Transaction until the test checks it in.
type pbHolder struct {
	pid     int           // the held worker's pid, set before got is closed
	got     chan struct{} // closed when the worker is held
	release chan struct{} // closed to end the transaction
	once    sync.Once
	done    chan struct{} // closed when Transaction has returned
	err     error         // Transaction's result, set before done is closed
}

// pbCheckoutAsync starts a checkout that may wait; got is closed when it has
// a worker. The holder is released at the test's end (before the pool's
// Close, registered earlier) if the test did not check it in.
func pbCheckoutAsync(t *testing.T, pool *Pool, ctx context.Context) *pbHolder {
	h := &pbHolder{got: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(h.letGo)
	go func() {
		defer close(h.done)
		h.err = pool.Transaction(ctx, func(w *Worker) error {
			h.pid = w.Pid()
			close(h.got)
			<-h.release
			return nil
		})
	}()
	return h
}

// pbCheckout is poolboy:checkout(Pool): it returns once the worker is held.
func pbCheckout(t *testing.T, pool *Pool) *pbHolder {
	t.Helper()
	h := pbCheckoutAsync(t, pool, testCtx(t))
	h.await(t, "poolboy:checkout")
	return h
}

// pbCheckoutN is [poolboy:checkout(Pool) || _ <- lists:seq(1, N)].
func pbCheckoutN(t *testing.T, pool *Pool, n int) []*pbHolder {
	t.Helper()
	hs := make([]*pbHolder, n)
	for i := range hs {
		hs[i] = pbCheckout(t, pool)
	}
	return hs
}

// await waits until the holder has its worker; it fails the test if the
// checkout ended without one or did not get one within testCtx.
func (h *pbHolder) await(t *testing.T, what string) {
	t.Helper()
	select {
	case <-h.got:
	case <-h.done:
		t.Fatalf("%s: Transaction returned without a worker: %v", what, h.err)
	case <-testCtx(t).Done():
		t.Fatalf("%s: no worker within the test's bound", what)
	}
}

// holding reports whether the holder has its worker now.
func (h *pbHolder) holding() bool {
	select {
	case <-h.got:
		return true
	default:
		return false
	}
}

func (h *pbHolder) letGo() { h.once.Do(func() { close(h.release) }) }

// checkin is poolboy:checkin: the transaction ends, and checkin returns
// after Transaction has.
func (h *pbHolder) checkin(t *testing.T) {
	t.Helper()
	h.letGo()
	select {
	case <-h.done:
		assert.NoError(t, h.err, "the transaction of worker %d", h.pid)
	case <-testCtx(t).Done():
		t.Fatalf("the transaction of worker %d did not return after its fn did", h.pid)
	}
}

func pbCheckinAll(t *testing.T, hs ...*pbHolder) {
	t.Helper()
	for _, h := range hs {
		h.checkin(t)
	}
}

// pbKill is kill_worker: the held worker dies (SIGKILL from outside), and
// pbKill returns once the pool no longer lists it.
func pbKill(t *testing.T, pool *Pool, h *pbHolder) {
	t.Helper()
	require.NoError(t, syscall.Kill(h.pid, syscall.SIGKILL))
	awaitPool(t, pool, "the killed worker "+itoa(h.pid)+" is no longer listed", func(Stats) bool {
		return !slices.Contains(workerPids(pool), h.pid)
	})
}

// pbWant is a pool state as poolboy's tests read it: get_all_workers,
// get_avail_workers, get_all_monitors, and the waiting callers.
type pbWant struct {
	Workers, Idle, InUse, Waiting int
}

// pbSettled reports whether the pool is in state want with no worker start
// or stop in flight and exactly want.Workers worker processes alive.
func pbSettled(pool *Pool, s Stats, want pbWant) bool {
	return s.Workers == want.Workers && s.Idle == want.Idle && s.InUse == want.InUse &&
		s.Waiting == want.Waiting && s.Starting == 0 && s.Stopping == 0 &&
		len(workerPids(pool)) == want.Workers && len(childProcesses()) == want.Workers
}

// pbAwait waits until the pool settles in state want (what poolboy's tests
// get from timer:sleep), then checks it field by field so that a timeout
// says what differs.
func pbAwait(t *testing.T, pool *Pool, what string, want pbWant) {
	t.Helper()
	awaitPool(t, pool, what, func(s Stats) bool { return pbSettled(pool, s, want) })
	pbCheck(t, pool, what, want)
}

// pbCheck checks the pool's state now: right after a checkout returned,
// when the state it reached must already hold (pool-spec rule 1).
func pbCheck(t *testing.T, pool *Pool, what string, want pbWant) {
	t.Helper()
	s := pool.Stats()
	assert.Equal(t, want, pbWant{s.Workers, s.Idle, s.InUse, s.Waiting}, "%s: {Workers, Idle, InUse, Waiting}", what)
	assert.Equal(t, max(0, s.Workers-s.Size), s.Overflow, "%s: Overflow = max(0, Workers-Size) (stats %+v)", what, s)
	assert.Zero(t, s.Starting, "%s: no worker start in flight (stats %+v)", what, s)
	assert.Zero(t, s.Stopping, "%s: no worker stop in flight (stats %+v)", what, s)
	assert.Len(t, workerPids(pool), want.Workers, "%s: workerPids", what)
	assert.Len(t, childProcesses(), want.Workers, "%s: live worker processes", what)
}

// pbRestarts asserts how many workers the pool started after New.
func pbRestarts(t *testing.T, pool *Pool, want uint64, what string) {
	t.Helper()
	assert.Equal(t, want, pool.Stats().Restarts, "%s: workers started since New (Stats.Restarts)", what)
}

// pbStatus is poolboy:status/1: {StateName, Idle, Overflow, InUse}.
type pbStatus struct {
	State                 string
	Idle, Overflow, InUse int
}

func pbStatusOf(pool *Pool) pbStatus {
	s := pool.Stats()
	return pbStatus{s.Status(), s.Idle, s.Overflow, s.InUse}
}

func pbConfig(t *testing.T, size, maxOverflow int) Config {
	cfg := testConfig(t)
	cfg.Size, cfg.MaxOverflow = size, maxOverflow
	return cfg
}

// TestPoolboyPoolStartup ports pool_startup ("Basic pool operations").
// new_pool(10, 5) → Size 5, MaxOverflow 5; get_avail_workers 10, 9, 8, 9 →
// Idle 5, 4, 3, 4; get_all_monitors 1 → InUse 1 (the first checkout is never
// checked in).
func TestPoolboyPoolStartup(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 5))
	pbCheck(t, pool, "after New", pbWant{Workers: 5, Idle: 5})
	pbCheckout(t, pool)
	pbCheck(t, pool, "one checked out", pbWant{Workers: 5, Idle: 4, InUse: 1})
	w := pbCheckout(t, pool)
	pbCheck(t, pool, "two checked out", pbWant{Workers: 5, Idle: 3, InUse: 2})
	w.checkin(t)
	pbAwait(t, pool, "one checked back in", pbWant{Workers: 5, Idle: 4, InUse: 1})
	pbRestarts(t, pool, 0, "no overflow needed")
}

// TestPoolboyPoolOverflow ports pool_overflow ("Pool overflow should work").
// new_pool(5, 5); 7 × poolboy:checkout → 7 held transactions; each pair of
// checkin_worker → checkins, then pbAwait. Overflow workers checked in while
// nobody waits are stopped at once (pool-spec rule 3): the pool shrinks back
// to 5 before any worker turns idle.
func TestPoolboyPoolOverflow(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 5))
	hs := pbCheckoutN(t, pool, 7)
	pbCheck(t, pool, "7 checked out", pbWant{Workers: 7, Idle: 0, InUse: 7})
	pbRestarts(t, pool, 2, "two overflow workers")

	pbCheckinAll(t, hs[0], hs[1])
	pbAwait(t, pool, "A, B checked in: both overflow workers stopped", pbWant{Workers: 5, Idle: 0, InUse: 5})
	pbRestarts(t, pool, 2, "checkins start nothing")
	pbCheckinAll(t, hs[2], hs[3])
	pbAwait(t, pool, "C, D checked in", pbWant{Workers: 5, Idle: 2, InUse: 3})
	pbCheckinAll(t, hs[4], hs[5])
	pbAwait(t, pool, "E, F checked in", pbWant{Workers: 5, Idle: 4, InUse: 1})
	hs[6].checkin(t)
	pbAwait(t, pool, "G checked in: at rest", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 2, "checkins start nothing")
}

// TestPoolboyPoolEmpty ports pool_empty ("Pool behaves when empty").
// new_pool(5, 2); the spawned process's blocking checkout → a pbHolder whose
// Transaction waits; "should block" (receive … after 500) → Waiting == 1
// observed and no worker held; it then checks its worker in at once, as the
// spawned process does. pool-spec rule 3: the worker A checked in while a
// caller waits goes straight to that caller.
func TestPoolboyPoolEmpty(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 2))
	hs := pbCheckoutN(t, pool, 7)
	pbCheck(t, pool, "7 checked out", pbWant{Workers: 7, Idle: 0, InUse: 7})
	pbRestarts(t, pool, 2, "two overflow workers")

	waiter := pbCheckoutAsync(t, pool, testCtx(t))
	pbAwait(t, pool, "the 8th checkout waits", pbWant{Workers: 7, Idle: 0, InUse: 7, Waiting: 1})
	assert.False(t, waiter.holding(), "a checkout got a worker from a full pool")

	hs[0].checkin(t)
	waiter.await(t, "the waiting checkout after A's checkin")
	assert.Equal(t, hs[0].pid, waiter.pid, "A goes straight to the waiting caller")
	waiter.checkin(t)
	hs[1].checkin(t)
	pbAwait(t, pool, "A (via the waiter) and B checked in", pbWant{Workers: 5, Idle: 0, InUse: 5})
	pbRestarts(t, pool, 2, "the waiter was served without a new worker")

	pbCheckinAll(t, hs[2], hs[3])
	pbAwait(t, pool, "C, D checked in", pbWant{Workers: 5, Idle: 2, InUse: 3})
	pbCheckinAll(t, hs[4], hs[5])
	pbAwait(t, pool, "E, F checked in", pbWant{Workers: 5, Idle: 4, InUse: 1})
	hs[6].checkin(t)
	pbAwait(t, pool, "G checked in: at rest", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 2, "checkins start nothing")
}

// TestPoolboyPoolEmptyNoOverflow ports pool_empty_no_overflow ("Pool behaves
// when empty and oveflow is disabled"). new_pool(5, 0); same mapping as
// TestPoolboyPoolEmpty.
func TestPoolboyPoolEmptyNoOverflow(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 0))
	hs := pbCheckoutN(t, pool, 5)
	pbCheck(t, pool, "5 checked out", pbWant{Workers: 5, Idle: 0, InUse: 5})

	waiter := pbCheckoutAsync(t, pool, testCtx(t))
	pbAwait(t, pool, "the 6th checkout waits", pbWant{Workers: 5, Idle: 0, InUse: 5, Waiting: 1})
	assert.False(t, waiter.holding(), "a checkout got a worker from a full pool")

	hs[0].checkin(t)
	waiter.await(t, "the waiting checkout after A's checkin")
	assert.Equal(t, hs[0].pid, waiter.pid, "A goes straight to the waiting caller")
	waiter.checkin(t)
	hs[1].checkin(t)
	pbAwait(t, pool, "A (via the waiter) and B checked in", pbWant{Workers: 5, Idle: 2, InUse: 3})
	pbCheckinAll(t, hs[2], hs[3])
	pbAwait(t, pool, "C, D checked in", pbWant{Workers: 5, Idle: 4, InUse: 1})
	hs[4].checkin(t)
	pbAwait(t, pool, "E checked in: at rest", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 0, "no worker ever started after New")
}

// TestPoolboyWorkerDeath ports worker_death ("Pool behaves on worker death"):
// a dead worker is replaced only while fewer than Size workers would remain;
// dead overflow workers are not. new_pool(5, 2); kill_worker → SIGKILL of
// the held worker, whose transaction stays open and makes no call: pool-spec
// rule 5 frees its slot at once all the same. get_all_monitors 4 → InUse 4.
func TestPoolboyWorkerDeath(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 2))
	first := pbCheckout(t, pool)
	pbKill(t, pool, first)
	pbAwait(t, pool, "the killed worker's slot is free again", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 1, "one replacement")

	hs := pbCheckoutN(t, pool, 7)
	pbCheck(t, pool, "7 checked out", pbWant{Workers: 7, Idle: 0, InUse: 7})
	pbRestarts(t, pool, 3, "and two overflow workers")

	pbKill(t, pool, hs[0])
	pbAwait(t, pool, "A killed", pbWant{Workers: 6, Idle: 0, InUse: 6})
	pbRestarts(t, pool, 3, "a dead overflow worker is not replaced")
	pbKill(t, pool, hs[1])
	pbAwait(t, pool, "B killed", pbWant{Workers: 5, Idle: 0, InUse: 5})
	pbKill(t, pool, hs[2])
	pbAwait(t, pool, "C killed", pbWant{Workers: 5, Idle: 1, InUse: 4})
	pbRestarts(t, pool, 4, "C's replacement keeps Size workers")

	// The checkins of the dead workers' transactions are no-ops.
	pbCheckinAll(t, append([]*pbHolder{first}, hs...)...)
	pbAwait(t, pool, "all checked in: at rest", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 4, "checkins start nothing")
}

// TestPoolboyWorkerDeathWhileFull ports worker_death_while_full ("Pool
// behaves when full and a worker dies"): the death of a worker while a
// checkout waits gets a new worker started for that checkout; a death with
// nobody waiting does not. new_pool(5, 2); the spawned process that never
// checks in → a pbHolder left holding; get_all_monitors 6 → InUse 6.
func TestPoolboyWorkerDeathWhileFull(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 2))
	first := pbCheckout(t, pool)
	pbKill(t, pool, first)
	pbAwait(t, pool, "the killed worker's slot is free again", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 1, "one replacement")

	hs := pbCheckoutN(t, pool, 7)
	pbCheck(t, pool, "7 checked out", pbWant{Workers: 7, Idle: 0, InUse: 7})
	pbRestarts(t, pool, 3, "and two overflow workers")

	waiter := pbCheckoutAsync(t, pool, testCtx(t))
	pbAwait(t, pool, "the 8th checkout waits", pbWant{Workers: 7, Idle: 0, InUse: 7, Waiting: 1})
	assert.False(t, waiter.holding(), "a checkout got a worker from a full pool")

	pbKill(t, pool, hs[0])
	waiter.await(t, "the waiting checkout after A's death")
	assert.NotEqual(t, hs[0].pid, waiter.pid)
	pbAwait(t, pool, "the waiter holds a new worker", pbWant{Workers: 7, Idle: 0, InUse: 7})
	pbRestarts(t, pool, 4, "one worker started for the waiter")

	pbKill(t, pool, hs[1])
	pbAwait(t, pool, "B killed, nobody waiting", pbWant{Workers: 6, Idle: 0, InUse: 6})
	pbRestarts(t, pool, 4, "no replacement while overflow workers remain")

	pbCheckinAll(t, append([]*pbHolder{first, waiter}, hs...)...)
	pbAwait(t, pool, "all checked in: at rest", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 4, "checkins start nothing")
}

// TestPoolboyWorkerDeathWhileFullNoOverflow ports
// worker_death_while_full_no_overflow ("Pool behaves when full, a worker dies
// and overflow disabled"): without overflow every dead worker is replaced,
// and a waiting checkout gets the replacement. new_pool(5, 0);
// get_all_monitors 3 → InUse 3.
func TestPoolboyWorkerDeathWhileFullNoOverflow(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 0))
	first := pbCheckout(t, pool)
	pbKill(t, pool, first)
	pbAwait(t, pool, "the killed worker's slot is free again", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 1, "one replacement")

	hs := pbCheckoutN(t, pool, 5)
	pbCheck(t, pool, "5 checked out", pbWant{Workers: 5, Idle: 0, InUse: 5})

	waiter := pbCheckoutAsync(t, pool, testCtx(t))
	pbAwait(t, pool, "the 6th checkout waits", pbWant{Workers: 5, Idle: 0, InUse: 5, Waiting: 1})
	assert.False(t, waiter.holding(), "a checkout got a worker from a full pool")

	pbKill(t, pool, hs[0])
	waiter.await(t, "the waiting checkout after A's death")
	assert.NotEqual(t, hs[0].pid, waiter.pid)
	pbAwait(t, pool, "the waiter holds A's replacement", pbWant{Workers: 5, Idle: 0, InUse: 5})
	pbRestarts(t, pool, 2, "A replaced for the waiter")

	pbKill(t, pool, hs[1])
	pbAwait(t, pool, "B killed and replaced", pbWant{Workers: 5, Idle: 1, InUse: 4})
	pbKill(t, pool, hs[2])
	pbAwait(t, pool, "C killed and replaced", pbWant{Workers: 5, Idle: 2, InUse: 3})
	pbRestarts(t, pool, 4, "B and C replaced")

	pbCheckinAll(t, append([]*pbHolder{first, waiter}, hs...)...)
	pbAwait(t, pool, "all checked in: at rest", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 4, "checkins start nothing")
}

// TestPoolboyPoolFullNonblockingNoOverflow ports
// pool_full_nonblocking_no_overflow ("Non-blocking pool behaves when full
// and overflow disabled"). new_pool(5, 0); poolboy:checkout(Pid, false) =
// full → TryCall fails with ErrPoolExhausted (and starts nothing); after A's
// checkin the blocking checkout gets A back (the only idle worker);
// get_all_monitors 5 → InUse 5.
func TestPoolboyPoolFullNonblockingNoOverflow(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 0))
	ctx := testCtx(t)
	hs := pbCheckoutN(t, pool, 5)
	pbCheck(t, pool, "5 checked out", pbWant{Workers: 5, Idle: 0, InUse: 5})

	for range 2 {
		_, err := pool.TryCall(ctx, "pid")
		assert.ErrorIs(t, err, ErrPoolExhausted, "poolboy:checkout(Pid, false) = full")
	}
	pbCheck(t, pool, "after the refused TryCalls", pbWant{Workers: 5, Idle: 0, InUse: 5})

	hs[0].checkin(t)
	pbAwait(t, pool, "A checked in", pbWant{Workers: 5, Idle: 1, InUse: 4})
	again := pbCheckout(t, pool)
	assert.Equal(t, hs[0].pid, again.pid, "the checkout gets A back")
	pbCheck(t, pool, "A checked out again", pbWant{Workers: 5, Idle: 0, InUse: 5})
	pbRestarts(t, pool, 0, "no worker ever started after New")
}

// TestPoolboyPoolFullNonblocking ports pool_full_nonblocking ("Non-blocking
// pool behaves when full"). new_pool(5, 5); full → TryCall fails with
// ErrPoolExhausted; A, an overflow worker checked in with nobody waiting, is
// stopped (is_process_alive(A) = false → A's pid no longer a child
// process); NewWorker = poolboy:checkout(Pid, false) → TryCall(ctx, "sleep",
// 60) in a goroutine: pool-spec says TryCall has a worker started for itself
// when none is idle and there is room, and it holds that worker while the
// call runs; get_all_monitors 10 → InUse 10.
func TestPoolboyPoolFullNonblocking(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 5))
	ctx := testCtx(t)
	hs := pbCheckoutN(t, pool, 10)
	pbCheck(t, pool, "10 checked out", pbWant{Workers: 10, Idle: 0, InUse: 10})
	pbRestarts(t, pool, 5, "five overflow workers")

	_, err := pool.TryCall(ctx, "pid")
	assert.ErrorIs(t, err, ErrPoolExhausted, "poolboy:checkout(Pid, false) = full")

	a := hs[0]
	a.checkin(t)
	pbAwait(t, pool, "A checked in and stopped", pbWant{Workers: 9, Idle: 0, InUse: 9})
	assert.NotContains(t, childProcesses(), a.pid, "overflow workers get shut down")

	holdCtx, stopHolding := context.WithCancel(ctx)
	defer stopHolding()
	held := make(chan error, 1)
	go func() {
		_, err := pool.TryCall(holdCtx, "sleep", 60)
		held <- err
	}()
	awaitPool(t, pool, "the non-blocking checkout holds a worker", func(s Stats) bool {
		return s.InUse == 10 && s.Workers == 10 && s.Starting == 0
	})
	var fresh []int
	for _, pid := range workerPids(pool) {
		if !slices.ContainsFunc(hs[1:], func(h *pbHolder) bool { return h.pid == pid }) {
			fresh = append(fresh, pid)
		}
	}
	if assert.Len(t, fresh, 1, "one worker besides the 9 held ones") {
		assert.NotEqual(t, a.pid, fresh[0], "NewWorker is not A")
	}
	pbRestarts(t, pool, 6, "one worker started for the non-blocking checkout")

	_, err = pool.TryCall(ctx, "pid")
	assert.ErrorIs(t, err, ErrPoolExhausted, "poolboy:checkout(Pid, false) = full again")
	pbCheck(t, pool, "full again", pbWant{Workers: 10, Idle: 0, InUse: 10})

	stopHolding()
	select {
	case err := <-held:
		assert.ErrorIs(t, err, context.Canceled, "the holding TryCall ends with its ctx")
	case <-ctx.Done():
		t.Fatal("the holding TryCall did not return after its ctx was cancelled")
	}
	pbAwait(t, pool, "the non-blocking checkout's worker checked in", pbWant{Workers: 9, Idle: 0, InUse: 9})
	pbCheckinAll(t, hs[1:]...)
	pbAwait(t, pool, "all checked in: at rest", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 6, "checkins start nothing")
}

// TestPoolboyOwnerDeath ports owner_death ("Pool behaves on owner death"): a
// process that exits while it holds a worker. The Go counterpart of an
// owner's death is its goroutine ending inside the transaction
// (runtime.Goexit: only deferred calls run); the worker must come back.
// new_pool(5, 5); get_all_monitors 0 → InUse 0.
func TestPoolboyOwnerDeath(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 5, 5))
	got, die, ended := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		_ = pool.Transaction(testCtx(t), func(*Worker) error {
			close(got)
			<-die
			runtime.Goexit()
			return nil
		})
	}()
	<-got
	pbCheck(t, pool, "the owner holds a worker", pbWant{Workers: 5, Idle: 4, InUse: 1})
	close(die)
	<-ended
	pbAwait(t, pool, "the dead owner's worker is back", pbWant{Workers: 5, Idle: 5, InUse: 0})
	pbRestarts(t, pool, 0, "the worker was checked in, not replaced")
}

// TestPoolboyCheckinAfterExceptionInTransaction ports
// checkin_after_exception_in_transaction ("Worker checked-in after an
// exception in a transaction"). new_pool(2, 0); throw(it_on_the_ground) →
// panic("it_on_the_ground"), recovered by the test as poolboy's try/catch
// does; is_pid(Worker) → w.Pid() > 0.
func TestPoolboyCheckinAfterExceptionInTransaction(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 2, 0))
	pbCheck(t, pool, "after New", pbWant{Workers: 2, Idle: 2})
	var caught any
	func() {
		defer func() { caught = recover() }()
		_ = pool.Transaction(testCtx(t), func(w *Worker) error {
			assert.Positive(t, w.Pid())
			assert.Equal(t, 1, pool.Stats().Idle, "get_avail_workers inside the transaction")
			panic("it_on_the_ground")
		})
	}()
	assert.Equal(t, "it_on_the_ground", caught, "the panic goes on after the checkin")
	pbCheck(t, pool, "after the transaction", pbWant{Workers: 2, Idle: 2})
	pbRestarts(t, pool, 0, "the worker was checked in, not replaced")
}

// TestPoolboyPoolReturnsStatus ports pool_returns_status ("Pool returns
// status"): poolboy:status(Pool) → {s.Status(), s.Idle, s.Overflow,
// s.InUse}, read right after each checkout returned. Its Pool3 and Pool4
// (Size 0) are not ported: see the top of this file.
func TestPoolboyPoolReturnsStatus(t *testing.T) {
	t.Run("new_pool(2, 0)", func(t *testing.T) {
		pool := newTestPool(t, pbConfig(t, 2, 0))
		assert.Equal(t, pbStatus{"ready", 2, 0, 0}, pbStatusOf(pool))
		pbCheckout(t, pool)
		assert.Equal(t, pbStatus{"ready", 1, 0, 1}, pbStatusOf(pool))
		pbCheckout(t, pool)
		assert.Equal(t, pbStatus{"full", 0, 0, 2}, pbStatusOf(pool))
	})
	t.Run("new_pool(1, 1)", func(t *testing.T) {
		pool := newTestPool(t, pbConfig(t, 1, 1))
		assert.Equal(t, pbStatus{"ready", 1, 0, 0}, pbStatusOf(pool))
		pbCheckout(t, pool)
		assert.Equal(t, pbStatus{"overflow", 0, 0, 1}, pbStatusOf(pool))
		pbCheckout(t, pool)
		assert.Equal(t, pbStatus{"full", 0, 1, 2}, pbStatusOf(pool))
	})
}

// TestPoolboyDemonitorsPreviouslyWaitingProcesses ports
// demonitors_previously_waiting_processes ("Pool demonitors previously
// waiting processes"): a caller that waited and was then served leaves no
// trace in the pool's bookkeeping. new_pool(1, 0); the spawned holder's
// timer:sleep(500) before its checkin → the test checks it in once its own
// checkout is seen waiting; get_monitors 1, 0 → InUse+Waiting 1, 0.
func TestPoolboyDemonitorsPreviouslyWaitingProcesses(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 1, 0))
	other := pbCheckout(t, pool)
	mine := pbCheckoutAsync(t, pool, testCtx(t))
	pbAwait(t, pool, "our checkout waits", pbWant{Workers: 1, Idle: 0, InUse: 1, Waiting: 1})

	other.checkin(t)
	mine.await(t, "our checkout after the other's checkin")
	pbCheck(t, pool, "served: no longer counted as waiting", pbWant{Workers: 1, Idle: 0, InUse: 1, Waiting: 0})
	mine.checkin(t)
	pbAwait(t, pool, "checked in", pbWant{Workers: 1, Idle: 1, InUse: 0, Waiting: 0})
	pbRestarts(t, pool, 0, "no worker started")
}

// TestPoolboyDemonitorsWhenCheckoutCancelled ports
// demonitors_when_checkout_cancelled ("Pool demonitors when a checkout is
// cancelled"): a checkout that gives up leaves no trace. new_pool(1, 0);
// poolboy:checkout(Pool, true, 1000) that times out → a Transaction whose
// ctx the test cancels once it is seen waiting, then one whose deadline
// passes (no worker can free up, so the outcome does not depend on time);
// get_monitors 2, 1 → InUse+Waiting 2, 1.
func TestPoolboyDemonitorsWhenCheckoutCancelled(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 1, 0))
	holder := pbCheckout(t, pool)
	refuse := func(*Worker) error { return errors.New("a full pool handed out a worker") }

	canceled, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		awaitPool(t, pool, "the second checkout waits", func(s Stats) bool { return s.Waiting == 1 })
		assert.Equal(t, 1, pool.Stats().InUse, "get_monitors = 2: the holder and the waiter")
		cancel()
	}()
	err := pool.Transaction(canceled, refuse)
	<-watched
	assert.ErrorIs(t, err, context.Canceled)
	pbCheck(t, pool, "the cancelled checkout left", pbWant{Workers: 1, Idle: 0, InUse: 1, Waiting: 0})

	expiring, cancel2 := context.WithTimeout(testCtx(t), 50*time.Millisecond)
	defer cancel2()
	err = pool.Transaction(expiring, refuse)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	pbCheck(t, pool, "the timed-out checkout left", pbWant{Workers: 1, Idle: 0, InUse: 1, Waiting: 0})

	holder.checkin(t)
	pbAwait(t, pool, "checked in", pbWant{Workers: 1, Idle: 1, InUse: 0})
	pbRestarts(t, pool, 0, "no worker started")
}

// pbStrategyCaseLIFO is default_strategy_lifo and lifo_strategy: new_pool(2, 0
// [, lifo]); Worker1 = checkout, checkin (Transaction ends), and the next
// checkout gets Worker1 again (same pid).
func pbStrategyCaseLIFO(t *testing.T, cfg Config) {
	pool := newTestPool(t, cfg)
	w1 := pbCheckout(t, pool)
	w1.checkin(t)
	again := pbCheckout(t, pool)
	assert.Equal(t, w1.pid, again.pid, "LIFO hands out the worker checked in last")
}

// TestPoolboyDefaultStrategyLifo ports default_strategy_lifo ("Check that
// LIFO is the default strategy"): Config.Strategy left zero.
func TestPoolboyDefaultStrategyLifo(t *testing.T) {
	pbStrategyCaseLIFO(t, pbConfig(t, 2, 0))
}

// TestPoolboyLifoStrategy ports lifo_strategy ("Check LIFO strategy"):
// new_pool(2, 0, lifo) → Config.Strategy LIFO.
func TestPoolboyLifoStrategy(t *testing.T) {
	cfg := pbConfig(t, 2, 0)
	cfg.Strategy = LIFO
	pbStrategyCaseLIFO(t, cfg)
}

// TestPoolboyFifoStrategy ports fifo_strategy ("Check FIFO strategy"):
// new_pool(2, 0, fifo) → Config.Strategy FIFO. Worker1 checked out and in;
// the next checkout (held) gets the other worker; the one after gets Worker1.
func TestPoolboyFifoStrategy(t *testing.T) {
	cfg := pbConfig(t, 2, 0)
	cfg.Strategy = FIFO
	pool := newTestPool(t, cfg)
	w1 := pbCheckout(t, pool)
	w1.checkin(t)
	w2 := pbCheckout(t, pool)
	assert.NotEqual(t, w1.pid, w2.pid, "FIFO hands out the worker idle longest")
	again := pbCheckout(t, pool)
	assert.Equal(t, w1.pid, again.pid)
}

// TestPoolboyReusesWaitingMonitorOnWorkerExit ports
// reuses_waiting_monitor_on_worker_exit ("Pool reuses waiting monitor when a
// worker exits"): one owner holds the only worker and waits for a second;
// the held worker is killed (exit(Worker, kill) → SIGKILL). pool-spec rule
// 5: its slot is freed, a replacement is started and serves the waiting
// checkout. The owner process → one goroutine whose Transaction opens a
// nested Transaction; get_monitors 1 → InUse 1, Waiting 0. new_pool(1, 0).
func TestPoolboyReusesWaitingMonitorOnWorkerExit(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 1, 0))
	ctx := testCtx(t)
	outer, inner := make(chan int, 1), make(chan int, 1)
	release, done := make(chan struct{}), make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	go func() {
		done <- pool.Transaction(ctx, func(w *Worker) error {
			outer <- w.Pid()
			return pool.Transaction(ctx, func(w2 *Worker) error {
				inner <- w2.Pid()
				<-release
				return nil
			})
		})
	}()
	killed := <-outer
	pbAwait(t, pool, "the owner waits for a second worker", pbWant{Workers: 1, Idle: 0, InUse: 1, Waiting: 1})

	require.NoError(t, syscall.Kill(killed, syscall.SIGKILL))
	select {
	case pid := <-inner:
		assert.NotEqual(t, killed, pid, "the waiting checkout gets the replacement")
	case err := <-done:
		t.Fatalf("the owner's transactions ended without the second worker: %v", err)
	case <-ctx.Done():
		t.Fatal("the waiting checkout was not served after the held worker died")
	}
	pbAwait(t, pool, "the owner holds the replacement", pbWant{Workers: 1, Idle: 0, InUse: 1, Waiting: 0})
	assert.NotContains(t, workerPids(pool), killed)
	pbRestarts(t, pool, 1, "one replacement")

	close(release)
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("the owner's transactions did not return")
	}
	pbAwait(t, pool, "all checked in: at rest", pbWant{Workers: 1, Idle: 1, InUse: 0})
	pbRestarts(t, pool, 1, "checkins start nothing")
}

// pbExpiredTransaction is poolboy:transaction(Pid, fun(W) -> ok =
// pool_call(W, work) end, 0): a Transaction whose ctx is already done runs
// nothing and returns ctx's error (pool-spec).
func pbExpiredTransaction(t *testing.T, pool *Pool) error {
	expired, cancel := context.WithTimeout(testCtx(t), 0)
	defer cancel()
	return pool.Transaction(expired, func(w *Worker) error {
		t.Error("the transaction's fn ran with an expired ctx")
		_, err := w.Call(testCtx(t), "echo", "work")
		return err
	})
}

// TestPoolboyTransactionTimeoutWithoutExit ports
// transaction_timeout_without_exit ("Recover from timeout without exit
// handling"): a transaction with timeout 0 run by a spawned process → a
// goroutine's Transaction with an already expired ctx; timer:sleep(100) →
// waiting for that goroutine to end. get_all_workers → workerPids
// unchanged; status {ready,1,0,0}. new_pool(1, 0).
func TestPoolboyTransactionTimeoutWithoutExit(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 1, 0))
	assert.Equal(t, pbStatus{"ready", 1, 0, 0}, pbStatusOf(pool))
	before := workerPids(pool)
	require.Len(t, before, 1)

	done := make(chan error, 1)
	go func() { done <- pbExpiredTransaction(t, pool) }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-testCtx(t).Done():
		t.Fatal("a Transaction with an expired ctx did not return")
	}
	assert.Equal(t, before, workerPids(pool))
	assert.Equal(t, pbStatus{"ready", 1, 0, 0}, pbStatusOf(pool))
	pbCheck(t, pool, "after the expired transaction", pbWant{Workers: 1, Idle: 1})
	pbRestarts(t, pool, 0, "no worker started")
}

// TestPoolboyTransactionTimeout ports transaction_timeout ("Recover from
// transaction timeout"): the test process's own transaction with timeout 0,
// ?assertExit({timeout, _}) → errors.Is(err, context.DeadlineExceeded).
// new_pool(1, 0).
func TestPoolboyTransactionTimeout(t *testing.T) {
	pool := newTestPool(t, pbConfig(t, 1, 0))
	assert.Equal(t, pbStatus{"ready", 1, 0, 0}, pbStatusOf(pool))
	before := workerPids(pool)
	require.Len(t, before, 1)

	assert.ErrorIs(t, pbExpiredTransaction(t, pool), context.DeadlineExceeded)
	assert.Equal(t, before, workerPids(pool))
	assert.Equal(t, pbStatus{"ready", 1, 0, 0}, pbStatusOf(pool))
	pbCheck(t, pool, "after the expired transaction", pbWant{Workers: 1, Idle: 1})
	pbRestarts(t, pool, 0, "no worker started")
}
