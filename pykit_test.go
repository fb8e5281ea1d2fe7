package pypool

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Python test kit (python/pypool_runtime/testing.py, docs/testing-python.md):
// a module that imports pypool is unit-tested without Go.

// kitCommand runs python with the repository's python/ directory on
// PYTHONPATH, as docs/testing-python.md tells users to.
func kitCommand(t *testing.T, python string, args ...string) *exec.Cmd {
	t.Helper()
	dir, err := filepath.Abs("python")
	require.NoError(t, err)
	cmd := exec.Command(python, args...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+dir)
	return cmd
}

// TestPythonTestKitRunsSampleTests runs testdata/pykit's unit tests (fake
// callbacks, an extension, results that cannot cross) with plain unittest
// under both interpreters, python3 and Debian's /usr/bin/python3: one with
// msgpack's C extension, one without (as .ci/run installs them), so that
// both codecs' checks run.
func TestPythonTestKitRunsSampleTests(t *testing.T) {
	for _, python := range []string{"python3", debianPython} {
		t.Run(map[string]string{"python3": "python3", debianPython: "debian"}[python], func(t *testing.T) {
			if _, err := exec.LookPath(python); err != nil {
				t.Skipf("%s is missing: %v", python, err)
			}
			out, err := kitCommand(t, python, "-m", "unittest", "discover", "-s", "testdata/pykit", "-v").CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), "Ran 8 tests")
			assert.Contains(t, string(out), "\nOK")
		})
	}
}

// TestPythonTestKitMatchesRealError checks that the kit's NotEncodable
// says what a real call's *PythonError says (message, hint, type) for the
// same results.
func TestPythonTestKitMatchesRealError(t *testing.T) {
	cfg := testConfig(t)
	cfg.Module = "pypool_shop"
	cfg.PythonPath = []string{"testdata/pykit"}
	pool := newTestPool(t, cfg)
	const script = `
import json, sys
from pypool import testing
import pypool_shop
out = {}
for name, args in (("tag_set", [{"tags": ["a"]}]), ("basket", [])):
    try:
        testing.call(getattr(pypool_shop, name), *args)
    except testing.NotEncodable as exc:
        out[name] = {"Code": exc.code, "Type": exc.type, "Message": exc.message, "Hint": exc.hint}
json.dump(out, sys.stdout)
`
	cmd := kitCommand(t, "python3", "-c", script)
	cmd.Dir = "testdata/pykit"
	out, err := cmd.Output()
	require.NoError(t, err)
	var kit map[string]map[string]string
	require.NoError(t, json.Unmarshal(out, &kit))
	for name, args := range map[string][]any{"tag_set": {map[string]any{"tags": []string{"a"}}}, "basket": nil} {
		_, err := pool.Call(context.Background(), name, args...)
		require.ErrorIs(t, err, ErrResultNotEncodable)
		pe := asPythonError(t, err)
		assert.Equal(t, map[string]string{"Code": pe.Code, "Type": pe.Type, "Message": pe.Message, "Hint": pe.Hint}, kit[name], name)
	}
}
