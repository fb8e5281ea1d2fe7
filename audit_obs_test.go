package pypool

// audit_obs_test.go: the observability audit (round 3): a hostile tester's
// attacks on what docs/observability.md and the doc comments of
// Config.Logger, Tracer and Stats promise, on the paths the earlier audits
// did not take.

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// obsConfig is a pool of the observability audit's module, its records
// kept by rec.
func obsConfig(t testing.TB, rec *logRecorder) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_auditobs"
	cfg.Logger = slogNew(rec)
	return cfg
}

// outputLines returns the records of the worker's output (those with a
// stream attribute) whose message contains s.
func outputLines(rec *logRecorder, s string) []logged {
	var out []logged
	for _, l := range rec.all() {
		if l.attrs["stream"] != "" && strings.Contains(l.msg, s) {
			out = append(out, l)
		}
	}
	return out
}

// Promise (docs/observability.md, Logs): "one that a call leaves without a
// newline is logged at the worker's exit", naming the call; the crash
// record names the call's function, its exit code and stderr's last lines.
// The attack: a call writes a line without a newline (to fd 1, then fd 2)
// and the worker dies at once. (Passed: the earlier audit covered a
// partial line at a clean exit, not at a crash.)
func TestAuditObsPartialLineAtACrash(t *testing.T) {
	t.Parallel()
	for _, fd := range []int{1, 2} {
		t.Run("fd"+itoa(fd), func(t *testing.T) {
			t.Parallel()
			partialLineAtACrash(t, fd)
		})
	}
}

func partialLineAtACrash(t *testing.T, fd int) {
	{
		rec := newLogRecorder()
		pool := newTestPool(t, obsConfig(t, rec))
		_, err := pool.Call(testCtx(t), "partial_then_crash", fd, "last-words", 7)
		require.ErrorIs(t, err, ErrWorkerCrashed)
		crash := rec.await(t, msgWorkerCrashed)
		assert.Equal(t, "partial_then_crash", crash["function"])
		assert.Equal(t, "7", crash["exit_code"])
		lines := outputLines(rec, "last-words")
		require.Len(t, lines, 1, "fd %d: %v", fd, rec.all())
		assert.Equal(t, "partial_then_crash", lines[0].attrs["function"], "fd %d", fd)
		if fd == 2 {
			assert.Contains(t, crash["stderr"], "last-words")
		}
	}
}

// Promise (docs/observability.md, Logs): what a worker prints is logged,
// naming the call that wrote it; here a process the worker started writes
// to the worker's stdout and stderr during the call. (Passed; not covered
// before.)
func TestAuditObsOutputOfAChildProcess(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	pool := newTestPool(t, obsConfig(t, rec))
	_, err := pool.Call(testCtx(t), "child_prints", "from-child")
	require.NoError(t, err)
	out := rec.awaitMatch(t, "from-child", "stream", "stdout")
	assert.Equal(t, "child_prints", out["function"])
	errl := rec.awaitMatch(t, "from-child-err", "stream", "stderr")
	assert.Equal(t, "child_prints", errl["function"])
}

// Promise (docs/observability.md, Logs): output written at the module's
// import (no call: no function) and at the worker's exit during Close (an
// atexit handler) is logged, the latter before Close returns. (Passed; not
// covered before.)
func TestAuditObsOutputAtStartAndClose(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := obsConfig(t, rec)
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	pid := workerPids(pool)[0]
	_, err = pool.Call(testCtx(t), "at_exit_prints", "bye-from-atexit")
	require.NoError(t, err)
	require.NoError(t, pool.Close(testCtx(t)))
	imp := outputLines(rec, "auditobs imported on stdout")
	require.NotEmpty(t, imp)
	assert.Empty(t, imp[0].attrs["function"])
	bye := outputLines(rec, "bye-from-atexit")
	require.Len(t, bye, 1, "logged before Close returned")
	assert.Equal(t, itoa(pid), bye[0].attrs["worker"])
}

// Promise (docs/observability.md, Logs): the lines of a call whose worker
// is killed for ignoring its interrupt still name that call, as does its
// "worker killed" record. (Passed; not covered before.)
func TestAuditObsOutputOfAKilledWorker(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	lines := &lineSignals{next: rec}
	cfg := obsConfig(t, rec)
	cfg.Logger = slogNew(lines)
	cfg.InterruptGrace = 200 * time.Millisecond
	pool := newTestPool(t, cfg)
	ctx := lines.cancelOn(t, "before-the-kill")
	_, err := pool.Call(ctx, "prints_then_ignores_interrupt", "before-the-kill", 30)
	require.ErrorIs(t, err, context.Canceled)
	killed := rec.await(t, msgWorkerKilled)
	assert.Equal(t, "prints_then_ignores_interrupt", killed["function"])
	l := rec.awaitMatch(t, "before-the-kill", "stream", "stdout")
	assert.Equal(t, "prints_then_ignores_interrupt", l["function"])
}

// Promise (Tracer's doc comment): "Pool.Stream ... as one call that lasts
// the whole loop", with TraceCallEnd told exactly once and the Outcome of
// its error (OutcomeOf): a stream Python breaks, one the caller leaves
// early, one whose worker dies. (Passed; no test traced a stream before.)
func TestAuditObsStreamTraced(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	pool, tr := tracedPool(t, obsConfig(t, rec))
	ctx := testCtx(t)
	// Broken by Python mid-way.
	var got []any
	var serr error
	for v, err := range pool.Stream(ctx, "items", 5, 2) {
		if err != nil {
			serr = err
			break
		}
		got = append(got, v)
	}
	var pe *PythonError
	require.ErrorAs(t, serr, &pe)
	ev := tr.take()
	t.Log(hooks(ev))
	require.Len(t, ev, 3)
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomePythonError, ev[2].end.Outcome)
	assert.Equal(t, "items", ev[2].end.Function)
	assert.NotZero(t, ev[2].end.Pid)

	// Left early by the caller.
	for range pool.Stream(ctx, "items", 5, -1) {
		break
	}
	ev = tr.take()
	require.Len(t, ev, 3)
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomeOK, ev[2].end.Outcome)

	// The worker dies in the stream.
	_, err := collect(t, pool.Stream(ctx, "items_then_crash", 3))
	require.ErrorIs(t, err, ErrWorkerCrashed)
	ev = tr.take()
	require.Len(t, ev, 3)
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomeCrashed, ev[2].end.Outcome)
}

// Promise (Tracer's doc comment, docs/async.md): calls of async functions
// (Config.AsyncCalls) are traced as any call (worker, sizes, outcome; a
// crash as OutcomeCrashed), and their output is logged without a function.
// (Passed; the async tests did not check the hooks' data.)
func TestAuditObsAsyncTraced(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := obsConfig(t, rec)
	cfg.AsyncCalls = 4
	pool, tr := tracedPool(t, cfg)
	ctx := testCtx(t)
	tr.take()
	_, err := pool.Call(ctx, "async_print", "async-line", 0.01)
	require.NoError(t, err)
	_, err = pool.Call(ctx, "async_fail", "async-boom")
	var pe *PythonError
	require.ErrorAs(t, err, &pe)
	ev := tr.take()
	t.Log(hooks(ev))
	require.Len(t, ev, 6)
	assert.NotZero(t, ev[1].worker.Pid)
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomeOK, ev[2].end.Outcome)
	assert.NotZero(t, ev[2].end.Pid)
	assert.NotZero(t, ev[2].end.RequestBytes)
	assert.NotZero(t, ev[2].end.ReplyBytes)
	checkEnd(t, ev[5])
	assert.Equal(t, OutcomePythonError, ev[5].end.Outcome)
	l := rec.awaitMatch(t, "async-line", "stream", "stdout")
	assert.Empty(t, l["function"])

	_, err = pool.Call(ctx, "async_crash", 5)
	require.ErrorIs(t, err, ErrWorkerCrashed)
	ev = tr.take()
	require.Len(t, ev, 3)
	checkEnd(t, ev[2])
	assert.Equal(t, OutcomeCrashed, ev[2].end.Outcome)
	crash := rec.await(t, msgWorkerCrashed)
	assert.Equal(t, "5", crash["exit_code"])
}

// Promise (docs/observability.md, Logs): a panicking callback is logged at
// Error as "pypool: Go callback panicked" with function, callback, panic
// and stack; the call made inside a callback is not traced. (Passed; no
// test read that record before.)
func TestAuditObsCallbackNestedTraced(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := obsConfig(t, rec)
	var pool *Pool
	cfg.Callbacks = map[string]Callback{
		"echo": func(ctx context.Context, args []any) (any, error) {
			return pool.Call(ctx, "print_nested", "nested-line")
		},
		"boom": func(ctx context.Context, args []any) (any, error) {
			panic("callback-panic")
		},
	}
	var tr *recordingTracer
	pool, tr = tracedPool(t, cfg)
	ctx := testCtx(t)
	tr.take()
	out, err := pool.Call(ctx, "call_go_echo", 1)
	require.NoError(t, err)
	assert.Equal(t, "nested-line", out)
	ev := tr.take()
	require.Len(t, ev, 3, "the nested call is not traced")
	_, err = pool.Call(ctx, "call_go_named", "boom")
	require.ErrorAs(t, err, new(*PythonError))
	p := rec.await(t, msgCallbackPanic)
	assert.Equal(t, "call_go_named", p["function"])
	assert.Equal(t, "boom", p["callback"])
	assert.Contains(t, p["panic"], "callback-panic")
	assert.NotEmpty(t, p["stack"])
	assert.Equal(t, "ERROR", p["level"])
}

// idleAtEnd is a Tracer that records, at each TraceCallEnd, whether the
// pool had its worker back (Stats().InUse == 0).
type idleAtEnd struct {
	recordingTracer
	inUse []int
}

func (r *idleAtEnd) TraceCallEnd(ctx context.Context, pool *Pool, data TraceCallEndData) {
	s := pool.Stats()
	r.mu.Lock()
	r.inUse = append(r.inUse, s.InUse)
	r.mu.Unlock()
	r.recordingTracer.TraceCallEnd(ctx, pool, data)
}

// Promise (Tracer.TraceCallEnd's doc comment): "outside a Transaction,
// after its worker (if any) went back to the pool", for every call form,
// with and without Config.AsyncCalls. (Passed; not covered before.)
func TestAuditObsTraceEndAfterCheckIn(t *testing.T) {
	t.Parallel()
	for _, async := range []bool{false, true} {
		rec := newLogRecorder()
		cfg := obsConfig(t, rec)
		if async {
			cfg.AsyncCalls = 2
		}
		tr := &idleAtEnd{}
		cfg.Tracer = tr
		pool := newTestPool(t, cfg)
		ctx := testCtx(t)
		_, _ = pool.Call(ctx, "echo", 1)
		_, _ = pool.Call(ctx, "fail", "x")
		_, _ = CallBytes(ctx, pool, nil, "echo", []byte("abc"))
		_, _ = CallAs[int](ctx, pool, "echo", 1)
		_, _ = collect(t, pool.Stream(ctx, "items", 3, -1))
		_, _ = collect(t, pool.Stream(ctx, "items", 3, 1))
		for range pool.Stream(ctx, "items", 3, -1) {
			break
		}
		if async {
			_, _ = pool.Call(ctx, "async_print", "a", 0.0)
			_, _ = pool.Call(ctx, "async_fail", "a")
		}
		tr.mu.Lock()
		t.Log(async, tr.inUse)
		for i, n := range tr.inUse {
			assert.Zero(t, n, "async %v: call %d ended while its worker was in use", async, i)
		}
		tr.mu.Unlock()
	}
}

// heldHandler passes records on to next, but holds the forwarder that
// logs the message held until release is closed.
type heldHandler struct {
	next    slog.Handler
	held    string
	reached chan struct{}
	release chan struct{}
}

func (h *heldHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }
func (h *heldHandler) WithAttrs([]slog.Attr) slog.Handler             { return h }
func (h *heldHandler) WithGroup(string) slog.Handler                  { return h }

func (h *heldHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	if r.Message == h.held {
		close(h.reached)
		<-h.release
	}
	return err
}

// Promise (docs/observability.md, Logs): lines a worker writes are logged
// "with stream and, when a call wrote them, its function, even if they are
// read after the call returned". A call made from a callback (a nested
// call, on the waiting worker) is a call of its own: its lines name it,
// and the lines of the call around it name that one, whenever the
// forwarder reads them. The attack holds the stdout forwarder on a line
// written before all the others, until the outer call has returned, so
// that every other line is read after both calls ended.
func TestAuditObsNestedCallOutputNamesItsCall(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	h := &heldHandler{next: rec, held: "held-line", reached: make(chan struct{}), release: make(chan struct{})}
	cfg := obsConfig(t, rec)
	cfg.Logger = slogNew(h)
	var pool *Pool
	cfg.Callbacks = map[string]Callback{
		"nested": func(ctx context.Context, _ []any) (any, error) {
			return pool.Call(ctx, "print_nested", "nested-line")
		},
	}
	pool = newTestPool(t, cfg)
	_, err := pool.Call(testCtx(t), "prints_around_a_callback", "nested")
	require.NoError(t, err)
	<-h.reached
	close(h.release)
	for line, fn := range map[string]string{
		"held-line":    "prints_around_a_callback",
		"outer-before": "prints_around_a_callback",
		"nested-line":  "print_nested",
		"outer-after":  "prints_around_a_callback",
	} {
		assert.Equal(t, fn, rec.awaitMatch(t, line, "stream", "stdout")["function"], line)
	}
}

// Promise (docs/async.md, What it refuses): "The output a task writes
// (print) reaches the logger without the function attribute". The attack:
// a worker of a pool with Config.AsyncCalls runs an async function that
// prints, then a sync function's call; the stdout forwarder is held on the
// task's first line until the sync call has ended, so that the task's
// second line is read after it.
func TestAuditObsAsyncOutputNamesNoLaterCall(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	h := &heldHandler{next: rec, held: "held-line", reached: make(chan struct{}), release: make(chan struct{})}
	cfg := obsConfig(t, rec)
	cfg.Logger = slogNew(h)
	cfg.AsyncCalls = 2
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "async_prints", "held-line", "task-line")
	require.NoError(t, err)
	<-h.reached
	_, err = pool.Call(ctx, "echo", 1)
	require.NoError(t, err)
	close(h.release)
	for _, line := range []string{"held-line", "task-line"} {
		assert.Empty(t, rec.awaitMatch(t, line, "stream", "stdout")["function"], line)
	}
}

// Promise (docs/observability.md, Logs): a line is logged "with ... for a
// line written during a call, function": what a worker writes as it
// starts (its module's import) names no call, even when the forwarder
// reads it after the first call ended. The attack holds the stdout
// forwarder on the import's first line until a call has ended.
func TestAuditObsStartOutputNamesNoCall(t *testing.T) {
	t.Parallel()
	for _, async := range []bool{false, true} {
		t.Run("async="+strconv.FormatBool(async), func(t *testing.T) {
			t.Parallel()
			startOutputNamesNoCall(t, async)
		})
	}
}

func startOutputNamesNoCall(t *testing.T, async bool) {
	{
		rec := newLogRecorder()
		h := &heldHandler{next: rec, held: "auditobs imported on stdout", reached: make(chan struct{}), release: make(chan struct{})}
		cfg := obsConfig(t, rec)
		cfg.Logger = slogNew(h)
		cfg.StartMethod = StartExec // the fork server's template imports the module: its worker writes nothing
		if async {
			cfg.AsyncCalls = 2 // the worker is asked for its async functions first
		}
		pool, err := New(testCtx(t), cfg)
		require.NoError(t, err)
		<-h.reached
		_, err = pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
		close(h.release)
		assert.Empty(t, rec.awaitMatch(t, "auditobs import's second line", "stream", "stdout")["function"], "async %v", async)
		require.NoError(t, pool.Close(testCtx(t)))
	}
}

// Promise (docs/observability.md, Logs and Rate limits): a worker killed
// because it did not answer its interrupt within InterruptGrace is logged
// as "pypool: worker killed" at Warn, "rate-limited per function": the
// first is logged, the others within Config.StackDumpInterval at Debug;
// and before the kill the pool asks the worker for its Python stacks
// (event=killed). The attack: in the async mode (Config.AsyncCalls), where
// the interrupt is the task's cancellation, three calls of a function that
// ignores it, each of which has its worker killed.
func TestAuditObsAsyncKillsRateLimitedWithStack(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := obsConfig(t, rec)
	cfg.AsyncCalls = 2
	cfg.InterruptGrace = 100 * time.Millisecond
	lines := &lineSignals{next: rec}
	cfg.Logger = slogNew(lines)
	pool := newTestPool(t, cfg)
	for i := range 3 {
		ctx := lines.cancelOn(t, "ignoring-"+itoa(i))
		_, err := pool.Call(ctx, "async_ignore_cancel", "ignoring-"+itoa(i), 30)
		require.ErrorIs(t, err, context.Canceled)
		awaitPool(t, pool, "the worker killed and replaced", func(s Stats) bool {
			return s.StopsKilled == uint64(i+1) && atRest(s, 1)
		})
	}
	var warned, debug int
	for _, r := range rec.matching(msgWorkerKilled) {
		assert.Equal(t, "async_ignore_cancel", r["function"])
		switch r["level"] {
		case "WARN":
			warned++
		case "DEBUG":
			debug++
		}
	}
	assert.Equal(t, 1, warned, "Warn records of kills: %v", rec.matching(msgWorkerKilled))
	assert.Equal(t, 2, debug, "Debug records of kills")
	stack := rec.awaitMatch(t, msgPythonStack, "event", "killed")
	assert.Equal(t, "async_ignore_cancel", stack["function"])
	assert.Contains(t, stack["stack"], "most recent call first", "the stacks of its threads")
}

// Promise (docs/observability.md): its Stats table says what each field of
// Stats means, and its Logs table lists the records the pool logs ("The
// pool logs each change in a worker's life to Config.Logger, one record
// per event"), with their levels and attributes. The attack reads the
// package's source for every record it logs (a message passed to a
// logger's Debug, Info, Warn, Error, Log or LogAttrs: a constant or a
// literal; the constants msg...) and Stats' fields, and looks each up in
// that page. Before the fix 3 fields and 13 records were missing: the
// handover's counters, the fork server's records, those of Resize, Reload,
// a retry and Config.SetUp.
func TestAuditObsDocsNameEveryRecordAndStat(t *testing.T) {
	doc, err := os.ReadFile("docs/observability.md")
	require.NoError(t, err)
	for _, f := range reflect.VisibleFields(reflect.TypeFor[Stats]()) {
		assert.Contains(t, string(doc), "`"+f.Name+"`", "Stats.%s is not in docs/observability.md", f.Name)
	}
	for _, msg := range loggedMessages(t) {
		assert.Contains(t, string(doc), "`"+msg+"`", "the record %q is not in docs/observability.md's Logs table", msg)
	}
}

// loggedMessages returns the messages of the records the package's
// (non-test) source logs.
func loggedMessages(t *testing.T) []string {
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	consts := map[string]string{}
	var parsed []*ast.File
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		parsed = append(parsed, f)
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								consts[n.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			}
		}
	}
	seen := map[string]bool{}
	var msgs []string
	// The messages named msg... (some reach the logger through a variable,
	// as restartAfter's), then the literals passed to a logger.
	for name, msg := range consts {
		if strings.HasPrefix(name, "msg") && strings.HasPrefix(msg, "pypool: ") {
			seen[msg] = true
			msgs = append(msgs, msg)
		}
	}
	for _, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			arg := -1
			switch sel.Sel.Name {
			case "Debug", "Info", "Warn", "Error":
				arg = 0
			case "Log", "LogAttrs":
				arg = 2
			}
			if arg < 0 || len(call.Args) <= arg {
				return true
			}
			var msg string
			switch a := call.Args[arg].(type) {
			case *ast.BasicLit:
				msg, _ = strconv.Unquote(a.Value)
			case *ast.Ident:
				msg = consts[a.Name]
			}
			if strings.HasPrefix(msg, "pypool: ") && !seen[msg] {
				seen[msg] = true
				msgs = append(msgs, msg)
			}
			return true
		})
	}
	require.NotEmpty(t, msgs)
	return msgs
}

// Promise (docs/observability.md, Logs): a line names the call that wrote
// it "even if they are read after the call returned". The attack: a logger
// that blocks (held on the first line) while 100 calls of two functions
// in turn each print a line; once it lets go, every line is logged after
// its call ended, and must name its own function or, where the pool could
// not remember that many calls, none: never the other one.
func TestAuditObsSlowLoggerNeverNamesAnotherCall(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	h := &heldHandler{next: rec, held: "a-0", reached: make(chan struct{}), release: make(chan struct{})}
	cfg := obsConfig(t, rec)
	cfg.Logger = slogNew(h)
	pool := newTestPool(t, cfg)
	const calls = 100
	for i := range calls {
		_, err := pool.Call(testCtx(t), []string{"print_a", "print_b"}[i%2], i)
		require.NoError(t, err)
	}
	close(h.release)
	last := []string{"a", "b"}[(calls-1)%2] + "-" + itoa(calls-1)
	rec.awaitMatch(t, last, "stream", "stdout")
	named := 0
	for i := range calls {
		tag := []string{"a", "b"}[i%2]
		lines := rec.matching(tag + "-" + itoa(i))
		require.Len(t, lines, 1, "%s-%d", tag, i)
		if fn := lines[0]["function"]; fn != "" {
			assert.Equal(t, "print_"+tag, fn, "line %s-%d", tag, i)
			named++
		}
	}
	assert.GreaterOrEqual(t, named, maxEndedCalls, "the lines of the last calls remembered name their call")
}

// Promise (docs/observability.md, Logs): what the module prints is logged,
// a line longer than 64 KiB "split into records of 64 KiB". The attack: a
// module that prints a line of 100,000 bytes at import, then more short
// lines than a pipe holds, imported by the fork server's template
// (StartForkServer) as by a worker. Before the fix the template's
// forwarder stopped at the long line and closed the pipe: the template's
// next write raised BrokenPipeError, its import failed, and the pool fell
// back to starting workers by exec ("fork server failed to start").
func TestAuditObsLongLineAtImport(t *testing.T) {
	t.Parallel()
	for _, method := range []StartMethod{StartExec, StartForkServer} {
		rec := newLogRecorder()
		cfg := obsConfig(t, rec)
		cfg.Module = "pypool_auditobs_loud"
		cfg.StartMethod = method
		cfg.Size = 2
		pool := newTestPool(t, cfg)
		_, err := pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
		done := rec.awaitMatch(t, "loud import done", "stream", "stdout")
		if method == StartForkServer {
			assert.NotEmpty(t, done["forkserver"], "the template's output")
			assert.Empty(t, rec.matching(msgForkServerFallback), "the template imported the module")
		}
		long := 0
		for _, l := range rec.all() {
			if strings.Trim(l.msg, "W") == "" && l.attrs["stream"] == "stdout" {
				assert.LessOrEqual(t, len(l.msg), maxLogLine)
				long += len(l.msg)
			}
		}
		assert.GreaterOrEqual(t, long, 100000, "%v: the long line, in pieces", method)
	}
}

// Promise (docs/observability.md, Where was it stuck?): with
// StackDumpsAll, "every call cut off by its context" has its stacks
// logged, taken at that moment (event=interrupted). The attack: a call of
// an async function (Config.AsyncCalls) cut off by its context, whose
// task is cancelled rather than interrupted.
func TestAuditObsAsyncCutOffDumpsWithStackDumpsAll(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := obsConfig(t, rec)
	cfg.AsyncCalls = 2
	cfg.StackDumps = StackDumpsAll
	lines := &lineSignals{next: rec}
	cfg.Logger = slogNew(lines)
	pool := newTestPool(t, cfg)
	ctx := lines.cancelOn(t, "cut-off")
	_, err := pool.Call(ctx, "async_print", "cut-off", 30)
	require.ErrorIs(t, err, context.Canceled)
	stack := rec.awaitMatch(t, msgPythonStack, "event", dumpInterrupted)
	assert.Equal(t, "async_print", stack["function"])
	assert.Contains(t, stack["stack"], "most recent call first")
}

// lineSignals passes records on to next, and cancels the context
// cancelOn returned for a message once a record of it is handled.
type lineSignals struct {
	next    slog.Handler
	mu      sync.Mutex
	cancels map[string]context.CancelFunc
}

func (h *lineSignals) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }
func (h *lineSignals) WithAttrs([]slog.Attr) slog.Handler             { return h }
func (h *lineSignals) WithGroup(string) slog.Handler                  { return h }

func (h *lineSignals) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	h.mu.Lock()
	defer h.mu.Unlock()
	if cancel, ok := h.cancels[r.Message]; ok {
		cancel()
	}
	return err
}

// cancelOn returns a context that is canceled once msg is logged: a call
// made with it is cut off once Python wrote msg.
func (h *lineSignals) cancelOn(t *testing.T, msg string) context.Context {
	ctx, cancel := context.WithCancel(testCtx(t))
	t.Cleanup(cancel)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cancels == nil {
		h.cancels = map[string]context.CancelFunc{}
	}
	h.cancels[msg] = cancel
	return ctx
}
