package install

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// otherUID is a uid no test runs as: files chowned to it stand for files
// another user planted.
const otherUID = 12345

// testTree is a small tree to install.
func testTree() *Tree {
	return NewTree("python", map[string][]byte{"pkg/__init__.py": []byte("X = 1\n"), "pkg/data.txt": []byte("data\n")})
}

// materialiseOnce installs t in base and releases the process's hold.
func materialiseOnce(t *testing.T, base string, tr *Tree) string {
	dir, lock, err := materialise(base, tr)
	require.NoError(t, err)
	require.NoError(t, lock.Close())
	return dir
}

// TestInstallRewritesBadTrees: an existing tree is used only if it is
// exactly what the binary holds, as this user wrote it; otherwise it is
// replaced by a fresh copy.
func TestInstallRewritesBadTrees(t *testing.T) {
	damage := map[string]func(dir string) error{
		"truncated": func(dir string) error { return os.Truncate(filepath.Join(dir, "pkg/__init__.py"), 2) },
		"same size, other bytes": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "pkg/__init__.py"), []byte("X = 2\n"), 0o644)
		},
		"missing file":         func(dir string) error { return os.Remove(filepath.Join(dir, "pkg/data.txt")) },
		"extra module":         func(dir string) error { return os.WriteFile(filepath.Join(dir, "pkg/evil.py"), nil, 0o644) },
		"symlink":              func(dir string) error { return os.Symlink("/etc/passwd", filepath.Join(dir, "pkg/link.txt")) },
		"file of another user": func(dir string) error { return os.Chown(filepath.Join(dir, "pkg/data.txt"), otherUID, otherUID) },
		"pyc of another user": func(dir string) error {
			pyc := filepath.Join(dir, "pkg/__pycache__/__init__.cpython-311.pyc")
			if err := os.WriteFile(pyc, []byte("planted"), 0o644); err != nil {
				return err
			}
			return os.Chown(pyc, otherUID, otherUID)
		},
		"group-writable pyc": func(dir string) error {
			pyc := filepath.Join(dir, "pkg/__pycache__/__init__.cpython-311.pyc")
			if err := os.WriteFile(pyc, []byte("planted"), 0o644); err != nil {
				return err
			}
			return os.Chmod(pyc, 0o664)
		},
		"world-writable directory": func(dir string) error { return os.Chmod(filepath.Join(dir, "pkg"), 0o777) },
		"file in __pycache__ that is no bytecode": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "pkg/__pycache__/evil.py"), nil, 0o644)
		},
		"tree replaced by a symlink": func(dir string) error {
			copied := dir + "-copy"
			if err := os.Rename(dir, copied); err != nil {
				return err
			}
			return os.Symlink(copied, dir)
		},
	}
	tr := testTree()
	for name, harm := range damage {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			dir := materialiseOnce(t, base, tr)
			require.NoError(t, skipIfNotPermitted(t, harm(dir)))
			if lock, err := lockTree(dir); err == nil {
				require.Error(t, verifyTree(dir, tr), "the damage is seen")
				lock.Close()
			}
			again := materialiseOnce(t, base, tr)
			info, err := os.Lstat(again)
			require.NoError(t, err)
			assert.True(t, info.IsDir(), "a real directory")
			assert.Equal(t, dir, again)
			require.NoError(t, verifyTree(again, tr), "rewritten")
		})
	}
	t.Run("Python's own bytecode is kept", func(t *testing.T) {
		base := t.TempDir()
		dir := materialiseOnce(t, base, tr)
		pyc := filepath.Join(dir, "pkg/__pycache__/__init__.cpython-311.pyc")
		require.NoError(t, os.WriteFile(pyc, []byte("compiled"), 0o644))
		materialiseOnce(t, base, tr)
		_, err := os.Stat(pyc)
		assert.NoError(t, err, "a pyc this user wrote survives: workers need not recompile")
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

// TestInstallSweepsTreesNoProcessHolds: installing a tree removes the trees
// of its kind no process holds (a flock), and keeps those one holds.
func TestInstallSweepsTreesNoProcessHolds(t *testing.T) {
	base := t.TempDir()
	old := NewTree("python", map[string][]byte{"old.py": []byte("")})
	held := NewTree("python", map[string][]byte{"held.py": []byte("")})
	runtimeTree := NewTree("runtime", map[string][]byte{"r.py": []byte("")})
	oldDir := materialiseOnce(t, base, old)
	runtimeDir := materialiseOnce(t, base, runtimeTree)
	heldDir, lock, err := materialise(base, held)
	require.NoError(t, err)
	defer lock.Close() // another process's hold: flocks belong to open files
	current := testTree()
	dir, lock2, err := materialise(base, current)
	require.NoError(t, err)
	defer lock2.Close()
	sweep(base, current)
	assert.NoDirExists(t, oldDir, "not held: removed")
	assert.DirExists(t, heldDir, "held: kept")
	assert.DirExists(t, runtimeDir, "another kind: not this sweep's")
	assert.DirExists(t, dir)
}

// TestInstallDefaultBaseIsPerUser: without a cache directory the base is
// pypool-<uid> in the temp directory, created 0755; one owned by another
// user there is refused, not used.
func TestInstallDefaultBaseIsPerUser(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	base, _, err := installBase("")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(tmp, "pypool-"+strconv.Itoa(os.Geteuid())), base)
	info, err := os.Stat(base)
	require.NoError(t, err)
	assert.Equal(t, 0o755|fs.ModeDir, info.Mode())

	require.NoError(t, skipIfNotPermitted(t, os.Chown(base, otherUID, otherUID)))
	_, _, err = installBase("")
	require.ErrorIs(t, err, ErrUnsafeDir)
	assert.Contains(t, err.Error(), "owned by uid 12345")
	assert.Contains(t, err.Error(), "Config.InstallDir")
}

// runtimeTree is the Python runtime the root package embeds, read from the
// repository, as the root names its files.
func runtimeTree() (*Tree, error) {
	names, err := filepath.Glob("../../python/pypool_runtime/*.py")
	if err != nil {
		return nil, err
	}
	files := make(map[string][]byte, len(names))
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		files["pypool_runtime/"+filepath.Base(name)] = data
	}
	return NewTree("runtime", files), nil
}

// BenchmarkVerifyRuntime is what each process pays once per install base to
// check the installed runtime: read and compare its files.
func BenchmarkVerifyRuntime(b *testing.B) {
	tr, err := runtimeTree()
	require.NoError(b, err)
	base := b.TempDir()
	dir, lock, err := materialise(base, tr)
	require.NoError(b, err)
	defer lock.Close()
	b.ResetTimer()
	for range b.N {
		if err := verifyTree(dir, tr); err != nil {
			b.Fatal(err)
		}
	}
}

// TestInstallConcurrentWriters: writers racing for the same tree (as
// processes would: materialise takes no in-process lock, and flocks belong
// to open files) all get the one verified directory, and leave nothing
// else behind.
func TestInstallConcurrentWriters(t *testing.T) {
	base, tr := t.TempDir(), testTree()
	const writers = 8
	dirs, errs := make([]string, writers), make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lock *os.File
			dirs[i], lock, errs[i] = materialise(base, tr)
			if lock != nil {
				defer lock.Close()
			}
		}()
	}
	wg.Wait()
	for i := range writers {
		require.NoError(t, errs[i])
		assert.Equal(t, filepath.Join(base, tr.dirName()), dirs[i])
	}
	require.NoError(t, verifyTree(dirs[0], tr))
	entries, err := os.ReadDir(base)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "only the tree: %v", entries)
}
