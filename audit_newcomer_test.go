package pypool

// audit_newcomer_test.go: a newcomer deploying a service from README.md and
// docs/ alone. Each test runs what the documentation says, as written, in
// the conditions a real deployment meets (a directory whose path has
// spaces, another interpreter, no HOME, workers as another user), and checks
// that it works, or that its error names the cause and the fix.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewcomerMissingDir: a Config.Dir that does not exist, or is a file,
// is named as such. It was "fork/exec <interpreter>: no such file or
// directory", which blames the interpreter.
func TestNewcomerMissingDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		cfg := testConfig(t)
		cfg.Dir = dir
		_, err := New(testCtx(t), cfg)
		require.ErrorIs(t, err, ErrWorkerStart)
		assert.ErrorContains(t, err, `Config.Dir "`+dir+`", the workers' working directory: `)
		assert.ErrorContains(t, err, "set Config.Dir to an existing directory")
		assert.NotContains(t, err.Error(), "fork/exec")
	}
}

// nobodyOutOfReach returns a new directory that root can use and nobody
// cannot enter (0700 in a 0755 one), or skips the test.
func nobodyOutOfReach(t *testing.T, cfg *Config) string {
	t.Helper()
	if whyNot := runAsNobody(t, cfg); whyNot != "" {
		t.Skip(whyNot)
	}
	base, err := os.MkdirTemp("", "pypool newcomer ") // a path with spaces
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	require.NoError(t, os.Chmod(base, 0o755))
	closed := filepath.Join(base, "closed")
	require.NoError(t, os.Mkdir(closed, 0o700))
	return closed
}

// TestNewcomerCredentialPythonPathOutOfReach: docs/security.md, "Another
// user": "The worker's user must reach ... PythonPath and Dir". A module in
// a directory the worker's user cannot enter was reported as "No module
// named 'pypool_secmod'; looked in sys.path: <that directory>", which says
// the file is missing when it is there; New now names the directory in the
// way, as it does for the runtime.
func TestNewcomerCredentialPythonPathOutOfReach(t *testing.T) {
	cfg := testConfig(t)
	closed := nobodyOutOfReach(t, &cfg)
	src, err := os.ReadFile("testdata/pymod/pypool_secmod.py")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(closed, "pypool_secmod.py"), src, 0o644))
	// A zip archive beside it, readable: sys.path entries may be files.
	archive := filepath.Join(closed, "..", "lib.zip")
	require.NoError(t, os.WriteFile(archive, nil, 0o644))
	cfg.PythonPath = []string{archive, closed, filepath.Join(closed, "..", "does not exist")}
	_, err = New(testCtx(t), cfg)
	require.ErrorContains(t, err, "pypool: Config.Credential: Config.PythonPath's directory "+closed+" is out of reach of uid 65534 gid 65534: "+closed+" is mode -rwx------")
	assert.NotContains(t, err.Error(), "No module named")
}

// TestNewcomerCredentialDirOutOfReach: a Config.Dir the worker's user
// cannot enter failed as "fork/exec /usr/bin/python3: permission denied",
// which blames the interpreter (exec's chdir runs after setuid); New now
// names Config.Dir.
func TestNewcomerCredentialDirOutOfReach(t *testing.T) {
	cfg := testConfig(t)
	closed := nobodyOutOfReach(t, &cfg)
	cfg.Dir = closed
	_, err := New(testCtx(t), cfg)
	require.ErrorContains(t, err, "pypool: Config.Credential: Config.Dir (the workers' working directory) "+closed+" is out of reach of uid 65534 gid 65534")
	assert.NotContains(t, err.Error(), "fork/exec")
}

// TestNewcomerCredentialErrorsNameTheField: the fix of an interpreter or a
// runtime out of the worker's reach was "put it where that user can read
// it", though pypool, not the user, puts the runtime somewhere; the error
// now names the field that moves it (Config.Python, Config.InstallDir).
func TestNewcomerCredentialErrorsNameTheField(t *testing.T) {
	cfg := testConfig(t)
	closed := nobodyOutOfReach(t, &cfg)

	python := cfg.Python
	cfg.Python = filepath.Join(closed, "python3")
	require.NoError(t, os.Symlink(python, cfg.Python))
	_, err := New(testCtx(t), cfg)
	require.ErrorContains(t, err, "the Python interpreter "+cfg.Python+" is out of reach")
	assert.ErrorContains(t, err, "set Config.Python to an interpreter outside it")

	cfg.Python, cfg.InstallDir = python, filepath.Join(closed, "install")
	_, err = New(testCtx(t), cfg)
	require.ErrorContains(t, err, "the Python runtime ")
	assert.ErrorContains(t, err, "put it where that user can read it")
	assert.ErrorContains(t, err, "set Config.InstallDir to a directory that user can enter")
}

// pypoolgenModule makes a user's module, as docs/bindings.md's reader has
// one, in a directory whose name has spaces: a main package (main.go) and
// the Python module the page shows (inventory.py). It returns its
// directory and the go command.
func pypoolgenModule(t *testing.T) (dir, gobin string) {
	gobin = goCommand(t)
	repo, err := filepath.Abs(".")
	require.NoError(t, err)
	dir = filepath.Join(t.TempDir(), "my service")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), userGoMod(t, repo), 0o644))
	sum, err := os.ReadFile("go.sum")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
	var module string
	for _, b := range mdBlocks(t, "docs/bindings.md") {
		if b.lang == "python" && strings.Contains(b.code, "def lookup(") {
			module = b.code
			break
		}
	}
	require.NotEmpty(t, module, "docs/bindings.md: the inventory module")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "inventory.py"), []byte(module), 0o644))
	return dir, gobin
}

// TestNewcomerPypoolgenAsDocumented runs docs/bindings.md's commands as
// written, beside the page's inventory.py and a main.go, then builds the
// package. Before: the first command failed ("No module named 'inventory'":
// it had no -pythonpath), its error named Config.PythonPath, not the flag,
// and the bindings were written in package "my_service" (the directory's
// name) beside main.go's package main, which does not build.
func TestNewcomerPypoolgenAsDocumented(t *testing.T) {
	dir, gobin := pypoolgenModule(t)
	var commands []string
	for _, b := range mdBlocks(t, "docs/bindings.md") {
		if b.lang == "sh" {
			commands = append(commands, strings.TrimSpace(b.code))
		}
	}
	require.Len(t, commands, 2, "docs/bindings.md: the command and its -check")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The workers install in a directory of the test's, and go keeps its
	// build cache, which XDG_CACHE_HOME would move.
	gocache, err := exec.CommandContext(ctx, gobin, "env", "GOCACHE").Output()
	require.NoError(t, err)
	env := append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir(), "GOCACHE="+strings.TrimSpace(string(gocache)))
	run := func(command string) (string, error) {
		fields := strings.Fields(command)
		require.Equal(t, "go", fields[0], command)
		cmd := exec.CommandContext(ctx, gobin, fields[1:]...)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, command := range commands {
		out, err := run(command)
		require.NoError(t, err, "%s:\n%s", command, out)
	}
	build := exec.CommandContext(ctx, gobin, "vet", ".")
	build.Dir, build.Env = dir, env
	out, err := build.CombinedOutput()
	require.NoError(t, err, "the bindings beside main.go:\n%s", out)

	// Without -pythonpath, the error names the flag to use.
	text, err := run(strings.Replace(commands[0], " -pythonpath .", "", 1))
	require.Error(t, err)
	assert.Contains(t, text, "'inventory' is in the working directory")
	assert.Contains(t, text, "pypoolgen: -pythonpath sets Config.PythonPath")
}

// TestNewcomerDockerfiles: a Dockerfile has no comments after an
// instruction: docs/operating.md's `CMD ["/app/service"]   # Config{...}`
// is not JSON, so Docker ran it as a shell command line,
// `/bin/sh -c '["/app/service"]   # ...'`, which fails ("not found"), and
// the image never started its service.
func TestNewcomerDockerfiles(t *testing.T) {
	found := 0
	for _, file := range docFiles(t) {
		for _, b := range mdBlocks(t, file) {
			if !strings.EqualFold(b.lang, "dockerfile") {
				continue
			}
			found++
			for i, line := range strings.Split(b.code, "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				assert.NotContains(t, line, " #", "%s:%d: a Dockerfile comment must be a line of its own", file, b.line+i)
			}
		}
	}
	require.NotZero(t, found, "the documentation's Dockerfiles")
}

// TestNewcomerInterpreterThatCannotRun: a Config.Python that exists but is
// not a program (a directory, a file without x) was reported "not found:
// install Python 3", which sends the reader to install what is there.
func TestNewcomerInterpreterThatCannotRun(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "python3")
	require.NoError(t, os.WriteFile(file, []byte("#!/bin/sh\n"), 0o644))
	for python, cause := range map[string]string{dir: "is a directory", file: "permission denied"} {
		cfg := testConfig(t)
		cfg.Python = python
		_, err := New(testCtx(t), cfg)
		require.ErrorIs(t, err, ErrWorkerStart)
		assert.ErrorContains(t, err, `Python interpreter "`+python+`" cannot be run: set Config.Python to a python3 executable (`)
		assert.ErrorContains(t, err, cause)
	}
	cfg := testConfig(t)
	cfg.Python = filepath.Join(dir, "missing")
	_, err := New(testCtx(t), cfg)
	assert.ErrorContains(t, err, "not found: install Python 3 or set Config.Python to its path")
}

// TestNewcomerFirstProgramFromAClone follows README.md's "A first program"
// as written, with a clone of this repository beside the new module (no
// download: GOPROXY=off), in a directory whose path has spaces; builds the
// program with -trimpath and runs it with HOME unset, with the python3 of
// PATH and with Debian's /usr/bin/python3. Before, the README had only
// `go get github.com/pypool/pypool`, which a clone cannot serve (with a
// replace directive and no version, go get still asks the proxy).
func TestNewcomerFirstProgramFromAClone(t *testing.T) {
	gobin := goCommand(t)
	repo, err := filepath.Abs(".")
	require.NoError(t, err)
	var shell []string
	var program, module mdBlock
	for _, b := range mdBlocks(t, "README.md") {
		switch {
		case b.lang == "sh" && (strings.Contains(b.code, "go mod init hello") || strings.Contains(b.code, "-replace")):
			shell = append(shell, b.code)
		case b.lang == "go" && program.code == "" && strings.HasPrefix(b.code, "package main"):
			program = b
		case b.lang == "python" && pythonFileName(b) == "my_module.py":
			module = b
		}
	}
	require.Len(t, shell, 2, "README.md: the new module's commands, and a clone's")
	require.NotEmpty(t, program.code, "README.md: the first program")
	require.NotEmpty(t, module.code, "README.md: my_module.py")
	// The clone's commands replace the download.
	script := strings.Replace(shell[0], "go get github.com/pypool/pypool\n", shell[1], 1)
	require.NotEqual(t, shell[0], script)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := filepath.Join(t.TempDir(), "new comer")
	require.NoError(t, os.Mkdir(base, 0o755))
	require.NoError(t, os.Symlink(repo, filepath.Join(base, "pypool")))
	// The go commands with the test's environment, without the network
	// (no proxy, no checksum database: the modules come from the module
	// cache, which the repository's go.sum verified when they were
	// downloaded; a fresh machine has no cached answer of sum.golang.org);
	// the program as a service often runs: no HOME.
	goEnv := append(os.Environ(), "GOFLAGS=", "GOPROXY=off", "GOSUMDB=off")
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "HOME" && k != "XDG_CACHE_HOME" && k != "TMPDIR" {
			env = append(env, kv)
		}
	}
	env = append(env, "TMPDIR="+t.TempDir())
	sh := exec.CommandContext(ctx, "sh", "-e", "-c", "PATH=\"$(dirname \"$0\"):$PATH\"\n"+script, gobin)
	sh.Dir, sh.Env = base, goEnv
	out, err := sh.CombinedOutput()
	require.NoError(t, err, "%s\n%s", script, out)

	hello := filepath.Join(base, "hello")
	require.NoError(t, os.WriteFile(filepath.Join(hello, "my_module.py"), []byte(module.code), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(hello, "main.go"), []byte(program.code), 0o644))
	bin := filepath.Join(base, "hello bin")
	build := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", bin, ".")
	build.Dir, build.Env = hello, goEnv
	out, err = build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	paths := map[string]string{"python3 of PATH": os.Getenv("PATH")}
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		paths["/usr/bin/python3"] = "/usr/bin:" + os.Getenv("PATH")
	}
	for name, path := range paths {
		run := exec.CommandContext(ctx, bin)
		run.Dir, run.Env = hello, append(env, "PATH="+path) // the last PATH counts
		out, err := run.CombinedOutput()
		require.NoError(t, err, "%s: %s", name, out)
		assert.Equal(t, "testingtesting\n", string(out), name)
	}
}

// TestNewcomerModuleFileName: Config.Module "my_module.py" (the file, not
// the module) failed with Python's "No module named 'my_module.py';
// 'my_module' is not a package", which does not say what to write.
func TestNewcomerModuleFileName(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module = "pypool_testmod.py"
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	assert.Contains(t, pyErr.Hint, `Config.Module names a module, not its file: write 'pypool_testmod'`)
}

// TestNewcomerPythonPathFile: Config.PythonPath naming the module's file
// ("testdata/pymod/pypool_testmod.py") instead of its directory failed with
// "No module named 'pypool_testmod'" and, from the directory of the file,
// the hint to list the working directory in Config.PythonPath, which the
// reader believes done.
func TestNewcomerPythonPathFile(t *testing.T) {
	cfg := testConfig(t)
	cfg.PythonPath = []string{"testdata/pymod/pypool_testmod.py"}
	_, err := New(testCtx(t), cfg)
	var pyErr *PythonError
	require.ErrorAs(t, err, &pyErr)
	abs, err := filepath.Abs("testdata/pymod")
	require.NoError(t, err)
	assert.Contains(t, pyErr.Hint, "Config.PythonPath lists directories, not files: '"+abs+"/pypool_testmod.py'; list '"+abs+"'")
}

// TestNewcomerRelativeHome: with HOME a relative path (a unit's
// Environment=HOME=app, an image's ENV HOME=app), the install went to
// <working directory>/app/.cache/pypool: into whatever directory the
// service was started in (/ for many). A relative home is no user cache
// directory: the temp directory's is used, and the record says why.
func TestNewcomerRelativeHome(t *testing.T) {
	bin, err := exampleBinary()
	require.NoError(t, err, "building examples/duplicate")
	wd, tmp := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = wd
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "HOME" && k != "XDG_CACHE_HOME" && k != "TMPDIR" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME=app", "TMPDIR="+tmp)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "testingtesting\n")
	assert.Contains(t, string(out), "INFO "+msgInstallFallback)
	assert.Contains(t, string(out), "is relative: HOME is not an absolute path")
	entries, err := os.ReadDir(wd)
	require.NoError(t, err)
	assert.Empty(t, entries, "the working directory")
	installed(t, tmp, "runtime-*")
}
