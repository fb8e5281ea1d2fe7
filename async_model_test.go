package pypool

// TestAsyncCallsModel is the model-based test of Config.AsyncCalls'
// accounting (async.go), in the manner of TestPoolModel: rapid draws
// sequences of commands on a pool of Size 1..2, MaxOverflow 0..1 and
// AsyncCalls 1..3, and after each command, once the pool has settled,
// its Stats and AsyncCallsByWorker must be what the model says. Commands:
//
//	asyncStart  a call of an async function held in flight (wait_cancel),
//	            drawn only when it would not wait: on an idle worker, else
//	            on the worker serving async calls with the fewest, if it has
//	            room, else on a new overflow worker; the worker the pool
//	            chose (told by a Tracer) must be the one the model says.
//	asyncEnd    the context of a held call is cancelled: its task is
//	            cancelled, and its place freed once it answered; a worker
//	            left with none is checked in (an overflow one stopped).
//	txStart     a Transaction held (a worker to itself), when it would not wait.
//	txEnd       the Transaction ends.
//	kill        SIGKILL of a worker serving async calls: each of its calls
//	            fails with ErrWorkerCrashed; the pool returns to Size.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"syscall"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestAsyncCallsModel(t *testing.T) {
	var budget time.Time
	if !flagGiven("rapid.checks") {
		setFlag(t, "rapid.checks", "15")
		budget = time.Now().Add(20 * time.Second)
	}
	ran := 0
	defer func() { t.Logf("%d command sequences ran", ran) }()
	rapid.Check(t, func(rt *rapid.T) {
		if !budget.IsZero() && time.Now().After(budget) && !rt.Failed() {
			return
		}
		ran++
		m := newAsyncModel(t, rt)
		rt.Cleanup(m.teardown)
		steps := 0
		rt.Repeat(map[string]func(*rapid.T){
			"": m.check,
			"asyncStart": func(rt *rapid.T) {
				if steps++; steps <= 20 {
					m.asyncStart(rt)
				}
			},
			"asyncStartToo": func(rt *rapid.T) { // twice as likely as the others: the workers fill
				if steps++; steps <= 20 {
					m.asyncStart(rt)
				}
			},
			"asyncEnd": m.asyncEnd,
			"txStart": func(rt *rapid.T) {
				if steps++; steps <= 20 {
					m.txStart(rt)
				}
			},
			"txEnd": m.txEnd,
			"kill":  m.kill,
		})
	})
}

// asyncModel is one sequence's pool and its model: the workers by what
// they do.
type asyncModel struct {
	t              *testing.T
	rt             *rapid.T
	pool           *Pool
	size, over, n  int
	idle           int              // idle workers
	shared         map[int]int      // pid -> calls in flight (the pool's AsyncCallsByWorker)
	tx             map[int]*heldTx  // pid -> its held Transaction
	calls          []*heldAsyncCall // in flight
	pidOf          chan int         // the Tracer's: the worker of the last call started
	crashes, kills int
}

// heldAsyncCall is a call of wait_cancel in flight in its goroutine.
type heldAsyncCall struct {
	pid    int
	cancel context.CancelFunc
	done   chan error
}

// heldTx is a Transaction held open in its goroutine.
type heldTx struct {
	release chan struct{}
	done    chan error
}

// pidTracer tells the model which worker each call of the model got.
type pidTracer struct{ pids chan int }

func (pt pidTracer) TraceCallStart(ctx context.Context, _ *Pool, _ TraceCallStartData) context.Context {
	return ctx
}

func (pt pidTracer) TraceCallWorker(_ context.Context, _ *Pool, d TraceCallWorkerData) {
	pt.pids <- d.Pid // the model's only calls are its asyncStart's, one at a time
}

func (pt pidTracer) TraceCallEnd(context.Context, *Pool, TraceCallEndData) {}

func newAsyncModel(t *testing.T, rt *rapid.T) *asyncModel {
	m := &asyncModel{t: t, rt: rt, shared: map[int]int{}, tx: map[int]*heldTx{}, pidOf: make(chan int, 1)}
	m.size = rapid.IntRange(1, 2).Draw(rt, "size")
	m.over = rapid.IntRange(0, 1).Draw(rt, "maxOverflow")
	m.n = rapid.IntRange(1, 3).Draw(rt, "asyncCalls")
	cfg := testConfig(t)
	cfg.Module = "pypool_asynccalls"
	cfg.Size, cfg.MaxOverflow, cfg.AsyncCalls = m.size, m.over, m.n
	cfg.InterruptGrace = 5 * time.Second // a loaded machine must not turn a cancellation into a kill
	cfg.Tracer = pidTracer{m.pidOf}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := New(ctx, cfg)
	if err != nil {
		rt.Fatalf("New: %v", err)
	}
	m.pool, m.idle = pool, m.size
	return m
}

func (m *asyncModel) workers() int { return m.idle + len(m.shared) + len(m.tx) }

// room is the worker serving async calls with the fewest in flight, if it
// has room for one more; 0: none.
func (m *asyncModel) room() (pid int, least int) {
	least = m.n
	for p, k := range m.shared {
		if k < least {
			pid, least = p, k
		}
	}
	return pid, least
}

func (m *asyncModel) asyncStart(rt *rapid.T) {
	_, least := m.room()
	newWorker := m.idle == 0 && least >= m.n
	if newWorker && m.workers() >= m.size+m.over {
		rt.Skip("it would wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &heldAsyncCall{cancel: cancel, done: make(chan error, 1)}
	go func() {
		_, err := m.pool.Call(ctx, "wait_cancel", 60)
		c.done <- err
	}()
	select {
	case c.pid = <-m.pidOf:
	case err := <-c.done:
		rt.Fatalf("the held async call ended: %v", err)
	case <-time.After(time.Minute):
		rt.Fatalf("the async call got no worker")
	}
	m.calls = append(m.calls, c)
	k, isShared := m.shared[c.pid]
	switch {
	case m.idle > 0:
		if isShared || m.tx[c.pid] != nil {
			rt.Fatalf("the call went to busy worker %d while %d were idle (model %v)", c.pid, m.idle, m.shared)
		}
		m.idle--
	case !newWorker:
		if !isShared || k != least {
			rt.Fatalf("the call went to worker %d (%d calls, shared %v), not one with the fewest (%d)", c.pid, k, isShared, least)
		}
	default:
		if isShared || m.tx[c.pid] != nil {
			rt.Fatalf("the call went to busy worker %d, not a new one", c.pid)
		}
	}
	m.shared[c.pid]++
}

// checkedIn is the model of a worker's check-in: an overflow worker is
// stopped, another goes idle.
func (m *asyncModel) checkedIn() {
	if m.workers() >= m.size { // the others are Size already
		return
	}
	m.idle++
}

func (m *asyncModel) asyncEnd(rt *rapid.T) {
	if len(m.calls) == 0 {
		rt.Skip("no call in flight")
	}
	i := rapid.IntRange(0, len(m.calls)-1).Draw(rt, "call")
	c := m.calls[i]
	m.calls = slices.Delete(m.calls, i, i+1)
	c.cancel()
	if err := <-c.done; !errors.Is(err, context.Canceled) {
		rt.Fatalf("a cancelled call returned %v", err)
	}
	if m.shared[c.pid]--; m.shared[c.pid] == 0 {
		delete(m.shared, c.pid)
		m.checkedIn()
	}
}

func (m *asyncModel) txStart(rt *rapid.T) {
	if m.idle == 0 && m.workers() >= m.size+m.over {
		rt.Skip("it would wait")
	}
	h := &heldTx{release: make(chan struct{}), done: make(chan error, 1)}
	pids := make(chan int, 1)
	go func() {
		h.done <- m.pool.Transaction(context.Background(), func(w *Worker) error {
			pids <- w.Pid()
			<-h.release
			return nil
		})
	}()
	var pid int
	select {
	case pid = <-pids:
	case err := <-h.done:
		rt.Fatalf("the Transaction ended: %v", err)
	case <-time.After(time.Minute):
		rt.Fatalf("the Transaction got no worker")
	}
	if _, busy := m.shared[pid]; busy || m.tx[pid] != nil {
		rt.Fatalf("the Transaction got busy worker %d", pid)
	}
	if m.idle > 0 {
		m.idle--
	}
	m.tx[pid] = h
}

func (m *asyncModel) txEnd(rt *rapid.T) {
	if len(m.tx) == 0 {
		rt.Skip("no Transaction")
	}
	pids := slices.Sorted(maps.Keys(m.tx))
	pid := rapid.SampledFrom(pids).Draw(rt, "transaction")
	h := m.tx[pid]
	delete(m.tx, pid)
	close(h.release)
	if err := <-h.done; err != nil {
		rt.Fatalf("Transaction: %v", err)
	}
	m.checkedIn()
}

func (m *asyncModel) kill(rt *rapid.T) {
	if len(m.shared) == 0 {
		rt.Skip("no worker serves async calls")
	}
	pid := rapid.SampledFrom(slices.Sorted(maps.Keys(m.shared))).Draw(rt, "worker")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		rt.Fatalf("kill %d: %v", pid, err)
	}
	m.kills++
	delete(m.shared, pid)
	kept := m.calls[:0]
	for _, c := range m.calls {
		if c.pid != pid {
			kept = append(kept, c)
			continue
		}
		select {
		case err := <-c.done:
			if !errors.Is(err, ErrWorkerCrashed) {
				rt.Fatalf("a call on killed worker %d returned %v", pid, err)
			}
		case <-time.After(time.Minute):
			rt.Fatalf("a call on killed worker %d did not end", pid)
		}
	}
	m.calls = kept
	for m.workers() < m.size {
		m.idle++ // its replacement
	}
}

// check awaits the pool's settling and compares it with the model.
func (m *asyncModel) check(rt *rapid.T) {
	total := 0
	for _, k := range m.shared {
		total += k
	}
	want := fmt.Sprintf("workers %d idle %d inUse %d asyncWorkers %d asyncCalls %d byWorker %v",
		m.workers(), m.idle, len(m.shared)+len(m.tx), len(m.shared), total, m.shared)
	deadline := time.Now().Add(time.Minute)
	for {
		changed := m.pool.awaitChange()
		s := m.pool.Stats()
		got := fmt.Sprintf("workers %d idle %d inUse %d asyncWorkers %d asyncCalls %d byWorker %v",
			s.Workers, s.Idle, s.InUse, s.AsyncWorkers, s.AsyncCalls, m.pool.AsyncCallsByWorker())
		if got == want && s.Starting == 0 && s.Stopping == 0 && s.Waiting == 0 {
			return
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
			rt.Fatalf("the pool never settled as the model says:\n got %s (stats %+v)\nwant %s", got, s, want)
		}
	}
}

// teardown ends every held call and Transaction, then closes the pool.
func (m *asyncModel) teardown() {
	for _, c := range m.calls {
		c.cancel()
		<-c.done
	}
	for _, h := range m.tx {
		close(h.release)
		<-h.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.pool.Close(ctx); err != nil && !m.rt.Failed() {
		m.rt.Error("Close: ", err)
	}
}
