package pypool

// audit_newcomer_test.go: a newcomer deploying a service from README.md and
// docs/ alone. Each test runs what the documentation says, as written, in
// the conditions a real deployment meets (a directory whose path has
// spaces, another interpreter, no HOME, workers as another user), and checks
// that it works, or that its error names the cause and the fix.

import (
	"os"
	"path/filepath"
	"testing"

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
	cfg.PythonPath = []string{closed, filepath.Join(closed, "..", "does not exist")}
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
