package pypool

// The guardian's descriptors, read from /proc: Linux only (syscall.Dup2
// does not exist on linux/arm64, Dup3 not on macOS).

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
