package pypool

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// The tests of errors that name their fix: each error says what failed
// once, Message is str(exception), and the hint says how to fix it.

// errConfig is a one-worker pool of testdata/pymod/pypool_errmod.py.
func errConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.Module = "pypool_errmod"
	return cfg
}

// asPythonError is err's *PythonError; the test fails without one.
func asPythonError(t *testing.T, err error) *PythonError {
	t.Helper()
	var pyErr *PythonError
	require.True(t, errors.As(err, &pyErr), "not a *PythonError: %v", err)
	return pyErr
}

// TestSetUpFailureSaysItOnce: a set-up that raised is named once, by Go;
// Message is str(exception).
func TestSetUpFailureSaysItOnce(t *testing.T) {
	cfg := errConfig(t)
	cfg.SetUp = "bad_setup"
	_, err := New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	pyErr := asPythonError(t, err)
	assert.Equal(t, "setup_failed", pyErr.Code)
	assert.Equal(t, "setup exploded", pyErr.Message, "Message is str(exception)")
	assert.Contains(t, err.Error(), "pypool: worker failed to start: the set-up pypool_errmod.bad_setup failed (Config.SetUp): python RuntimeError: setup exploded (the traceback is in the *PythonError)")
	assert.Equal(t, 1, strings.Count(err.Error(), "bad_setup"), "%v", err)
	assert.Contains(t, pyErr.Traceback, `raise RuntimeError("setup exploded")`)
}

// TestPythonErrorMessageIsStr: for each Code, Message is str(exception)
// (or, for a refusal of the runtime, its description without the hint),
// and Error() names the function once.
func TestPythonErrorMessageIsStr(t *testing.T) {
	pool := newTestPool(t, errConfig(t))
	ctx := testCtx(t)
	cases := []struct {
		fn, code, message string
		stream            bool
		args              []any
	}{
		{"fail", "exception", "boom", false, []any{"boom"}},
		{"needs_missing", "exception", "No module named 'pypool_absent_dependency'", false, nil},
		{"a_set", "result_not_encodable", "cannot encode the result of a_set() for Go: result['items'][1]: set (can not serialize 'set' object)", false, nil},
		{"make_list", "not_an_iterator", "make_list() returned a list, not an iterator: Stream iterates a generator or an iterator", true, []any{3}},
		{"no_such", "function_not_found", "pypool_errmod has no public function 'no_such'", false, nil},
	}
	for _, c := range cases {
		var err error
		if c.stream {
			_, err = collect(t, pool.Stream(ctx, c.fn, c.args...))
		} else {
			_, err = pool.Call(ctx, c.fn, c.args...)
		}
		pyErr := asPythonError(t, err)
		assert.Equal(t, c.code, pyErr.Code, c.fn)
		assert.True(t, strings.HasPrefix(pyErr.Message, c.message), "%s: Message %q", c.fn, pyErr.Message)
		assert.NotContains(t, pyErr.Message, pyErr.Hint+"x", c.fn) // the hint is not in Message
		if pyErr.Hint != "" {
			assert.NotContains(t, pyErr.Message, pyErr.Hint, c.fn)
			assert.Equal(t, "pypool: python "+pyErr.Type+": "+pyErr.Message+"; "+pyErr.Hint, err.Error())
		}
		assert.LessOrEqual(t, strings.Count(err.Error(), c.fn), 1, "%s named more than once: %v", c.fn, err)
	}
}

// TestStreamOfNotAGenerator: Stream of a function that returns a list (a
// plain or an async function) is the refusal not_an_iterator, naming the
// function, what it returned and the fix, without a traceback of the
// runtime's frames.
func TestStreamOfNotAGenerator(t *testing.T) {
	pool := newTestPool(t, errConfig(t))
	ctx := testCtx(t)
	for fn, returned := range map[string]string{
		"make_list":   "make_list() returned a list, not an iterator",
		"async_list":  "async_list() returned a coroutine, which returned a list, not an iterator",
		"a_coroutine": "a_coroutine() returned a coroutine, which returned an int, not an iterator",
	} {
		_, err := collect(t, pool.Stream(ctx, fn, 3))
		pyErr := asPythonError(t, err)
		assert.Equal(t, "not_an_iterator", pyErr.Code, fn)
		assert.Equal(t, "TypeError", pyErr.Type, fn)
		assert.Empty(t, pyErr.Traceback, "%s: no traceback of the runtime's frames", fn)
		assert.Equal(t, returned+": Stream iterates a generator or an iterator", pyErr.Message)
		assert.Equal(t, "call it with Call or CallAs to get its result in one piece, or make it a generator function "+
			"(one that uses yield, or async def with yield) to stream its items", pyErr.Hint)
	}
	v, err := pool.Call(ctx, "make_list", 2)
	require.NoError(t, err, "the worker serves on")
	assert.Equal(t, []any{int64(0), int64(1)}, v)
}

// TestUnsupportedValueNamesTheFixes: a result, a stream item or a
// callback's argument of a type the codec does not encode says where it
// is, what to convert it to, and the runtime's hooks.
func TestUnsupportedValueNamesTheFixes(t *testing.T) {
	cfg := errConfig(t)
	cfg.Callbacks = map[string]Callback{"echo": func(_ context.Context, args []any) (any, error) { return args, nil }}
	pool := newTestPool(t, cfg)
	ctx := testCtx(t)
	hooks := "; or have the worker encode it: pypool_runtime.set_default(function) converts every value nothing else encodes, " +
		"pypool_runtime.register_ext(%s, code, encode=..., decode=...) sends it as a msgpack extension " +
		"that Go decodes with a pypool.Ext in Config.Extensions (docs/types.md)"
	for fn, want := range map[string][2]string{
		"a_set":   {"result['items'][1]: set", "convert it to sorted(value) or list(value) before returning it" + strings.ReplaceAll(hooks, "%s", "set")},
		"a_point": {"result['p']: pypool_errmod.Point", "convert it to a dict (vars(value)) or a tuple of its fields before returning it" + strings.ReplaceAll(hooks, "%s", "Point")},
		"a_pair":  {"result[0]: pypool_errmod.Pair", "convert it to dataclasses.asdict(value) before returning it" + strings.ReplaceAll(hooks, "%s", "Pair")},
	} {
		_, err := pool.Call(ctx, fn)
		require.ErrorIs(t, err, ErrResultNotEncodable, fn)
		pyErr := asPythonError(t, err)
		assert.Contains(t, pyErr.Message, want[0], fn)
		assert.Equal(t, want[1], pyErr.Hint, fn)
		assert.Contains(t, err.Error(), want[1], fn)
	}
	items, err := collect(t, pool.Stream(ctx, "set_items", 2))
	assert.Equal(t, []any{int64(0), int64(1)}, items)
	require.ErrorIs(t, err, ErrResultNotEncodable)
	pyErr := asPythonError(t, err)
	assert.Equal(t, "cannot encode item 2 of set_items() for Go: item: set (can not serialize 'set' object)", pyErr.Message)
	assert.Contains(t, pyErr.Hint, "sorted(value) or list(value)")

	_, err = pool.Call(ctx, "set_to_go")
	pyErr = asPythonError(t, err)
	assert.Equal(t, "TypeError", pyErr.Type)
	assert.Contains(t, pyErr.Message, "call_go('echo'): an argument cannot be encoded for Go: args[0][0]: set (can not serialize 'set' object); convert it to sorted(value) or list(value)")
	assert.Contains(t, pyErr.Message, "pypool_runtime.register_ext(set, code")
}

// TestMissingModuleNamesTheInterpreter: a module not installed, missing at
// the import of the user's module or in a call, names the interpreter that
// ran and the fix; a call's Message stays str(exception).
func TestMissingModuleNamesTheInterpreter(t *testing.T) {
	pool := newTestPool(t, errConfig(t))
	ctx := testCtx(t)
	v, err := pool.Call(ctx, "interpreter")
	require.NoError(t, err)
	ran := v.([]any)[0].(string) + " (" + v.([]any)[1].(string) + ")"
	fix := "install pypool_absent_dependency for " + ran + ", or set Config.Python to an interpreter that has it"

	_, err = pool.Call(ctx, "needs_missing")
	pyErr := asPythonError(t, err)
	assert.Equal(t, "ModuleNotFoundError", pyErr.Type)
	assert.Equal(t, "No module named 'pypool_absent_dependency'", pyErr.Message)
	assert.Equal(t, fix, pyErr.Hint)
	assert.Equal(t, "pypool: python ModuleNotFoundError: No module named 'pypool_absent_dependency'; "+fix, err.Error())

	cfg := testConfig(t)
	cfg.Module = "pypool_needsdep"
	_, err = New(testCtx(t), cfg)
	require.ErrorIs(t, err, ErrWorkerStart)
	pyErr = asPythonError(t, err)
	assert.Equal(t, "No module named 'pypool_absent_dependency'", pyErr.Message)
	assert.Equal(t, fix, pyErr.Hint)
	assert.Contains(t, err.Error(), `importing module "pypool_needsdep" failed: python ModuleNotFoundError: No module named 'pypool_absent_dependency'; `+fix)
}

// embeddedAll holds testdata/embedded with __init__.py files; embeddedNoAll
// without them, as //go:embed without all: makes it.
var (
	//go:embed all:testdata/embedded
	embeddedAll embed.FS
	//go:embed testdata/embedded
	embeddedNoAll embed.FS
)

// TestPythonFSModuleNotFoundSaysWhy: a module Config.PythonFS does not
// hold where the worker looks says what the FS holds there: a package
// without __init__.py (//go:embed without all:), the module below another
// root (Config.PythonFSRoot), or nothing of that name.
func TestPythonFSModuleNotFoundSaysWhy(t *testing.T) {
	_, err := embeddedNoAll.Open("testdata/embedded/embpkg/__init__.py")
	require.Error(t, err, "//go:embed without all: skips __init__.py")
	for name, c := range map[string]struct {
		fsys fs.FS
		root string
		want string
	}{
		"without all:": {embeddedNoAll, "testdata/embedded",
			"Config.PythonFS has testdata/embedded/embpkg/ but no testdata/embedded/embpkg/__init__.py: " +
				"//go:embed testdata/embedded skips files whose names start with _ or .; write //go:embed all:testdata/embedded"},
		"without PythonFSRoot": {embeddedAll, "",
			`the module is at testdata/embedded/embpkg/__init__.py in Config.PythonFS: set Config.PythonFSRoot to "testdata/embedded"`},
		"not there": {fstest.MapFS{"other/mod.py": {Data: []byte("x = 1\n")}}, "other",
			`Config.PythonFS has no embpkg.py or embpkg/ below Config.PythonFSRoot "other", nor anywhere else`},
	} {
		cfg := testConfig(t)
		cfg.Module, cfg.PythonPath = "embpkg", nil
		cfg.PythonFS, cfg.PythonFSRoot = c.fsys, c.root
		pool, err := New(testCtx(t), cfg)
		if err == nil {
			pool.Close(testCtx(t))
		}
		require.ErrorIs(t, err, ErrWorkerStart, name)
		assert.Contains(t, err.Error(), c.want, name)
		assert.True(t, strings.HasSuffix(err.Error(), c.want+" (the traceback is in the *PythonError)"), "%s: %v", name, err)
	}
}

// TestPythonFSHintOnlyWhenTheModuleIsMissing: a module that Config.PythonFS
// holds where the worker looks gets no hint about the FS.
func TestPythonFSHintOnlyWhenTheModuleIsMissing(t *testing.T) {
	ref := &pythonFSRef{fsys: embeddedAll, root: "testdata/embedded", modules: []string{"embpkg", "embpkg.sub.deep"}}
	assert.Empty(t, ref.hint(&PythonError{Code: "import_failed", Type: "ModuleNotFoundError"}))
	ref.modules = []string{"embpkg", "embpkg.nope"}
	assert.Contains(t, ref.hint(&PythonError{Code: "import_failed", Type: "ModuleNotFoundError"}), "has no embpkg/nope.py or embpkg/nope/")
	assert.Empty(t, ref.hint(&PythonError{Code: "setup_failed", Type: "ModuleNotFoundError"}))
	assert.Empty(t, (*pythonFSRef)(nil).hint(&PythonError{Code: "import_failed", Type: "ImportError"}))
}

// TestHintCrossesTheWire: an ERROR and a HELLO's error carry the hint as
// an optional last field; without it, Hint is empty; more fields are a
// protocol error.
func TestHintCrossesTheWire(t *testing.T) {
	for _, c := range []struct {
		msg  []any
		hint string
	}{
		{[]any{kindError, 1, "exception", "ValueError", "bad", "Traceback ..."}, ""},
		{[]any{kindError, 1, "exception", "ModuleNotFoundError", "No module named 'numpy'", "Traceback ...", "install numpy"}, "install numpy"},
	} {
		b, err := msgpack.Marshal(c.msg)
		require.NoError(t, err)
		r, err := decodeReply(b)
		require.NoError(t, err)
		assert.Equal(t, c.hint, r.err.Hint)
		assert.Equal(t, c.msg[4], r.err.Message)
	}
	b, err := msgpack.Marshal([]any{kindError, 1, "exception", "E", "m", "tb", "hint", "more"})
	require.NoError(t, err)
	_, err = decodeReply(b)
	assert.ErrorIs(t, err, ErrProtocol)

	for fields, hint := range map[int]string{4: "", 5: "install numpy"} {
		herr := []any{"import_failed", "ModuleNotFoundError", "No module named 'numpy'", "tb", "install numpy"}[:fields]
		b, err := msgpack.Marshal([]any{kindHello, 1, 12, "3.11", "pure", herr})
		require.NoError(t, err)
		h, err := decodeHello(b)
		require.NoError(t, err)
		assert.Equal(t, hint, h.err.Hint)
	}
	b, err = msgpack.Marshal([]any{kindHello, 1, 12, "3.11", "pure", []any{"import_failed", "E", "m", "tb", "h", "more"}})
	require.NoError(t, err)
	_, err = decodeHello(b)
	assert.ErrorIs(t, err, ErrProtocol)
}
