package pypool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAuditPykitMatchesRealErrors: for results that cannot cross (odd map
// keys, cycles, depth, big ints, naive datetimes, objects whose repr and
// eq raise, generators), the kit's testing.call raises NotEncodable with
// the Code, Type, Message and Hint of the real call's *PythonError, under
// both interpreters (pure codec and msgpack's C extension).
func TestAuditPykitMatchesRealErrors(t *testing.T) {
	names := []string{"surrogate", "strided_view", "complex_number", "cyclic", "deep", "big_int", "naive_datetime", "opaque", "opaque_key", "frozen", "generator"}
	for _, python := range []string{"python3", debianPython} {
		t.Run(map[string]string{"python3": "python3", debianPython: "debian"}[python], func(t *testing.T) {
			names := names
			if exec.Command(python, "-c", "import numpy").Run() == nil {
				names = append(names, "numpy_objects", "numpy_complex")
			}
			cfg := testConfig(t)
			cfg.Python = python
			cfg.Module = "pypool_audit"
			cfg.PythonPath = []string{"testdata/pykit"}
			pool := newTestPool(t, cfg)
			const script = `
import json, sys
from pypool import testing
import pypool_audit
out = {}
for name in sys.argv[1:]:
    try:
        testing.call(getattr(pypool_audit, name))
        out[name] = {"Code": "none"}
    except testing.NotEncodable as exc:
        out[name] = {"Code": exc.code, "Type": exc.type, "Message": exc.message, "Hint": exc.hint}
    except Exception as exc:
        out[name] = {"Code": "other", "Type": type(exc).__name__, "Message": str(exc)}
json.dump(out, sys.stdout)
`
			var kit map[string]map[string]string
			runKitScript(t, python, script, append([]string{"tuple_key"}, names...), nil, &kit)
			for _, name := range names {
				_, err := pool.Call(context.Background(), name)
				require.Error(t, err, name)
				pe := asPythonError(t, err)
				assert.Equal(t, map[string]string{"Code": pe.Code, "Type": pe.Type, "Message": pe.Message, "Hint": pe.Hint}, kit[name], name)
			}
			// A tuple dict key encodes, but Go's Call cannot decode it (nor
			// Python: it comes back a list): the kit says what Go says. (It
			// raised a bare "unhashable type: 'list'".)
			const gone = "can not be a key of a Go map (Call gives map[any]any)"
			_, err := pool.Call(context.Background(), "tuple_key")
			require.ErrorIs(t, err, ErrResultNotDecodable)
			assert.Contains(t, err.Error(), gone)
			assert.Equal(t, "other", kit["tuple_key"]["Code"])
			assert.Contains(t, kit["tuple_key"]["Message"], gone)
		})
	}
}

// TestAuditPykitTraceContextAsGo: testing.call_context keeps the
// traceparent and tracestate that Go's WithTraceContext sends, and drops
// those it drops (the kit passed any string on).
func TestAuditPykitTraceContextAsGo(t *testing.T) {
	const valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	cases := [][2]string{
		{valid, "a=b"},
		{valid, "bad\x01"},
		{"hello", "a=b"},
		{"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01", ""},
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", ""},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", ""},
		{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", ""},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", "x=y"},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01extra", ""},
		{valid + "-x", ""},
		{valid, string(make([]byte, 513))},
	}
	cfg := testConfig(t)
	cfg.Module = "pypool_audit"
	cfg.PythonPath = []string{"testdata/pykit"}
	pool := newTestPool(t, cfg)
	const script = `
import json, sys
from pypool import testing
import pypool_audit
out = []
for tp, ts in json.load(sys.stdin):
    with testing.call_context(traceparent=tp, tracestate=ts):
        out.append(testing.call(pypool_audit.trace)[:2])
json.dump(out, sys.stdout)
`
	var kit [][]string
	runKitScript(t, "python3", script, nil, cases, &kit)
	require.Len(t, kit, len(cases))
	for i, c := range cases {
		got, err := pool.Call(WithTraceContext(context.Background(), c[0], c[1]), "trace")
		require.NoError(t, err)
		real := got.([]any)
		assert.Equal(t, []string{real[0].(string), real[1].(string)}, kit[i], "%q %q", c[0], c[1])
	}
}

// TestAuditPykitMetadataLimitsAsGo: testing.call_context refuses the
// metadata that Go's calls refuse (a *MetadataError), naming the same
// limit, and takes what Go sends (the kit took any size).
func TestAuditPykitMetadataLimitsAsGo(t *testing.T) {
	many, fit := map[string]string{}, map[string]string{}
	for i := range 65 {
		many[strconv.Itoa(i)] = ""
		if i < 64 {
			fit[strconv.Itoa(i)] = ""
		}
	}
	cases := []map[string]string{
		many, fit,
		{strings.Repeat("k", 129): "v"},
		{strings.Repeat("k", 128): strings.Repeat("v", 8192-128)},
		{"k": strings.Repeat("v", 8192)},
		{"é": "v"},
	}
	cfg := testConfig(t)
	cfg.Module = "pypool_audit"
	cfg.PythonPath = []string{"testdata/pykit"}
	pool := newTestPool(t, cfg)
	const script = `
import json, re, sys
from pypool import testing
import pypool_audit
out = []
for metadata in json.load(sys.stdin):
    try:
        with testing.call_context(metadata=metadata):
            out.append("" if testing.call(pypool_audit.trace)[2] == metadata else "changed")
    except ValueError as exc:
        out.append(re.search(r"\((\w+)\)$", str(exc)).group(1))
json.dump(out, sys.stdout)
`
	var kit []string
	runKitScript(t, "python3", script, nil, cases, &kit)
	require.Len(t, kit, len(cases))
	for i, md := range cases {
		_, err := pool.Call(WithMetadata(context.Background(), md), "trace")
		limit := ""
		var me *MetadataError
		if errors.As(err, &me) {
			limit = me.Limit
		} else {
			require.NoError(t, err)
		}
		assert.Equal(t, limit, kit[i], "case %d", i)
	}
	// A worker's metadata iterates in Go's order, by key (the kit's in the
	// test's, before): python/tests/test_testing_kit_audit.py checks the kit.
	keys, err := pool.Call(WithMetadata(context.Background(), map[string]string{"b": "1", "a": "2", "é": "3", "Z": "4"}), "metadata_keys")
	require.NoError(t, err)
	assert.Equal(t, []any{"Z", "a", "b", "é"}, keys)
}

// TestAuditPykitTooLarge: a result beyond Config.MaxMessageSize fails a
// real call (message_too_large); with testing.MAX_MESSAGE_SIZE set to the
// same limit the kit raises MessageTooLarge with the same code, type,
// message and hint (it returned the result).
func TestAuditPykitTooLarge(t *testing.T) {
	names := []string{"large_bytes", "large_map"}
	cfg := testConfig(t)
	cfg.Module = "pypool_audit"
	cfg.PythonPath = []string{"testdata/pykit"}
	cfg.MaxMessageSize = 1 << 16
	pool := newTestPool(t, cfg)
	const script = `
import json, sys
from pypool import testing
import pypool_audit
testing.MAX_MESSAGE_SIZE = 1 << 16
out = {}
for name in sys.argv[1:]:
    try:
        testing.call(getattr(pypool_audit, name))
        out[name] = {"Code": "none"}
    except Exception as exc:
        out[name] = {"Code": getattr(exc, "code", type(exc).__name__), "Type": getattr(exc, "type", ""), "Message": getattr(exc, "message", str(exc)), "Hint": getattr(exc, "hint", "")}
json.dump(out, sys.stdout)
`
	var kit map[string]map[string]string
	runKitScript(t, "python3", script, names, nil, &kit)
	for _, name := range names {
		_, err := pool.Call(context.Background(), name)
		require.Error(t, err, name)
		pe := asPythonError(t, err)
		assert.Equal(t, map[string]string{"Code": pe.Code, "Type": pe.Type, "Message": pe.Message, "Hint": pe.Hint}, kit[name], name)
	}
}

// TestAuditPykitUnknownCallbackAsGo: the kit's GoError for a name with no
// fake has the code, message (the name quoted as Go's %q quotes it) and
// Go type of a real worker's, for names with quotes, backslashes, control
// and non-ASCII characters (the kit wrapped the name in bare quotes).
func TestAuditPykitUnknownCallbackAsGo(t *testing.T) {
	names := []string{"plain", `a"b`, `back\slash`, "new\nline\ttab\x01\x7f", "café ✓", "zero\u200bwidth", "\u00a0nbsp", "tag\U000e0001"}
	cfg := testConfig(t)
	cfg.Module = "pypool_audit"
	cfg.PythonPath = []string{"testdata/pykit"}
	noop := func(context.Context, []any) (any, error) { return nil, nil }
	cfg.Callbacks = map[string]Callback{"zeta": noop, "Alpha": noop, "é": noop}
	pool := newTestPool(t, cfg)
	const script = `
import json, sys
from pypool import testing
import pypool_audit
out = []
with testing.fake_callbacks({"zeta": len, "Alpha": len, "é": len}):
    for name in json.load(sys.stdin):
        out.append(testing.call(pypool_audit.unknown_callback, name))
json.dump(out, sys.stdout)
`
	var kit [][]string
	runKitScript(t, "python3", script, nil, names, &kit)
	require.Len(t, kit, len(names))
	for i, name := range names {
		got, err := pool.Call(context.Background(), "unknown_callback", name)
		require.NoError(t, err)
		var real []string
		for _, v := range got.([]any) {
			real = append(real, v.(string))
		}
		assert.Equal(t, real, kit[i], "%q", name)
	}
}

// runKitScript runs the Python script with the test kit, in testdata/pykit,
// under python with args as its sys.argv[1:]: in, unless nil, is its stdin
// as JSON, and its stdout, JSON, is decoded into out.
func runKitScript(t *testing.T, python, script string, args []string, in, out any) {
	t.Helper()
	cmd := kitCommand(t, python, append([]string{"-c", script}, args...)...)
	cmd.Dir = "testdata/pykit"
	if in != nil {
		data, err := json.Marshal(in)
		require.NoError(t, err)
		cmd.Stdin = bytes.NewReader(data)
	}
	stdout, err := cmd.Output()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(stdout, out))
}
