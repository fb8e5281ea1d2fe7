package pypool

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// decodeArray decodes an ext value through Call's decoder.
func decodeArray(t *testing.T, b []byte) Array {
	t.Helper()
	v, err := decodeValue(b, false, nil)
	require.NoError(t, err)
	a, ok := v.(Array)
	require.True(t, ok, "decoded %T", v)
	return a
}

func TestDTypeSize(t *testing.T) {
	sizes := map[DType]int{Bool: 1, Int8: 1, Uint8: 1, Int16: 2, Uint16: 2, Int32: 4, Uint32: 4,
		Float32: 4, Int64: 8, Uint64: 8, Float64: 8, "complex128": 0, "": 0}
	for dtype, size := range sizes {
		assert.Equal(t, size, dtype.Size(), dtype)
	}
}

// TestNDArrayEveryDType decodes hand-built payloads of every dtype, in both
// byte orders, and reads them back through their view.
func TestNDArrayEveryDType(t *testing.T) {
	type want struct {
		kind string
		view func(Array) (any, error)
		vals any
		le   func([]byte) []byte // little-endian bytes of vals
	}
	cases := map[DType]want{
		Int16:   {"i2", func(a Array) (any, error) { return a.Int16s() }, []int16{1, -2, 300}, nil},
		Int32:   {"i4", func(a Array) (any, error) { return a.Int32s() }, []int32{1, -2, 1 << 30}, nil},
		Int64:   {"i8", func(a Array) (any, error) { return a.Int64s() }, []int64{1, -2, math.MinInt64}, nil},
		Uint16:  {"u2", func(a Array) (any, error) { return a.Uint16s() }, []uint16{1, 2, 65535}, nil},
		Uint32:  {"u4", func(a Array) (any, error) { return a.Uint32s() }, []uint32{1, 2, 1 << 31}, nil},
		Uint64:  {"u8", func(a Array) (any, error) { return a.Uint64s() }, []uint64{1, 2, math.MaxUint64}, nil},
		Float32: {"f4", func(a Array) (any, error) { return a.Float32s() }, []float32{1.5, -2, float32(math.Inf(1))}, nil},
		Float64: {"f8", func(a Array) (any, error) { return a.Float64s() }, []float64{1.5, -2, math.Pi}, nil},
	}
	for dtype, c := range cases {
		t.Run(string(dtype), func(t *testing.T) {
			var le, be bytes.Buffer
			require.NoError(t, binary.Write(&le, binary.LittleEndian, c.vals))
			require.NoError(t, binary.Write(&be, binary.BigEndian, c.vals))
			for order, data := range map[string][]byte{"<": le.Bytes(), ">": be.Bytes()} {
				a := decodeArray(t, ndarrayExt(t, order+c.kind, []int{3}, data))
				assert.Equal(t, dtype, a.DType)
				assert.Equal(t, []int{3}, a.Shape)
				got, err := c.view(a)
				require.NoError(t, err)
				assert.Equal(t, c.vals, got, "byte order %s", order)
			}
		})
	}
	for dtype, c := range map[DType]struct {
		wire string
		data []byte
		want any
		view func(Array) (any, error)
	}{
		Bool:  {"|b1", []byte{0, 1, 7}, []bool{false, true, true}, func(a Array) (any, error) { return a.Bools() }},
		Int8:  {"|i1", []byte{0, 1, 0xff}, []int8{0, 1, -1}, func(a Array) (any, error) { return a.Int8s() }},
		Uint8: {"|u1", []byte{0, 1, 0xff}, []uint8{0, 1, 255}, func(a Array) (any, error) { return a.Uint8s() }},
	} {
		a := decodeArray(t, ndarrayExt(t, c.wire, []int{3}, c.data))
		assert.Equal(t, dtype, a.DType)
		got, err := c.view(a)
		require.NoError(t, err)
		assert.Equal(t, c.want, got, dtype)
	}
}

func TestNDArrayBoolsAreNormalized(t *testing.T) {
	a := decodeArray(t, ndarrayExt(t, "|b1", []int{3}, []byte{0, 2, 0xff}))
	assert.Equal(t, []byte{0, 1, 1}, a.Data, "numpy's true is any non-zero byte; Go's is 1")
}

func TestNDArrayShapes(t *testing.T) {
	zeroD := decodeArray(t, ndarrayExt(t, "<f8", []int{}, binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5))))
	assert.Empty(t, zeroD.Shape)
	assert.Equal(t, 1, zeroD.Len())
	f, err := zeroD.Float64s()
	require.NoError(t, err)
	assert.Equal(t, []float64{2.5}, f)

	empty := decodeArray(t, ndarrayExt(t, "<i4", []int{0}, nil))
	assert.Equal(t, []int{0}, empty.Shape)
	ints, err := empty.Int32s()
	require.NoError(t, err)
	assert.Empty(t, ints)

	emptyRows := decodeArray(t, ndarrayExt(t, "<i4", []int{3, 0}, nil))
	assert.Equal(t, 0, emptyRows.Len())

	data := make([]byte, 0, 24*2)
	for i := range 24 {
		data = binary.BigEndian.AppendUint16(data, uint16(i))
	}
	cube := decodeArray(t, ndarrayExt(t, ">u2", []int{2, 3, 4}, data))
	assert.Equal(t, []int{2, 3, 4}, cube.Shape)
	assert.Equal(t, 24, cube.Len())
	u, err := cube.Uint16s()
	require.NoError(t, err)
	assert.Equal(t, uint16(23), u[23], "C order, swapped into the host's byte order")
}

func TestDecodedArrayDataIsAligned(t *testing.T) {
	for _, prefix := range []int{0, 1, 3, 5} {
		// Put the ndarray inside a list after strings of several lengths, so
		// that its data starts at every offset of the message.
		b, err := msgpack.Marshal([]any{strings.Repeat("x", prefix)})
		require.NoError(t, err)
		b[0]++ // the list has one more element: the ndarray
		b = append(b, ndarrayExt(t, "<f8", []int{2}, make([]byte, 16))...)
		v, err := decodeValue(b, true, nil)
		require.NoError(t, err)
		a := v.([]any)[1].(Array)
		assert.Zero(t, uintptr(unsafe.Pointer(&a.Data[0]))%8)
	}
}

// TestArrayRoundTrip: an Array encodes as ext 127 and decodes back, through
// Call's decoder and through msgpack into an *Array.
func TestArrayRoundTrip(t *testing.T) {
	arrays := []Array{
		ArrayOf([]float64{1, 2, 3, 4, 5, 6}, 2, 3),
		ArrayOf([]int8{-1, 2}),
		ArrayOf([]bool{true, false, true}),
		scalar(ArrayOf([]uint64{math.MaxUint64})),
		ArrayOf([]float32{}),
		ArrayOf([]int16{1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2),
	}
	for _, a := range arrays {
		b, err := msgpack.Marshal(a)
		require.NoError(t, err)
		assert.Equal(t, extNDArray, int(int8(b[extHeaderLen(b)-1])), "ext type")
		got := decodeArray(t, b)
		assertSameArray(t, a, got)

		var into Array
		require.NoError(t, msgpack.Unmarshal(b, &into))
		assert.Equal(t, got, into)
	}
}

// extHeaderLen is the length of the header of the ext value b starts with.
func extHeaderLen(b []byte) int {
	if b[0] >= 0xd4 && b[0] <= 0xd8 {
		return 2
	}
	return 2 + 1<<(b[0]-0xc7)
}

func TestArrayEncodesLittleEndianHeader(t *testing.T) {
	b, err := msgpack.Marshal(ArrayOf([]int32{1, 2}))
	require.NoError(t, err)
	var header []any
	dec := msgpack.NewDecoder(bytes.NewReader(b[extHeaderLen(b):]))
	require.NoError(t, dec.Decode(&header))
	assert.Equal(t, []any{"<i4", []any{int8(2)}}, header)
	rest := b[len(b)-8:]
	assert.Equal(t, []byte{1, 0, 0, 0, 2, 0, 0, 0}, rest)
}

func TestArrayInStructRoundTrip(t *testing.T) {
	type frame struct {
		Name   string `msgpack:"name"`
		Pixels Array  `msgpack:"pixels"`
		Mask   *Array `msgpack:"mask"`
	}
	in := frame{Name: "f", Pixels: ArrayOf([]uint8{1, 2, 3, 4}, 2, 2)}
	b, err := msgpack.Marshal(in)
	require.NoError(t, err)
	var out frame
	require.NoError(t, msgpack.Unmarshal(b, &out))
	assert.Equal(t, in.Pixels.Data, out.Pixels.Data)
	assert.Equal(t, in.Pixels.Shape, out.Pixels.Shape)
	assert.Nil(t, out.Mask)
}

func TestArrayOfShares(t *testing.T) {
	data := []float64{1, 2, 3, 4, 5, 6}
	a := ArrayOf(data, 3, 2)
	assert.Equal(t, Float64, a.DType)
	assert.Equal(t, []int{3, 2}, a.Shape)
	assert.Equal(t, 48, len(a.Data))
	view, err := a.Float64s()
	require.NoError(t, err)
	view[0] = 10
	assert.Equal(t, 10.0, data[0], "the view, the Array and the slice share memory")

	assert.Equal(t, []int{0}, ArrayOf([]int64(nil)).Shape)
	zeroD := scalar(ArrayOf([]int64{7}))
	assert.Equal(t, 1, zeroD.Len())
	i, err := zeroD.Int64s()
	require.NoError(t, err)
	assert.Equal(t, []int64{7}, i)
	type celsius float32
	assert.Equal(t, Float32, ArrayOf([]celsius{1}).DType, "named element types take their kind's dtype")
}

func TestArrayOfPanicsOnABadShape(t *testing.T) {
	assert.PanicsWithValue(t, "pypool.ArrayOf: shape [2 2] does not hold the 3 elements of the data",
		func() { ArrayOf([]int32{1, 2, 3}, 2, 2) })
	assert.Panics(t, func() { ArrayOf([]int32{}, -1, 0) })
}

func TestViewsCheckTheDType(t *testing.T) {
	a := ArrayOf([]int32{1, 2})
	_, err := a.Float64s()
	require.ErrorIs(t, err, ErrDType)
	assert.Contains(t, err.Error(), "the array holds int32, not float64")
	_, err = a.Bools()
	require.ErrorIs(t, err, ErrDType)
	_, err = Array{}.Int8s()
	require.ErrorIs(t, err, ErrDType)
	assert.Contains(t, err.Error(), `"" (unset)`)

	bad := Array{DType: Int32, Shape: []int{3}, Data: make([]byte, 8)}
	_, err = bad.Int32s()
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrDType)
	assert.Contains(t, err.Error(), "Data holds 8 bytes, its shape [3] of int32 needs 12")
}

// TestViewOfMisalignedData: a view of Data that is not aligned for its
// element type is a copy, never a misaligned conversion (which checkptr,
// on under -race, turns into a crash).
func TestViewOfMisalignedData(t *testing.T) {
	backing := alignedBytes(8*3 + 1)
	data := backing[1:]
	for i := range 3 {
		binary.NativeEndian.PutUint64(data[i*8:], math.Float64bits(float64(i)+0.5))
	}
	a := Array{DType: Float64, Shape: []int{3}, Data: data}
	got, err := a.Float64s()
	require.NoError(t, err)
	assert.Equal(t, []float64{0.5, 1.5, 2.5}, got)

	i16 := Array{DType: Int16, Shape: []int{2}, Data: backing[1:5]}
	_, err = i16.Int16s()
	require.NoError(t, err)
}

func TestBoolsOfHandBuiltData(t *testing.T) {
	a := Array{DType: Bool, Shape: []int{3}, Data: []byte{0, 1, 5}}
	got, err := a.Bools()
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true, true}, got)
	assert.Equal(t, []byte{0, 1, 5}, a.Data, "the Array is not changed")
}

func TestArrayEncodeRejectsInconsistentArrays(t *testing.T) {
	for name, a := range map[string]Array{
		"zero":          {},
		"unknown dtype": {DType: "complex128", Shape: []int{1}, Data: make([]byte, 16)},
		"short data":    {DType: Float64, Shape: []int{2}, Data: make([]byte, 8)},
		"negative dim":  {DType: Float64, Shape: []int{-1}},
	} {
		_, err := msgpack.Marshal(a)
		assert.Error(t, err, name)
	}
}

// TestMalformedNDArrays: every malformed payload is an error that names the
// problem, never a panic or a large allocation.
func TestMalformedNDArrays(t *testing.T) {
	f8 := make([]byte, 8)
	cases := map[string]struct {
		payload []byte
		want    string
	}{
		"unknown dtype":        {ndarrayPayload(t, "<c16", []int{1}, make([]byte, 16)), `unknown dtype "<c16"`},
		"native order":         {ndarrayPayload(t, "=f8", []int{1}, f8), `unknown dtype "=f8"`},
		"one byte with <":      {ndarrayPayload(t, "<u1", []int{1}, []byte{1}), `unknown dtype "<u1"`},
		"wide type with |":     {ndarrayPayload(t, "|f8", []int{1}, f8), `unknown dtype "|f8"`},
		"negative shape":       {ndarrayPayload(t, "<f8", []int{-1}, nil), "negative dimension -1"},
		"short data":           {ndarrayPayload(t, "<f8", []int{2}, f8), "size mismatch: shape [2] of float64 needs 16 bytes of data, the payload has 8"},
		"long data":            {ndarrayPayload(t, "<f8", []int{}, make([]byte, 9)), "size mismatch"},
		"overflow":             {ndarrayPayload(t, "<f8", []int{1 << 31, 1 << 31, 1 << 31}, nil), "overflows"},
		"overflow by itemsize": {ndarrayPayload(t, "<f8", []int{1 << 61}, nil), "overflows"},
		"huge dimension":       {append([]byte{0x92, 0xa3, '<', 'f', '8', 0x91, 0xcf}, 0xff, 0, 0, 0, 0, 0, 0, 0), "overflows an int"},
		"too many dims":        {ndarrayPayload(t, "<f8", make([]int, 65), nil), "65 dimensions"},
		"huge dims count":      {[]byte{0x92, 0xa3, '<', 'f', '8', 0xdd, 0xff, 0xff, 0xff, 0xff}, "dimensions"},
		"no header":            {nil, "bad header"},
		"header not a list":    {[]byte{0xc0}, "bad header"},
		"three fields":         {[]byte{0x93, 0xa3, '<', 'f', '8', 0x90, 0xc0}, "3 fields"},
		"dtype not a string":   {[]byte{0x92, 0x01, 0x90}, "bad header"},
		"float dimension":      {[]byte{0x92, 0xa3, '<', 'f', '8', 0x91, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, "not an integer"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := decodeNDArray(c.payload)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)

			_, err = decodeValue(extValue(t, extNDArray, c.payload), false, nil)
			require.ErrorIs(t, err, ErrResultNotDecodable)
			assert.Contains(t, err.Error(), "ndarray: ")

			var a Array
			err = msgpack.Unmarshal(extValue(t, extNDArray, c.payload), &a)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestArrayDecodesArrayLike(t *testing.T) {
	cases := []struct {
		name  string
		in    any
		dtype DType
		shape []int
		want  any
	}{
		{"floats", []any{1.5, 2}, Float64, []int{2}, []float64{1.5, 2}},
		{"ints", []any{1, -2, 3}, Int64, []int{3}, []int64{1, -2, 3}},
		{"bools", []any{true, false}, Bool, []int{2}, []bool{true, false}},
		{"bools and ints", []any{true, 2}, Int64, []int{2}, []int64{1, 2}},
		{"big uints", []any{uint64(math.MaxUint64), 1}, Uint64, []int{2}, []uint64{math.MaxUint64, 1}},
		{"nested", []any{[]any{1, 2, 3}, []any{4, 5, 6}}, Int64, []int{2, 3}, []int64{1, 2, 3, 4, 5, 6}},
		{"scalar", 2.5, Float64, []int{}, []float64{2.5}},
		{"empty", []any{}, Float64, []int{0}, []float64{}},
		{"empty rows", []any{[]any{}, []any{}}, Float64, []int{2, 0}, []float64{}},
		{"float32", []any{float32(0.5)}, Float64, []int{1}, []float64{0.5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := msgpack.Marshal(c.in)
			require.NoError(t, err)
			var a Array
			require.NoError(t, msgpack.Unmarshal(b, &a))
			assert.Equal(t, c.dtype, a.DType)
			assert.Equal(t, c.shape, a.Shape)
			var got any
			switch c.dtype {
			case Float64:
				got, err = a.Float64s()
			case Int64:
				got, err = a.Int64s()
			case Uint64:
				got, err = a.Uint64s()
			case Bool:
				got, err = a.Bools()
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestArrayRejectsValuesThatAreNotArrayLike(t *testing.T) {
	cases := map[string]struct {
		in   any
		want string
	}{
		"ragged":       {[]any{[]any{1, 2}, []any{3}}, "ragged: element [1] is not like the first"},
		"mixed depth":  {[]any{1, []any{2}}, "ragged: element [1]"},
		"string":       {[]any{1, "a"}, "element [1] is a Python str, not a number"},
		"dict":         {map[string]any{"a": 1}, "is a Python dict"},
		"big and neg":  {[]any{uint64(math.MaxUint64), -1}, "no integer dtype holds both"},
		"too deep":     {deepList(70), "nested more than 64 levels"},
		"none element": {[]any{nil}, "is a Python None"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := msgpack.Marshal(c.in)
			require.NoError(t, err)
			var a Array
			err = msgpack.Unmarshal(b, &a)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func deepList(n int) any {
	var v any = 1
	for range n {
		v = []any{v}
	}
	return v
}

// TestArrayEncodesAsLists: what the retry of CallAs sees instead of an
// ndarray.
func TestArrayEncodesAsLists(t *testing.T) {
	cases := []struct {
		a    Array
		want any
	}{
		{ArrayOf([]float32{1, 2, 3, 4}, 2, 2), []any{[]any{float32(1), float32(2)}, []any{float32(3), float32(4)}}},
		{scalar(ArrayOf([]int8{-1})), int8(-1)},
		{ArrayOf([]bool{true}), []any{true}},
		{ArrayOf([]uint64{math.MaxUint64}), []any{uint64(math.MaxUint64)}},
		{ArrayOf([]uint32{7}), []any{int8(7)}},
		{ArrayOf([]float64{}, 2, 0), []any{[]any{}, []any{}}},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		require.NoError(t, encodeAsLists(enc, c.a))
		var got any
		require.NoError(t, msgpack.Unmarshal(buf.Bytes(), &got))
		assert.Equal(t, c.want, got, c.a.DType)
	}
}

// TestNDArrayHeaderHoldsNoValues: a dtype that is not a string is refused
// before it is decoded, so that ndarrays nested in ndarray headers can not
// recurse without bound.
func TestNDArrayHeaderHoldsNoValues(t *testing.T) {
	inner := ndarrayExt(t, "<f8", []int{}, make([]byte, 8))
	for range 3 {
		inner = extValue(t, extNDArray, append([]byte{0x92}, append(inner, 0x90)...))
	}
	_, err := decodeValue(inner, false, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "expected a string")
}
