package pypool

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
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

// nestedLists is a msgpack value of levels nested one-element lists around
// a nil: the nil is at depth levels.
func nestedLists(levels int) []byte {
	return append(bytes.Repeat([]byte{0x91}, levels), 0xc0)
}

// nestedMaps is nestedLists with one-entry maps, each value under key "a".
func nestedMaps(levels int) []byte {
	return append(bytes.Repeat([]byte{0x81, 0xa1, 'a'}, levels), 0xc0)
}

// TestDecodeIntoDepthBound: issue 18, finding 8. CallAs's decoder bounds
// the nesting before msgpack recurses, at the same depth as Call's and
// with the same error: a value deeper than maxDecodeDepth is refused
// whatever the target, and one at the bound decodes.
func TestDecodeIntoDepthBound(t *testing.T) {
	for name, value := range map[string]func(int) []byte{"lists": nestedLists, "maps": nestedMaps} {
		for _, levels := range []int{maxDecodeDepth - 1, maxDecodeDepth, maxDecodeDepth + 1, 1_000_000} {
			b := value(levels)
			_, callErr := decodeValue(b, false, nil)
			var asAny any
			var asStruct struct{ A any }
			var asMap map[string]any
			for target, out := range map[string]any{"any": &asAny, "struct": &asStruct, "map": &asMap} {
				err := decodeValueInto(b, out, nil)
				what := fmt.Sprintf("%s %d levels deep into %s", name, levels, target)
				if levels > maxDecodeDepth {
					require.ErrorIs(t, err, ErrResultNotDecodable, what)
					require.ErrorIs(t, callErr, ErrResultNotDecodable, what)
					assert.ErrorContains(t, err, fmt.Sprintf("values nested more than %d levels deep", maxDecodeDepth), what)
					continue
				}
				require.NoError(t, callErr, what)
				if target == "any" || name == "maps" {
					assert.NoError(t, err, what)
				}
			}
		}
	}
}

// TestDeepRepliesEveryDecoder: issue 18, finding 8. A reply nested
// 8,000,000 levels deep (8 MB, under MaxMessageSize), made by the fake
// worker, is refused with Call's error by every path that decodes what a
// worker sends (Call, CallAs into any, a slice and a struct, Stream,
// StreamAs, a typed callback's argument), instead of a fatal stack
// overflow of the Go process; the worker stays, and a value at the bound
// still decodes.
func TestDeepRepliesEveryDecoder(t *testing.T) {
	const levels = 8_000_000
	cfg := testConfig(t)
	var callbackRan atomic.Bool
	cfg.Callbacks = map[string]Callback{"cb": CallbackFunc(func(ctx context.Context, arg []any) (any, error) {
		callbackRan.Store(true)
		return nil, nil
	})}
	pool, err := fakePoolConfig(t, cfg, "ok", 1)
	require.NoError(t, err)
	pids := workerPids(pool)
	tooDeep := func(t *testing.T, err error) {
		t.Helper()
		require.ErrorIs(t, err, ErrResultNotDecodable)
		assert.ErrorContains(t, err, fmt.Sprintf("values nested more than %d levels deep", maxDecodeDepth))
	}
	t.Run("Call", func(t *testing.T) {
		_, err := pool.Call(testCtx(t), "deep", levels)
		tooDeep(t, err)
	})
	t.Run("CallAs any", func(t *testing.T) {
		_, err := CallAs[any](testCtx(t), pool, "deep", levels)
		tooDeep(t, err)
	})
	t.Run("CallAs slice", func(t *testing.T) {
		_, err := CallAs[[]any](testCtx(t), pool, "deep", levels)
		tooDeep(t, err)
	})
	t.Run("CallAs struct", func(t *testing.T) {
		_, err := CallAs[struct{ A []any }](testCtx(t), pool, "deep_in_map", levels)
		tooDeep(t, err)
	})
	t.Run("StreamAs any", func(t *testing.T) {
		var errs []error
		for _, err := range StreamAs[any](testCtx(t), pool, "deep", levels) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		tooDeep(t, errs[0])
	})
	t.Run("Stream", func(t *testing.T) {
		var errs []error
		for _, err := range pool.Stream(testCtx(t), "deep", levels) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		tooDeep(t, errs[0])
	})
	t.Run("typed callback", func(t *testing.T) {
		answer, err := pool.Call(testCtx(t), "deep_callback", levels)
		require.NoError(t, err)
		assert.Equal(t, callbackBadArgs, answer, "Python got the refusal of the arguments")
		assert.False(t, callbackRan.Load(), "the callback ran")
	})
	t.Run("at the bound", func(t *testing.T) {
		_, err := pool.Call(testCtx(t), "deep", maxDecodeDepth)
		require.NoError(t, err)
		_, err = CallAs[any](testCtx(t), pool, "deep", maxDecodeDepth)
		require.NoError(t, err)
		answer, err := pool.Call(testCtx(t), "deep_callback", maxDecodeDepth-1)
		require.NoError(t, err)
		assert.Equal(t, "ok", answer)
	})
	assert.Equal(t, pids, workerPids(pool), "the worker stays")
}

// TestCallAsAnyDecodesAsCall: CallAs[any] (and so StreamAs[any]) gives what
// Call gives (int64, times in UTC), not msgpack's own decoding of an
// interface (int8, time.Local): pypoolgen's bindings return an any where a
// hint has no Go form. Before, CallAs[any] of 2 was an int8.
func TestCallAsAnyDecodesAsCall(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	in := []any{int64(2), "x", at, map[string]any{"k": int64(-3)}}
	want, err := pool.Call(testCtx(t), "echo", in)
	require.NoError(t, err)
	got, err := CallAs[any](testCtx(t), pool, "echo", in)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, in, got)
}
