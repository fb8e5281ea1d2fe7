//go:build linux

package pypool

// ownership_linux_test.go holds the ownership tests (invariant 10) that
// need the fork server, which runs only on Linux; ownership_test.go has
// the others.

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOwnedChildDiesWithAnOrphanedForkedWorker: a forked worker whose
// template died is reaped by someone else once it exits, so its group
// cannot be killed after that; the pool kills it, group and all, when it
// replaces it (issue 18, finding 1).
func TestOwnedChildDiesWithAnOrphanedForkedWorker(t *testing.T) {
	cfg := testConfig(t)
	cfg.StartMethod = StartForkServer
	pool := newTestPool(t, cfg)
	template := pool.forks.Load()
	require.NotNil(t, template, "the fork server runs")
	res, err := pool.Call(testCtx(t), "spawn_sleeping_child")
	require.NoError(t, err)
	child := int(res.(int64))
	worker := workerPids(pool)[0]
	pidfds := map[int]*os.File{worker: openPidfd(t, worker), child: openPidfd(t, child)}

	require.NoError(t, template.cmd.Process.Kill())
	// The new template's start replaces the orphan (recycleOrphans).
	awaitPool(t, pool, "the orphan replaced", func(s Stats) bool { return s.Recycled == 1 && atRest(s, 1) })
	requireExited(t, pidfds, "an orphaned forked worker and its child")
}
