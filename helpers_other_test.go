//go:build !linux

package pypool

// helpers_other_test.go stands in for helpers_linux_test.go outside Linux:
// there is no child subreaper and no pidfd, so the tests that await
// processes that are not this process's children through pidfds skip.

import (
	"os"
	"testing"
	"time"
)

// becomeSubreaper does nothing outside Linux: orphans go to init.
func becomeSubreaper() error { return nil }

// openPidfd skips the test: pidfds are Linux-only.
func openPidfd(t testing.TB, pid int) *os.File {
	t.Helper()
	t.Skipf("awaiting process %d needs a pidfd (Linux only)", pid)
	return nil
}

// pidfdExited reports whether pidfd is nil (gone already): openPidfd
// returns no other outside Linux.
func pidfdExited(pidfd *os.File, _ time.Duration) bool { return pidfd == nil }
