package pypool

// audit_newcomer2_test.go: a second newcomer, deploying another shape of
// service from README.md and docs/ alone: an HTTP service whose requests'
// contexts end when their clients go away, stopped on SIGTERM, with its
// own tests, typed bindings, the Prometheus and OpenTelemetry modules, and
// an interpreter as deployments ship it (a wrapper script, PYTHONPATH set
// in the image). Each test runs what the documentation says and checks
// that it holds, or that the error names the cause and the fix.

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewcomer2WrapperInterpreter: Config.Python "a python3 executable"
// is, in many images, a wrapper script that says what it does
// (`echo "using /opt/venv"; exec /opt/venv/bin/python3 "$@"`). Its line
// reached the pool where the worker's handshake should be, and New
// reported "message too large: the worker sent a 1970497902-byte message
// ... (Config.MaxMessageSize)", sending the reader to raise a limit; with
// MaxMessageSize raised, New waited StartTimeout for 1.9 GB and reported
// a worker that "did not finish importing". New now names what it read
// and the fix, at once, whatever MaxMessageSize is.
func TestNewcomer2WrapperInterpreter(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath(testConfig(t).orPython())
	require.NoError(t, err)
	wrapper := filepath.Join(t.TempDir(), "python3")
	writeScript(t, wrapper, "echo \"using the venv in /opt/venv\"\nexec '"+python+"' \"$@\"\n")
	for _, limit := range []int{0, 4<<30 - 1} {
		cfg := testConfig(t)
		cfg.Python, cfg.MaxMessageSize, cfg.StartTimeout = wrapper, limit, 20*time.Second
		cfg.StartMethod = StartExec
		began := time.Now()
		_, err := New(testCtx(t), cfg)
		require.ErrorIs(t, err, ErrWorkerStart)
		assert.ErrorIs(t, err, ErrProtocol)
		assert.NotErrorIs(t, err, ErrMessageTooLarge)
		assert.ErrorContains(t, err, `began with "usin" where its handshake should be: something wrote to the worker's stdout before Python ran pypool's runtime`)
		assert.ErrorContains(t, err, "set Config.Python to the interpreter itself")
		assert.Less(t, time.Since(began), cfg.StartTimeout, "MaxMessageSize %d: it waited for the frame", limit)
	}
}

// orPython is the configured interpreter, or the default.
func (c Config) orPython() string { return orDefault(c.Python, "python3") }
