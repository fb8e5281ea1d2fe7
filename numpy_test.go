package pypool

// numpy_test.go: arrays through real workers (testdata/pymod/pypool_datamod.py),
// both ways, on the interpreter that has numpy (Debian's /usr/bin/python3 with
// python3-numpy) and, for pypool_runtime.Array, on one that has not (python3).
// Every case runs with the shared memory at its default threshold, at a small
// one (1 KiB) and off, with arrays on both sides of the threshold.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// number is the Element types but bool.
type number interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// seq returns n elements made by f.
func seq[T any](n int, f func(i int) T) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = f(i)
	}
	return s
}

// patternArray is a 1-d array of n elements of dtype: i%100, or i%3 == 0
// for bools.
func patternArray(dtype DType, n int) Array {
	switch dtype {
	case Bool:
		return ArrayOf(seq(n, func(i int) bool { return i%3 == 0 }))
	case Int8:
		return patternOf[int8](n)
	case Int16:
		return patternOf[int16](n)
	case Int32:
		return patternOf[int32](n)
	case Int64:
		return patternOf[int64](n)
	case Uint8:
		return patternOf[uint8](n)
	case Uint16:
		return patternOf[uint16](n)
	case Uint32:
		return patternOf[uint32](n)
	case Uint64:
		return patternOf[uint64](n)
	case Float32:
		return patternOf[float32](n)
	}
	return patternOf[float64](n)
}

func patternOf[T number](n int) Array { return ArrayOf(seq(n, func(i int) T { return T(i % 100) })) }

// extremeArray is what pypool_datamod.extremes(dtype) makes: the ends of
// the dtype's range and a few values in between.
func extremeArray(dtype DType) Array {
	switch dtype {
	case Bool:
		return ArrayOf([]bool{true, false, true, true})
	case Int8:
		return ArrayOf([]int8{math.MinInt8, math.MaxInt8, 0, 1})
	case Int16:
		return ArrayOf([]int16{math.MinInt16, math.MaxInt16, 0, 1})
	case Int32:
		return ArrayOf([]int32{math.MinInt32, math.MaxInt32, 0, 1})
	case Int64:
		return ArrayOf([]int64{math.MinInt64, math.MaxInt64, 0, 1})
	case Uint8:
		return ArrayOf([]uint8{0, math.MaxUint8, 0, 1})
	case Uint16:
		return ArrayOf([]uint16{0, math.MaxUint16, 0, 1})
	case Uint32:
		return ArrayOf([]uint32{0, math.MaxUint32, 0, 1})
	case Uint64:
		return ArrayOf([]uint64{0, math.MaxUint64, 0, 1})
	case Float32:
		tiny := math.Float32frombits(0x00800000) // numpy's finfo(float32).tiny
		return ArrayOf([]float32{0, -1.5, math.MaxFloat32, -math.MaxFloat32, tiny,
			float32(math.Inf(1)), float32(math.Inf(-1))})
	}
	tiny := math.Float64frombits(0x0010000000000000) // numpy's finfo(float64).tiny
	return ArrayOf([]float64{0, -1.5, math.MaxFloat64, -math.MaxFloat64, tiny, math.Inf(1), math.Inf(-1)})
}

var allDTypes = []DType{Bool, Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Float32, Float64}

// elements returns a's elements, flat in C order, as Call decodes the
// Python numbers numpy's tolist() makes of them: bool, int64 (uint64 above
// math.MaxInt64), float64.
func elements(t testing.TB, a Array) []any {
	t.Helper()
	var out []any
	add := func(v any) { out = append(out, v) }
	var err error
	switch a.DType {
	case Bool:
		var s []bool
		s, err = a.Bools()
		for _, v := range s {
			add(v)
		}
	case Float32:
		var s []float32
		s, err = a.Float32s()
		for _, v := range s {
			add(float64(v))
		}
	case Float64:
		var s []float64
		s, err = a.Float64s()
		for _, v := range s {
			add(v)
		}
	case Uint64:
		var s []uint64
		s, err = a.Uint64s()
		for _, v := range s {
			if v > math.MaxInt64 {
				add(v)
			} else {
				add(int64(v))
			}
		}
	default:
		var ints func(int) int64
		ints, err = intsOf(a)
		for i := range a.Len() {
			add(ints(i))
		}
	}
	require.NoError(t, err)
	return out
}

// tolist is numpy's a.tolist() as Call decodes it: nested lists of shape
// a.Shape, the one element of a 0-d array.
func tolist(t testing.TB, a Array) any {
	flat := elements(t, a)
	if len(a.Shape) == 0 {
		return flat[0]
	}
	var nest func(dim int) any
	nest = func(dim int) any {
		list := make([]any, a.Shape[dim])
		for i := range list {
			if dim == len(a.Shape)-1 {
				list[i], flat = flat[0], flat[1:]
			} else {
				list[i] = nest(dim + 1)
			}
		}
		return list
	}
	return nest(0)
}

// shapeOf is a shape as Python's list(shape) comes back.
func shapeOf(shape []int) []any {
	out := make([]any, len(shape))
	for i, d := range shape {
		out[i] = int64(d)
	}
	return out
}

// requireSameArray checks that got holds exactly want (dtype, shape,
// bytes), naming the first differing element rather than dumping them.
func requireSameArray(t testing.TB, want Array, got any, what string) {
	t.Helper()
	a, ok := got.(Array)
	require.True(t, ok, "%s: got a %T, not an Array", what, got)
	require.Equal(t, want.DType, a.DType, "%s: dtype", what)
	require.True(t, slices.Equal(want.Shape, a.Shape), "%s: shape %v, want %v", what, a.Shape, want.Shape)
	if !bytes.Equal(want.Data, a.Data) {
		size := want.DType.Size()
		for i := 0; i < min(len(want.Data), len(a.Data)); i += size {
			if !bytes.Equal(want.Data[i:i+size], a.Data[i:i+size]) {
				t.Fatalf("%s: element %d is %v, want %v", what, i/size, elements(t, a)[i/size], elements(t, want)[i/size])
			}
		}
		t.Fatalf("%s: %d bytes of data, want %d", what, len(a.Data), len(want.Data))
	}
}

// checkDescribed checks what pypool_datamod.describe said of an array sent
// from Go: its Python class, dtype, shape, byte order, and its elements
// (all of them, or for large arrays the first and last three and the sum).
func checkDescribed(t testing.TB, pyType string, want Array, got any, what string) {
	t.Helper()
	d, ok := got.(map[string]any)
	require.True(t, ok, "%s: described as %T %v", what, got, got)
	assert.Equal(t, pyType, d["type"], what)
	assert.Equal(t, string(want.DType), d["dtype"], what)
	assert.Equal(t, shapeOf(want.Shape), d["shape"], what)
	order := "<"
	if want.DType.Size() == 1 {
		order = "|"
	}
	assert.Equal(t, order, d["byteorder"], what)
	if pyType == "numpy.ndarray" {
		assert.Equal(t, true, d["writeable"], "%s: a writable ndarray", what)
		assert.Equal(t, true, d["owndata"], "%s: an ndarray that owns its data", what)
	} else {
		assert.Equal(t, true, d["readonly"], "%s: pypool_runtime.Array is read-only", what)
	}
	if _, ok := d["values"]; ok {
		assert.Equal(t, tolist(t, want), d["values"], "%s: values", what)
		return
	}
	n := want.Len()
	edge := func(from int) []any { // elements [from, from+3) without boxing them all
		size := want.DType.Size()
		return elements(t, Array{DType: want.DType, Shape: []int{3}, Data: want.Data[from*size : (from+3)*size]})
	}
	assert.Equal(t, edge(0), d["first"], "%s: first elements", what)
	assert.Equal(t, edge(n-3), d["last"], "%s: last elements", what)
	assert.Equal(t, sumOf(t, want), d["sum"], "%s: sum", what)
}

// sumOf is the sum of a's elements as a float64 (true counting 1).
func sumOf(t testing.TB, a Array) float64 {
	t.Helper()
	sum := 0.0
	switch a.DType {
	case Bool, Uint8:
		for _, b := range a.Data {
			sum += float64(b)
		}
	case Float32:
		s, err := a.Float32s()
		require.NoError(t, err)
		for _, v := range s {
			sum += float64(v)
		}
	case Float64:
		s, err := a.Float64s()
		require.NoError(t, err)
		for _, v := range s {
			sum += v
		}
	case Uint64:
		s, err := a.Uint64s()
		require.NoError(t, err)
		for _, v := range s {
			sum += float64(v)
		}
	default:
		ints, err := intsOf(a)
		require.NoError(t, err)
		for i := range a.Len() {
			sum += float64(ints(i))
		}
	}
	return sum
}

// numpyMaxMessage is the Config.MaxMessageSize of TestNumpyArrays' pools:
// larger than any of its values, smaller than the one that must be refused.
const numpyMaxMessage = 8 << 20

// TestNumpyArrays runs the numpy checks below through one worker per
// shared-memory setting (default threshold, 1 KiB, off), each with arrays
// on both sides of the threshold, so that the inline and the shared-memory
// paths are both taken, in both directions.
func TestNumpyArrays(t *testing.T) {
	python := numpyPython(t)
	var arrays []Array // every dtype: its extremes, and a pattern below and above the thresholds
	for _, dtype := range allDTypes {
		arrays = append(arrays,
			extremeArray(dtype),
			patternArray(dtype, 1000), // 1000 to 8000 bytes: around 1 KiB
			patternArray(dtype, DefaultSharedMemoryThreshold/dtype.Size()+16))
	}
	madeSizes := []int{10, 1000, 34000} // 34000 int64s: 272 KB, above the default threshold
	made := make(map[int]map[string]Array)
	for _, n := range madeSizes {
		made[n] = madeInPython(n)
	}
	for _, tc := range thresholdCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := dataConfig(t, python, tc.threshold)
			cfg.MaxMessageSize = numpyMaxMessage
			pool := newTestPool(t, cfg)
			t.Run("EveryDTypeFromPython", func(t *testing.T) { numpyEveryDTypeFromPython(t, pool) })
			t.Run("EveryDTypeRoundTrip", func(t *testing.T) { numpyEveryDTypeRoundTrip(t, pool, arrays) })
			t.Run("ArrayOfArrivesAsNdarray", func(t *testing.T) { numpyArrayOfArrivesAsNdarray(t, pool) })
			t.Run("MadeInPython", func(t *testing.T) { numpyMadeInPython(t, pool, madeSizes, made) })
			t.Run("InContainersAndKwargs", func(t *testing.T) { numpyInContainersAndKwargs(t, pool) })
			t.Run("CallAsTargets", func(t *testing.T) { numpyCallAsTargets(t, pool) })
			t.Run("ResultOfAnotherObject", func(t *testing.T) { numpyResultOfAnotherObject(t, pool) })
			t.Run("TypeMismatch", func(t *testing.T) { numpyTypeMismatch(t, pool) })
			t.Run("UnsupportedDType", func(t *testing.T) { numpyUnsupportedDType(t, pool) })
			t.Run("ResultLargerThanMaxMessageSize", func(t *testing.T) { numpyResultTooLarge(t, pool) })
			t.Run("ReplyLimitCountsBothParts", func(t *testing.T) { numpyReplyLimitCountsBothParts(t, pool) })
		})
	}
}

// numpyEveryDTypeFromPython: an ndarray of each dtype made by numpy, of the
// extremes of its range, arrives in Go with its dtype and values.
func numpyEveryDTypeFromPython(t *testing.T, pool *Pool) {
	out, err := pool.Call(testCtx(t), "every_dtype")
	require.NoError(t, err)
	got := out.(map[string]any)
	require.Len(t, got, len(allDTypes))
	for _, dtype := range allDTypes {
		requireSameArray(t, extremeArray(dtype), got[string(dtype)], string(dtype))
	}
}

// numpyEveryDTypeRoundTrip: an Array of each dtype arrives in Python as a
// writable numpy.ndarray that owns its data, of that dtype, shape and
// values, and comes back unchanged.
func numpyEveryDTypeRoundTrip(t *testing.T, pool *Pool, arrays []Array) {
	for _, a := range arrays {
		what := fmt.Sprintf("%s[%d]", a.DType, a.Len())
		desc, err := pool.Call(testCtx(t), "describe", a)
		require.NoError(t, err, what)
		checkDescribed(t, "numpy.ndarray", a, desc, what)
		back, err := pool.Call(testCtx(t), "echo", a)
		require.NoError(t, err, what)
		requireSameArray(t, a, back, what+" echoed")
	}
}

// numpyArrayOfArrivesAsNdarray: ArrayOf of Go slices, with and without a
// shape (0-d, empty, 2-d, 3-d), as numpy sees them.
func numpyArrayOfArrivesAsNdarray(t *testing.T, pool *Pool) {
	cube := ArrayOf(seq(24, func(i int) int64 { return int64(i) }), 2, 3, 4)
	cases := []struct {
		in     Array
		dtype  string
		shape  []any
		values any
	}{
		{ArrayOf([]float64{1.5, -2, math.Pi}), "float64", []any{int64(3)}, []any{1.5, -2.0, math.Pi}},
		{ArrayOf([]float32{0.25, 3}, 2, 1), "float32", []any{int64(2), int64(1)}, []any{[]any{0.25}, []any{3.0}}},
		{ArrayOf([]int64{math.MinInt64, 7}), "int64", []any{int64(2)}, []any{int64(math.MinInt64), int64(7)}},
		{ArrayOf([]int32{1, 2, 3, 4, 5, 6}, 2, 3), "int32", []any{int64(2), int64(3)},
			[]any{[]any{int64(1), int64(2), int64(3)}, []any{int64(4), int64(5), int64(6)}}},
		{ArrayOf([]uint8{0, 255}), "uint8", []any{int64(2)}, []any{int64(0), int64(255)}},
		{ArrayOf([]float64{}), "float64", []any{int64(0)}, []any{}},
		{ArrayOf([]int32{}, 3, 0), "int32", []any{int64(3), int64(0)}, []any{[]any{}, []any{}, []any{}}},
		{scalar(ArrayOf([]float64{42.5})), "float64", []any{}, 42.5},
		{cube, "int64", []any{int64(2), int64(3), int64(4)}, tolist(t, cube)},
	}
	for _, tc := range cases {
		what := fmt.Sprintf("%s%v", tc.dtype, tc.in.Shape)
		out, err := pool.Call(testCtx(t), "describe", tc.in)
		require.NoError(t, err, what)
		d := out.(map[string]any)
		assert.Equal(t, "numpy.ndarray", d["type"], what)
		assert.Equal(t, tc.dtype, d["dtype"], what)
		assert.Equal(t, tc.shape, d["shape"], what)
		assert.Equal(t, tc.values, d["values"], what)
		back, err := pool.Call(testCtx(t), "echo", tc.in)
		require.NoError(t, err, what)
		requireSameArray(t, tc.in, back, what+" echoed")
	}
}

func madeInPython(n int) map[string]Array {
	half := n / 2
	arrays := map[string]Array{
		"sliced":     ArrayOf(seq(n, func(i int) int64 { return int64(2 * i) })),
		"transposed": ArrayOf(seq(3*n, func(k int) float64 { return float64((k%3)*n + k/3) }), n, 3),
		"reversed":   ArrayOf(seq(n, func(i int) int32 { return int32(n - 1 - i) })),
		"cube":       ArrayOf(seq(6*n, func(i int) float32 { return float32(i) }), 2, 3, n),
		"empty":      ArrayOf([]uint16{}, 0, 4),
		"zero_d":     scalar(ArrayOf([]int16{-7})),
		"zero_d_f8":  scalar(ArrayOf([]float64{2.5})),
		"bools":      ArrayOf(seq(n, func(i int) bool { return i%3 == 0 })),
		"big_i2":     ArrayOf(seq(n, func(i int) int16 { return int16(i - half) })),
		"big_i4":     ArrayOf(seq(n, func(i int) int32 { return int32(i - half) })),
		"big_i8":     ArrayOf(seq(n, func(i int) int64 { return int64(i - half) })),
		"big_u2":     ArrayOf(seq(n, func(i int) uint16 { return uint16(3 * i) })),
		"big_u4":     ArrayOf(seq(n, func(i int) uint32 { return uint32(3 * i) })),
		"big_u8":     ArrayOf(seq(n, func(i int) uint64 { return uint64(3 * i) })),
		"big_f4":     ArrayOf(seq(n, func(i int) float32 { return float32(i) / 4 })),
		"big_f8":     ArrayOf(seq(n, func(i int) float64 { return float64(i) / 4 })),
	}
	return arrays
}

// numpyMadeInPython: ndarrays as numpy makes them (sliced, transposed,
// reversed, big-endian, 0-d, empty, 3-d) arrive in Go in C order and the
// host's byte order, through Call and through CallAs into Arrays.
func numpyMadeInPython(t *testing.T, pool *Pool, sizes []int, made map[int]map[string]Array) {
	for _, n := range sizes {
		out, err := pool.Call(testCtx(t), "made_in_python", n)
		require.NoError(t, err)
		got := out.(map[string]any)
		want := made[n]
		require.Len(t, got, len(want))
		for name, a := range want {
			requireSameArray(t, a, got[name], fmt.Sprintf("%s(n=%d)", name, n))
		}
		typed, err := CallAs[map[string]Array](testCtx(t), pool, "made_in_python", n)
		require.NoError(t, err)
		for name, a := range want {
			requireSameArray(t, a, typed[name], fmt.Sprintf("CallAs %s(n=%d)", name, n))
		}
	}
}

// numpyInContainersAndKwargs: ndarrays inside lists, tuples and dicts, both
// ways, and as keyword arguments.
func numpyInContainersAndKwargs(t *testing.T, pool *Pool) {
	for _, n := range []int{5, 40000} { // 40000 int32s: 160 KB
		out, err := pool.Call(testCtx(t), "nested_arrays", n)
		require.NoError(t, err)
		got := out.(map[string]any)
		list := got["list"].([]any)
		requireSameArray(t, ArrayOf(seq(n, func(i int) int32 { return int32(i) })), list[0], "list[0]")
		inner := list[1].(map[string]any)
		requireSameArray(t, ArrayOf([]float64{0.5, 0.5, 0.5, 0.5}, 2, 2), inner["inner"], "list[1].inner")
		assert.Equal(t, int64(n), inner["n"])
		requireSameArray(t, ArrayOf(bytes.Repeat([]byte{1}, n)), got["tuple"].([]any)[0], "tuple[0]")
		assert.Equal(t, int64(3), got["plain"])

		big := ArrayOf(seq(4*n, func(i int) float64 { return float64(i) / 8 }), 4, n) // 160 B or 1.28 MB
		small := ArrayOf([]int16{-1, 2})
		arg := []any{big, map[string]any{"x": small, "s": "text"}, map[any]any{int64(1): big}}
		desc, err := pool.Call(testCtx(t), "describe", arg)
		require.NoError(t, err)
		d := desc.([]any)
		checkDescribed(t, "numpy.ndarray", big, d[0], "[0]")
		checkDescribed(t, "numpy.ndarray", small, d[1].(map[string]any)["x"], "[1].x")
		assert.Equal(t, map[string]any{"type": "str", "value": "text"}, d[1].(map[string]any)["s"])
		checkDescribed(t, "numpy.ndarray", big, d[2].(map[any]any)[int64(1)], "[2][1]")

		back, err := pool.Call(testCtx(t), "echo", arg)
		require.NoError(t, err)
		b := back.([]any)
		requireSameArray(t, big, b[0], "echo [0]")
		requireSameArray(t, small, b[1].(map[string]any)["x"], "echo [1].x")
		requireSameArray(t, big, b[2].(map[any]any)[int64(1)], "echo [2][1]")

		kw, err := pool.Call(testCtx(t), "describe_kwargs", Kwargs{"weights": big, "offsets": small})
		require.NoError(t, err)
		k := kw.(map[string]any)
		checkDescribed(t, "numpy.ndarray", big, k["weights"], "kwargs weights")
		checkDescribed(t, "numpy.ndarray", small, k["offsets"], "kwargs offsets")
		kwBack, err := pool.Call(testCtx(t), "kwargs_echo", Kwargs{"weights": big, "n": n})
		require.NoError(t, err)
		requireSameArray(t, big, kwBack.(map[string]any)["weights"], "kwargs echoed")
	}
}

// numpyRecord is a CallAs target for pypool_datamod.record: an Array field
// and a []float64 field, both given ndarrays.
type numpyRecord struct {
	Name    string    `msgpack:"name"`
	Matrix  Array     `msgpack:"matrix"`
	Weights []float64 `msgpack:"weights"`
	Count   int       `msgpack:"count"`
}

// numpyCallAsTargets: CallAs of ndarrays into []float64, []int32, Array,
// and a struct with an Array field and a []float64 field; of Python lists
// into an Array; and the error for an ndarray of another dtype.
func numpyCallAsTargets(t *testing.T, pool *Pool) {
	ctx := testCtx(t)
	for _, n := range []int{7, 1000, 34000} {
		quarters := seq(n, func(i int) float64 { return float64(i) / 4 })
		fs, err := CallAs[[]float64](ctx, pool, "floats", n)
		require.NoError(t, err)
		require.Equal(t, quarters, fs)

		fs, err = CallAs[[]float64](ctx, pool, "echo", ArrayOf(quarters))
		require.NoError(t, err)
		require.Equal(t, quarters, fs)

		a, err := CallAs[Array](ctx, pool, "floats", n)
		require.NoError(t, err)
		requireSameArray(t, ArrayOf(quarters), a, "CallAs[Array]")

		is, err := CallAs[[]int32](ctx, pool, "int32s", n)
		require.NoError(t, err)
		require.Equal(t, seq(n, func(i int) int32 { return int32(i) }), is)

		_, err = CallAs[[]float64](ctx, pool, "int32s", n)
		require.ErrorIs(t, err, ErrResultNotDecodable)
		require.ErrorIs(t, err, ErrDType)
		assert.Contains(t, err.Error(), "int32")

		rec, err := CallAs[numpyRecord](ctx, pool, "record", n)
		require.NoError(t, err)
		assert.Equal(t, "rec", rec.Name)
		assert.Equal(t, n, rec.Count)
		assert.Equal(t, seq(n, func(i int) float64 { return float64(i) / 2 }), rec.Weights)
		// The []float64 field made CallAs decode the ndarrays as lists: the
		// Array field holds the values with the dtype inferred from them
		// (documented at CallAs).
		requireSameArray(t, ArrayOf(seq(2*n, func(i int) int64 { return int64(i) }), 2, n), rec.Matrix, "record.Matrix")

		// Without a field that needs lists, the Array keeps its dtype.
		type matrixOnly struct {
			Matrix Array `msgpack:"matrix"`
		}
		m, err := CallAs[matrixOnly](ctx, pool, "record", n)
		require.NoError(t, err)
		requireSameArray(t, ArrayOf(seq(2*n, func(i int) int32 { return int32(i) }), 2, n), m.Matrix, "matrixOnly.Matrix")
	}

	a, err := CallAs[Array](ctx, pool, "nested_list")
	require.NoError(t, err)
	requireSameArray(t, ArrayOf([]int64{1, 2, 3, 4, 5, 6}, 2, 3), a, "array-like ints")
	a, err = CallAs[Array](ctx, pool, "float_list")
	require.NoError(t, err)
	requireSameArray(t, ArrayOf([]float64{0.5, 1, 2}), a, "array-like floats")
}

// numpyResultOfAnotherObject: a function that returns a new array computed
// from its argument, not the argument itself.
func numpyResultOfAnotherObject(t *testing.T, pool *Pool) {
	for _, n := range []int{3, 100000} {
		in := ArrayOf(seq(n, func(i int) int64 { return int64(i) - 5 }))
		out, err := pool.Call(testCtx(t), "add_one", in)
		require.NoError(t, err)
		requireSameArray(t, ArrayOf(seq(n, func(i int) int64 { return int64(i) - 4 })), out, "add_one")
		out, err = pool.Call(testCtx(t), "double", in)
		require.NoError(t, err)
		requireSameArray(t, ArrayOf(seq(n, func(i int) int64 { return 2 * (int64(i) - 5) })), out, "double")
	}
}

// numpyTypeMismatch: an ndarray where a struct wants an int64 is
// ErrResultNotDecodable naming the path, the ndarray's dtype, the Go type
// and the field.
func numpyTypeMismatch(t *testing.T, pool *Pool) {
	type counted struct {
		Name  string `msgpack:"name"`
		Count int64  `msgpack:"count"`
	}
	for _, n := range []int{3, 40000} {
		_, err := CallAs[counted](testCtx(t), pool, "count_of_floats", n)
		require.ErrorIs(t, err, ErrResultNotDecodable)
		var pe *PythonError
		assert.False(t, errors.As(err, &pe), "a Go-side error, not Python's")
		msg := err.Error()
		for _, part := range []string{`result["count"]`, "ndarray of float64", "Go int64", "counted.Count"} {
			assert.True(t, strings.Contains(msg, part), "%q does not say %q", msg, part)
		}
	}
}

// numpyUnsupportedDType: an ndarray of a dtype pypool does not carry is
// refused by Python with a message naming it; the worker stays.
func numpyUnsupportedDType(t *testing.T, pool *Pool) {
	_, err := pool.Call(testCtx(t), "complex_array")
	require.ErrorIs(t, err, ErrResultNotEncodable)
	assert.Contains(t, err.Error(), "complex128")
	out, err := pool.Call(testCtx(t), "echo", 1)
	require.NoError(t, err)
	assert.Equal(t, int64(1), out)
}

// numpyResultTooLarge: an ndarray result larger than Config.MaxMessageSize
// is ErrMessageTooLarge, with Python's code message_too_large (docs/errors.md:
// "Python sends the error instead of the reply"), whichever way it would
// have crossed; the worker stays.
func numpyResultTooLarge(t *testing.T, pool *Pool) {
	pids := workerPids(pool)
	_, err := pool.Call(testCtx(t), "big_array", numpyMaxMessage/8+1024)
	require.ErrorIs(t, err, ErrMessageTooLarge)
	var pe *PythonError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "message_too_large", pe.Code)

	out, err := CallAs[[]float64](testCtx(t), pool, "big_array", 4)
	require.NoError(t, err)
	assert.Equal(t, []float64{0, 0.5, 1, 1.5}, out)
	assert.Equal(t, pids, workerPids(pool), "the worker stays")
}

// numpyReplyLimitCountsBothParts: a reply whose ndarray (through the shared
// memory) and bytes (inline) add up to more than Config.MaxMessageSize,
// though each fits, is ErrMessageTooLarge, as the worker's general path
// (taken for calls with keyword arguments) says, and as the Go side counts
// a call (frame plus shared memory).
func numpyReplyLimitCountsBothParts(t *testing.T, pool *Pool) {
	floats, inline := (numpyMaxMessage-8<<10)/8, 60000 // 8 MiB - 8 KiB, and 60 KB
	for what, args := range map[string][]any{
		"keyword arguments (the general path)": {floats, inline, Kwargs{"x": 1}},
		"positional arguments (the fast path)": {floats, inline},
	} {
		_, err := pool.Call(testCtx(t), "array_and_bytes", args...)
		require.ErrorIs(t, err, ErrMessageTooLarge, what)
	}
	out, err := pool.Call(testCtx(t), "array_and_bytes", 3, 4)
	require.NoError(t, err)
	requireSameArray(t, ArrayOf([]float64{0, 0, 0}), out.([]any)[0], "small")
}

// TestNumpy64MiBRoundTrip: a 64 MiB float64 array from Go to numpy, which
// checks it, and back, with MaxMessageSize raised for it.
func TestNumpy64MiBRoundTrip(t *testing.T) {
	python := numpyPython(t)
	n := 8 << 20 // 64 MiB of float64
	data := make([]float64, n)
	for i := range 4096 {
		data[i] = float64(i) * 0.5
	}
	for filled := 4096; filled < n; filled *= 2 { // in bulk: element loops are slow under -race
		copy(data[filled:], data[:filled])
	}
	positions := []int{0, 1, n / 3, n/2 + 7, n - 1}
	for k, p := range positions {
		data[p] = -float64(k) - 0.25 // unlike anything else in the array
	}
	at := make([]any, len(positions))
	for i, p := range positions {
		at[i] = data[p]
	}
	cfg := dataConfig(t, python, 0)
	cfg.MaxMessageSize = 64<<20 + 1<<20
	pool := newTestPool(t, cfg)
	out, err := pool.Call(testCtx(t), "check_and_return", ArrayOf(data), positions)
	require.NoError(t, err)
	got := out.(map[string]any)
	assert.Equal(t, map[string]any{"shape": []any{int64(n)}, "at": at}, got["check"])
	a := got["array"].(Array)
	require.Equal(t, Float64, a.DType)
	require.Equal(t, []int{n}, a.Shape)
	back, err := a.Float64s()
	require.NoError(t, err)
	for _, p := range append(positions, 2, 4095, 4096, n-2) {
		require.Equal(t, data[p], back[p], "element %d", p)
	}
	require.True(t, bytes.Equal(a.Data, ArrayOf(data).Data), "the data came back unchanged")
}

// TestFallbackArrayWithoutNumpy: where numpy is missing, an Array arrives
// as a read-only pypool_runtime.Array with its dtype, shape and tolist(),
// and goes back to Go unchanged, inline and through the shared memory.
func TestFallbackArrayWithoutNumpy(t *testing.T) {
	python := noNumpyPython(t)
	arrays := []Array{
		ArrayOf([]float64{1.5, -2}, 2, 1),
		scalar(ArrayOf([]int32{-9})),
		ArrayOf([]uint16{}, 0, 3),
		ArrayOf(seq(24, func(i int) int8 { return int8(i) }), 2, 3, 4),
	}
	for _, dtype := range allDTypes {
		arrays = append(arrays, extremeArray(dtype), patternArray(dtype, 2000))
	}
	large := []Array{patternArray(Float64, 40000), patternArray(Uint8, 300000)}
	for _, tc := range thresholdCases {
		t.Run(tc.name, func(t *testing.T) {
			pool := dataPool(t, python, tc.threshold)
			has, err := pool.Call(testCtx(t), "has_numpy")
			require.NoError(t, err)
			require.Equal(t, false, has)
			for _, a := range arrays {
				what := fmt.Sprintf("%s%v", a.DType, a.Shape)
				desc, err := pool.Call(testCtx(t), "describe", a)
				require.NoError(t, err, what)
				checkDescribed(t, "pypool_runtime.Array", a, desc, what)
				back, err := pool.Call(testCtx(t), "echo", a)
				require.NoError(t, err, what)
				requireSameArray(t, a, back, what+" echoed")
			}
			// Large ones are checked by echo only (describe lists every element).
			for _, a := range large {
				back, err := pool.Call(testCtx(t), "echo", []any{a, "x"})
				require.NoError(t, err)
				requireSameArray(t, a, back.([]any)[0], fmt.Sprintf("%s[%d] echoed", a.DType, a.Len()))
			}
			fs, err := CallAs[[]float64](testCtx(t), pool, "echo", large[0])
			require.NoError(t, err)
			want, _ := large[0].Float64s()
			require.Equal(t, want, fs)
		})
	}
}

// TestFallbackArraysMadeInPython: pypool_runtime.Array values made by
// Python, big-endian and 0-d included, arrive in Go; they need no numpy.
func TestFallbackArraysMadeInPython(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := dataPool(t, python, smallThreshold)
			out, err := pool.Call(testCtx(t), "fallback_arrays")
			require.NoError(t, err)
			got := out.(map[string]any)
			requireSameArray(t, ArrayOf([]float64{0.5, 1.5, -2, 4}, 2, 2), got["f8"], "f8")
			requireSameArray(t, ArrayOf([]int32{-1, 2, 1 << 30}), got["big_i4"], "big_i4")
			requireSameArray(t, scalar(ArrayOf([]uint16{65535})), got["zero_d"], "zero_d")
		})
	}
}
