package pypool

// audit_newcomer3_test.go: a third newcomer, building another shape from
// README.md and docs/ alone: a batch job, a command-line program that
// reads a file through a generator (Stream, StreamAs), turns each record
// into numpy results and bytes (CallAs, CallBytes), exits with a status
// that tells a Python error apart, and stops on Ctrl-C (its context,
// from signal.NotifyContext, cancelled mid-run). Each test runs what the
// documentation says and checks that it holds, or that the error names
// the cause and the fix.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewcomer3StreamEndsAtTheItemAfterItsContext: Pool.Stream's "ctx
// bounds the whole loop ...: when it ends, the loop ends with ctx's error"
// (stream.go, docs/streaming-and-callbacks.md). A batch job's Ctrl-C
// cancels its context while the loop's body writes record 10; the loop
// went on giving the body the rest of the frame Python had sent (246 more
// records of a fast generator: a frame holds up to 256) before it ended
// with context.Canceled; with a deadline, likewise, records after it.
// Now the next iteration after the context ended gives its error, for
// Stream and StreamAs, cancelled or past its deadline, and the worker,
// interrupted as a cut-off call's, serves on.
func TestNewcomer3StreamEndsAtTheItemAfterItsContext(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, streamConfig(t))
	type loop func(ctx context.Context, body func(item any) bool) error
	forms := map[string]loop{
		"Stream": func(ctx context.Context, body func(any) bool) error {
			for item, err := range pool.Stream(ctx, "numbers", 100_000) {
				if err != nil {
					return err
				}
				if !body(item) {
					return nil
				}
			}
			return nil
		},
		"StreamAs": func(ctx context.Context, body func(any) bool) error {
			for item, err := range StreamAs[int](ctx, pool, "numbers", 100_000) {
				if err != nil {
					return err
				}
				if !body(item) {
					return nil
				}
			}
			return nil
		},
	}
	for name, run := range forms {
		for _, how := range []string{"cancelled", "deadline"} {
			ctx, cancel := context.WithCancel(testCtx(t))
			want := context.Canceled
			if how == "deadline" {
				ctx, cancel = context.WithTimeout(testCtx(t), 200*time.Millisecond)
				want = context.DeadlineExceeded
			}
			n, after := 0, 0
			err := run(ctx, func(any) bool {
				if ctx.Err() != nil {
					after++ // the body saw the context end at an earlier item
					return after < 300
				}
				if n++; n == 10 {
					if how == "cancelled" {
						cancel() // Ctrl-C while the body handles record 10
					} else {
						<-ctx.Done()
					}
				}
				return true
			})
			cancel()
			assert.ErrorIs(t, err, want, "%s %s", name, how)
			assert.Zero(t, after, "%s %s: items given to the loop after its context ended", name, how)
			assert.LessOrEqual(t, n, 10, "%s %s", name, how)
		}
	}
	require.NoError(t, pool.Ping(testCtx(t)))
	assert.Zero(t, pool.Stats().Crashes, "a cut-off stream's worker is interrupted, not lost")
}

// TestNewcomer3CallBytesNamesTheFix: CallBytes "whose result must be bytes
// (or a bytearray)" (call.go). A batch job that renders each record calls
// it on a function that returns a str, or a numpy array: the error said
// "the result is a Python str, not bytes" and no fix. It now says what
// CallBytes takes and how to get there from either side.
func TestNewcomer3CallBytesNamesTheFix(t *testing.T) {
	t.Parallel()
	pool := dataPool(t, "python3", 0)
	ctx := testCtx(t)
	buf := []byte("kept")
	buf, err := CallBytes(ctx, pool, buf, "echo", "text")
	assert.ErrorIs(t, err, ErrResultNotDecodable)
	assert.ErrorContains(t, err, "the result is a Python str, not bytes: CallBytes takes a bytes, bytearray or memoryview result: return text.encode() from Python, or call the function with CallAs[string]")
	assert.Equal(t, "kept", string(buf))
	_, err = CallBytes(ctx, pool, nil, "echo", ArrayOf([]uint8{1, 2, 3}))
	assert.ErrorIs(t, err, ErrResultNotDecodable)
	assert.ErrorContains(t, err, "the result is a Python ndarray of uint8, not bytes: CallBytes takes a bytes, bytearray or memoryview result: return array.tobytes() from Python, or call the function with CallAs[pypool.Array]")
	_, err = CallBytes(ctx, pool, nil, "echo", nil)
	assert.ErrorContains(t, err, "the result is a Python None, not bytes: CallBytes takes a bytes, bytearray or memoryview result: return one from Python, or call the function with Call or CallAs")
	out, err := CallBytes(ctx, pool, nil, "echo", []byte("ok"))
	require.NoError(t, err)
	assert.Equal(t, "ok", string(out))
}

// TestNewcomer3ArrayDTypeNamesTheFix: docs/types.md's
// `CallAs[[]float32](ctx, pool, "embed", ...)` "takes a 1-d ndarray of
// that dtype directly". numpy makes float64 unless told otherwise
// (np.arange(n) / 2), and the newcomer's embedding came back as
// "an ndarray of float64 does not fit Go []float32, which takes float32",
// with no fix. It now names both: convert it in Python, or ask Go for the
// array's own element type.
func TestNewcomer3ArrayDTypeNamesTheFix(t *testing.T) {
	t.Parallel()
	pool := dataPool(t, "python3", 0) // an array echoed without numpy: the same dtype comes back
	ctx := testCtx(t)
	_, err := CallAs[[]float32](ctx, pool, "echo", ArrayOf([]float64{0, 0.5}))
	assert.ErrorIs(t, err, ErrResultNotDecodable)
	assert.ErrorIs(t, err, ErrDType)
	assert.ErrorContains(t, err, `an ndarray of float64 does not fit Go []float32, which takes float32: return array.astype("float32") from Python, or decode into []float64`)
	_, err = CallAs[[]int64](ctx, pool, "echo", ArrayOf([]int32{1, 2}))
	assert.ErrorContains(t, err, `an ndarray of int32 does not fit Go []int64, which takes int64: return array.astype("int64") from Python, or decode into []int32`)
	got, err := CallAs[[]float64](ctx, pool, "echo", ArrayOf([]float64{0, 0.5}))
	require.NoError(t, err)
	assert.Equal(t, []float64{0, 0.5}, got)
}

// TestNewcomer3TooLargeNamesTheFix: docs/errors.md, "call or reply over
// MaxMessageSize: ErrMessageTooLarge". A batch job whose renders outgrew
// the limit got "the result of render() encodes to 2097160 bytes, more
// than --max-message 1048576": a flag of the worker's command line, which
// a Go program never sets, and no fix. The result, a stream's item and
// call_go's arguments now name Config.MaxMessageSize and what to do, on
// the pipes and through the shared memory.
func TestNewcomer3TooLargeNamesTheFix(t *testing.T) {
	t.Parallel()
	for _, threshold := range []int{-1, 0} {
		cfg := testConfig(t)
		cfg.Module = "pypool_newcomer3"
		cfg.MaxMessageSize = 256 << 10
		cfg.SharedMemoryThreshold = threshold
		cfg.Callbacks = map[string]Callback{"take": func(context.Context, []any) (any, error) { return nil, nil }}
		pool := newTestPool(t, cfg)
		ctx := testCtx(t)
		what := map[int]string{-1: "pipes", 0: "shared memory"}[threshold]

		_, err := CallBytes(ctx, pool, nil, "render", 512<<10)
		assert.ErrorIs(t, err, ErrMessageTooLarge, what)
		assert.ErrorContains(t, err, "the limit is 262144 (Config.MaxMessageSize); raise Config.MaxMessageSize, or return less: yield the result in pieces from a generator and iterate them with Pool.Stream", what)
		assert.NotContains(t, err.Error(), "--max-message", what)

		n := 0
		for _, err := range pool.Stream(ctx, "rendered", 512<<10, 2) {
			n++
			assert.ErrorIs(t, err, ErrMessageTooLarge, what)
			assert.ErrorContains(t, err, "item 0 of rendered() encodes to 524297 bytes, the limit is 262144 (Config.MaxMessageSize); raise Config.MaxMessageSize, or yield smaller items", what)
		}
		assert.Equal(t, 1, n, what)

		_, err = pool.Call(ctx, "send_go", 512<<10)
		assert.ErrorContains(t, err, "the limit is 262144 (Config.MaxMessageSize, the worker's --max-message); raise it, or pass less", what)

		out, err := CallBytes(ctx, pool, nil, "render", 100<<10)
		require.NoError(t, err, what)
		assert.Len(t, out, 100<<10, what)
		assert.Zero(t, pool.Stats().Crashes, what)
	}
}

// TestNewcomer3CallTimeoutNamed: Config.CallTimeout "bounds calls whose
// context has no deadline", and a stream's whole loop (docs/configuration.md,
// stream.go). A batch job that set it for its calls and ran its stream
// over the file with context.Background() had the stream cut off with
// "pypool: call to records: context deadline exceeded": a deadline its
// code never set. The error now names CallTimeout and the fix, and is
// still context.DeadlineExceeded; a call with a deadline of its own says
// nothing of it.
func TestNewcomer3CallTimeoutNamed(t *testing.T) {
	t.Parallel()
	cfg := streamConfig(t)
	cfg.CallTimeout = 300 * time.Millisecond
	pool := newTestPool(t, cfg)
	const named = "(Config.CallTimeout, 300ms, bounds a call, or a stream's whole loop, whose context has no deadline: raise it, or give the call a context with a deadline of its own)"

	n := 0
	var err error
	for _, err = range pool.Stream(context.Background(), "slow", 1000, 0.01) {
		if err != nil {
			break
		}
		n++
	}
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "pypool: call to slow: context deadline exceeded "+named)
	assert.Less(t, n, 1000)

	_, err = pool.Call(context.Background(), "sleep", 30)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, named)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = pool.Call(ctx, "sleep", 30)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotContains(t, err.Error(), "CallTimeout", "the caller's own deadline")
	require.NoError(t, pool.Ping(testCtx(t)))
}

// TestNewcomer3StreamTracebackIsTheGenerators: a *PythonError's traceback
// is the user's code's, "without the runtime's frames" (docs/how-it-works.md,
// errors.py), as for a Call. A batch job whose generator raised on a bad
// line printed (%+v) a traceback that began in pypool_runtime/stream.py's
// _pump and _next_item and interrupt.py's call_user, three frames of
// pypool's own before the line that raised.
func TestNewcomer3StreamTracebackIsTheGenerators(t *testing.T) {
	t.Parallel()
	pool := newTestPool(t, streamConfig(t))
	var err error
	n := 0
	for _, err = range pool.Stream(testCtx(t), "raises_after", 2) {
		if err != nil {
			break
		}
		n++
	}
	assert.Equal(t, 2, n)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.True(t, strings.HasPrefix(pyErr.Traceback, "Traceback (most recent call last):\n  File \""), pyErr.Traceback)
	assert.Contains(t, pyErr.Traceback, ", in raises_after\n")
	assert.NotContains(t, pyErr.Traceback, "pypool_runtime", "the runtime's frames are hidden")
	assert.Equal(t, 1, strings.Count(pyErr.Traceback, "  File "), "one frame, the generator's: %s", pyErr.Traceback)
}

// TestNewcomer3NewErrorPrintsTheTraceback: docs/errors.md, for New's error
// "the set-up ... failed (Config.SetUp): ... (the traceback is in the
// *PythonError)": "%+v prints its traceback". A batch job that printed
// New's error with %+v, as it prints a call's, got the one line only: the
// start error wrapping the *PythonError printed no traceback. It now
// does, for an import and for a set-up; %v stays one line.
func TestNewcomer3NewErrorPrintsTheTraceback(t *testing.T) {
	t.Parallel()
	for _, setUp := range []bool{false, true} {
		cfg := testConfig(t)
		cfg.Module, cfg.Logger = "pypool_broken", testLogger(t)
		line := `raise RuntimeError("pypool_broken is broken on purpose")`
		if setUp {
			cfg.Module, cfg.SetUp = "pypool_newcomer3", "broken_set_up"
			line = `raise RuntimeError("the model file is missing")`
		}
		_, err := New(testCtx(t), cfg)
		require.ErrorIs(t, err, ErrWorkerStart)
		var pyErr *PythonError
		require.ErrorAs(t, err, &pyErr)
		plus := fmt.Sprintf("%+v", err)
		assert.Equal(t, err.Error()+"\n"+strings.TrimRight(pyErr.Traceback, "\n"), plus)
		assert.Contains(t, plus, "\nTraceback (most recent call last):\n")
		assert.Contains(t, plus, line)
		assert.Equal(t, err.Error(), fmt.Sprintf("%v", err))
		assert.NotContains(t, fmt.Sprint(err), "\n")
	}
}

// TestNewcomer3BatchJobAsDocumented builds docs/operating.md's batch job
// ("A batch job or command-line program") as a user would, in a module of
// its own, and runs it on files as a shell would: the records rendered
// (exit 0), a bad line (exit 2 with the Python error and its traceback,
// which is the generator's), and a Ctrl-C mid-run: SIGINT to the
// program's process group, as a terminal sends it; the program says
// "interrupted", exits 130, and leaves no worker behind.
func TestNewcomer3BatchJobAsDocumented(t *testing.T) {
	t.Parallel()
	withNumpy := numpyPython(t)
	gobin := goCommand(t)
	var program, module mdBlock
	for _, b := range mdBlocks(t, "docs/operating.md") {
		switch {
		case b.lang == "go" && strings.HasPrefix(b.code, "package main") && strings.Contains(b.code, `"records"`):
			program = b
		case b.lang == "python" && pythonFileName(b) == "batch.py":
			module = b
		}
	}
	require.NotEmpty(t, program.code, "docs/operating.md: the batch job")
	require.NotEmpty(t, module.code, "docs/operating.md: batch.py")
	repo, err := filepath.Abs(".")
	require.NoError(t, err)
	dir := t.TempDir()
	sum, err := os.ReadFile("go.sum")
	require.NoError(t, err)
	for name, data := range map[string][]byte{
		"main.go": []byte(program.code), "go.mod": userGoMod(t, repo), "go.sum": sum, "batch.py": []byte(module.code),
		"records.csv": []byte("ab,1\ncd,2.5\n"), "bad.csv": []byte("ab,1\ncd,x\n"),
		"long.csv": []byte(strings.Repeat("ef,3\n", 200_000)),
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, gobin, "build", "-o", "batch", ".")
	build.Dir, build.Env = dir, append(os.Environ(), "GOFLAGS=", "GOPROXY=off")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	env := append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir(), "PATH="+filepath.Dir(withNumpy)+":"+os.Getenv("PATH"))
	command := func(args ...string) (*exec.Cmd, *strings.Builder) {
		cmd := exec.CommandContext(ctx, filepath.Join(dir, "batch"), args...)
		cmd.Dir, cmd.Env = dir, env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		return cmd, &stderr
	}
	exitCode := func(err error) int {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		require.NoError(t, err)
		return 0
	}

	cmd, stderr := command("records.csv")
	stdout, err := cmd.Output()
	assert.Equal(t, 0, exitCode(err), "%s", stderr)
	assert.Equal(t, "2 ab: 1.0\n2 cd: 2.5\n", string(stdout))

	cmd, stderr = command("bad.csv")
	stdout, err = cmd.Output()
	assert.Equal(t, 2, exitCode(err), "%s", stderr)
	assert.Equal(t, "2 ab: 1.0\n", string(stdout), "the records before the bad line")
	assert.Contains(t, stderr.String(), "pypool: python ValueError: could not convert string to float: 'x'\nTraceback (most recent call last):\n  File \""+filepath.Join(dir, "batch.py"))
	assert.NotContains(t, stderr.String(), "pypool_runtime")

	// Ctrl-C once the records flow.
	cmd, stderr = command("long.csv")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	lines := bufio.NewReader(pipe)
	_, err = lines.ReadString('\n')
	require.NoError(t, err, "%s", stderr)
	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
	_, _ = io.Copy(io.Discard, lines)
	err = cmd.Wait()
	assert.Equal(t, 130, exitCode(err), "%s", stderr)
	assert.True(t, strings.HasSuffix(stderr.String(), "interrupted\n"), "%s", stderr)
	assert.Empty(t, processesIn(t, dir), "workers left behind")
}

// processesIn returns the pids of the processes whose working directory
// is dir.
func processesIn(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && cwd == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}
