package pypool

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// Issue 18, finding 14: a worker that exits before its handshake is read
// gives a *WorkerExitError with its exit status and last stderr lines,
// whatever the timing: the exit watcher may have closed the pipe before the
// handshake's read (os.ErrClosed), or not (EOF). Such an exit is no positive
// knowledge that a restart fails (it is not fatal); New still returns it, as
// it returns the first error of any of its workers.
func TestEarlyExitIsAWorkerExitError(t *testing.T) {
	script := filepath.Join(t.TempDir(), "python")
	writeScript(t, script, "echo 'no luck here' >&2\nexit 3\n")
	for _, tc := range []struct {
		python string
		status int
		stderr string
	}{
		{"/bin/false", 1, ""},
		{script, 3, "no luck here"},
	} {
		for i := range 50 {
			cfg := testConfig(t)
			cfg.Python = tc.python
			cfg.Logger = slogNew(newLogRecorder())
			pool, err := New(testCtx(t), cfg)
			require.Nil(t, pool)
			require.ErrorIs(t, err, ErrWorkerStart)
			var exitErr *WorkerExitError
			require.ErrorAs(t, err, &exitErr, "%s, round %d: %v", tc.python, i, err)
			require.Equal(t, tc.status, exitErr.ExitCode, "%s, round %d", tc.python, i)
			require.Empty(t, exitErr.Signal)
			if tc.stderr != "" {
				require.Equal(t, []string{tc.stderr}, exitErr.Stderr, "%s, round %d", tc.python, i)
			}
			require.False(t, isFatalStart(err), "an exit says nothing of the next start: %v", err)
		}
	}
}
