package pypool

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// decodeAs decodes the msgpack encoding of value into a T, as CallAs does.
func decodeAs[T any](t *testing.T, value any) (T, error) {
	t.Helper()
	b, err := msgpack.Marshal(value)
	require.NoError(t, err)
	var out T
	err = decodeValueInto(b, &out, nil)
	return out, err
}

// requireNotFit checks that decoding value into a T fails with
// ErrResultNotDecodable, saying msg.
func requireNotFit[T any](t *testing.T, value any, msg string) {
	t.Helper()
	out, err := decodeAs[T](t, value)
	require.ErrorIs(t, err, ErrResultNotDecodable, "got %v", out)
	assert.Contains(t, err.Error(), msg)
}

type fitItem struct {
	Name  string
	Level uint8
	Score float32
}

// TestIntegersOutOfRangeAreRefused: msgpack stores an integer into a
// narrower Go integer by cutting its bits, silently (300 into a uint8 gave
// 44, -1 into a uint gave 2^64-1); a CallAs target says where the number
// does not fit instead (docs/types.md: a result that does not fit says
// where and what).
func TestIntegersOutOfRangeAreRefused(t *testing.T) {
	requireNotFit[uint8](t, 300, "result: the Python int 300 does not fit Go uint8 (0 to 255)")
	requireNotFit[int8](t, -200, "result: the Python int -200 does not fit Go int8 (-128 to 127)")
	requireNotFit[int8](t, 128, "the Python int 128 does not fit Go int8")
	requireNotFit[uint](t, -1, "the Python int -1 does not fit Go uint (0 to 18446744073709551615)")
	requireNotFit[int32](t, int64(1)<<40, "the Python int 1099511627776 does not fit Go int32")
	requireNotFit[int64](t, uint64(1)<<63, "the Python int 9223372036854775808 does not fit Go int64")
	requireNotFit[int](t, uint64(math.MaxUint64), "the Python int 18446744073709551615 does not fit Go int")
	requireNotFit[fitItem](t, map[string]any{"Name": "a", "Level": 1000},
		`result["Level"]: the Python int 1000 does not fit Go uint8 (0 to 255) (field fitItem.Level)`)
	requireNotFit[[]fitItem](t, []any{map[string]any{"Level": 1}, []any{"b", -1, 0.5}},
		`result[1][1]: the Python int -1 does not fit Go uint8 (0 to 255) (field fitItem.Level)`)
	requireNotFit[map[string][]int16](t, map[string]any{"k": []any{1, 70000}},
		`result["k"][1]: the Python int 70000 does not fit Go int16`)
	requireNotFit[map[uint8]string](t, map[int64]string{256: "x"}, "a dict key: the Python int 256 does not fit Go uint8")
	requireNotFit[*[2]uint16](t, []any{1, -5}, "result[1]: the Python int -5 does not fit Go uint16")

	// The edges fit.
	for _, c := range []struct {
		value any
		into  func() (any, error)
	}{
		{127, func() (any, error) { return decodeAs[int8](t, 127) }},
		{-128, func() (any, error) { return decodeAs[int8](t, -128) }},
		{255, func() (any, error) { return decodeAs[uint8](t, 255) }},
		{uint64(math.MaxUint64), func() (any, error) { return decodeAs[uint64](t, uint64(math.MaxUint64)) }},
		{math.MinInt64, func() (any, error) { return decodeAs[int64](t, math.MinInt64) }},
	} {
		got, err := c.into()
		require.NoError(t, err)
		assert.EqualValues(t, c.value, got)
	}
	got, err := decodeAs[[]byte](t, []byte("bytes stay bytes"))
	require.NoError(t, err)
	assert.Equal(t, []byte("bytes stay bytes"), got)
}

// TestFloatsFitFloat32: every Python float is a float64, which msgpack
// refused for a float32 ("invalid code=cb decoding float32"); it is
// rounded to the nearest float32, as a Go conversion does, anywhere in the
// result. One beyond float32's range is refused, saying so.
func TestFloatsFitFloat32(t *testing.T) {
	f, err := decodeAs[float32](t, 1.5)
	require.NoError(t, err)
	assert.Equal(t, float32(1.5), f)
	list, err := decodeAs[[]float32](t, []any{0.1, 2, -3.25, math.Inf(-1)})
	require.NoError(t, err)
	assert.Equal(t, []float32{0.1, 2, -3.25, float32(math.Inf(-1))}, list)
	nan, err := decodeAs[float32](t, math.NaN())
	require.NoError(t, err)
	assert.True(t, math.IsNaN(float64(nan)))
	item, err := decodeAs[fitItem](t, map[string]any{"Name": "n", "Level": 3, "Score": 0.75, "Other": 1e300})
	require.NoError(t, err)
	assert.Equal(t, fitItem{Name: "n", Level: 3, Score: 0.75}, item)
	byName, err := decodeAs[map[string]float32](t, map[string]any{"a": 1e-3, "b": 2.5})
	require.NoError(t, err)
	assert.Equal(t, map[string]float32{"a": 1e-3, "b": 2.5}, byName)
	// A float64 target keeps every bit.
	exact, err := decodeAs[struct {
		A float32
		B float64
	}](t, map[string]any{"A": 0.1, "B": 0.1})
	require.NoError(t, err)
	assert.Equal(t, float32(0.1), exact.A)
	assert.Equal(t, 0.1, exact.B)

	requireNotFit[float32](t, 1e300, "result: the Python float 1e+300 does not fit Go float32")
	requireNotFit[[]fitItem](t, []any{map[string]any{"Score": -1e39}},
		`result[0]["Score"]: the Python float -1e+39 does not fit Go float32 (at most 3.4028234663852886e+38 in size) (field fitItem.Score)`)
}

// TestCallAsFitsNumbers: the same through a worker (StreamAs and the
// callbacks' typed arguments decode as CallAs does).
func TestCallAsFitsNumbers(t *testing.T) {
	pool := newTestPool(t, testConfig(t))
	ctx := testCtx(t)
	_, err := CallAs[uint8](ctx, pool, "echo", 300)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "the Python int 300 does not fit Go uint8")
	scores, err := CallAs[[]float32](ctx, pool, "echo", []any{0.5, 0.1})
	require.NoError(t, err)
	assert.Equal(t, []float32{0.5, 0.1}, scores)
	_, err = pool.Call(ctx, "echo", 1) // the worker serves on
	require.NoError(t, err)
}
