package install

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
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

// embeddedFiles is a small tree held as the runtime is: an embed.FS.
//
//go:embed all:testdata/embedded
var embeddedFiles embed.FS

// oldDirName is a tree's directory name as pypool computed it from copies
// of its files until FromEmbed: the SHA-256 of each name, length and
// content, in name order.
func oldDirName(kind string, files map[string][]byte) string {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(files[name]))
		h.Write(files[name])
	}
	return kind + "-" + hex.EncodeToString(h.Sum(nil))[:32]
}

// TestFromEmbedReadsInPlace: a tree of an embed.FS (FromEmbed, and FromFS
// given one, with a root) has the name its copies had (the directories
// that earlier versions wrote are used, not rewritten), installs and
// verifies, and a damaged copy of it is still seen and rewritten.
func TestFromEmbedReadsInPlace(t *testing.T) {
	copies := map[string][]byte{}
	paths := map[string]string{}
	for _, name := range []string{"pkg/__init__.py", "pkg/data.txt"} {
		data, err := embeddedFiles.ReadFile("testdata/embedded/" + name)
		require.NoError(t, err)
		copies[name], paths[name] = data, "testdata/embedded/"+name
	}
	tr, err := FromEmbed("python", embeddedFiles, paths)
	require.NoError(t, err)
	assert.Equal(t, oldDirName("python", copies), tr.dirName())
	assert.Equal(t, NewTree("python", copies).dirName(), tr.dirName())
	viaFS, err := FromFS("python", embeddedFiles, "testdata/embedded")
	require.NoError(t, err)
	assert.Equal(t, tr.dirName(), viaFS.dirName())

	base := t.TempDir()
	dir := materialiseOnce(t, base, viaFS)
	require.NoError(t, verifyTree(dir, tr))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pkg/__init__.py"), []byte("X = 2\n"), 0o644))
	require.ErrorContains(t, verifyTree(dir, tr), "differs from the copy in the Go binary")
	again := materialiseOnce(t, base, tr)
	require.NoError(t, verifyTree(again, tr), "rewritten")
	got, err := os.ReadFile(filepath.Join(again, "pkg/__init__.py"))
	require.NoError(t, err)
	assert.Equal(t, "X = 1\n", string(got))
}

// bytesAllocated is how many bytes of heap f allocates.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestVerifyReadsThroughSmallBuffers: checking an installed tree reads its
// files through two 32 KiB buffers, whatever their size (before, it read
// each file whole, as large as the tree: in a fresh process every 4 KiB of
// it a page fault); a byte changed past the first buffer is still seen.
func TestVerifyReadsThroughSmallBuffers(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	tr := NewTree("python", map[string][]byte{"big.bin": big, "pkg/__init__.py": []byte("X = 1\n")})
	base := t.TempDir()
	dir := materialiseOnce(t, base, tr)
	var err error
	allocated := bytesAllocated(func() { err = verifyTree(dir, tr) })
	require.NoError(t, err)
	t.Logf("verifying a 1 MiB tree allocated %d bytes", allocated)
	assert.Less(t, allocated, uint64(len(big)/8), "bytes allocated to verify a 1 MiB tree")

	changed := bytes.Clone(big)
	changed[3*copyBuffer+5] ^= 1
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big.bin"), changed, 0o644))
	require.ErrorContains(t, verifyTree(dir, tr), "big.bin differs from the copy in the Go binary")
	again := materialiseOnce(t, base, tr)
	got, err := os.ReadFile(filepath.Join(again, "big.bin"))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(big, got), "rewritten through the buffer whole")
}

// concurrentChildEnv makes TestInstallConcurrentProcesses, in the test
// binary it starts, install testTree and a 1 MiB file in the base it names.
const concurrentChildEnv = "PYPOOL_TEST_INSTALL_BASE"

// bigTree is a tree with a file larger than the copy buffers.
func bigTree() *Tree {
	return NewTree("python", map[string][]byte{
		"pkg/__init__.py": []byte("X = 1\n"),
		"pkg/big.bin":     bytes.Repeat([]byte("0123456789abcdef"), 1<<16),
	})
}

// TestInstallConcurrentProcesses: processes that start at once on an
// empty base (and one with a truncated copy of the tree) each get the
// one verified directory, and leave nothing else behind.
func TestInstallConcurrentProcesses(t *testing.T) {
	if base := os.Getenv(concurrentChildEnv); base != "" {
		dir, err := Install(base, bigTree())
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(dir)
		return
	}
	for _, damaged := range []bool{false, true} {
		t.Run(fmt.Sprintf("damaged=%v", damaged), func(t *testing.T) {
			base, tr := t.TempDir(), bigTree()
			if damaged {
				dir := materialiseOnce(t, base, tr)
				require.NoError(t, os.Truncate(filepath.Join(dir, "pkg/big.bin"), 100))
			}
			const processes = 6
			outs, errs := make([][]byte, processes), make([]error, processes)
			var wg sync.WaitGroup
			for i := range processes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cmd := exec.Command(os.Args[0], "-test.run=^TestInstallConcurrentProcesses$")
					cmd.Env = append(os.Environ(), concurrentChildEnv+"="+base)
					outs[i], errs[i] = cmd.CombinedOutput()
				}()
			}
			wg.Wait()
			want := filepath.Join(base, tr.dirName())
			for i := range processes {
				require.NoError(t, errs[i], "%s", outs[i])
				assert.Equal(t, want, strings.SplitN(string(outs[i]), "\n", 2)[0])
			}
			require.NoError(t, verifyTree(want, tr))
			entries, err := os.ReadDir(base)
			require.NoError(t, err)
			assert.Len(t, entries, 1, "only the tree: %v", entries)
		})
	}
}
