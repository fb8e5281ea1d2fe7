package pypool

// helpers_test.go holds the helpers the root package's test files share:
//   - pools: testConfig, duplicateConfig, newTestPool and testStartMethod (the -pypool.start
//     flag), testCtx, awaitPool (Pool.awaitChange), workerPids, atRest,
//     Pool.holdsAny, holdWorkers, heldStarts (worker starts held in flight),
//     watchInvariants, assertGone, settleHandover (newTestPool's, for the
//     fork server's first worker);
//   - fixtures: fakePool (testdata/fakeworker.py), forkConfig and
//     awaitForkServer, streamConfig and collect, interpreters and
//     interpreterPool, writeScript, testmodLine; the data pools of
//     pypool_datamod (dataConfig, dataPool, numpyPython, thresholdCases,
//     patternBytes, DecimalString); encoded arrays (extValue, ndarrayExt,
//     assertSameArray) and the point extension type (pointCodec, pointValue);
//   - logs: logRecorder (await, awaitMatch, matching, all), testLogger,
//     slogNew, itoa;
//   - timers: bareTimer, measureTimers, stormSlack, lateHops and lateBound,
//     dumpLogOnFailure;
//   - leaks and process trees: checkLeaks (run by TestMain), childProcesses,
//     allPids, parentPid, isZombie, isGuardian, isForkServerProcess,
//     openPidfd, pidfdExited, requireExited, sharedMemoryInUse.
// main_test.go keeps TestMain and the test binary's flags.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// Pools.

// testStartMethod is the start method -pypool.start names.
func testStartMethod() StartMethod {
	if *startMethod == "forkserver" {
		return StartForkServer
	}
	return StartExec
}

// testConfig is a pool of the test module with one worker.
func testConfig(t testing.TB) Config {
	return Config{
		Module:      "pypool_testmod",
		PythonPath:  []string{"testdata/pymod"},
		Size:        1,
		Logger:      testLogger(t),
		StartMethod: testStartMethod(),
	}
}

// newTestPool starts a pool and closes it when the test ends.
func newTestPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if cfg.StartMethod == StartExec {
		cfg.StartMethod = testStartMethod()
	}
	pool, err := New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, pool.Close(ctx))
	})
	settleHandover(t, pool)
	return pool
}

// testCtx is a context for one test step: generous, so that a hang fails the
// test instead of the whole run.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// awaitPool waits until cond holds for the pool, without polling: it
// re-checks at every change of the pool's workers or waiters. It may run in
// a goroutine of the test: a timeout is reported with Errorf.
func awaitPool(t testing.TB, p *Pool, what string, cond func(Stats) bool) {
	t.Helper()
	awaitPoolUntil(t, testCtx(t), p, what, cond)
}

// awaitPoolUntil is awaitPool until ctx ends.
func awaitPoolUntil(t testing.TB, ctx context.Context, p *Pool, what string, cond func(Stats) bool) {
	t.Helper()
	for {
		changed := p.awaitChange()
		if cond(p.Stats()) {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Errorf("pool never reached: %s (last stats %+v)", what, p.Stats())
			return
		}
	}
}

// awaitChange returns a channel closed at the next change of the pool's
// state (see notifyLocked).
func (p *Pool) awaitChange() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watched = true
	return p.changed
}

// workerPids returns the pids of the pool's serving workers: idle, checked
// out or draining.
func workerPids(p *Pool) []int {
	var pids []int
	for _, pw := range p.serving() {
		pids = append(pids, pw.proc.pid)
	}
	return pids
}

// holdsAny reports whether any of procs is still one of p's workers, in any
// state: true until the pool has handled its exit (processExited).
func (p *Pool) holdsAny(procs []*process) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, proc := range procs {
		if p.workers[proc] != nil {
			return true
		}
	}
	return false
}

// atRest reports whether a pool is at rest with want workers: nothing
// starting, stopping, waiting or checked out, and want idle workers.
func atRest(s Stats, want int) bool {
	return s.Workers == want && s.Idle == want && s.Starting == 0 && s.Stopping == 0 && s.Waiting == 0
}

// holdWorkers checks out n workers until the returned function is called.
func holdWorkers(t *testing.T, pool *Pool, n int) (release func()) {
	t.Helper()
	held := make(chan struct{}, n)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, pool.Transaction(testCtx(t), func(*Worker) error {
				held <- struct{}{}
				<-done
				return nil
			}))
		}()
	}
	for range n {
		<-held
	}
	return func() { close(done); wg.Wait() }
}

// heldStarts is a pool of pypool_slowstart whose worker starts can be held
// in flight: while the hold file exists, a starting worker waits in its
// import (and says "start held" on stderr, which the recorder sees).
type heldStarts struct {
	pool *Pool
	rec  *logRecorder
	flag string
	seen map[int]bool
}

func newHeldStarts(t *testing.T, size, overflow int, tune func(*Config)) *heldStarts {
	h := &heldStarts{rec: newLogRecorder(), flag: filepath.Join(t.TempDir(), "hold"), seen: map[int]bool{}}
	cfg := testConfig(t)
	cfg.Module = "pypool_slowstart"
	if testStartMethod() == StartForkServer {
		cfg.SetUp = "hold" // forked workers do not import the module: they run its set-up
	}
	cfg.Size, cfg.MaxOverflow = size, overflow
	cfg.Env = []string{"PYPOOL_HOLD_FLAG=" + h.flag}
	cfg.Logger = slogNew(h.rec)
	if tune != nil {
		tune(&cfg)
	}
	h.pool = newTestPool(t, cfg)
	return h
}

func (h *heldStarts) hold(t *testing.T) { require.NoError(t, os.WriteFile(h.flag, nil, 0o644)) }

func (h *heldStarts) release(t *testing.T) { require.NoError(t, os.Remove(h.flag)) }

// nextHeld waits for a worker start that is held and returns its pid.
func (h *heldStarts) nextHeld(t *testing.T) int {
	t.Helper()
	ctx := testCtx(t)
	for {
		h.rec.mu.Lock()
		for _, rec := range h.rec.records {
			if rec.Message != "start held" {
				continue
			}
			pid := 0
			rec.Attrs(func(a slog.Attr) bool {
				if a.Key == "worker" {
					pid = int(a.Value.Int64())
				}
				return true
			})
			if pid != 0 && !h.seen[pid] {
				h.seen[pid] = true
				h.rec.mu.Unlock()
				return pid
			}
		}
		h.rec.mu.Unlock()
		select {
		case <-h.rec.added:
		case <-ctx.Done():
			t.Fatal("no held worker start")
		}
	}
}

// watchInvariants checks the pool's invariants on a snapshot taken at every
// change of its state (changes that come faster than the checks coalesce,
// but each snapshot is a real state, taken under the pool's lock) until the
// returned function is called:
//   - no more than Size+MaxOverflow workers serve, start or stop;
//   - no caller waits while a worker is idle;
//   - the counts add up.
func watchInvariants(t testing.TB, p *Pool) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			changed := p.awaitChange()
			s := p.Stats()
			if s.Workers+s.Starting+s.Stopping > s.Size+s.MaxOverflow {
				t.Errorf("more workers than Size+MaxOverflow: %+v", s)
			}
			if s.Waiting > 0 && s.Idle > 0 {
				t.Errorf("a caller waits while a worker is idle: %+v", s)
			}
			if s.Workers != s.Idle+s.InUse || s.Overflow != max(0, s.Workers-s.Size) {
				t.Errorf("counts do not add up: %+v", s)
			}
			select {
			case <-changed:
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

// assertGone checks that none of pids is a live process. Close reaps its
// workers before it returns, so they must be gone already.
func assertGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "worker %d still exists", pid)
	}
}

// Fixtures.

// fakePool starts a pool of testdata/fakeworker.py processes, which break
// the protocol on request, instead of the real runtime.
func fakePool(t *testing.T, hello string, size int) (*Pool, error) {
	return fakePoolConfig(t, testConfig(t), hello, size)
}

// fakePoolConfig is fakePool with the settings of cfg.
func fakePoolConfig(t *testing.T, cfg Config, hello string, size int) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	require.NoError(t, err)
	cfg.Size = size
	cfg.StartTimeout = 20 * time.Second // generous: the machine may be busy
	if hello == "silent" {
		cfg.StartTimeout = time.Second // the case that waits for it
	}
	cfg.Env = []string{"FAKE_HELLO=" + hello}
	python, err := newInterpreter("python3", cfg.env(), cfg.Dir)
	require.NoError(t, err)
	spec, err := cfg.spec(python, "")
	require.NoError(t, err)
	script, err := filepath.Abs("testdata/fakeworker.py")
	require.NoError(t, err)
	spec.args = []string{"-E", script}
	pool, err := newPool(testCtx(t), cfg, spec, nil)
	if err == nil {
		t.Cleanup(func() { require.NoError(t, pool.Close(testCtx(t))) })
	}
	return pool, err
}

// forkConfig is testConfig with the fork server.
func forkConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.StartMethod = StartForkServer
	return cfg
}

// awaitForkServer waits until the pool runs a template other than old.
func awaitForkServer(t *testing.T, pool *Pool, old *forkServer) *forkServer {
	t.Helper()
	ctx := testCtx(t)
	for {
		if fs := pool.forks.Load(); fs != nil && fs != old {
			return fs
		}
		select {
		case <-ctx.Done():
			t.Fatal("the fork server was not restarted")
		case <-time.After(5 * time.Millisecond): // the restart has no event of its own to await
		}
	}
}

func streamConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_streammod"
	return cfg
}

// collect runs a stream to its end.
func collect(t testing.TB, seq func(func(any, error) bool)) ([]any, error) {
	t.Helper()
	var items []any
	for item, err := range seq {
		if err != nil {
			return items, err
		}
		items = append(items, item)
	}
	return items, nil
}

// interpreters returns the Python interpreters to run the type tests on: the
// default python3 and, where it has the msgpack C extension, Debian's
// /usr/bin/python3 (which .ci/run installs python3-msgpack for), so that both
// codecs of the runtime are checked against the Go side.
func interpreters(t *testing.T) map[string]string {
	found := map[string]string{"python3": "python3"}
	const debian = "/usr/bin/python3"
	if err := exec.Command(debian, "-c", "import msgpack._cmsgpack").Run(); err == nil {
		found["debian-msgpack-c"] = debian
	} else {
		t.Logf("not testing the msgpack C codec: %s can not import msgpack._cmsgpack (apt-get install python3-msgpack)", debian)
	}
	return found
}

// interpreterPool starts a test pool whose workers run python.
func interpreterPool(t *testing.T, python string) *Pool {
	cfg := testConfig(t)
	cfg.Python = python
	return newTestPool(t, cfg)
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) {
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755))
}

// testmodLine is how faulthandler and tracebacks name the line of the
// test module's function fn that holds text: `pypool_testmod.py", line N
// in fn` (faulthandler's form).
func testmodLine(t testing.TB, fn, text string) string {
	t.Helper()
	src, err := os.ReadFile("testdata/pymod/pypool_testmod.py")
	require.NoError(t, err)
	inFn := false
	for i, line := range strings.Split(string(src), "\n") {
		if strings.HasPrefix(line, "def ") {
			inFn = strings.HasPrefix(line, "def "+fn+"(")
		}
		if inFn && strings.Contains(line, text) {
			return fmt.Sprintf(`pypool_testmod.py", line %d in %s`, i+1, fn)
		}
	}
	t.Fatalf("no line %q in %s()", text, fn)
	return ""
}

// The data pools of testdata/pymod/pypool_datamod.py, shared by numpy_test.go,
// extension_e2e_test.go and shm_e2e_test.go: the interpreters with and
// without numpy, the shared-memory settings, the DecimalString extension and
// byte patterns.

const debianPython = "/usr/bin/python3"

// smallThreshold is the Config.SharedMemoryThreshold of the tests that want
// modest values to go through the shared memory.
const smallThreshold = 1024

// thresholdCases are the shared-memory settings every array and bytes test
// runs with: the default (256 KiB), a small one, and none.
var thresholdCases = []struct {
	name      string
	threshold int
}{
	{"shm-default", 0},
	{"shm-1KiB", smallThreshold},
	{"shm-off", -1},
}

// dataConfig is a one-worker pool of pypool_datamod on python, with the
// DecimalString extension registered.
func dataConfig(t testing.TB, python string, threshold int) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_datamod"
	cfg.Python = python
	cfg.SharedMemoryThreshold = threshold
	cfg.Extensions = []Extension{decimalExt}
	return cfg
}

func dataPool(t testing.TB, python string, threshold int) *Pool {
	return newTestPool(t, dataConfig(t, python, threshold))
}

var (
	numpyOnce   sync.Once
	numpyReason string // why debianPython can not run the numpy tests; "" if it can
)

// numpyPython returns the interpreter with numpy, or skips the test saying
// what to install.
func numpyPython(t *testing.T) string {
	t.Helper()
	numpyOnce.Do(func() {
		if out, err := exec.Command(debianPython, "-c", "import numpy").CombinedOutput(); err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			numpyReason = fmt.Sprintf("%s can not import numpy (%v: %s): apt-get install python3-numpy",
				debianPython, err, lines[len(lines)-1])
		}
	})
	if numpyReason != "" {
		t.Skipf("not testing numpy arrays: %s", numpyReason)
	}
	return debianPython
}

// noNumpyPython returns python3 if it lacks numpy (so that arrays arrive as
// pypool_runtime.Array), else skips the test.
func noNumpyPython(t *testing.T) string {
	t.Helper()
	if exec.Command("python3", "-c", "import numpy").Run() == nil {
		t.Skip("python3 has numpy: the pypool_runtime.Array fallback needs an interpreter without it")
	}
	return "python3"
}

// DecimalString is the worked example of Config.Extensions: Python's
// decimal.Decimal as its text.
type DecimalString string

var decimalExt = Ext(10,
	func(d DecimalString) ([]byte, error) { return []byte(d), nil },
	func(b []byte) (DecimalString, error) { return DecimalString(b), nil })

// patternBytes is what pypool_datamod.patterned(n) makes: byte i is
// i*7 % 251, so that a shifted or truncated copy does not pass for it.
func patternBytes(n int) []byte {
	period := make([]byte, 251)
	for i := range period {
		period[i] = byte(i * 7 % 251)
	}
	// bytes.Repeat copies in bulk: a byte-by-byte loop costs ~100 ns a
	// byte under the race detector.
	return bytes.Repeat(period, n/251+1)[:n]
}

// largeBytes is above the default shared-memory threshold (and so above
// every threshold the tests use), but not by much, to keep the tests quick.
const largeBytes = DefaultSharedMemoryThreshold + 12345

// requireSameBytes compares byte slices without printing megabytes.
func requireSameBytes(t *testing.T, want []byte, got any, what string) {
	t.Helper()
	b, ok := got.([]byte)
	require.True(t, ok, "%s: got a %T, not []byte", what, got)
	require.Equal(t, len(want), len(b), "%s: length", what)
	if !bytes.Equal(want, b) {
		for j := range want {
			if want[j] != b[j] {
				t.Fatalf("%s: byte %d is %d, want %d", what, j, b[j], want[j])
			}
		}
	}
}

// Encoded values: extension types, arrays, and the point extension type.

// ndarrayPayload builds an NDARRAY payload by hand: msgpack [dtype, shape]
// and the data, as the Python side writes it.
func ndarrayPayload(t testing.TB, dtype string, shape []int, data []byte) []byte {
	t.Helper()
	header, err := msgpack.Marshal([]any{dtype, shape})
	require.NoError(t, err)
	return append(header, data...)
}

// extValue wraps a payload in a msgpack extension value.
func extValue(t testing.TB, code int8, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, msgpack.NewEncoder(&buf).EncodeExtHeader(code, len(payload)))
	buf.Write(payload)
	return buf.Bytes()
}

func ndarrayExt(t testing.TB, dtype string, shape []int, data []byte) []byte {
	return extValue(t, extNDArray, ndarrayPayload(t, dtype, shape, data))
}

// assertSameArray compares arrays by value: nil and empty shapes and data
// are the same.
func assertSameArray(t *testing.T, want, got Array) {
	t.Helper()
	assert.Equal(t, want.DType, got.DType)
	assert.True(t, slices.Equal(want.Shape, got.Shape), "shape %v, want %v", got.Shape, want.Shape)
	assert.True(t, bytes.Equal(want.Data, got.Data), "data %v, want %v", got.Data, want.Data)
}

// scalar makes a 0-d array of a one-element array.
func scalar(a Array) Array {
	a.Shape = nil
	return a
}

// point is a user type that crosses as an extension: 8 bytes, X and Y.
type point struct {
	X int32 `json:"x"`
	Y int32 `json:"y"`
}

var errBadPoint = errors.New("bad point")

func encodePoint(p point) ([]byte, error) {
	if p.X < 0 {
		return nil, fmt.Errorf("%w: negative X", errBadPoint)
	}
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(p.X)), uint32(p.Y)), nil
}

func decodePoint(b []byte) (point, error) {
	if len(b) != 8 {
		return point{}, fmt.Errorf("%w: %d bytes, not 8", errBadPoint, len(b))
	}
	return point{int32(binary.BigEndian.Uint32(b)), int32(binary.BigEndian.Uint32(b[4:]))}, nil
}

const pointCode = 5

// pointCodec is the codec of a pool with the point extension.
func pointCodec(structTag string) *valueCodec {
	return &valueCodec{structTag: structTag, exts: newExtRegistry([]Extension{Ext(pointCode, encodePoint, decodePoint)})}
}

func pointValue(t testing.TB, p point) []byte {
	payload, err := encodePoint(p)
	require.NoError(t, err)
	return extValue(t, pointCode, payload)
}

// Logs.

// logRecorder is a slog.Handler that keeps the records it receives.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	added   chan struct{}
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	select {
	case r.added <- struct{}{}:
	default:
	}
	return nil
}

func newLogRecorder() *logRecorder { return &logRecorder{added: make(chan struct{}, 1)} }

// await waits for a record whose message is msg and returns its attributes.
func (r *logRecorder) await(t testing.TB, msg string) map[string]string {
	t.Helper()
	ctx := testCtx(t)
	for {
		r.mu.Lock()
		for _, rec := range r.records {
			if rec.Message == msg {
				attrs := map[string]string{"level": rec.Level.String()}
				rec.Attrs(func(a slog.Attr) bool {
					attrs[a.Key] = a.Value.String()
					return true
				})
				r.mu.Unlock()
				return attrs
			}
		}
		r.mu.Unlock()
		select {
		case <-r.added:
		case <-ctx.Done():
			t.Fatalf("no log record %q", msg)
		}
	}
}

// logged is a record as the tests read it.
type logged struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func toLogged(rec slog.Record) logged {
	attrs := map[string]string{"level": rec.Level.String()}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	return logged{rec.Level, rec.Message, attrs}
}

// all returns the records so far.
func (r *logRecorder) all() []logged {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]logged, len(r.records))
	for i, rec := range r.records {
		out[i] = toLogged(rec)
	}
	return out
}

// matching returns the attributes of the records whose message is msg.
func (r *logRecorder) matching(msg string) []map[string]string {
	var out []map[string]string
	for _, l := range r.all() {
		if l.msg == msg {
			out = append(out, l.attrs)
		}
	}
	return out
}

// awaitMatch waits for a record whose message is msg and whose attribute
// key is value, and returns its attributes.
func (r *logRecorder) awaitMatch(t testing.TB, msg, key, value string) map[string]string {
	t.Helper()
	ctx := testCtx(t)
	for {
		for _, attrs := range r.matching(msg) {
			if attrs[key] == value {
				return attrs
			}
		}
		select {
		case <-r.added:
		case <-ctx.Done():
			t.Fatalf("no log record %q with %s=%s", msg, key, value)
		}
	}
}

// testLogger sends the workers' output to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func slogNew(h slog.Handler) *slog.Logger { return slog.New(h) }

func itoa(n int) string { return strconv.Itoa(n) }

// Timers: how late the machine is, the measure of the deadline tests.

// stormSlack is what a call may add to the lateness of a bare timer
// that fires at the same time in the same process. A call cut off by
// its deadline is one timer (the context's) plus, at most, one hand-off
// from the goroutine that notices the deadline to the caller's, and a
// call that succeeds just after its deadline has had its reply on the
// pipe: one pipe round trip (tens of microseconds) and a few goroutine
// wake-ups, each of which can wait a scheduling quantum (10ms of Go's
// preemption, more for the OS on a loaded 2-vCPU machine with 64+
// goroutines, six Python processes and the race detector).
// 100ms covers that, and the OS descheduling the thread that holds the
// pool's lock for a moment, while still failing a call that waited
// for a worker start (100ms or more for python3 on a quiet machine,
// seconds on a busy one) or for a worker stop (up to StopTimeout): the
// waits this test was written against were 2.4s and 3.6s.
const stormSlack = 100 * time.Millisecond

// lateHops is how many goroutine wake-ups a call cut off by its deadline
// takes to return, each of which can be as late as a bare timer: the
// context's timer, the AfterFunc that sets the pipe's deadline, and the
// caller parked on the pipe in the netpoller. On a quiet machine a bare
// timer is late by microseconds and lateBound is stormSlack; under load
// (one failure seen: a Stream 202ms late, its bare timer 41ms, at load 6)
// each hop can wait as long.
const lateHops = 3

// lateBound is how late after its deadline a call may return when a bare
// timer due at the same time was timerLate late.
func lateBound(timerLate time.Duration) time.Duration {
	return lateHops*timerLate + stormSlack
}

// timerLateness is how late bare timers fired.
type timerLateness struct {
	n       int
	max     time.Duration
	samples []timerSample
}

type timerSample struct {
	due  time.Time
	late time.Duration
}

func (l *timerLateness) merge(o timerLateness) {
	l.n += o.n
	l.max = max(l.max, o.max)
	l.samples = append(l.samples, o.samples...)
}

// maxBetween is the largest lateness of the timers due from since to until.
func (l *timerLateness) maxBetween(since, until time.Time) time.Duration {
	var late time.Duration
	for _, s := range l.samples {
		if !s.due.Before(since) && !s.due.After(until) {
			late = max(late, s.late)
		}
	}
	return late
}

// measureTimers sets timers of 0..stormMaxDeadline one after the other until
// stop is closed, and returns how late they fired at most.
func measureTimers(stop <-chan struct{}) timerLateness {
	var l timerLateness
	for {
		d := rand.N(stormMaxDeadline + 1)
		due := time.Now().Add(d)
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
			late := time.Since(due)
			l.n++
			l.max = max(l.max, late)
			l.samples = append(l.samples, timerSample{due, late})
		case <-stop:
			timer.Stop()
			return l
		}
	}
}

// bareTimer starts a timer due at due, and a goroutine that waits for it as
// a caller waits for its answer; the returned function waits for it and
// says how late after due that goroutine woke.
func bareTimer(due time.Time) (lateness func() time.Duration) {
	woke := make(chan time.Duration, 1)
	timer := time.NewTimer(time.Until(due))
	go func() {
		<-timer.C
		woke <- time.Since(due)
	}()
	return func() time.Duration { return <-woke }
}

// dumpLogOnFailure writes the pool's log to the test log if the test failed
// or the pool logged a warning or an error.
func dumpLogOnFailure(t *testing.T, rec *logRecorder) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	warned := slices.ContainsFunc(rec.records, func(r slog.Record) bool { return r.Level >= slog.LevelWarn })
	if !t.Failed() && !warned {
		return
	}
	for _, r := range rec.records {
		line := r.Time.Format("15:04:05.000000") + " " + r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool {
			line += " " + a.String()
			return true
		})
		t.Log(line)
	}
}

// Leaks and process trees.

// checkLeaks reports goroutines still running pypool code and live child
// processes. Goroutines that are ending are given a moment to finish: a
// goroutine leaves the stack dump only after its last deferred call.
func checkLeaks() error {
	var leaked string
	for range 100 {
		leaked = pypoolGoroutines()
		if leaked == "" {
			break
		}
		time.Sleep(10 * time.Millisecond) // goroutines unwinding have no event to await
	}
	if leaked != "" {
		return fmt.Errorf("goroutines leaked:\n%s", leaked)
	}
	if kids := childProcesses(); len(kids) > 0 {
		return fmt.Errorf("worker processes (or their children) left behind: %v", kids)
	}
	if templates := forkServerTemplates(); len(templates) > 0 {
		return fmt.Errorf("fork server templates left behind: %v", templates)
	}
	if guards := guardians(); len(guards) > 0 {
		return fmt.Errorf("guardians left behind: %v", guards)
	}
	return nil
}

// isZombie reports whether pid has exited and awaits its reaping.
func isZombie(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] == "Z"
}

func pypoolGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "pypool.(*") && !strings.Contains(g, "TestMain") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}

// childProcesses lists the live (not zombie) processes of this test binary
// but for fork server templates and guardians: its children, the workers its
// templates forked, and every live descendant of those (what the workers'
// Python code started). Orphans count too: the test binary is a subreaper,
// so they become its children. Zombies are ignored: nobody reaps orphans
// (a waitpid(-1) here would steal exit statuses from os/exec).
func childProcesses() []int {
	var kids []int
	parents := parentPids()
	for _, pid := range allPids() {
		if isZombie(pid) || isGuardian(pid) || isForkServerTemplate(pid) {
			continue
		}
		if isForkServerProcess(pid) || descendsFromUs(pid, parents) {
			kids = append(kids, pid)
		}
	}
	return kids
}

// forkServerTemplates lists the fork server templates this process runs.
func forkServerTemplates() []int {
	var found []int
	for _, pid := range allPids() {
		if isForkServerTemplate(pid) && !isZombie(pid) {
			found = append(found, pid)
		}
	}
	return found
}

// guardians lists the live guardians (guardian.go) of this process's pools.
func guardians() []int {
	var found []int
	for _, pid := range allPids() {
		if isGuardian(pid) && parentPid(pid) == os.Getpid() && !isZombie(pid) {
			found = append(found, pid)
		}
	}
	return found
}

// isGuardian reports whether pid runs a pool's guardian.
func isGuardian(pid int) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return err == nil && strings.HasSuffix(string(cmdline), "\x00"+guardianName+"\x00")
}

// isForkServerTemplate reports whether pid is a template of this process (a
// child with the fork server's command line that serves: it catches SIGCHLD,
// which the workers it forks do not). An orphaned forked worker is a child
// of this process too, with the same command line. A template still
// starting (beside the pool's first worker, started by exec) does not catch
// SIGCHLD before its main function runs: until then its fd 3 is its
// control socket, where a worker has its log stream, a pipe.
func isForkServerTemplate(pid int) bool {
	if !isForkServerProcess(pid) || parentPid(pid) != os.Getpid() {
		return false
	}
	if fd3, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", "3")); err == nil && strings.HasPrefix(fd3, "socket:") {
		return true
	}
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if mask, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			bits, _ := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
			return bits&(1<<(uint(syscall.SIGCHLD)-1)) != 0
		}
	}
	return false
}

// parentPids maps every process to its parent.
func parentPids() map[int]int {
	parents := make(map[int]int)
	for _, pid := range allPids() {
		parents[pid] = parentPid(pid)
	}
	return parents
}

// descendsFromUs reports whether this process is an ancestor of pid.
func descendsFromUs(pid int, parents map[int]int) bool {
	me := os.Getpid()
	for range 64 { // deeper than any tree a test builds
		parent, ok := parents[pid]
		if !ok || parent <= 1 {
			return false
		}
		if parent == me {
			return true
		}
		pid = parent
	}
	return false
}

func allPids() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isForkServerProcess reports whether pid is a fork server template of this
// process or a worker one forked: a forked worker shares its template's
// command line, which names this process as the host.
func isForkServerProcess(pid int) bool {
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	host := "\x00--host-pid\x00" + strconv.Itoa(os.Getpid()) + "\x00"
	return err == nil && strings.Contains(string(cmdline), "pypool_runtime.forkserver") && strings.Contains(string(cmdline), host)
}

func parentPid(pid int) int {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// The command name is in parentheses and may contain spaces.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// requireExited waits for every process of pidfds (by pid) to exit, within
// ownedExitBound in all, and reaps those that became zombie children of
// this process (orphans reparented to the subreaper: no os/exec Cmd waits
// for them). A survivor is killed, and the test fails naming it.
func requireExited(t testing.TB, pidfds map[int]*os.File, what string) {
	t.Helper()
	deadline := time.Now().Add(ownedExitBound)
	var survivors []int
	for pid, fd := range pidfds {
		if !pidfdExited(fd, max(time.Until(deadline), 0)) {
			survivors = append(survivors, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for pid := range pidfds {
		reapOrphan(pid)
	}
	if len(survivors) > 0 {
		t.Fatalf("%s: processes %v still ran %v after their owner ended", what, survivors, ownedExitBound)
	}
}

// sharedMemoryInUse counts this process's open shared-memory files and
// their mappings (see shm.go), to show that none outlives its worker.
func sharedMemoryInUse(t *testing.T) (files, mappings int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd to count shared memory in: %v", err)
	}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if strings.HasPrefix(target, "/memfd:pypool ") {
			files++
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skipf("no /proc/self/maps to count shared memory in: %v", err)
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if strings.Contains(line, "/memfd:pypool ") {
			mappings++
		}
	}
	return files, mappings
}

// settleHandover brings a pool of the fork server with Size 1 to its
// steady state before a test uses it: its first worker, started by exec
// before the template (the stand-in), is handed over to a forked worker
// once the template runs, as its first check-in would, and the pool is
// awaited at rest. Tests written against a pool whose workers are all
// forked (most of them predate the stand-in) get one; the stand-in itself
// is tested on pools made with New (forkserver_test.go). A template that
// could not start leaves the stand-in serving.
func settleHandover(t testing.TB, pool *Pool) {
	t.Helper()
	if pool.cfg.StartMethod != StartForkServer || pool.cfg.Size != 1 {
		return // no stand-in: startForkServer's condition
	}
	ctx := testCtx(t)
	for {
		fs := pool.forks.Load()
		if fs != nil && fs.ready() {
			break
		}
		if fs == nil && !pool.forkPending.Load() {
			return // it fell back to exec: the stand-in serves on
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the fork server neither started nor failed: %+v", pool.Stats())
		case <-time.After(2 * time.Millisecond):
		}
	}
	pool.mu.Lock()
	for _, pw := range pool.idle.all() {
		if why := pool.recycleReason(pw); why.cause == causeHandover {
			pool.recycleLocked(pw, why)
		}
	}
	pool.reconcileLocked()
	pool.mu.Unlock()
	awaitPool(t, pool, "the stand-in handed over", func(s Stats) bool {
		return s.Starting == 0 && s.Stopping == 0 && s.Waiting == 0 && s.Idle == s.Workers
	})
}

// duplicateConfig is testConfig for the example's module (my_module in
// examples/duplicate, duplicate_text): the trivial call of the benchmarks
// and of the allocation counts.
func duplicateConfig(tb testing.TB) Config {
	cfg := testConfig(tb)
	cfg.Module, cfg.PythonPath = "my_module", []string{"examples/duplicate"}
	return cfg
}

// stacksOf returns the attributes of rec's Python stack records of event
// (dumpInterrupted, dumpSlow, dumpKilled).
func stacksOf(rec *logRecorder, event string) []map[string]string {
	var out []map[string]string
	for _, attrs := range rec.matching(msgPythonStack) {
		if attrs["event"] == event {
			out = append(out, attrs)
		}
	}
	return out
}
