package pypool

import (
	"bytes"
	"math"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTypesCrossBothWays(t *testing.T) {
	when := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	cases := []struct {
		name string
		in   any
		want any
	}{
		{"nil", nil, nil},
		{"true", true, true},
		{"false", false, false},
		{"zero", 0, int64(0)},
		{"small int", 42, int64(42)},
		{"negative", -33, int64(-33)},
		{"int8", int8(-128), int64(-128)},
		{"uint16", uint16(65535), int64(65535)},
		{"max int64", int64(math.MaxInt64), int64(math.MaxInt64)},
		{"min int64", int64(math.MinInt64), int64(math.MinInt64)},
		{"max uint64", uint64(math.MaxUint64), uint64(math.MaxUint64)},
		{"float64", 3.25, 3.25},
		{"float32", float32(1.5), 1.5},
		{"inf", math.Inf(1), math.Inf(1)},
		{"string", "héllo wörld", "héllo wörld"},
		{"empty string", "", ""},
		{"bytes", []byte{0, 1, 0xff}, []byte{0, 1, 0xff}},
		{"empty bytes", []byte{}, []byte{}},
		{"list", []any{1, "a", nil, 2.5}, []any{int64(1), "a", nil, 2.5}},
		{"typed slice", []int{1, 2}, []any{int64(1), int64(2)}},
		{"string map", map[string]any{"a": 1}, map[string]any{"a": int64(1)}},
		{"int keys", map[int]string{1: "one", 2: "two"}, map[any]any{int64(1): "one", int64(2): "two"}},
		{"mixed keys", map[any]any{"s": 1, int64(2): "x"}, map[any]any{"s": int64(1), int64(2): "x"}},
		{"nested", map[string]any{"l": []any{map[string]any{"b": []byte("x")}}},
			map[string]any{"l": []any{map[string]any{"b": []byte("x")}}}},
		{"time", when, when},
		{"time before 1970", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"time in a zone", when.In(time.FixedZone("X", 3600)), when},
		{"struct", struct {
			Name string `msgpack:"name"`
			Age  int    `msgpack:"age"`
		}{"Ada", 36}, map[string]any{"name": "Ada", "age": int64(36)}},
	}
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					out, err := pool.Call(testCtx(t), "echo", tc.in)
					require.NoError(t, err)
					assert.Equal(t, tc.want, out)
				})
			}
		})
	}
}

func TestPythonValuesDecode(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			out, err := pool.Call(testCtx(t), "python_types")
			require.NoError(t, err)
			assert.Equal(t, map[string]any{
				"none":     nil,
				"true":     true,
				"int":      int64(42),
				"neg":      int64(-7),
				"big":      uint64(math.MaxUint64),
				"float":    1.5,
				"str":      "héllo",
				"bytes":    []byte{0, 0xff},
				"list":     []any{int64(1), "a"},
				"tuple":    []any{int64(1), int64(2)},
				"int_keys": map[any]any{int64(1): "one", int64(2): "two"},
				"time":     time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC),
			}, out)
		})
	}
}

func TestCodecReported(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			want := "pure"
			if exec.Command(python, "-c", "import msgpack._cmsgpack").Run() == nil {
				want = "msgpack-c"
			}
			require.NoError(t, pool.Transaction(testCtx(t), func(w *Worker) error {
				assert.Equal(t, want, w.Codec())
				return nil
			}))
		})
	}
}

// TestTypesNumpyScalars checks that numpy's scalars come to Go as the Python
// numbers they stand for, on each interpreter that has numpy (Debian's
// /usr/bin/python3 with python3-numpy, which .ci/run installs).
func TestTypesNumpyScalars(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			if out, err := exec.Command(python, "-c", "import numpy").CombinedOutput(); err != nil {
				lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
				t.Skipf("%s can not import numpy (Debian: apt-get install python3-numpy): %v: %s", python, err, lines[len(lines)-1])
			}
			pool := interpreterPool(t, python)
			out, err := pool.Call(testCtx(t), "numpy_scalars")
			require.NoError(t, err)
			assert.Equal(t, map[string]any{
				"bool_":   true,
				"int8":    int64(-128),
				"int16":   int64(-32768),
				"int32":   int64(math.MinInt32),
				"int64":   int64(math.MinInt64),
				"uint8":   int64(255),
				"uint16":  int64(65535),
				"uint32":  int64(math.MaxUint32),
				"uint64":  uint64(math.MaxUint64),
				"float16": 1.5,
				"float32": 0.25,
				"float64": 0.1,
				"nested":  []any{int64(1), map[string]any{"x": 2.5}, []any{int64(3)}},
			}, out)
		})
	}
}

// TestResultNotEncodableNamesThePath checks that the error for a result
// Python cannot encode says where in the result the value is, and its type.
func TestResultNotEncodableNamesThePath(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			_, err := pool.Call(testCtx(t), "nested_unencodable")
			require.ErrorIs(t, err, ErrResultNotEncodable)
			assert.Contains(t, err.Error(), "result['items'][1]['score']: set")
			out, err := pool.Call(testCtx(t), "echo", 1)
			require.NoError(t, err)
			assert.Equal(t, int64(1), out)
		})
	}
}

func TestResultNotEncodable(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	_, err := pool.Call(testCtx(t), "unencodable")
	require.ErrorIs(t, err, ErrResultNotEncodable)
	assert.Contains(t, err.Error(), "set")
	out, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), out)
}

func TestArgumentsNotEncodable(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	for _, arg := range []any{make(chan int), func() {}, complex(1, 2)} {
		_, err := pool.Call(testCtx(t), "echo", arg)
		assert.ErrorIs(t, err, ErrArgNotEncodable, "%T", arg)
	}
	_, err := pool.Call(testCtx(t), "echo", "bad \xff utf-8")
	assert.ErrorIs(t, err, ErrBadArguments)
	out, err := pool.Call(testCtx(t), "echo", "fine")
	require.NoError(t, err)
	assert.Equal(t, "fine", out)
	assert.Zero(t, pool.Stats().Crashes)
}

func TestMessageTooLarge(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxMessageSize = 1 << 10
	pool := newTestPool(t, cfg)
	_, err := pool.Call(testCtx(t), "echo", make([]byte, 2<<10))
	assert.ErrorIs(t, err, ErrMessageTooLarge)
	_, err = pool.Call(testCtx(t), "big", 4<<10)
	assert.ErrorIs(t, err, ErrMessageTooLarge)
	out, err := pool.Call(testCtx(t), "big", 10)
	require.NoError(t, err)
	assert.Equal(t, []byte("xxxxxxxxxx"), out)
}

// TestNestingLimit pins the limit of docs/errors.md (ErrResultNotEncodable's
// row): a result may nest 1024 containers deep, the reply's
// own array around them (msgpack >= 1.2's packer starts with a limit of
// 1024 and refuses a container once it is below 0), whatever codec the
// worker runs: the pure one, or msgpack 1.0's C extension, whose own limit
// of 511 the runtime lifts by packing deeper values with the pure packer.
func TestNestingLimit(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := interpreterPool(t, python)
			_, err := pool.Call(testCtx(t), "deep", 1023) // 1024 nested lists
			require.NoError(t, err)
			_, err = pool.Call(testCtx(t), "deep", 1024) // 1025
			require.ErrorIs(t, err, ErrResultNotEncodable)
		})
	}
}

// TestStructTagJSON: with Config.StructTag "json", struct fields that have
// only json tags cross in both directions; without it they are matched by
// field name, and a Python key in lower case does not fill them.
func TestStructTagJSON(t *testing.T) {
	type prediction struct {
		Label string  `json:"label"`
		Score float64 `json:"score,omitempty"`
	}
	in := map[string]any{"label": "cat", "score": 0.9}

	plain := newTestPool(t, testConfig(t))
	got, err := CallAs[prediction](testCtx(t), plain, "echo", in)
	require.NoError(t, err)
	assert.Equal(t, prediction{}, got, "json tags are not msgpack tags by default")

	cfg := testConfig(t)
	cfg.StructTag = "json"
	pool := newTestPool(t, cfg)
	got, err = CallAs[prediction](testCtx(t), pool, "echo", in)
	require.NoError(t, err)
	assert.Equal(t, prediction{Label: "cat", Score: 0.9}, got)

	out, err := pool.Call(testCtx(t), "echo", prediction{Label: "dog"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"label": "dog"}, out, "arguments use the json names too, omitempty included")

	err = pool.Transaction(testCtx(t), func(w *Worker) error {
		got, err := CallAs[prediction](testCtx(t), w, "echo", in)
		assert.Equal(t, prediction{Label: "cat", Score: 0.9}, got)
		return err
	})
	require.NoError(t, err)
}

// TestMapKeysPythonMerges documents that keys Python's dict holds equal
// (1, true, 1.0) merge into one; which value survives follows Go's map
// order, which is random.
func TestMapKeysPythonMerges(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	out, err := pool.Call(testCtx(t), "echo", map[any]any{int64(1): "int", true: "bool", 1.0: "float"})
	require.NoError(t, err)
	m, ok := out.(map[any]any)
	require.True(t, ok, "%T", out)
	assert.Len(t, m, 1, "one key survives: %v", m)
}
