//go:build linux

package pypool

// audit_fork_linux_test.go holds the hostile audit of the fork server's
// path (issue 21d): the template, Reload, the stand-in's handover, the
// processes Python code starts, and the guardian (DESIGN invariants 10, 11
// and 12 with StartForkServer; docs/forkserver.md, docs/reloading.md).

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// importChildConfig is a fork server pool of pypool_importchild, whose
// import starts a child that holds the importing process's stdout and
// stderr: in the template, the pipes the pool logs. Size 2: no stand-in,
// every worker forked.
func importChildConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_importchild"
	cfg.StartMethod = StartForkServer
	cfg.Size = 2
	cfg.Env = []string{"PYPOOL_IMPORTCHILD_SLEEP=20"}
	return cfg
}

// templateImportChild returns the pool's template and the child its
// module's import started (a forked worker reports its template's).
func templateImportChild(t *testing.T, pool *Pool) (*forkServer, int) {
	t.Helper()
	fs := pool.forks.Load()
	require.NotNil(t, fs, "the fork server runs")
	res, err := pool.Call(testCtx(t), "import_child")
	require.NoError(t, err)
	child := int(res.(int64))
	require.Equal(t, fs.pid, parentPid(child), "the import's child is the template's")
	return fs, child
}

// TestAuditForkTemplateImportChildDoesNotHoldClose: a module whose import
// starts a child (which inherits the template's stdout and stderr) must not
// keep Close from ending the template, nor outlive it (invariant 10:
// "Close ends every worker", the template's group is the pool's).
func TestAuditForkTemplateImportChildDoesNotHoldClose(t *testing.T) {
	pool, err := New(testCtx(t), importChildConfig(t))
	require.NoError(t, err)
	fs, child := templateImportChild(t, pool)
	pidfds := map[int]*os.File{fs.pid: openPidfd(t, fs.pid), child: openPidfd(t, child)}

	closed := make(chan error, 1)
	go func() { closed <- pool.Close(testCtx(t)) }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(ownedExitBound):
		_ = syscall.Kill(child, syscall.SIGKILL) // let Close end
		<-closed
		t.Fatalf("Close still ran %v after it began: the template's import child %d holds it", ownedExitBound, child)
	}
	requireExited(t, pidfds, "the template and its module's child after Close")
}

// TestAuditForkTemplateImportChildDoesNotHoldRestart: a template killed
// while its module's import child runs is restarted, and the child dies
// with the template's group ("if the template dies ... the template is
// restarted after a backoff", docs/forkserver.md).
func TestAuditForkTemplateImportChildDoesNotHoldRestart(t *testing.T) {
	pool := newTestPool(t, importChildConfig(t))
	fs, child := templateImportChild(t, pool)
	pidfds := map[int]*os.File{child: openPidfd(t, child)}
	defer func() { _ = syscall.Kill(child, syscall.SIGKILL) }()

	require.NoError(t, fs.cmd.Process.Kill())
	requireExited(t, pidfds, "the module's child of a killed template")
	ctx := testCtx(t)
	for {
		if next := pool.forks.Load(); next != nil && next != fs && next.ready() {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the fork server was not restarted")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestAuditForkTemplateDaemonDoesNotHoldClose: a child that the module's
// import started in a session of its own (as a daemon does) is out of
// the pool's reach (docs/errors.md's limits), but holds the template's
// stdout and stderr: Close must end all the same.
func TestAuditForkTemplateDaemonDoesNotHoldClose(t *testing.T) {
	cfg := importChildConfig(t)
	cfg.Env = append(cfg.Env, "PYPOOL_IMPORTCHILD_SESSION=1")
	pool, err := New(testCtx(t), cfg)
	require.NoError(t, err)
	_, child := templateImportChild(t, pool)
	daemon := map[int]*os.File{child: openPidfd(t, child)}
	defer func() {
		_ = syscall.Kill(child, syscall.SIGKILL) // out of the pool's reach: the test's to end
		requireExited(t, daemon, "the daemon, killed by the test")
	}()

	closed := make(chan error, 1)
	go func() { closed <- pool.Close(testCtx(t)) }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(ownedExitBound):
		_ = syscall.Kill(child, syscall.SIGKILL)
		<-closed
		t.Fatalf("Close still ran %v after it began: the template's daemon %d holds it", ownedExitBound, child)
	}
}
