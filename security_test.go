package pypool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// shadowNames are standard modules (and msgpack) that the runtime imports,
// some of them lazily, plus sitecustomize, which the interpreter's start
// looks for: none of them may ever come from the working directory or from
// a PythonPath directory. From "asyncio" on (issue 18, finding 10): asyncio,
// which the runtime imports at the first awaitable, the top-level modules it
// imports (concurrent, logging and ctypes as packages), and the fork
// server's.
var shadowNames = []string{
	"traceback", "linecache", "tokenize", "token", "ast", "struct", "datetime", "binascii",
	"threading", "resource", "faulthandler", "msgpack", "sitecustomize", "signal", "mmap",
	"asyncio", "selectors", "socket", "ssl", "subprocess", "concurrent/", "logging/", "inspect", "contextvars",
	"heapq", "base64", "dis", "opcode", "locale", "string", "textwrap", "array", "select", "fcntl", "ctypes/",
	"atexit", "gc", "weakref", "warnings", "enum", "reprlib", "typing", "contextlib", "collections/",
}

// plantShadows writes a module for each of shadowNames into dir (a package
// for a name ending in "/"): importing it leaves a file "imported-<name>"
// in dir and raises.
func plantShadows(t *testing.T, dir string) {
	t.Helper()
	for _, name := range shadowNames {
		file := filepath.Join(dir, name+".py")
		if pkg, ok := strings.CutSuffix(name, "/"); ok {
			require.NoError(t, os.Mkdir(filepath.Join(dir, pkg), 0o755))
			file = filepath.Join(dir, pkg, "__init__.py")
		}
		src := "import os\n" +
			"open(os.path.join(" + strings.Repeat("os.path.dirname(", strings.Count(name, "/")) +
			"os.path.dirname(os.path.abspath(__file__))" + strings.Repeat(")", strings.Count(name, "/")) +
			", 'imported-' + __name__), 'w').close()\n" +
			"raise ImportError('the shadow ' + __name__ + ' was imported')\n"
		require.NoError(t, os.WriteFile(file, []byte(src), 0o644))
	}
}

// importedShadows lists the shadows of dir that were imported.
func importedShadows(t *testing.T, dir string) []string {
	t.Helper()
	found, err := filepath.Glob(filepath.Join(dir, "imported-*"))
	require.NoError(t, err)
	for i, f := range found {
		found[i] = strings.TrimPrefix(filepath.Base(f), "imported-")
	}
	return found
}

// TestShadowedStdlibIsNotImported plants files named like the standard
// modules the runtime uses in the workers' working directory and in a
// PythonPath directory (issue 13's reproduction: a traceback.py there was
// imported at the first exception and broke the worker). None may be
// imported, whether HOME is set or not, on either start method, whatever
// runtime feature runs (issue 18, finding 10: asyncio.py was imported at
// the first async call of a module that does not import asyncio): an
// exception, async functions and generators, streams, callbacks, shared
// memory. The exception reaches Go with its traceback and the worker keeps
// serving; the working directory is not on sys.path.
func TestShadowedStdlibIsNotImported(t *testing.T) {
	modules, err := filepath.Abs("testdata/pymod")
	require.NoError(t, err)
	for _, method := range []StartMethod{StartExec, StartForkServer} {
		for _, where := range []string{"working directory", "PythonPath"} {
			for _, home := range []string{"set", "unset"} {
				if home == "unset" && method == StartForkServer {
					continue // HOME matters to the interpreter's start, which the exec'd template's is
				}
				t.Run(method.String()+"/"+where+"/HOME "+home, func(t *testing.T) {
					if home == "unset" {
						t.Setenv("HOME", "") // restored after the test
						require.NoError(t, os.Unsetenv("HOME"))
					}
					shadows := t.TempDir()
					plantShadows(t, shadows)
					cfg := testConfig(t)
					cfg.Module, cfg.StartMethod = "pypool_secmod", method
					cfg.SetUp, cfg.SetUpArgs = "set_up", []any{"ready"} // decoded with binascii
					cfg.Limits.OpenFiles = 4096                         // applied with resource
					cfg.Callbacks = map[string]Callback{"double": CallbackFunc(func(_ context.Context, n int64) (int64, error) {
						return 2 * n, nil
					})}
					if where == "working directory" {
						cfg.Dir, cfg.PythonPath = shadows, []string{modules}
					} else {
						cfg.PythonPath = []string{shadows, modules}
					}
					pool, err := New(testCtx(t), cfg)
					require.NoError(t, err)
					defer func() { require.NoError(t, pool.Close(testCtx(t))) }()
					ctx := testCtx(t)

					_, err = pool.Call(ctx, "fail", "on purpose")
					var pyErr *PythonError
					require.ErrorAs(t, err, &pyErr)
					require.Equal(t, "ValueError", pyErr.Type)
					require.Contains(t, pyErr.Traceback, "in fail\n")
					out, err := pool.Call(ctx, "setup_value")
					require.NoError(t, err, "the worker must serve on after the exception")
					require.Equal(t, []any{"ready"}, out)

					out, err = pool.Call(ctx, "path")
					require.NoError(t, err)
					path := out.([]any)
					if where == "working directory" {
						require.Equal(t, modules, path[0])
						require.NotContains(t, path, shadows, "the working directory must not be on sys.path")
					} else {
						require.Equal(t, []any{shadows, modules}, path[:2])
					}
					require.NotContains(t, path, "")

					runEveryFeature(t, pool)
					require.Zero(t, pool.Stats().Crashes)
					require.NoError(t, pool.Close(ctx)) // the worker's exit path runs too
					require.Empty(t, importedShadows(t, shadows), "modules imported from %s", shadows)
				})
			}
		}
	}
}

// runEveryFeature calls pypool_secmod's functions for each feature of the
// runtime that imports something lazily: async functions and generators,
// streams, callbacks, shared memory.
func runEveryFeature(t *testing.T, pool *Pool) {
	t.Helper()
	ctx := testCtx(t)
	out, err := pool.Call(ctx, "async_echo", "awaited")
	require.NoError(t, err)
	require.Equal(t, "awaited", out)
	for _, fn := range []string{"numbers", "async_numbers"} {
		items, err := collect(t, pool.Stream(ctx, fn, 3))
		require.NoError(t, err, fn)
		require.Equal(t, []any{int64(0), int64(1), int64(2)}, items, fn)
	}
	out, err = pool.Call(ctx, "ask_go", 21)
	require.NoError(t, err)
	require.Equal(t, int64(42), out)
	big := make([]byte, 1<<20) // above SharedMemoryThreshold: through the shared memory both ways
	out, err = pool.Call(ctx, "size_of", big)
	require.NoError(t, err)
	require.Equal(t, []any{int64(len(big)), big}, out)
}

// TestWorkingDirectoryWhenListed: the working directory is on sys.path when
// PythonPath lists it, and then a module there can be imported.
func TestWorkingDirectoryWhenListed(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pypool_cwdmod.py"), []byte("def where():\n    return __file__\n"), 0o644))
	cfg := testConfig(t)
	cfg.Module, cfg.Dir, cfg.PythonPath = "pypool_cwdmod", dir, []string{"."}
	out, err := newTestPool(t, cfg).Call(testCtx(t), "where")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "pypool_cwdmod.py"), out)
}

// TestModuleInWorkingDirectoryNeedsPythonPath: a module found only in the
// working directory no longer imports; the error says where it looked.
func TestModuleInWorkingDirectoryNeedsPythonPath(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pypool_cwdmod.py"), []byte("x = 1\n"), 0o644))
	cfg := testConfig(t)
	cfg.Module, cfg.Dir, cfg.PythonPath = "pypool_cwdmod", dir, nil
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	require.Equal(t, "ModuleNotFoundError", pyErr.Type)
	require.Contains(t, pyErr.Hint, "looked in sys.path")
	require.Contains(t, pyErr.Hint, "'pypool_cwdmod' is in the working directory "+dir+", which is not on the workers' sys.path: list it in Config.PythonPath")
}

// TestBootstrapRemovesWorkingDirectory runs the bootstrap on every Python
// 3.8+ this machine has, from a directory holding a struct.py that would
// break the runtime, and a linecache.py, which Python 3.13 imports at the
// start of "python -c" unless it runs isolated (-I).
func TestBootstrapRemovesWorkingDirectory(t *testing.T) {
	pythons := otherPythons(t)
	if len(pythons) == 0 {
		t.Skip("no other Python 3.8+ found under ~/.pyenv/versions: only the default one is tested (TestShadowedStdlibIsNotImported)")
	}
	modules, err := filepath.Abs("testdata/pymod")
	require.NoError(t, err)
	for _, python := range pythons {
		t.Run(filepath.Base(filepath.Dir(filepath.Dir(python))), func(t *testing.T) {
			shadows := t.TempDir()
			plantShadows(t, shadows)
			cfg := testConfig(t)
			cfg.Module, cfg.Python, cfg.Dir, cfg.PythonPath = "pypool_secmod", python, shadows, []string{modules}
			cfg.Size = 1
			pool := newTestPool(t, cfg)
			ctx := testCtx(t)
			_, err := pool.Call(ctx, "fail", "x")
			var pyErr *PythonError
			require.ErrorAs(t, err, &pyErr)
			// A second worker starts with the real executable the first
			// one's handshake told.
			require.NoError(t, pool.Resize(2, 0))
			awaitPool(t, pool, "two idle workers", func(s Stats) bool { return s.Idle == 2 })
			fail := func(w *Worker) error {
				if _, err := w.Call(ctx, "fail", "x"); !errors.As(err, &pyErr) {
					return fmt.Errorf("want a *PythonError, got %v", err)
				}
				return nil
			}
			require.NoError(t, pool.Transaction(ctx, func(first *Worker) error {
				return errors.Join(fail(first), pool.Transaction(ctx, fail))
			}))
			require.NoError(t, pool.Close(ctx))
			require.Empty(t, importedShadows(t, shadows))
		})
	}
}

// otherPythons lists pyenv's Python 3.8+ interpreters, if any.
func otherPythons(t *testing.T) []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	found, _ := filepath.Glob(filepath.Join(home, ".pyenv", "versions", "3.*", "bin", "python3"))
	var pythons []string
	for _, p := range found {
		v := filepath.Base(filepath.Dir(filepath.Dir(p)))
		if !strings.HasPrefix(v, "3.6") && !strings.HasPrefix(v, "3.7") {
			pythons = append(pythons, p)
		}
	}
	return pythons
}

// realPython is the real executable behind python3: the environment tests
// do not depend on what a pyenv shim needs of the environment.
var realPython = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("python3", "-E", "-c", "import sys; print(sys.executable)").Output()
	return string(bytes.TrimSpace(out)), err
})

func envMap(t *testing.T, entries []any) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, e := range entries {
		k, v, _ := strings.Cut(e.(string), "=")
		m[k] = v
	}
	return m
}

// TestInheritEnv: nil inherits the Go program's environment; an allow-list
// lets through only the names and prefixes listed, plus Config.Env; an
// empty list nothing but Config.Env.
func TestInheritEnv(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skip("needs /proc/self/environ (Linux) to read a worker's initial environment")
	}
	python, err := realPython()
	require.NoError(t, err)
	t.Setenv("PYPOOL_TEST_SECRET", "s3cret")
	t.Setenv("LC_PYPOOL_TEST", "fr_FR.UTF-8")
	t.Setenv("TZ", "Europe/Paris")
	for _, tc := range []struct {
		name    string
		inherit []string
		want    func(env map[string]string)
	}{
		{"nil inherits all", nil, func(env map[string]string) {
			require.Equal(t, "s3cret", env["PYPOOL_TEST_SECRET"])
			require.Equal(t, os.Getenv("PATH"), env["PATH"])
			require.Equal(t, "1", env["ADDED"])
		}},
		{"allow-list", []string{"PATH", "LC_*", "TZ"}, func(env map[string]string) {
			want := map[string]string{"PATH": os.Getenv("PATH"), "TZ": "Europe/Paris", "ADDED": "1"}
			for _, kv := range os.Environ() {
				if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "LC_") {
					want[k] = v
				}
			}
			require.Equal(t, want, env)
		}},
		{"empty", []string{}, func(env map[string]string) {
			require.Equal(t, map[string]string{"ADDED": "1"}, env)
		}},
		{"empty, and no Env", []string{}, func(env map[string]string) {
			require.Empty(t, env)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Module, cfg.Python, cfg.InheritEnv, cfg.Env = "pypool_secmod", python, tc.inherit, []string{"ADDED=1"}
			if strings.HasSuffix(tc.name, "no Env") {
				cfg.Env = nil
			}
			out, err := newTestPool(t, cfg).Call(testCtx(t), "initial_env")
			require.NoError(t, err)
			tc.want(envMap(t, out.([]any)))
		})
	}
}

func TestInheritedEnv(t *testing.T) {
	environ := []string{"PATH=/bin", "HOME=/root", "LC_ALL=C", "LC_TIME=fr", "LANG=C.UTF-8", "LCX=1", "SECRET=x", "PATHS=y"}
	require.Equal(t, []string{"PATH=/bin", "LC_ALL=C", "LC_TIME=fr"}, inheritedEnv(environ, []string{"PATH", "LC_*"}))
	require.Equal(t, environ, inheritedEnv(environ, []string{"*"}))
	for _, allow := range [][]string{{}, {"NOT_SET_ANYWHERE"}} {
		env := inheritedEnv(environ, allow)
		require.Empty(t, env)
		require.NotNil(t, env, "a nil exec.Cmd.Env inherits the whole environment")
	}
}

func TestSecurityConfigIsChecked(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{InheritEnv: []string{"PATH="}}, `InheritEnv entry "PATH="`},
		{Config{InheritEnv: []string{""}}, `InheritEnv entry ""`},
		{Config{InheritEnv: []string{"L*C"}}, `InheritEnv entry "L*C"`},
		{Config{Limits: Limits{AddressSpace: -1}}, "Config.Limits can not be negative"},
		{Config{Limits: Limits{CPUTime: -time.Second}}, "Config.Limits can not be negative"},
		{Config{Limits: Limits{OpenFiles: -1}}, "Config.Limits can not be negative"},
	} {
		tc.cfg.Module = "m"
		_, err := tc.cfg.withDefaults()
		require.ErrorContains(t, err, tc.want)
	}
}

// TestCredentialNeedsRoot: a Go program that does not run as root is told
// so, with what to do instead.
func TestCredentialNeedsRoot(t *testing.T) {
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	_, err := Config{Module: "m", Credential: &Credential{UID: 65534, GID: 65534}}.withDefaults()
	require.ErrorContains(t, err, "Config.Credential needs the Go program to run as root")
	require.ErrorContains(t, err, "runs as uid 1000")
}

func TestCheckAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it makes directories owned by root with modes other users may or may not enter")
	}
	nobody := &Credential{UID: 65534, GID: 65534}
	base, err := os.MkdirTemp("", "pypool-perm-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	open := filepath.Join(base, "open", "runtime")
	require.NoError(t, os.MkdirAll(open, 0o755))
	require.NoError(t, checkAccess(open, nobody, "the Python runtime", 5))

	closed := filepath.Join(base, "closed", "runtime")
	require.NoError(t, os.MkdirAll(closed, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(closed), 0o700))
	err = checkAccess(closed, nobody, "the Python runtime", 5)
	require.ErrorContains(t, err, "is out of reach of uid 65534")
	require.ErrorContains(t, err, filepath.Dir(closed)+" is mode -rwx------")

	require.Error(t, checkAccess(closed, &Credential{UID: 65534, GID: 0}, "x", 5)) // the group does not help: 0700
	require.NoError(t, os.Chmod(filepath.Dir(closed), 0o750))
	require.NoError(t, checkAccess(closed, &Credential{UID: 65534, GID: 1, Groups: []uint32{0}}, "x", 5))

	// A link from an open directory into a closed one is out of reach too.
	require.NoError(t, os.Chmod(filepath.Dir(closed), 0o700))
	link := filepath.Join(open, "link")
	require.NoError(t, os.Symlink(closed, link))
	require.ErrorContains(t, checkAccess(link, nobody, "the Python runtime", 5), filepath.Dir(closed)+" is mode -rwx------")
}

// TestLimitAddressSpace: an allocation above Limits.AddressSpace is a
// MemoryError in Python, a *PythonError for the caller whose hint names
// the limit, and the worker serves on.
func TestLimitAddressSpace(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module, cfg.Limits.AddressSpace = "pypool_secmod", 1<<30
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "allocate", 2<<30)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	require.Equal(t, "MemoryError", pyErr.Type)
	require.Regexp(t, `^pypool: python MemoryError: the worker ran out of address space: Config.Limits.AddressSpace is 1073741824 bytes \(1024 MiB\), of which it had \d+ MiB mapped: raise Config.Limits.AddressSpace$`, err.Error())
	out, err := pool.Call(ctx, "allocate", 16<<20) // below the limit
	require.NoError(t, err)
	require.EqualValues(t, 16<<20, out)
	require.Zero(t, pool.Stats().Crashes)
}

// TestLimitCPUTime: a worker that exceeds Limits.CPUTime is killed by the
// kernel (SIGXCPU), its call fails as a crash, and the pool replaces it.
func TestLimitCPUTime(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module, cfg.Limits.CPUTime = "pypool_secmod", time.Second
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "spin") // ends when the kernel kills it
	require.ErrorIs(t, err, ErrWorkerCrashed)
	var exit *WorkerExitError
	require.ErrorAs(t, err, &exit)
	if exit.Signal != "killed" { // SIGKILL at the hard limit, a second later, if SIGXCPU did not end it
		require.Equal(t, "CPU time limit exceeded (SIGXCPU: it used up its CPU time limit, Config.Limits.CPUTime)", exit.Signal)
	}
	awaitPool(t, pool, "the worker replaced", func(s Stats) bool { return s.Idle == 1 && s.StartsCrash == 1 })
	out, err := pool.Call(ctx, "echo", "again")
	require.NoError(t, err)
	require.Equal(t, "again", out)
}

// TestLimitOpenFiles: opening more descriptors than Limits.OpenFiles is an
// OSError (EMFILE), and the worker serves on.
func TestLimitOpenFiles(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module, cfg.Limits.OpenFiles = "pypool_secmod", 64
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	_, err := pool.Call(ctx, "open_files", 100)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	require.Equal(t, "OSError", pyErr.Type)
	require.Contains(t, pyErr.Message, "Too many open files")
	out, err := pool.Call(ctx, "open_files", 10)
	require.NoError(t, err)
	require.EqualValues(t, 10, out)
	require.Zero(t, pool.Stats().Crashes)
}

// TestLimitsArgs: the limits' flags, CPU time rounded up to seconds.
func TestLimitsArgs(t *testing.T) {
	require.Empty(t, Limits{}.args())
	require.Equal(t, []string{"--limit-as", "1073741824", "--limit-cpu", "2", "--limit-nofile", "64"},
		Limits{AddressSpace: 1 << 30, CPUTime: 1500 * time.Millisecond, OpenFiles: 64}.args())
}

// TestCredential runs workers as nobody (65534:65534). The runtime pypool
// installs must be readable by that user, which the default install
// directory under /root (0700) is not: Config.InstallDir is a 0755
// directory; and so must the interpreter be (pyenv's are under /root too:
// /usr/bin/python3 then).
func TestCredential(t *testing.T) {
	cfg := testConfig(t)
	if whyNot := runAsNobody(t, &cfg); whyNot != "" {
		t.Skip(whyNot)
	}
	pool := newTestPool(t, cfg)
	out, err := pool.Call(testCtx(t), "ids")
	require.NoError(t, err)
	require.Equal(t, []any{int64(65534), int64(65534), []any{}}, out)
}

// runAsNobody makes cfg a pool of pypool_secmod whose workers run as nobody
// (65534:65534), as TestCredential describes, or says why it cannot ("" when
// it did).
func runAsNobody(t *testing.T, cfg *Config) (whyNot string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return "needs root to start workers as another user (TestCredentialNeedsRoot tests the refusal)"
	}
	nobody := &Credential{UID: 65534, GID: 65534}
	python, err := realPython()
	require.NoError(t, err)
	if checkAccess(python, nobody, "", 1) != nil {
		python = "/usr/bin/python3" // pyenv's interpreters live under /root
	}
	if err := checkAccess(python, nobody, "", 1); err != nil {
		return fmt.Sprintf("no Python that nobody can run: %v", err)
	}
	dir, err := os.MkdirTemp("", "pypool-credential-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	for _, name := range []string{"install", "modules"} {
		require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o755))
	}
	src, err := os.ReadFile("testdata/pymod/pypool_secmod.py")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules", "pypool_secmod.py"), src, 0o644))

	cfg.Module, cfg.PythonPath, cfg.Python = "pypool_secmod", []string{filepath.Join(dir, "modules")}, python
	cfg.InstallDir, cfg.Credential = filepath.Join(dir, "install"), nobody
	return ""
}

// TestCredentialUnreadableRuntime: with the runtime in a directory the
// worker's user cannot read, New says so instead of starting workers that
// cannot import it.
func TestCredentialUnreadableRuntime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to configure a Credential")
	}
	dir, err := runtimeDir("", nil)
	require.NoError(t, err)
	nobody := &Credential{UID: 65534, GID: 65534}
	if checkAccess(dir, nobody, "", 5) == nil {
		t.Skipf("the runtime at %s is readable by nobody here: TestCheckAccess covers the refusal", dir)
	}
	cfg := testConfig(t)
	cfg.Credential = nobody
	cfg.Python = "/usr/bin/python3" // not pyenv's, under /root: the runtime is what is out of reach
	if checkAccess(cfg.Python, nobody, "", 1) != nil {
		t.Skipf("%s is out of reach of nobody too", cfg.Python)
	}
	_, err = New(testCtx(t), cfg)
	require.ErrorContains(t, err, "pypool: Config.Credential: the Python runtime "+dir+" is out of reach of uid 65534 gid 65534: ")
	require.ErrorContains(t, err, "put it where that user can read it")
}

// TestWorkerHoldsOnlyItsDescriptors: issue 18, finding 6. A file only root
// may read, open in the Go process without close-on-exec (as a supervisor
// or a wrapper script passes descriptors), must not reach the workers, on
// either start method; they run as nobody when the test runs as root (else
// as the test's user, with the same expectation: the descriptor is not
// theirs). Every descriptor a worker holds is one of its own: pipes,
// /dev/null, its shared memory, the fork server's pidfd of the Go process.
func TestWorkerHoldsOnlyItsDescriptors(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secret, []byte("root only"), 0o600))
	f, err := os.Open(secret)
	require.NoError(t, err)
	defer f.Close()
	// A copy above the workers' own numbers, without close-on-exec
	// (F_DUPFD): inherited through exec from now on.
	fd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_DUPFD, 40)
	require.Zero(t, errno)
	defer syscall.Close(int(fd))

	for _, method := range []StartMethod{StartExec, StartForkServer} {
		t.Run(method.String(), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Module, cfg.PythonPath, cfg.StartMethod = "pypool_secmod", []string{"testdata/pymod"}, method
			if whyNot := runAsNobody(t, &cfg); whyNot != "" {
				t.Logf("workers run as the test's user: %s", whyNot)
			}
			pool, err := New(testCtx(t), cfg)
			require.NoError(t, err)
			defer func() { require.NoError(t, pool.Close(testCtx(t))) }()
			if method == StartForkServer {
				settleHandover(t, pool) // Size 1: New's worker is started by exec
				fs := pool.forks.Load()
				require.NotNil(t, fs, "the fork server did not start")
				for _, pid := range workerPids(pool) {
					require.Equal(t, fs.pid, parentPid(pid), "worker %d was not forked by the template", pid)
				}
			}

			out, err := pool.Call(testCtx(t), "descriptors", int(fd))
			require.NoError(t, err)
			held, read := out.([]any)[0].(map[any]any), out.([]any)[1]
			require.NotEqual(t, []byte("root only"), read, "the worker read the host's descriptor %d", fd)
			for n, target := range held {
				require.NotEqual(t, secret, target, "the worker holds the host's descriptor as its %v", n)
				require.Regexp(t, `^(pipe:|socket:|anon_inode:|/dev/null$|/memfd:)`, target, "descriptor %v of the worker", n)
			}
			t.Logf("the worker's descriptors: %v", held)
		})
	}
}

// TestLazyTracebackIsTheStandardOne (issue 21): a worker imports the
// traceback module (and ast, which formats its carets) at its first
// exception, not at its start, and then from the interpreter's own
// entries only: a traceback.py and an ast.py in a PythonPath directory are
// never imported by the runtime, and the traceback Go gets is the standard
// module's (the source line; the carets on 3.11+), on both start methods.
func TestLazyTracebackIsTheStandardOne(t *testing.T) {
	for _, method := range []StartMethod{StartExec, StartForkServer} {
		t.Run(method.String(), func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range []string{"traceback", "ast"} {
				src := "import os\n" +
					"open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imported-' + __name__), 'w').close()\n" +
					"def format_exception(*args, **kwargs):\n    return ['the user\\'s own ' + __name__ + '\\n']\n" +
					"def parse(*args, **kwargs):\n    raise RuntimeError('the user\\'s own ast')\n"
				require.NoError(t, os.WriteFile(filepath.Join(dir, name+".py"), []byte(src), 0o644))
			}
			mod := "import sys\n\n" +
				"def loaded(names):\n    return [n for n in names if n in sys.modules]\n\n" +
				"def carets():\n    return sys.version_info >= (3, 11)\n\n" +
				"def fail(table):\n    return table['missing'] + 1\n"
			require.NoError(t, os.WriteFile(filepath.Join(dir, "pypool_lazytb.py"), []byte(mod), 0o644))
			cfg := testConfig(t)
			cfg.Module, cfg.StartMethod, cfg.PythonPath, cfg.Size = "pypool_lazytb", method, []string{dir}, 1
			pool := newTestPool(t, cfg)
			ctx := testCtx(t)

			names := []any{"traceback", "ast"}
			out, err := pool.Call(ctx, "loaded", names)
			require.NoError(t, err)
			require.Empty(t, out, "imported at the worker's start")
			_, err = pool.Call(ctx, "fail", map[string]any{})
			var pyErr *PythonError
			require.ErrorAs(t, err, &pyErr)
			require.Equal(t, "KeyError", pyErr.Type)
			require.Contains(t, pyErr.Traceback, "    return table['missing'] + 1\n", "the source line: the standard module's")
			require.NotContains(t, pyErr.Traceback, "the user's own")
			if carets, err := pool.Call(ctx, "carets"); err == nil && carets == true {
				require.Contains(t, pyErr.Traceback, "^^^^", "the carets: the standard ast's")
			}
			out, err = pool.Call(ctx, "loaded", names)
			require.NoError(t, err)
			require.Equal(t, names, out)
			require.NoError(t, pool.Close(ctx))
			require.Empty(t, importedShadows(t, dir), "modules imported from %s", dir)
		})
	}
}
