// Package install materialises files that live in the Go binary (the Python
// runtime, Config.PythonFS) as directories the workers import from, so that
// what the workers run is exactly what the binary holds:
//
//   - The install base (Config.InstallDir, else the user cache directory,
//     else a per-user directory in the temp directory) is resolved to a
//     path without symlinks, and every component of it is checked: owned by
//     root or by this process's user, and writable by no one else unless it
//     is a sticky directory (such as /tmp); the base itself must be owned by
//     this user and not writable by group or others. The part of the path
//     that exists is checked before anything is created: nothing is ever
//     created in a directory of another user (a HOME that is not this
//     user's). A user cache directory that is missing, unsafe or not
//     writable is not used: the temp directory's is, and Install records
//     why once (TakeFallback). Config.InstallDir never falls back.
//   - Each tree is named by the SHA-256 of its files (content-addressed),
//     so processes of the same content share it. An existing tree is used
//     only once every file in it has been compared with the binary's copy,
//     every entry is owned by this user, writable by no one else and not a
//     symlink, and it holds nothing else (but Python's __pycache__
//     directories, under the same ownership rules). Otherwise it is moved
//     aside and written again.
//   - A tree is written in a temporary directory beside its final name and
//     renamed into place: no process ever sees half of one.
//   - A process holds a shared flock on each tree it uses for its life;
//     trees of the same kind that no live process holds are removed when a
//     process installs another one.
package install

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tree is a set of files to materialise: slash-separated relative paths and
// their contents, which are read from where they are (the map NewTree was
// given, or the binary's embedded files) each time they are hashed,
// compared or written: a Tree holds no copy of them.
type Tree struct {
	kind  string           // the directory name's prefix: "runtime" or "python"
	names []string         // the files, sorted
	sizes map[string]int64 // each file's length
	open  func(name string) (io.ReadCloser, error)
	hash  string // hex SHA-256 of the names and contents
}

// NewTree names files by their content; kind is the prefix of the tree's
// directory name ("runtime" or "python"), which a sweep goes by. files must
// not change while the tree is used.
func NewTree(kind string, files map[string][]byte) *Tree {
	sizes := make(map[string]int64, len(files))
	for name, data := range files {
		sizes[name] = int64(len(data))
	}
	t, err := newTree(kind, sizes, func(name string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files[name])), nil
	})
	if err != nil {
		panic(err) // a map's contents read as their lengths say
	}
	return t
}

// FromEmbed is the tree of fsys's files named in files (the tree's name →
// its path in fsys), read in place: hashing, comparing and writing it copy
// the binary's embedded bytes through one small buffer, never into a copy
// of the whole tree (in a fresh process, memory touched for the first time
// costs a page fault per 4 KiB, 10–30 µs each on a VM).
func FromEmbed(kind string, fsys embed.FS, files map[string]string) (*Tree, error) {
	sizes := make(map[string]int64, len(files))
	for name, file := range files {
		info, err := fs.Stat(fsys, file)
		if err != nil {
			return nil, err
		}
		sizes[name] = info.Size()
	}
	return newTree(kind, sizes, func(name string) (io.ReadCloser, error) {
		file, ok := files[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return fsys.Open(file)
	})
}

// newTree is the tree of the files of sizes, whose contents open reads.
func newTree(kind string, sizes map[string]int64, open func(string) (io.ReadCloser, error)) (*Tree, error) {
	t := &Tree{kind: kind, sizes: sizes, open: open}
	for name := range sizes {
		t.names = append(t.names, name)
	}
	sort.Strings(t.names)
	h := sha256.New()
	buf := make([]byte, copyBuffer)
	for _, name := range t.names {
		fmt.Fprintf(h, "%s\x00%d\x00", name, sizes[name])
		r, err := open(name)
		if err != nil {
			return nil, err
		}
		n, err := io.CopyBuffer(onlyWriter{h}, onlyReader{r}, buf)
		r.Close()
		if err == nil && n != sizes[name] {
			err = fmt.Errorf("%s: read %d bytes instead of %d", name, n, sizes[name])
		}
		if err != nil {
			return nil, err
		}
	}
	t.hash = hex.EncodeToString(h.Sum(nil))[:32]
	return t, nil
}

// dirName is the tree's directory name inside the install base.
func (t *Tree) dirName() string { return t.kind + "-" + t.hash }

// copyBuffer is the size of the buffers the tree's contents go through.
const copyBuffer = 32 << 10

// onlyReader and onlyWriter hide ReadFrom and WriteTo, so that
// io.CopyBuffer uses the buffer it is given rather than one of its own.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// FromFS reads every regular file of fsys under root, but Python's
// bytecode caches (__pycache__ directories, .pyc files), as a tree of kind:
// an embed.FS in place (FromEmbed), another fs.FS as a copy taken now.
func FromFS(kind string, fsys fs.FS, root string) (*Tree, error) {
	embedded, isEmbed := fsys.(embed.FS)
	top := "."
	if root != "" {
		info, err := fs.Stat(fsys, path.Clean(root))
		if err == nil && !info.IsDir() {
			err = errNotTree
		}
		if err != nil {
			return nil, fmt.Errorf("Config.PythonFSRoot %q: %w", root, err)
		}
		top = path.Clean(root)
		if fsys, err = fs.Sub(fsys, top); err != nil {
			return nil, err
		}
	}
	files := make(map[string][]byte)
	paths := make(map[string]string) // of an embed.FS, read in place

	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "__pycache__" {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".pyc") {
			return nil
		}
		if isEmbed {
			paths[name] = path.Join(top, name)
			return nil
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		files[name] = data
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 && len(paths) == 0 {
		return nil, fmt.Errorf("no files under %q (Config.PythonFSRoot)", cmp.Or(root, "."))
	}
	if isEmbed {
		return FromEmbed(kind, embedded, paths)
	}
	return NewTree(kind, files), nil
}

// installs remembers, for the life of the process, the trees it verified or
// wrote and holds (their flocks), by base and content.
var installs = struct {
	sync.Mutex
	dirs  map[string]string   // base + "\x00" + dirName → tree directory
	locks map[string]*os.File // the same key → the tree's flock, held until exit
	bases map[string]string   // Config.InstallDir → the checked base

	fallback *Fallback // why the default base is the temp directory's, until TakeFallback takes it
}{dirs: map[string]string{}, locks: map[string]*os.File{}, bases: map[string]string{}}

// Fallback says why the default install base, the user cache directory's
// pypool, was not used, and which base was used instead.
type Fallback struct {
	Wanted string // the user cache directory's pypool; "" when there is no user cache directory
	Used   string // the base used instead: pypool-<uid> in the temp directory
	Reason string // why Wanted was not used
	// Unsafe is set when Wanted, or a directory above it, could be written
	// by another user (a HOME of another user, say): nothing was created
	// there. Otherwise there is no user cache directory, or it cannot be
	// written.
	Unsafe bool
}

// TakeFallback returns the Fallback that the choice of the default install
// base made, once per process: the caller logs it. It returns false when
// the default base is the user cache directory's, when no default base was
// chosen yet, and after the first call that returned it.
func TakeFallback() (Fallback, bool) {
	installs.Lock()
	defer installs.Unlock()
	f := installs.fallback
	if f == nil {
		return Fallback{}, false
	}
	installs.fallback = nil
	return *f, true
}

// Install returns the directory that holds t, under the base chosen for
// configured (Config.InstallDir), verifying or writing it once per process.
func Install(configured string, t *Tree) (string, error) {
	dir, _, err := Check(configured, t)
	return dir, err
}

// Check is Install, and also reports whether this call checked the
// directory (verified or wrote it: the first call of the process for t
// and this base, or one that found it replaced) rather than using the
// one the process holds already.
func Check(configured string, t *Tree) (dir string, checked bool, err error) {
	installs.Lock()
	defer installs.Unlock()
	base, ok := installs.bases[configured]
	if !ok {
		var err error
		var fallback *Fallback
		if base, fallback, err = installBase(configured); err != nil {
			return "", false, err
		}
		installs.bases[configured] = base
		installs.fallback = fallback // once: the base is chosen once per process
	}
	key := base + "\x00" + t.dirName()
	if dir, ok := installs.dirs[key]; ok {
		if sameFile(installs.locks[key], dir) {
			return dir, false, nil
		}
		// Moved away or replaced since (by another process that found it
		// damaged): verify what is there now.
		installs.locks[key].Close()
		delete(installs.dirs, key)
	}
	dir, lock, err := materialise(base, t)
	if err != nil {
		return "", false, fmt.Errorf("pypool: installing the %s files in %s: %w", t.kind, base, err)
	}
	installs.dirs[key], installs.locks[key] = dir, lock
	sweep(base, t)
	return dir, true, nil
}

// ErrUnsafeDir is returned by Install when the install base could be
// written by another user: it, or one of its parents, is owned by someone
// else (root excepted) or writable by group or others (a sticky parent such
// as /tmp excepted). The root package exports it as ErrUnsafeDir.
var ErrUnsafeDir = errors.New("pypool: unsafe install directory")

// installBase chooses and checks the install base: configured when set
// (an error if it is unsafe or cannot be made, never a fallback), else the
// user cache directory's pypool, else (no user cache directory, or one that
// is unsafe or not writable) the temp directory's pypool-<uid>, with the
// Fallback that says why.
func installBase(configured string) (string, *Fallback, error) {
	if configured != "" {
		dir, err := filepath.Abs(configured)
		if err == nil {
			err = checkAncestors(dir)
		}
		if err == nil {
			err = makeDir(dir)
		}
		if err != nil {
			if isUnsafe(err) {
				return "", nil, fmt.Errorf("%w (Config.InstallDir): %v", ErrUnsafeDir, err)
			}
			return "", nil, fmt.Errorf("pypool: Config.InstallDir %q: %w", configured, err)
		}
		checked, err := checkBase(dir)
		if err != nil {
			return "", nil, fmt.Errorf("%w (Config.InstallDir): %v", ErrUnsafeDir, err)
		}
		return checked, nil, nil
	}
	var fallback Fallback
	if cache, err := os.UserCacheDir(); err != nil {
		fallback.Reason = "no user cache directory: " + err.Error()
	} else if !filepath.IsAbs(cache) { // a relative HOME names no place but the working directory
		fallback.Wanted = filepath.Join(cache, "pypool")
		fallback.Reason = fmt.Sprintf("%s is relative: HOME is not an absolute path", cache)
	} else {
		dir := filepath.Join(cache, "pypool")
		checked, err := usableBase(dir)
		if err == nil {
			return checked, nil, nil
		}
		fallback = Fallback{Wanted: dir, Reason: err.Error(), Unsafe: isUnsafe(err)}
	}
	dir := filepath.Join(os.TempDir(), "pypool-"+strconv.Itoa(os.Geteuid()))
	checked, err := usableBase(dir)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s; %s; set Config.InstallDir to a directory only this user can write", ErrUnsafeDir, fallback.Reason, err)
	}
	fallback.Used = checked
	return checked, &fallback, nil
}

// usableBase checks the part of dir that exists, creates the rest, checks
// dir and that this process can write in it (a read-only home cannot hold
// new installs).
func usableBase(dir string) (string, error) {
	if err := checkAncestors(dir); err != nil {
		return "", err
	}
	if err := makeDir(dir); err != nil {
		return "", err
	}
	checked, err := checkBase(dir)
	if err != nil {
		return "", err
	}
	probe, err := os.MkdirTemp(checked, ".probe-")
	if err != nil {
		return "", fmt.Errorf("%s is not writable: %w", checked, err)
	}
	_ = os.Remove(probe)
	return checked, nil
}

// unsafeError is a reason why a directory could be written by another
// user (checkParents, privateEntry).
type unsafeError struct{ reason string }

// Error is the reason.
func (e *unsafeError) Error() string { return e.reason }

// unsafef formats an unsafeError.
func unsafef(format string, args ...any) error {
	return &unsafeError{fmt.Sprintf(format, args...)}
}

// isUnsafe reports whether err says that a directory could be written by
// another user, rather than that it is missing or cannot be written.
func isUnsafe(err error) bool {
	var u *unsafeError
	return errors.As(err, &u)
}

// checkAncestors checks, before anything of dir is created, the deepest
// part of its path that exists (symlinks resolved) and every directory
// above it, as checkBase checks the parents of a base: so that no
// directory is created where another user could move it, such as in a
// HOME that is not this user's.
func checkAncestors(dir string) error {
	existing := dir
	for {
		_, err := os.Lstat(existing)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || existing == filepath.Dir(existing) {
			return err
		}
		existing = filepath.Dir(existing)
	}
	resolved, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return err
	}
	return checkParents(resolved, uint32(os.Geteuid()))
}

// makeDir creates dir (and its parents) unless it exists; dir itself gets
// mode 0755 whatever the umask.
func makeDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// checkBase resolves dir's symlinks and checks the result: dir owned by this
// user and writable by no one else; each parent owned by root or this user,
// and writable by others only when sticky. It returns the resolved path,
// which is what later uses must name.
func checkBase(dir string) (string, error) {
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	uid := uint32(os.Geteuid())
	info, err := os.Lstat(resolved)
	if err != nil {
		return "", err
	}
	if err := privateEntry(resolved, info, uid); err != nil {
		return "", err
	}
	if err := checkParents(filepath.Dir(resolved), uid); err != nil {
		return "", err
	}
	return resolved, nil
}

// checkParents checks dir, a path without symlinks, and every directory
// above it: a directory, owned by root or uid, and writable by group or
// others only when sticky.
func checkParents(dir string, uid uint32) error {
	for parent := dir; ; parent = filepath.Dir(parent) {
		info, err := os.Lstat(parent)
		if err != nil {
			return err
		}
		owner := ownerOf(info)
		switch {
		case !info.IsDir():
			return fmt.Errorf("%s is not a directory", parent)
		case owner != 0 && owner != uid:
			return unsafef("%s is owned by uid %d, neither root nor this user (uid %d)", parent, owner, uid)
		case info.Mode().Perm()&0o022 != 0 && info.Mode()&fs.ModeSticky == 0:
			return unsafef("%s is writable by group or others (mode %v) and not sticky", parent, info.Mode())
		}
		if parent == filepath.Dir(parent) {
			return nil
		}
	}
}

// privateEntry checks that an entry of an install is what this user wrote:
// not a symlink, owned by uid, writable by no one else.
func privateEntry(name string, info fs.FileInfo, uid uint32) error {
	switch owner := ownerOf(info); {
	case info.Mode()&fs.ModeSymlink != 0:
		return unsafef("%s is a symlink", name)
	case owner != uid:
		return unsafef("%s is owned by uid %d, not by this user (uid %d)", name, owner, uid)
	case info.Mode().Perm()&0o022 != 0:
		return unsafef("%s is writable by group or others (mode %v)", name, info.Mode())
	}
	return nil
}

// ownerOf returns the owner's uid of a file.
func ownerOf(info fs.FileInfo) uint32 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0)
}

// materialise returns t's directory in base, locked for this process: the
// existing one if it verifies, else a fresh copy.
func materialise(base string, t *Tree) (string, *os.File, error) {
	final := filepath.Join(base, t.dirName())
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		lock, err := lockTree(final)
		switch {
		case err == nil:
			if lastErr = verifyTree(final, t); lastErr == nil {
				return final, lock, nil
			}
			lock.Close()
			if err := discard(base, final); err != nil {
				return "", nil, err
			}
		case errors.Is(err, errNotTree):
			lastErr = err
			if err := discard(base, final); err != nil {
				return "", nil, err
			}
		case !errors.Is(err, fs.ErrNotExist):
			return "", nil, err
		}
		tmp, tmpLock, err := writeTree(base, t)
		if err != nil {
			return "", nil, err
		}
		if err := os.Rename(tmp, final); err == nil {
			return final, tmpLock, nil // the lock follows the directory
		}
		// Another process renamed its copy first: verify that one.
		tmpLock.Close()
		_ = os.RemoveAll(tmp)
	}
	return "", nil, fmt.Errorf("%s could not be verified or replaced: %v", final, lastErr)
}

// errNotTree marks a tree's name that is not a directory (a symlink, say).
var errNotTree = errors.New("not a directory")

// lockTree opens dir and takes a shared flock on it, then checks that dir
// still names the directory locked (a sweep may have moved it away).
func lockTree(dir string) (*os.File, error) {
	f, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, err
	}
	if !sameFile(f, dir) {
		f.Close()
		return nil, fs.ErrNotExist
	}
	return f, nil
}

// openDir opens dir, refusing a symlink or anything but a directory.
func openDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("%s: %w", dir, errNotTree)
	}
	return f, err
}

// sameFile reports whether the open f is still what name names.
func sameFile(f *os.File, name string) bool {
	held, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Lstat(name)
	return err == nil && os.SameFile(held, now)
}

// verifyTree checks that dir holds exactly t's files, as this user wrote
// them, plus Python's __pycache__ directories. Each file is read and
// compared with t's copy through two small buffers.
func verifyTree(dir string, t *Tree) error {
	uid := uint32(os.Geteuid())
	dirs := map[string]bool{".": true}
	for _, name := range t.names {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	bufs := make([]byte, 2*copyBuffer)
	seen := 0
	err := filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info() // Lstat: a symlink is reported as one
		if err != nil {
			return err
		}
		if err := privateEntry(name, info, uid); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, name)
		rel = filepath.ToSlash(rel)
		inCache := path.Base(path.Dir(rel)) == "__pycache__"
		switch {
		case d.IsDir() && (dirs[rel] || path.Base(rel) == "__pycache__" && dirs[path.Dir(rel)]):
			return nil
		case inCache && info.Mode().IsRegular() && strings.Contains(d.Name(), ".pyc"):
			return nil // Python's, or its temporary file while writing one
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s is not expected here", name)
		}
		size, ok := t.sizes[rel]
		if !ok {
			return fmt.Errorf("%s is not one of the files installed", name)
		}
		if info.Size() != size {
			return fmt.Errorf("%s has %d bytes instead of %d", name, info.Size(), size)
		}
		if err := sameContent(name, t, rel, bufs[:copyBuffer], bufs[copyBuffer:]); err != nil {
			return err
		}
		seen++
		return nil
	})
	if err == nil && seen != len(t.names) {
		err = fmt.Errorf("%s lacks %d of its files", dir, len(t.names)-seen)
	}
	return err
}

// sameContent returns an error unless the file name holds exactly the bytes
// of t's file rel, reading both through got and want (of equal lengths).
func sameContent(name string, t *Tree, rel string, got, want []byte) error {
	fd, err := syscall.Open(name, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer syscall.Close(fd)
	f := fileReader(fd)
	src, err := t.open(rel)
	if err != nil {
		return err
	}
	defer src.Close()
	for {
		n, errGot := io.ReadFull(f, got)
		m, errWant := io.ReadFull(src, want)
		if n != m || !bytes.Equal(got[:n], want[:m]) {
			return fmt.Errorf("%s differs from the copy in the Go binary", name)
		}
		for _, err := range []error{errGot, errWant} {
			if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
				return err
			}
		}
		if errGot != nil {
			// Equal lengths short of the buffers' (ReadFull fails exactly
			// then, on both sides): both are at their ends.
			return nil
		}
	}
}

// fileReader reads a regular file by its descriptor with plain read system
// calls: an os.File would register it with the runtime's poller first and
// take 6 system calls more to open it (for a regular file, which never
// blocks, the poller refuses it).
type fileReader int

// Read is read(2), with io.EOF at the end of the file.
func (fd fileReader) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeTree writes t into a new temporary directory of base, locked, with
// directories 0755 and files 0644 whatever the umask (workers run as
// another user must read them), and an empty __pycache__ (0755) beside
// each Python file, so that Python does not create one with the umask's
// mode.
func writeTree(base string, t *Tree) (string, *os.File, error) {
	tmp, err := os.MkdirTemp(base, ".tmp-"+t.kind+"-")
	if err != nil {
		return "", nil, err
	}
	lock, err := lockTree(tmp)
	if err == nil {
		err = writeFiles(tmp, t)
	}
	if err == nil {
		err = os.Chmod(tmp, 0o755)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		_ = os.RemoveAll(tmp)
		return "", nil, err
	}
	return tmp, lock, nil
}

func writeFiles(dir string, t *Tree) error {
	buf := make([]byte, copyBuffer)
	for _, name := range t.names {
		file := filepath.Join(dir, filepath.FromSlash(name))
		parent := filepath.Dir(file)
		if err := mkdirAll(dir, parent); err != nil {
			return err
		}
		if strings.HasSuffix(name, ".py") {
			if err := mkdirAll(dir, filepath.Join(parent, "__pycache__")); err != nil {
				return err
			}
		}
		if err := writeFile(file, t, name, buf); err != nil {
			return err
		}
	}
	return nil
}

// writeFile creates file (0644 whatever the umask) with the content of t's
// file name, copied through buf.
func writeFile(file string, t *Tree, name string, buf []byte) error {
	src, err := t.open(name)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	n, err := io.CopyBuffer(onlyWriter{f}, onlyReader{src}, buf)
	if err == nil && n != t.sizes[name] {
		err = fmt.Errorf("%s: wrote %d bytes instead of %d", file, n, t.sizes[name])
	}
	if err == nil {
		err = f.Chmod(0o644)
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}

// mkdirAll creates dir and its parents up to root with mode 0755.
func mkdirAll(root, dir string) error {
	if dir == root {
		return nil
	}
	if info, err := os.Lstat(dir); err == nil && info.IsDir() {
		return nil
	}
	if err := mkdirAll(root, filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	return os.Chmod(dir, 0o755)
}

// discard moves a tree that failed verification out of the way, onto a
// fresh empty directory of base (rename replaces an empty directory; in the
// same parent, so that a directory of another user moves too), and removes
// it. What cannot be removed (files of another user, for a process that is
// not root) stays in the .trash- directory, for a later sweep.
func discard(base, dir string) error {
	if info, err := os.Lstat(dir); err == nil && !info.IsDir() { // a symlink, say
		return os.Remove(dir)
	}
	trash, err := os.MkdirTemp(base, ".trash-")
	if err != nil {
		return err
	}
	// syscall.Rename: os.Rename refuses an existing directory as target.
	if err := syscall.Rename(dir, trash); err != nil {
		_ = os.Remove(trash)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // another process moved it first
		}
		return err
	}
	_ = os.RemoveAll(trash)
	return nil
}

// staleAge is how old a leftover temporary directory (of a process that
// died while installing) must be before a sweep removes it.
const staleAge = 10 * time.Minute

// sweep removes the trees of t's kind in base that no live process holds,
// and leftovers of interrupted installs. Failures are ignored: a tree left
// behind is removed by a later sweep.
func sweep(base string, t *Tree) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == t.dirName() || !e.IsDir():
		case strings.HasPrefix(name, t.kind+"-") && len(name) == len(t.dirName()):
			// Only names of this scheme: the 16-digit ones of pypool
			// versions that took no flock may be in use.
			sweepTree(base, filepath.Join(base, name))
		case strings.HasPrefix(name, ".tmp-") || strings.HasPrefix(name, ".trash-"):
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleAge {
				sweepTree(base, filepath.Join(base, name))
			}
		}
	}
}

// sweepTree removes dir if no process holds its flock.
func sweepTree(base, dir string) {
	f, err := openDir(dir)
	if err != nil {
		return
	}
	defer f.Close()
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil || !sameFile(f, dir) {
		return // in use, or already gone
	}
	_ = discard(base, dir)
}
