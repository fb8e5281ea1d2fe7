package pypool

// audit_newcomer2_test.go: a second newcomer, deploying another shape of
// service from README.md and docs/ alone: an HTTP service whose requests'
// contexts end when their clients go away, stopped on SIGTERM, with its
// own tests, typed bindings, the Prometheus and OpenTelemetry modules, and
// an interpreter as deployments ship it (a wrapper script, PYTHONPATH set
// in the image). Each test runs what the documentation says and checks
// that it holds, or that the error names the cause and the fix.

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewcomer2WrapperInterpreter: Config.Python "a python3 executable"
// is, in many images, a wrapper script that says what it does
// (`echo "using /opt/venv"; exec /opt/venv/bin/python3 "$@"`). Its line
// reached the pool where the worker's handshake should be, and New
// reported "message too large: the worker sent a 1970497902-byte message
// ... (Config.MaxMessageSize)", sending the reader to raise a limit; with
// MaxMessageSize raised, New waited StartTimeout for 1.9 GB and reported
// a worker that "did not finish importing". New now names what it read
// and the fix, at once, whatever MaxMessageSize is.
func TestNewcomer2WrapperInterpreter(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath(testConfig(t).orPython())
	require.NoError(t, err)
	wrapper := filepath.Join(t.TempDir(), "python3")
	writeScript(t, wrapper, "echo \"using the venv in /opt/venv\"\nexec '"+python+"' \"$@\"\n")
	for _, limit := range []int{0, 4<<30 - 1} {
		cfg := testConfig(t)
		cfg.Python, cfg.MaxMessageSize, cfg.StartTimeout = wrapper, limit, 20*time.Second
		cfg.StartMethod = StartExec
		began := time.Now()
		_, err := New(testCtx(t), cfg)
		require.ErrorIs(t, err, ErrWorkerStart)
		assert.ErrorIs(t, err, ErrProtocol)
		assert.NotErrorIs(t, err, ErrMessageTooLarge)
		assert.ErrorContains(t, err, `began with "usin" where its handshake should be: something wrote to the worker's stdout before Python ran pypool's runtime`)
		assert.ErrorContains(t, err, "set Config.Python to the interpreter itself")
		assert.Less(t, time.Since(began), cfg.StartTimeout, "MaxMessageSize %d: it waited for the frame", limit)
	}
}

// orPython is the configured interpreter, or the default.
func (c Config) orPython() string { return orDefault(c.Python, "python3") }

// TestNewcomer2CloseDuringAnInterrupt: docs/operating.md's shutdown on
// SIGTERM (http.Server.Shutdown, then pool.Close) in a service whose
// client went away a moment before: its call was cut off, and its worker
// was still finishing the interrupt (Python's clean-up after the
// KeyboardInterrupt) when Close stopped it. The log said "pypool: worker
// killed ... grace=30s" at Warn, the record of a worker that ignored its
// interrupt for all of Config.InterruptGrace, with a Python stack, and
// its "worker stopped" record's cause was "did not answer its interrupt
// within Config.InterruptGrace": Close had stopped it after milliseconds.
// Now the interrupt's record says Close stopped it (Debug), and the stop's
// cause is the pool's close.
func TestNewcomer2CloseDuringAnInterrupt(t *testing.T) {
	t.Parallel()
	rec := newLogRecorder()
	cfg := testConfig(t)
	cfg.Module, cfg.Logger, cfg.InterruptGrace = "pypool_newcomer2", slogNew(rec), 30*time.Second
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	request, clientGone := context.WithCancel(testCtx(t))
	result := make(chan error, 1)
	go func() {
		_, err := pool.Call(request, "held", 60)
		result <- err
	}()
	rec.await(t, "newcomer2: held")
	clientGone()
	require.ErrorIs(t, <-result, context.Canceled)
	rec.await(t, "newcomer2: cleaning up")
	require.NoError(t, pool.Close(testCtx(t)))

	for _, l := range rec.all() {
		assert.Less(t, l.level, slog.LevelWarn, "%s %v", l.msg, l.attrs)
	}
	interrupted := rec.await(t, msgCallInterrupted)
	assert.Equal(t, "DEBUG", interrupted["level"])
	assert.NotEmpty(t, interrupted["stopped_by_pool_after"])
	assert.Equal(t, "pool closed", rec.await(t, msgWorkerStopped)["cause"])
}

// TestNewcomer2PythonPathInTheEnvironment: docs/migrating-from-poolboy.md
// maps ErlPort's {env, [...]} to Config.Env, and images often set
// ENV PYTHONPATH; the workers run with -I, which ignores it. A module found
// only there failed with "No module named 'pypool_envmod'; looked in
// sys.path: <the standard library>", which does not say that the
// directory was given, nor that PYTHONPATH is not read; the hint now says
// so and names the field to use, under both interpreters.
func TestNewcomer2PythonPathInTheEnvironment(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "lib")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pypool_envmod.py"), []byte("def f():\n    return 1\n"), 0o644))
	for name, python := range interpreters(t) {
		cfg := testConfig(t)
		cfg.Module, cfg.Python, cfg.PythonPath = "pypool_envmod", python, nil
		cfg.Env = []string{"PYTHONPATH=" + filepath.Join(t.TempDir(), "elsewhere") + ":" + dir}
		_, err := New(testCtx(t), cfg)
		var pyErr *PythonError
		require.ErrorAs(t, err, &pyErr, name)
		assert.Contains(t, pyErr.Hint, "'pypool_envmod' is in "+dir+", on PYTHONPATH, which is not on the workers' sys.path: "+
			"the workers ignore PYTHONPATH (python -I): list it in Config.PythonPath", name)
	}
}

// TestNewcomer2NegativeFieldNamed: docs/configuration.md, "Invalid values
// make New fail with an error that names the field". A negative
// StopTimeout was "Config.StartTimeout, InterruptGrace, StopTimeout,
// CallTimeout, MaxWorkerLifetime and OverflowIdleTimeout can not be
// negative", a negative MaxCallsJitter the same for four counts: six or
// four fields to search. The error now names the one, with its value.
func TestNewcomer2NegativeFieldNamed(t *testing.T) {
	t.Parallel()
	for name, set := range map[string]func(*Config){
		"StartTimeout is -1s":          func(c *Config) { c.StartTimeout = -time.Second },
		"InterruptGrace is -1ms":       func(c *Config) { c.InterruptGrace = -time.Millisecond },
		"StopTimeout is -5s":           func(c *Config) { c.StopTimeout = -5 * time.Second },
		"CallTimeout is -1ns":          func(c *Config) { c.CallTimeout = -1 },
		"MaxWorkerLifetime is -1h0m0s": func(c *Config) { c.MaxWorkerLifetime = -time.Hour },
		"OverflowIdleTimeout is -2s":   func(c *Config) { c.OverflowIdleTimeout = -2 * time.Second },
		"CrashRetries is -1":           func(c *Config) { c.CrashRetries = -1 },
		"MaxCallsPerWorker is -3":      func(c *Config) { c.MaxCallsPerWorker = -3 },
		"MaxCallsJitter is -1":         func(c *Config) { c.MaxCallsJitter = -1 },
		"MaxWorkerMemory is -1":        func(c *Config) { c.MaxWorkerMemory = -1 },
	} {
		cfg := testConfig(t)
		set(&cfg)
		_, err := New(testCtx(t), cfg)
		require.EqualError(t, err, "pypool: Config."+name+": it can not be negative (0 means the default)")
	}
}

// TestNewcomer2NestedModulesFromAClone: README.md's "A first program" uses
// a clone beside the new module through a replace directive, and
// docs/observability.md then said `go get github.com/pypool/pypool/otel`
// (and nothing for the Prometheus module), which a clone cannot serve:
// "module github.com/pypool/pypool@upgrade found (v0.0.0, replaced by
// ../pypool), but does not contain package github.com/pypool/pypool/otel"
// (a nested module is not covered by the root's replace). The page now
// gives each nested module's own replace; they are run as written, after
// the README's commands, without the network.
func TestNewcomer2NestedModulesFromAClone(t *testing.T) {
	t.Parallel()
	gobin := goCommand(t)
	repo, err := filepath.Abs(".")
	require.NoError(t, err)
	var setup []string
	for _, b := range mdBlocks(t, "README.md") {
		if b.lang == "sh" && (strings.Contains(b.code, "go mod init hello") || strings.Contains(b.code, "-replace")) {
			setup = append(setup, b.code)
		}
	}
	require.Len(t, setup, 2, "README.md: the new module's commands, and a clone's")
	script := strings.Replace(setup[0], "go get github.com/pypool/pypool\n", setup[1], 1)
	text, err := os.ReadFile("docs/observability.md")
	require.NoError(t, err)
	for _, m := range regexp.MustCompile("`(go (?:mod edit -replace|get) github\\.com/pypool/pypool/(?:otel|prometheus)[^`]*)`").FindAllStringSubmatch(string(text), -1) {
		script += m[1] + "\n"
	}
	require.Equal(t, 4, strings.Count(script, "/pypool/pypool/"), "docs/observability.md: a replace and a go get for each nested module:\n%s", script)

	base := filepath.Join(t.TempDir(), "new comer")
	require.NoError(t, os.Mkdir(base, 0o755))
	require.NoError(t, os.Symlink(repo, filepath.Join(base, "pypool")))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, "sh", "-e", "-c", "PATH=\"$(dirname \"$0\"):$PATH\"\n"+script, gobin)
	sh.Dir, sh.Env = base, append(os.Environ(), "GOFLAGS=", "GOPROXY=off", "GOSUMDB=off")
	out, err := sh.CombinedOutput()
	if err != nil && strings.Contains(string(out), "module lookup disabled by GOPROXY=off") {
		t.Skipf("the module cache lacks the nested modules' dependencies (go mod download in otel/ and prometheus/):\n%s", out)
	}
	require.NoError(t, err, "%s\n%s", script, out)
	mod, err := os.ReadFile(filepath.Join(base, "hello", "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(mod), "github.com/pypool/pypool/otel v0.0.0")
	assert.Contains(t, string(mod), "github.com/pypool/pypool/prometheus v0.0.0")
}

// TestNewcomer2PypoolgenTimeout: docs/bindings.md's -timeout is "how long
// to wait for the worker" (default 2m), but the worker's start was bounded
// by Config.StartTimeout's default, 60 s, which pypoolgen has no flag for:
// a module that loads a model for 90 s failed with -timeout 5m. And the
// error of a start that ran out of time, "pypool: starting a worker:
// context deadline exceeded", did not name the flag. -timeout now bounds
// the start too, and its error names it.
func TestNewcomer2PypoolgenTimeout(t *testing.T) {
	t.Parallel()
	gobin := goCommand(t)
	hold := filepath.Join(t.TempDir(), "hold")
	require.NoError(t, os.WriteFile(hold, nil, 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "run", "./cmd/pypoolgen", "-module", "pypool_slowstart", "-pythonpath", "testdata/pymod",
		"-out", filepath.Join(t.TempDir(), "slow_gen.go"), "-package", "slow", "-timeout", "2s")
	// The worker installs in a directory of the test's; go keeps its build
	// cache, which XDG_CACHE_HOME would move.
	gocache, err := exec.CommandContext(ctx, gobin, "env", "GOCACHE").Output()
	require.NoError(t, err)
	cmd.Env = append(os.Environ(), "PYPOOL_HOLD_FLAG="+hold, "XDG_CACHE_HOME="+t.TempDir(), "GOCACHE="+strings.TrimSpace(string(gocache)))
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "pypoolgen: -timeout 2s bounds the module's import (Config.StartTimeout) and the whole run: raise it for a module slow to import", "%s", out)
}

// TestNewcomer2NewDeadlineNamed: New(ctx) with a deadline shorter than
// Config.StartTimeout, on a module slow to import (a model loaded at
// start), failed after ctx's 1 s with "worker N did not finish importing
// ... within 1m0s (Config.StartTimeout)" whenever the pipe's deadline,
// set to ctx's, fired a moment before ctx's own timer: it blamed a limit
// that had not passed, and sent the reader to raise it. The error is now
// ctx's, every time (six starts at once).
func TestNewcomer2NewDeadlineNamed(t *testing.T) {
	t.Parallel()
	hold := filepath.Join(t.TempDir(), "hold")
	require.NoError(t, os.WriteFile(hold, nil, 0o644))
	cfg := testConfig(t)
	cfg.Module, cfg.Env, cfg.StartMethod = "pypool_slowstart", []string{"PYPOOL_HOLD_FLAG=" + hold}, StartExec
	errs := make(chan error, 6)
	for range cap(errs) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := New(ctx, cfg)
			errs <- err
		}()
	}
	for range cap(errs) {
		err := <-errs
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotContains(t, err.Error(), "Config.StartTimeout")
		require.ErrorIs(t, err, ErrWorkerStart)
		assert.Contains(t, err.Error(), "when the context of its start ended: context deadline exceeded")
	}
}

// TestNewcomer2SeveralModulesImportError: docs/configuration.md, "Several
// modules", quotes the error of a module that fails to import among
// several. The quote was "... failed: python ModuleNotFoundError: module
// 'images': No module named 'PIL'", which is not what New says (the module
// is named in the hint). Its layout (service, text.tools, images importing
// PIL) is built here and the quote checked against New's error.
func TestNewcomer2SeveralModulesImportError(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile("docs/configuration.md")
	require.NoError(t, err)
	m := regexp.MustCompile("\\(`(importing modules service, text\\.tools, images failed:[^`]*?)(?: …)?`\\)").FindSubmatch(text)
	require.NotNil(t, m, "docs/configuration.md: the quoted error of several modules")
	quote := strings.Join(strings.Fields(string(m[1])), " ")
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "text"), 0o755))
	for name, src := range map[string]string{"service.py": "def health():\n    return 'ok'\n", "text/__init__.py": "",
		"text/tools.py": "def slugify(s):\n    return s\n", "images.py": "import PIL\n"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644))
	}
	cfg := testConfig(t)
	cfg.Module, cfg.Modules, cfg.PythonPath = "service", []string{"text.tools", "images"}, []string{dir}
	_, err = New(testCtx(t), cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), quote)
}
