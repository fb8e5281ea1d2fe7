package pypool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLifecycleLogs follows one worker slot through its life in the log:
// started, a call's output tagged with its function, crashed during a
// call, its replacement started, recycled, stopped with its cause, and
// stopped by Close.
func TestLifecycleLogs(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	cfg.MaxCallsPerWorker = 2
	pool := newTestPool(t, cfg)
	first := itoa(workerPids(pool)[0])

	started := rec.await(t, msgWorkerStarted)
	assert.Equal(t, "DEBUG", started["level"], "routine: not in a service's default log")
	assert.Equal(t, first, started["worker"])
	d, err := time.ParseDuration(started["start"])
	require.NoError(t, err, "start is a duration")
	assert.Positive(t, d)
	assert.NotEmpty(t, started["python"])

	_, err = pool.Call(testCtx(t), "chatty")
	require.NoError(t, err)
	for _, line := range []string{"line from print", "line to stderr"} {
		attrs := rec.await(t, line)
		assert.Equal(t, "chatty", attrs["function"], "output during a call names its function: %q", line)
	}

	_, err = pool.Call(testCtx(t), "crash", 3)
	require.ErrorIs(t, err, ErrWorkerCrashed)
	crashed := rec.await(t, msgWorkerCrashed)
	assert.Equal(t, "WARN", crashed["level"])
	assert.Equal(t, first, crashed["worker"])
	assert.Equal(t, "crash", crashed["function"])
	assert.Equal(t, "3", crashed["exit_code"])
	assert.Contains(t, crashed["stderr"], "about to crash")

	// The replacement serves MaxCallsPerWorker calls and is recycled.
	awaitPool(t, pool, "the crashed worker replaced", func(s Stats) bool { return atRest(s, 1) })
	second := itoa(workerPids(pool)[0])
	assert.Equal(t, second, rec.awaitMatch(t, msgWorkerStarted, "worker", second)["worker"])
	for range 2 {
		_, err = pool.Call(testCtx(t), "echo", 1)
		require.NoError(t, err)
	}
	recycled := rec.awaitMatch(t, msgWorkerRecycled, "worker", second)
	assert.Equal(t, "INFO", recycled["level"])
	assert.Contains(t, recycled["reason"], "MaxCallsPerWorker")
	stopped := rec.awaitMatch(t, msgWorkerStopped, "worker", second)
	assert.Equal(t, "DEBUG", stopped["level"])
	assert.Contains(t, stopped["cause"], "recycled: served 2 calls")
	assert.Equal(t, "2", stopped["served"])

	awaitPool(t, pool, "the recycled worker replaced", func(s Stats) bool { return atRest(s, 1) })
	third := itoa(workerPids(pool)[0])
	require.NoError(t, pool.Close(testCtx(t)))
	assert.Equal(t, "pool closed", rec.awaitMatch(t, msgWorkerStopped, "worker", third)["cause"])

	// Only the crash warned; nothing was an error.
	for _, r := range rec.all() {
		if r.level >= slog.LevelWarn && strings.HasPrefix(r.msg, "pypool:") {
			assert.Equal(t, msgWorkerCrashed, r.msg)
		}
	}
}

// TestFailedNewLogsOnce: a module that fails to import in every worker of a
// pool of 3 gives one error record, and an error text that says each
// thing once.
func TestFailedNewLogsOnce(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Module = "pypool_broken"
	cfg.Size = 3
	cfg.Logger = slogNew(rec)
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)

	var errs []logged
	for _, r := range rec.all() {
		t.Logf("%s %s %v", r.level, r.msg, r.attrs)
		if r.level >= slog.LevelError {
			errs = append(errs, r)
		}
	}
	require.Len(t, errs, 1, "one error record: %v", errs)
	assert.Equal(t, msgNewFailed, errs[0].msg)
	assert.Equal(t, err.Error(), errs[0].attrs["error"])
	assert.Equal(t, "pypool_broken", errs[0].attrs["module"])

	text := err.Error()
	t.Logf("error: %s", text)
	assert.Equal(t, 1, strings.Count(text, "pypool:"), "one prefix: %s", text)
	assert.Equal(t, 1, strings.Count(text, "pypool_broken is broken on purpose"), "the message once: %s", text)
	assert.Equal(t, 1, strings.Count(text, "RuntimeError"), "the type once: %s", text)
}

// TestInterruptLogsStack: a call cut off by its deadline logs the call's
// interruption and the worker's Python stack at that moment, naming the
// function and the line it was stuck on, while the caller got its error
// at the deadline.
func TestInterruptLogsStack(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	pid := itoa(workerPids(pool)[0])

	const timeout = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(testCtx(t), timeout)
	defer cancel()
	due, _ := ctx.Deadline()
	bare := bareTimer(due)
	_, err := pool.Call(ctx, "sleep", 30)
	late := time.Since(due)
	timerLate := bare()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// Lateness against a bare timer due at the same time, not a fixed bound:
	// a loaded machine makes both late.
	assert.Less(t, late, timerLate+200*time.Millisecond,
		"the caller is answered at its deadline: %v after it; a bare timer due then was %v late", late, timerLate)

	interrupted := rec.await(t, msgCallInterrupted)
	assert.Equal(t, "WARN", interrupted["level"])
	assert.Equal(t, "sleep", interrupted["function"])
	assert.Equal(t, pid, interrupted["worker"])
	assert.Equal(t, context.DeadlineExceeded.Error(), interrupted["cause"])

	stack := rec.awaitMatch(t, msgPythonStack, "event", dumpInterrupted)
	t.Logf("stack:\n%s", stack["stack"])
	assert.Equal(t, "WARN", stack["level"])
	assert.Equal(t, "sleep", stack["function"])
	assert.Equal(t, pid, stack["worker"])
	assert.Contains(t, stack["stack"], testmodLine(t, "sleep", "time.sleep(seconds)"))
	assert.Contains(t, stack["stack"], "most recent call first", "faulthandler's format")

	// The worker answered its interrupt and serves on, with no function
	// left on what it writes between calls.
	out, err := pool.Call(testCtx(t), "echo", "next")
	require.NoError(t, err)
	assert.Equal(t, "next", out)
	assert.Equal(t, []string{pid}, []string{itoa(workerPids(pool)[0])})
	assert.Nil(t, workerProcess(pool).current.Load(), "no call in progress")
	assert.Len(t, rec.matching(msgPythonStack), 1, "one dump, one record")
}

// TestManyThreadsDumpIsOneRecord: a worker with several threads dumps them
// all in one record.
func TestManyThreadsDumpIsOneRecord(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	ctx, cancel := context.WithTimeout(testCtx(t), 500*time.Millisecond)
	defer cancel()
	_, err := pool.Call(ctx, "sleep_in_threads", 8, 30)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	stack := rec.awaitMatch(t, msgPythonStack, "event", dumpInterrupted)
	assert.Equal(t, "sleep_in_threads", stack["function"])
	assert.Equal(t, 9, strings.Count(stack["stack"], "hread 0x"), "the main thread and 8 others:\n%s", stack["stack"])
	assert.Contains(t, stack["stack"], testmodLine(t, "_sleeper", "time.sleep(seconds)"))
	time.Sleep(2 * dumpQuiet)
	assert.Len(t, rec.matching(msgPythonStack), 1, "one dump, one record")
}

// TestSignalNamedAsC (issue 20): a worker killed by a signal is named in
// its error as C names the signal ("SIGKILL"), and in the crash record;
// the error keeps its fields and what it wraps.
func TestSignalNamedAsC(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	pid := workerPids(pool)[0]
	go func() {
		rec.await(t, "entering C")
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}()
	_, err := pool.Call(testCtx(t), "stuck_in_c")
	require.ErrorIs(t, err, ErrWorkerCrashed)
	var exit *WorkerExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, -1, exit.ExitCode)
	assert.NotEmpty(t, exit.Signal)
	assert.Contains(t, err.Error(), fmt.Sprintf("python worker %d was killed by SIGKILL", pid))
	assert.NotContains(t, err.Error(), "signal killed")
	assert.Equal(t, "SIGKILL", rec.await(t, msgWorkerCrashed)["signal"])

	xcpu := &WorkerExitError{Pid: 7, ExitCode: -1, Signal: "CPU time limit exceeded (SIGXCPU: it used up its CPU time limit, Config.Limits.CPUTime)",
		sig: syscall.SIGXCPU, cause: ErrWorkerCrashed}
	assert.Equal(t, "pypool: worker crashed: python worker 7 was killed by SIGXCPU (it used up its CPU time limit, Config.Limits.CPUTime)", xcpu.Error())
	start := &WorkerExitError{Pid: 8, ExitCode: -1, Signal: "killed", sig: syscall.SIGKILL, cause: ErrWorkerStart}
	assert.Equal(t, "pypool: worker failed to start: python worker 8 was killed by SIGKILL", start.Error())
	assert.ErrorIs(t, start, ErrWorkerStart)
}

// TestPythonErrorFormat: Error() has the package's prefix and no
// traceback; %+v adds the traceback.
func TestPythonErrorFormat(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	_, err := pool.Call(testCtx(t), "fail", "boom")
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Equal(t, "pypool: python ValueError: boom", pyErr.Error())
	assert.Equal(t, pyErr.Error(), fmt.Sprintf("%v", pyErr))
	plus := fmt.Sprintf("%+v", pyErr)
	assert.True(t, strings.HasPrefix(plus, pyErr.Error()+"\nTraceback (most recent call last):"), plus)
	// A traceback's form of the line: `, line N, in fail`.
	at := strings.Replace(testmodLine(t, "fail", "raise ValueError(message)"), " in ", ", in ", 1)
	assert.Contains(t, plus, at[len(`pypool_testmod.py"`):])
}

// workerProcess is the process of a pool's only serving worker.
func workerProcess(p *Pool) *process {
	ws := p.serving()
	if len(ws) != 1 {
		panic(errors.New("not one worker"))
	}
	return ws[0].proc
}

// TestOutputCallsBounded: output that never ends its line does not make
// the record of ended calls grow without bound, and lines name the call
// that wrote them.
func TestOutputCallsBounded(t *testing.T) {
	var o outputCalls
	a, b := "a", "b"
	o.read.Store(10)
	o.callEnded(&a, true) // bytes 0..10 are a's
	o.read.Store(20)
	o.callEnded(&b, true) // 10..20 are b's
	assert.Equal(t, &a, o.lineFunction(5, nil))
	assert.Equal(t, &a, o.lineFunction(10, nil))
	assert.Equal(t, &b, o.lineFunction(15, nil))
	assert.Nil(t, o.lineFunction(25, nil), "written after both calls")
	for i := range 1000 {
		o.read.Store(int64(30 + i))
		o.callEnded(&a, true)
	}
	assert.LessOrEqual(t, len(o.ended), maxEndedCalls)
}

func TestOutputReachesLogger(t *testing.T) {
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Logger = slogNew(rec)
	pool := newTestPool(t, cfg)
	pid := workerPids(pool)[0]

	out, err := pool.Call(testCtx(t), "chatty")
	require.NoError(t, err, "print, os.write(1) and input() must not touch the protocol")
	assert.Equal(t, map[string]any{"eof": true}, out, "input() sees end of file")

	for msg, stream := range map[string]string{
		"line from print":    "stdout",
		"line from os.write": "stdout",
		"line to stderr":     "stderr",
	} {
		attrs := rec.await(t, msg)
		assert.Equal(t, stream, attrs["stream"], msg)
		assert.Equal(t, itoa(pid), attrs["worker"], msg)
	}
}
