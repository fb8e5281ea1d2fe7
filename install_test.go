package pypool

import (
	"embed"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

//go:embed all:testdata/embedded
var embeddedPython embed.FS

// otherUID is a uid no test runs as: files chowned to it stand for files
// another user planted.
const otherUID = 12345

// embeddedConfig is a pool of the embedded test package, installed in a
// directory of the test's own.
func embeddedConfig(t *testing.T) Config {
	return Config{
		Module:       "embpkg",
		PythonFS:     embeddedPython,
		PythonFSRoot: "testdata/embedded",
		InstallDir:   filepath.Join(t.TempDir(), "install"),
		Size:         1,
		Logger:       testLogger(t),
	}
}

// TestPythonFSPackageWithSubpackagesAndData: an embedded package is
// importable with its subpackages, and its data files are readable both
// relative to __file__ and through importlib.resources; the files are
// written under InstallDir, readable by other users.
func TestPythonFSPackageWithSubpackagesAndData(t *testing.T) {
	cfg := embeddedConfig(t)
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	words := []any{"alpha", "beta", "gamma"}
	for _, fn := range []string{"words_by_file", "words_by_resources"} {
		got, err := pool.Call(ctx, fn)
		require.NoError(t, err, fn)
		assert.Equal(t, words, got, fn)
	}
	got, err := pool.Call(ctx, "deep_name")
	require.NoError(t, err)
	assert.Equal(t, "embpkg.sub.deep", got)

	file, err := CallAs[string](ctx, pool, "where")
	require.NoError(t, err)
	base, err := filepath.EvalSymlinks(cfg.InstallDir)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(file, filepath.Join(base, "python-")), "imported from the install: %s", file)
	tree := filepath.Dir(filepath.Dir(file))
	require.NoError(t, filepath.WalkDir(tree, func(name string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		want := fs.FileMode(0o644)
		if d.IsDir() {
			want = 0o755 | fs.ModeDir
		}
		if filepath.Base(filepath.Dir(name)) != "__pycache__" { // Python's own, with its source's mode
			assert.Equal(t, want, info.Mode(), name)
		}
		return nil
	}))
}

// TestPythonFSContentChangeIsANewTree: other content is another directory;
// the same content started by two pools at once is one.
func TestPythonFSContentChangeIsANewTree(t *testing.T) {
	install := filepath.Join(t.TempDir(), "install")
	config := func(version string) Config {
		return Config{
			Module:     "versioned",
			PythonFS:   fstest.MapFS{"versioned.py": {Data: []byte("def version():\n    return " + version + "\n")}},
			InstallDir: install,
			Size:       1,
			Logger:     testLogger(t),
		}
	}
	var wg sync.WaitGroup
	pools := make([]*Pool, 2)
	for i := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pools[i] = newTestPool(t, config("1"))
		}()
	}
	wg.Wait()
	changed := newTestPool(t, config("2"))
	ctx := testCtx(t)
	for i, want := range map[*Pool]int64{pools[0]: 1, pools[1]: 1, changed: 2} {
		got, err := i.Call(ctx, "version")
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	trees, err := filepath.Glob(filepath.Join(install, "python-*"))
	require.NoError(t, err)
	assert.Len(t, trees, 2, "one tree per content: %v", trees)
}

// TestSeveralModules: Config.Modules exposes more modules as
// "module.function"; a plain name is Module's; private names, modules not
// configured and attributes beyond a function are refused; Ping and SetUp
// keep working.
func TestSeveralModules(t *testing.T) {
	cfg := embeddedConfig(t)
	cfg.Modules = []string{"embpkg.sub.deep", "pypool_testmod"}
	cfg.PythonPath = []string{"testdata/pymod"}
	cfg.SetUp = "words_by_file"
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	for fn, want := range map[string]any{
		"embpkg.sub.deep.where":         "embpkg.sub.deep",
		"pypool_testmod.duplicate_text": "abab",
		"embpkg.deep_name":              "embpkg.sub.deep",
		"deep_name":                     "embpkg.sub.deep", // plain: Module's
	} {
		args := []any{}
		if strings.HasSuffix(fn, "duplicate_text") {
			args = append(args, "ab")
		}
		got, err := pool.Call(ctx, fn, args...)
		require.NoError(t, err, fn)
		assert.Equal(t, want, got, fn)
	}
	for fn, message := range map[string]string{
		"duplicate_text":                 "embpkg has no public function 'duplicate_text'",
		"os.system":                      "'os' is not a configured module",
		"embpkg.sub.where":               "'embpkg.sub' is not a configured module",
		"embpkg._private":                "is private",
		"pypool_testmod._private":        "is private",
		"embpkg.sub.deep.where.__code__": "is private",
		"embpkg.os.path":                 "'embpkg.os' is not a configured module",
	} {
		_, err := pool.Call(ctx, fn)
		require.ErrorIs(t, err, ErrFunctionNotFound, fn)
		assert.Contains(t, err.Error(), message, fn)
	}
	require.NoError(t, pool.Ping(ctx))
}

// TestSeveralModulesImportFailureNamesTheModule: a configured module that
// does not import is a start failure that says which.
func TestSeveralModulesImportFailureNamesTheModule(t *testing.T) {
	for _, bad := range []string{"pypool_broken", "pypool_no_such_module"} {
		cfg := testConfig(t)
		cfg.Modules = []string{bad}
		_, err := New(testCtx(t), cfg)
		require.ErrorIs(t, err, ErrWorkerStart)
		assert.Contains(t, err.Error(), "module '"+bad+"'")
	}
}

// TestPythonFSErrors: a missing root, an empty FS and a root without an FS
// are errors that name the field.
func TestPythonFSErrors(t *testing.T) {
	for _, c := range []struct {
		fsys    fs.FS
		root    string
		message string
	}{
		{embeddedPython, "testdata/nowhere", `Config.PythonFSRoot "testdata/nowhere"`},
		{embeddedPython, "testdata/embedded/embpkg/__init__.py", "not a directory"},
		{fstest.MapFS{}, "", "no files"},
		{nil, "python", "Config.PythonFS is nil"},
	} {
		cfg := testConfig(t)
		cfg.PythonFS, cfg.PythonFSRoot, cfg.InstallDir = c.fsys, c.root, t.TempDir()
		_, err := New(testCtx(t), cfg)
		require.Error(t, err, c.root)
		assert.Contains(t, err.Error(), c.message)
	}
}

// TestModulesValidation: module names are checked and listed once.
func TestModulesValidation(t *testing.T) {
	for _, c := range []struct {
		module  string
		modules []string
		message string
	}{
		{"", nil, "Config.Module is empty"},
		{"a", []string{"a"}, "listed twice"},
		{"a", []string{"b.c", "os.system()"}, "Config.Modules[1]"},
		{"", []string{"b", ""}, "Config.Modules[1]"},
	} {
		_, err := Config{Module: c.module, Modules: c.modules}.withDefaults()
		require.Error(t, err, c)
		assert.Contains(t, err.Error(), c.message)
	}
	cfg, err := Config{Modules: []string{"b", "c"}}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, []string{"b", "c"}, cfg.modules(), "without Module, plain names are Modules[0]'s")
}

// TestInstallBaseRefusedWhenOthersCanWrite: Config.InstallDir (or any of
// its parents) owned by another user or writable by others is refused; a
// sticky world-writable parent (like /tmp) is accepted.
func TestInstallBaseRefusedWhenOthersCanWrite(t *testing.T) {
	setUp := map[string]func(root string) (string, error){
		"owned by another user": func(root string) (string, error) {
			dir := filepath.Join(root, "install")
			if err := os.Mkdir(dir, 0o755); err != nil {
				return "", err
			}
			return dir, os.Chown(dir, otherUID, otherUID)
		},
		"group-writable": func(root string) (string, error) {
			dir := filepath.Join(root, "install")
			if err := os.Mkdir(dir, 0o755); err != nil {
				return "", err
			}
			return dir, os.Chmod(dir, 0o775)
		},
		"parent world-writable, not sticky": func(root string) (string, error) {
			return filepath.Join(root, "shared", "install"), mkdirMode(filepath.Join(root, "shared"), 0o777)
		},
		"parent of another user": func(root string) (string, error) {
			parent := filepath.Join(root, "theirs")
			if err := os.Mkdir(parent, 0o755); err != nil {
				return "", err
			}
			if err := os.Mkdir(filepath.Join(parent, "install"), 0o755); err != nil {
				return "", err
			}
			return filepath.Join(parent, "install"), os.Chown(parent, otherUID, otherUID)
		},
		"symlink to a directory of another user": func(root string) (string, error) {
			target := filepath.Join(root, "target")
			if err := os.Mkdir(target, 0o755); err != nil {
				return "", err
			}
			link := filepath.Join(root, "link")
			if err := os.Symlink(target, link); err != nil {
				return "", err
			}
			return link, os.Chown(target, otherUID, otherUID)
		},
	}
	for name, prepare := range setUp {
		t.Run(name, func(t *testing.T) {
			dir, err := prepare(t.TempDir())
			require.NoError(t, skipIfNotPermitted(t, err))
			cfg := testConfig(t)
			cfg.InstallDir = dir
			_, err = New(testCtx(t), cfg)
			require.ErrorIs(t, err, ErrUnsafeInstallDir)
			assert.Contains(t, err.Error(), "Config.InstallDir")
			entries, _ := os.ReadDir(dir)
			assert.Empty(t, entries, "nothing is written there")
		})
	}
	t.Run("sticky world-writable parent", func(t *testing.T) {
		shared := filepath.Join(t.TempDir(), "shared")
		require.NoError(t, mkdirMode(shared, 0o777|fs.ModeSticky))
		cfg := testConfig(t)
		cfg.InstallDir = filepath.Join(shared, "mine")
		pool := newTestPool(t, cfg)
		require.NoError(t, pool.Ping(testCtx(t)))
	})
}

// skipIfNotPermitted skips the test when err says this process may not do
// what simulates another user (chown needs root), else returns err.
func skipIfNotPermitted(t *testing.T, err error) error {
	if errors.Is(err, os.ErrPermission) {
		t.Skipf("cannot simulate another user's file without root: %v", err)
	}
	return err
}

// mkdirMode creates dir with exactly mode.
func mkdirMode(dir string, mode fs.FileMode) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// TestInstallNoticesAReplacedTree: a tree this process installed that was
// since removed (or replaced) is verified or written again at the next New.
func TestInstallNoticesAReplacedTree(t *testing.T) {
	cfg := embeddedConfig(t)
	first := newTestPool(t, cfg)
	file, err := CallAs[string](testCtx(t), first, "where")
	require.NoError(t, err)
	tree := filepath.Dir(filepath.Dir(file))
	require.NoError(t, os.RemoveAll(tree))
	second := newTestPool(t, cfg)
	again, err := CallAs[string](testCtx(t), second, "where")
	require.NoError(t, err)
	assert.Equal(t, file, again)
	assert.FileExists(t, again)
}

// TestRuntimeTreeReadInPlace: naming the embedded runtime by its content,
// which a fresh process does in its first New, reads it through one small
// buffer: before, it copied every file (embed's ReadFile) and allocated
// more than the runtime's size, memory that a fresh process touches for
// the first time (a page fault per 4 KiB: 10–30 µs each on a VM).
func TestRuntimeTreeReadInPlace(t *testing.T) {
	names, err := fs.Glob(runtimeFiles, "python/pypool_runtime/*.py")
	require.NoError(t, err)
	var size int64
	for _, name := range names {
		info, err := fs.Stat(runtimeFiles, name)
		require.NoError(t, err)
		size += info.Size()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = loadRuntimeTree()
	runtime.ReadMemStats(&after)
	require.NoError(t, err)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("the runtime: %d files, %d bytes; naming it allocated %d bytes", len(names), size, allocated)
	assert.Less(t, allocated, uint64(size/4))
}
