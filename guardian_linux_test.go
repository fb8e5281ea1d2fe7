package pypool

// The guardian's descriptors, read from /proc: Linux only (syscall.Dup2
// does not exist on linux/arm64, Dup3 not on macOS).

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGuardianHoldsOnlyItsDescriptors: a descriptor the host leaked below
// 10 (without close-on-exec) is closed: the guardian holds its stdin,
// stdout (/dev/null) and stderr, and none of 3 to 9. It runs in / with
// guardianEnv.
func TestGuardianHoldsOnlyItsDescriptors(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc here")
	}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	leaked := -1
	for fd := 9; fd >= 3; fd-- {
		if _, err := fcntlGetfd(fd); errors.Is(err, syscall.EBADF) {
			leaked = fd
			break
		}
	}
	if leaked < 0 {
		t.Skip("descriptors 3 to 9 are all in use here")
	}
	require.NoError(t, syscall.Dup3(int(w.Fd()), leaked, 0)) // inheritable
	_, gp, _ := testGuardian(t)
	syscall.Close(leaked)

	fds := func() []string {
		entries, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(gp.pid), "fd"))
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		return names
	}
	low := func(fds []string) (held []string) { // 3 to 9
		for _, fd := range fds {
			if n, _ := strconv.Atoi(fd); n >= 3 && n <= 9 {
				held = append(held, fd)
			}
		}
		return held
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(low(fds())) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Empty(t, low(fds()), "the guardian's descriptors 3 to 9 (%d was leaked to it)", leaked)
	require.Subset(t, fds(), []string{"0", "1", "2"})
	// Above 9 (dash cannot name them), what the test's own parent leaked
	// stays: the documented limit (guardian.go).
	t.Logf("the guardian's descriptors: %v", fds())

	environ, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(gp.pid), "environ"))
	require.NoError(t, err)
	require.Equal(t, strings.Join(guardianEnv, "\x00")+"\x00", string(environ))
	cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(gp.pid), "cwd"))
	require.NoError(t, err)
	require.Equal(t, "/", cwd)
}

func fcntlGetfd(fd int) (uintptr, error) {
	v, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 {
		return 0, errno
	}
	return v, nil
}

// guardianAtImport is a module that, as it is imported (a worker's start,
// before its handshake), lists the live guardians of the Go process that
// HOST_PID names, from /proc.
const guardianAtImport = `import os

def _guardians(host):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[1]) == host and cmdline.endswith(b"\0pypool-guardian\0"):
            found.append(int(name))
    return found

AT_IMPORT = _guardians(int(os.environ["HOST_PID"]))

def at_import():
    return AT_IMPORT
`

// TestGuardianRunsBeforeTheWorkersStart: New starts the guardian while its
// first workers' interpreters start, and holds them until it runs (its
// startGate): the pool's guardian is running when the worker imports the
// module (invariant 10: a
// module that starts a process at import is covered should the host die
// then), on both start methods, even when the guardian's fork comes 1 s
// late (without that wait, the worker found none).
func TestGuardianRunsBeforeTheWorkersStart(t *testing.T) {
	guardianForking = func() { time.Sleep(time.Second) }
	t.Cleanup(func() { guardianForking = nil })
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "guardian_at_import.py"), []byte(guardianAtImport), 0o644))
	for _, method := range []StartMethod{StartExec, StartForkServer} {
		t.Run(method.String(), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Module, cfg.PythonPath, cfg.StartMethod = "guardian_at_import", []string{dir}, method
			cfg.Env = []string{"HOST_PID=" + strconv.Itoa(os.Getpid())}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			pool, err := New(ctx, cfg)
			require.NoError(t, err)
			defer pool.Close(ctx)
			found, err := CallAs[[]int](ctx, pool, "at_import")
			require.NoError(t, err)
			pool.spec.guard.mu.Lock()
			guardian := pool.spec.guard.proc.pid
			pool.spec.guard.mu.Unlock()
			require.Contains(t, found, guardian, "the pool's guardian runs when the worker imports the module")
		})
	}
}

// TestGuardianRunsBeforeTheInterpretersOwnStart: the pool's guardian is
// running already when the interpreter's own start runs code of its
// installation (a .pth file in its site-packages, here a venv's), which
// may start a process before the bootstrap runs: should the host die
// then, the guardian kills it. Before the guardian started before the
// first workers' exec again, that code ran while no guardian existed.
func TestGuardianRunsBeforeTheInterpretersOwnStart(t *testing.T) {
	venv := filepath.Join(t.TempDir(), "venv")
	out, err := exec.Command("python3", "-m", "venv", "--without-pip", venv).CombinedOutput()
	require.NoError(t, err, "%s", out)
	sitePackages, err := filepath.Glob(filepath.Join(venv, "lib", "python3*", "site-packages"))
	require.NoError(t, err)
	require.Len(t, sitePackages, 1)
	probe := guardianAtImport + `
if os.environ.get("PYPOOL_TEST_MARK"):
    with open(os.environ["PYPOOL_TEST_MARK"], "w") as f:
        f.write(" ".join(str(pid) for pid in AT_IMPORT) + "\n")
`
	require.NoError(t, os.WriteFile(filepath.Join(sitePackages[0], "guardian_probe.py"), []byte(probe), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(sitePackages[0], "guardian_probe.pth"), []byte("import guardian_probe\n"), 0o644))
	guardianForking = func() { time.Sleep(time.Second) } // a late guardian: the window is wide
	t.Cleanup(func() { guardianForking = nil })
	for _, method := range []StartMethod{StartExec, StartForkServer} {
		t.Run(method.String(), func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "mark")
			cfg := testConfig(t)
			cfg.Python, cfg.StartMethod = filepath.Join(venv, "bin", "python3"), method
			cfg.Env = []string{"HOST_PID=" + strconv.Itoa(os.Getpid()), "PYPOOL_TEST_MARK=" + mark}
			ctx := testCtx(t)
			pool, err := New(ctx, cfg)
			require.NoError(t, err)
			defer pool.Close(ctx)
			found, err := os.ReadFile(mark)
			require.NoError(t, err, "the .pth file ran")
			pool.spec.guard.mu.Lock()
			guardian := pool.spec.guard.proc.pid
			pool.spec.guard.mu.Unlock()
			require.Contains(t, strings.Fields(string(found)), strconv.Itoa(guardian),
				"the pool's guardian runs when the interpreter's own start runs its installation's code")
		})
	}
}

// guardianRecords keeps the pids of the "guardian started" records.
type guardianRecords struct {
	mu   sync.Mutex
	pids []int
}

func (h *guardianRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *guardianRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *guardianRecords) WithGroup(string) slog.Handler            { return h }
func (h *guardianRecords) Handle(_ context.Context, r slog.Record) error {
	if r.Message != msgGuardianStarted {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "guardian" {
			h.mu.Lock()
			h.pids = append(h.pids, int(a.Value.Int64()))
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

// TestFailedNewLeavesNoGuardian: a New that fails after it started its
// guardian (here: the module does not import) stops and reaps that
// guardian before it returns; one that fails before its first worker's
// start (no such interpreter) starts none.
func TestFailedNewLeavesNoGuardian(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*Config)
		guardians int
	}{
		{"the module does not import", func(cfg *Config) { cfg.Module = "pypool_no_such_module" }, 1},
		{"no such interpreter", func(cfg *Config) { cfg.Python = "/nonexistent/python3" }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			records := &guardianRecords{}
			cfg := testConfig(t)
			tc.configure(&cfg)
			cfg.Logger = slog.New(records)
			_, err := New(context.Background(), cfg)
			require.ErrorIs(t, err, ErrWorkerStart)
			records.mu.Lock()
			defer records.mu.Unlock()
			require.Len(t, records.pids, tc.guardians, "guardians started")
			for _, pid := range records.pids {
				_, err = os.Stat(filepath.Join("/proc", strconv.Itoa(pid)))
				require.True(t, errors.Is(err, fs.ErrNotExist), "guardian %d is gone, reaped (not a zombie): %v", pid, err)
			}
		})
	}
}
