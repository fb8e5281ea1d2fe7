package pypool

import (
	"encoding/binary"
	"math"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// float64Ext is an NDARRAY of float64 with the given shape and values.
func float64Ext(t testing.TB, shape []int, vals ...float64) []byte {
	data := make([]byte, 0, 8*len(vals))
	for _, v := range vals {
		data = binary.LittleEndian.AppendUint64(data, math.Float64bits(v))
	}
	return ndarrayExt(t, "<f8", shape, data)
}

// marshalWith encodes v, where msgpack.RawMessage values stand for
// extension values built by hand.
func marshalWith(t testing.TB, v any) []byte {
	b, err := msgpack.Marshal(v)
	require.NoError(t, err)
	return b
}

// intoFastPath decodes b into a *[]E and checks the result against want.
func intoFastPath[E Element](t *testing.T, b []byte, want []E) {
	t.Helper()
	var got []E
	require.NoError(t, decodeValueInto(b, &got, nil))
	assert.Equal(t, want, got)
	if len(got) > 0 {
		assert.Zero(t, uintptr(unsafe.Pointer(&got[0]))%unsafe.Alignof(got[0]))
	}
}

func TestCallAsSliceFastPath(t *testing.T) {
	intoFastPath(t, float64Ext(t, []int{3}, 1, 2.5, -3), []float64{1, 2.5, -3})
	intoFastPath(t, ndarrayExt(t, "<f4", []int{1}, binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.5))), []float32{0.5})
	intoFastPath(t, ndarrayExt(t, ">i8", []int{1}, binary.BigEndian.AppendUint64(nil, uint64(1)<<40)), []int64{1 << 40})
	intoFastPath(t, ndarrayExt(t, "<i4", []int{2}, []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}), []int32{1, -1})
	intoFastPath(t, ndarrayExt(t, "<i2", []int{1}, []byte{0, 1}), []int16{256})
	intoFastPath(t, ndarrayExt(t, "|i1", []int{2}, []byte{0xff, 1}), []int8{-1, 1})
	intoFastPath(t, ndarrayExt(t, "|u1", []int{2}, []byte{0xff, 1}), []byte{0xff, 1})
	intoFastPath(t, ndarrayExt(t, "<u2", []int{1}, []byte{1, 1}), []uint16{257})
	intoFastPath(t, ndarrayExt(t, "<u4", []int{1}, []byte{0, 0, 0, 0x80}), []uint32{1 << 31})
	intoFastPath(t, ndarrayExt(t, "<u8", []int{1}, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}), []uint64{math.MaxUint64})
	intoFastPath(t, ndarrayExt(t, "|b1", []int{3}, []byte{1, 0, 3}), []bool{true, false, true})
	intoFastPath(t, float64Ext(t, []int{0}), []float64{})
}

func TestCallAsSliceFastPathMismatches(t *testing.T) {
	var f []float64
	err := decodeValueInto(ndarrayExt(t, "<f4", []int{1}, make([]byte, 4)), &f, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	require.ErrorIs(t, err, ErrDType)
	assert.Contains(t, err.Error(), "result: pypool: the array's element type is not the one asked for: an ndarray of float32 does not fit Go []float64, which takes float64")

	err = decodeValueInto(float64Ext(t, []int{2, 2}, 1, 2, 3, 4), &f, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "result: a 2-d ndarray (shape [2 2]) does not fit Go []float64, which takes a 1-d one: decode into a pypool.Array")

	err = decodeValueInto(ndarrayExt(t, "<f8", []int{2}, make([]byte, 8)), &f, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "size mismatch")

	// A list is not an ndarray: msgpack's rules.
	require.NoError(t, decodeValueInto(marshalWith(t, []any{1, 2.5}), &f, nil))
	assert.Equal(t, []float64{1, 2.5}, f)
}

func TestCallAsArray(t *testing.T) {
	var a Array
	require.NoError(t, decodeValueInto(float64Ext(t, []int{2, 1}, 1, 2), &a, nil))
	assertSameArray(t, ArrayOf([]float64{1, 2}, 2, 1), a)

	require.NoError(t, decodeValueInto(marshalWith(t, []any{[]any{1, 2}, []any{3, 4}}), &a, nil))
	assertSameArray(t, ArrayOf([]int64{1, 2, 3, 4}, 2, 2), a)

	var p *Array
	require.NoError(t, decodeValueInto(ndarrayExt(t, "|u1", []int{1}, []byte{9}), &p, nil))
	assertSameArray(t, ArrayOf([]uint8{9}), *p)
}

// TestCallAsRetriesWithLists: typed targets that are not Arrays take
// ndarrays as nested lists of numbers.
func TestCallAsRetriesWithLists(t *testing.T) {
	var rows [][]float64
	require.NoError(t, decodeValueInto(float64Ext(t, []int{2, 2}, 1, 2, 3, 4), &rows, nil))
	assert.Equal(t, [][]float64{{1, 2}, {3, 4}}, rows)

	var x float64
	require.NoError(t, decodeValueInto(float64Ext(t, []int{}, 2.5), &x, nil))
	assert.Equal(t, 2.5, x, "a 0-d ndarray is its element")

	type result struct {
		Labels []int64  `msgpack:"labels"`
		Scores Array    `msgpack:"scores"`
		Extra  []string `msgpack:"extra"`
	}
	b := marshalWith(t, map[string]any{
		"labels": msgpack.RawMessage(ndarrayExt(t, "<i4", []int{2}, []byte{1, 0, 0, 0, 2, 0, 0, 0})),
		"scores": msgpack.RawMessage(ndarrayExt(t, "<f4", []int{1}, binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.5)))),
		"extra":  []any{"a"},
	})
	var r result
	require.NoError(t, decodeValueInto(b, &r, nil))
	assert.Equal(t, []int64{1, 2}, r.Labels)
	assert.Equal(t, []string{"a"}, r.Extra)
	scores, err := r.Scores.Float64s()
	require.NoError(t, err, "after the retry an Array field holds the list's inferred dtype")
	assert.Equal(t, []float64{0.5}, scores)

	var m map[string]any
	require.NoError(t, decodeValueInto(marshalWith(t, map[string]any{"v": msgpack.RawMessage(float64Ext(t, []int{1}, 3))}), &m, nil))
	assert.Equal(t, map[string]any{"v": []any{3.0}}, m)

	// A few bytes on the wire must not become a trillion empty lists.
	err = decodeValueInto(float64Ext(t, []int{1 << 40, 0}), &rows, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "too many empty lists")
}

// TestCallAsArrayFieldKeepsItsDType: when msgpack succeeds at once, an
// Array field holds the ndarray as it came.
func TestCallAsArrayFieldKeepsItsDType(t *testing.T) {
	type result struct {
		Scores Array  `msgpack:"scores"`
		Name   string `msgpack:"name"`
	}
	b := marshalWith(t, map[string]any{
		"scores": msgpack.RawMessage(ndarrayExt(t, "<f4", []int{1}, binary.LittleEndian.AppendUint32(nil, math.Float32bits(0.5)))),
		"name":   "n",
	})
	var r result
	require.NoError(t, decodeValueInto(b, &r, nil))
	got, err := r.Scores.Float32s()
	require.NoError(t, err)
	assert.Equal(t, []float32{0.5}, got)
}
