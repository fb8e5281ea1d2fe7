package pypool

// security.go holds what restricts a worker beyond the pool's own rules: the
// environment it inherits (Config.InheritEnv), its resource limits
// (Config.Limits) and the user it runs as (Config.Credential). See
// docs/security.md for the threat model.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits are resource limits applied in each worker, with Python's resource
// module, before it imports Config.Module. Each is both the soft and the
// hard limit (CPU time's hard limit is a second above), so that code in the
// worker cannot raise it again; a hard limit the Go program already has
// that is lower is kept. Zero fields mean no limit. They are Linux's
// (setrlimit(2)); other systems may ignore some.
type Limits struct {
	// AddressSpace limits a worker's virtual memory, in bytes
	// (RLIMIT_AS): an allocation beyond it raises MemoryError in Python,
	// which reaches the caller as a *PythonError, and the worker serves on;
	// the host's OOM killer is not involved. Virtual memory is more than
	// resident memory: each thread reserves its stack (8 MiB) and malloc
	// arenas (64 MiB), numpy and BLAS libraries map hundreds of MiB, and
	// the shared memory of large values (SharedMemoryThreshold) counts too.
	// Set it well above the worker's VmPeak (/proc/<pid>/status) under
	// load. A worker whose start does not fit (its module's import,
	// Config.SetUp, the event loop's thread of Config.AsyncCalls) fails
	// to start with an error that names the limit. MaxWorkerMemory is the
	// gentler, resident-memory bound.
	AddressSpace int64

	// CPUTime limits the CPU time a worker may use in its whole life
	// (RLIMIT_CPU), rounded up to whole seconds: a worker that reaches it
	// is killed by SIGXCPU (or SIGKILL a second later if it ignores
	// SIGXCPU), its call fails with a *WorkerExitError wrapping
	// ErrWorkerCrashed, and it is replaced. The time counts from the
	// interpreter's start, import and set-up included, and adds up over
	// all its calls: pair it with MaxCallsPerWorker or MaxWorkerLifetime so
	// that healthy workers are replaced before they reach it, and bound
	// single calls with their context.
	CPUTime time.Duration

	// OpenFiles limits the file descriptors a worker may have open
	// (RLIMIT_NOFILE): opening more raises OSError (EMFILE, "Too many open
	// files"). The runtime itself holds about ten.
	OpenFiles int
}

// Credential is the user and groups the workers run as (Config.Credential).
type Credential struct {
	UID uint32 // user id
	GID uint32 // primary group id
	// Groups are the supplementary groups; none by default (the Go
	// program's are dropped).
	Groups []uint32
}

// geteuid is os.Geteuid, replaced by tests.
var geteuid = os.Geteuid

// validateSecurity checks Config.InheritEnv, Limits and Credential.
func (c Config) validateSecurity() error {
	for _, name := range c.InheritEnv {
		star := strings.IndexByte(name, '*')
		if name == "" || strings.ContainsAny(name, "=\x00") || (star >= 0 && star != len(name)-1) {
			return fmt.Errorf("pypool: Config.InheritEnv entry %q is not a variable name such as \"PATH\", or a prefix such as \"LC_*\"", name)
		}
	}
	if c.Limits.AddressSpace < 0 || c.Limits.CPUTime < 0 || c.Limits.OpenFiles < 0 {
		return fmt.Errorf("pypool: Config.Limits can not be negative (0 means no limit): %+v", c.Limits)
	}
	if c.Credential != nil && geteuid() != 0 {
		return fmt.Errorf("pypool: Config.Credential needs the Go program to run as root to start workers as uid %d, but it runs as uid %d: run it as root, or leave Credential nil and start the program itself as the user the workers should be",
			c.Credential.UID, geteuid())
	}
	return nil
}

// inheritedEnv is the part of environ (KEY=value entries) that
// Config.InheritEnv lets through: the names listed, and those that start
// with an entry's prefix before its trailing "*". It is never nil: a nil
// exec.Cmd.Env would inherit everything.
func inheritedEnv(environ, allow []string) []string {
	env := []string{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		for _, pattern := range allow {
			prefix, isPrefix := strings.CutSuffix(pattern, "*")
			if name == pattern || (isPrefix && strings.HasPrefix(name, prefix)) {
				env = append(env, kv)
				break
			}
		}
	}
	return env
}

// args returns the worker's command-line flags for the limits.
func (l Limits) args() []string {
	var args []string
	if l.AddressSpace > 0 {
		args = append(args, "--limit-as", strconv.FormatInt(l.AddressSpace, 10))
	}
	if l.CPUTime > 0 {
		seconds := (l.CPUTime + time.Second - 1) / time.Second
		args = append(args, "--limit-cpu", strconv.FormatInt(int64(seconds), 10))
	}
	if l.OpenFiles > 0 {
		args = append(args, "--limit-nofile", strconv.Itoa(l.OpenFiles))
	}
	return args
}

// sysProcCredential is cred for os/exec; nil for nil.
func (cred *Credential) sysProcCredential() *syscall.Credential {
	if cred == nil {
		return nil
	}
	return &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups}
}

// checkCredential returns an error unless the user cred can run the
// interpreter, read the runtime, Config.PythonFS's directory (code, ""
// when there is none) and the directories of Config.PythonPath that exist
// (paths, made absolute), and enter Config.Dir (dir, "" for the Go
// program's): New's check, so that a worker that could not start, or
// could not read the module, says why and what to change.
func checkCredential(cred *Credential, python, runtime, code string, paths []string, dir string) error {
	const installFix = "or set Config.InstallDir to a directory that user can enter (0755 from / down, owned by root)"
	if err := checkAccess(python, cred, "the Python interpreter", 1); err != nil {
		return fmt.Errorf("%w; or set Config.Python to an interpreter outside it, such as /usr/bin/python3 or a virtualenv's bin/python3", err)
	}
	if err := checkAccess(runtime, cred, "the Python runtime", 5); err != nil {
		return fmt.Errorf("%w; %s", err, installFix)
	}
	if code != "" {
		if err := checkAccess(code, cred, "Config.PythonFS's directory", 5); err != nil {
			return fmt.Errorf("%w; %s", err, installFix)
		}
	}
	for _, path := range paths {
		info, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not on sys.path, as for any user
		}
		need := os.FileMode(5)
		if err == nil && !info.IsDir() {
			need = 4 // a zip archive: read, not entered
		}
		if err := checkAccess(path, cred, "Config.PythonPath's directory", need); err != nil {
			return err
		}
	}
	if dir != "" {
		if err := checkAccess(dir, cred, "Config.Dir (the workers' working directory)", 1); err != nil {
			return err
		}
	}
	return nil
}

// checkAccess returns an error unless the user cred has the access need
// (a mask of r=4, w=2, x=1) to leaf, and can search every directory from
// the root down to it, both along the path given and along the one its
// symbolic links resolve to. Only the permission bits are looked at, not
// ACLs.
func checkAccess(leaf string, cred *Credential, what string, leafNeed os.FileMode) error {
	leaf, err := filepath.Abs(leaf)
	if err != nil {
		return err
	}
	if err := checkPath(leaf, cred, what, leafNeed); err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(leaf); err == nil && resolved != leaf {
		return checkPath(resolved, cred, what, leafNeed)
	}
	return nil
}

// checkPath is checkAccess for one absolute path.
func checkPath(leaf string, cred *Credential, what string, leafNeed os.FileMode) error {
	for path := leaf; ; path = filepath.Dir(path) {
		need := os.FileMode(1) // search
		if path == leaf {
			need = leafNeed
		}
		info, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("pypool: Config.Credential: %s: %w", what, err)
		}
		if !permits(info, cred, need) {
			return fmt.Errorf("pypool: Config.Credential: %s %s is out of reach of uid %d gid %d: %s is mode %v, owned by uid %d gid %d; put it where that user can read it (directories 0755 down from /)",
				what, leaf, cred.UID, cred.GID, path, info.Mode().Perm(), ownerUID(info), ownerGID(info))
		}
		if path == filepath.Dir(path) {
			return nil
		}
	}
}

// permits reports whether the permission bits of info grant need (a mask
// of r=4, w=2, x=1) to the user cred.
func permits(info os.FileInfo, cred *Credential, need os.FileMode) bool {
	perm := info.Mode().Perm()
	switch {
	case ownerUID(info) == cred.UID:
		return perm>>6&need == need
	case inGroup(ownerGID(info), cred):
		return perm>>3&need == need
	}
	return perm&need == need
}

func inGroup(gid uint32, cred *Credential) bool {
	if gid == cred.GID {
		return true
	}
	for _, g := range cred.Groups {
		if g == gid {
			return true
		}
	}
	return false
}

func ownerUID(info os.FileInfo) uint32 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

func ownerGID(info os.FileInfo) uint32 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Gid
	}
	return 0
}
