package pypool

// extension_e2e_test.go: user extensions, the default hook and CallAs's
// type-mismatch errors through real workers (testdata/pymod/pypool_datamod.py,
// which registers decimal.Decimal as extension 10 and a default hook at
// import), on each interpreter of interpreters(t).

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExtensionsEndToEnd runs the checks below through one worker per
// interpreter (the pure codec and the msgpack C one), with a small
// shared-memory threshold so that large values take it alongside.
func TestExtensionsEndToEnd(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			pool := dataPool(t, python, smallThreshold)
			t.Run("Decimal", func(t *testing.T) { extensionDecimal(t, pool) })
			t.Run("WithSharedMemory", func(t *testing.T) { extensionWithSharedMemory(t, pool) })
			t.Run("DefaultHook", func(t *testing.T) { defaultHook(t, pool) })
			t.Run("TypeMismatch", func(t *testing.T) { callAsTypeMismatch(t, pool) })
		})
	}
}

type invoiceLine struct {
	SKU   string        `msgpack:"sku"`
	Price DecimalString `msgpack:"price"`
}

type invoice struct {
	ID    string        `msgpack:"id"`
	Total DecimalString `msgpack:"total"`
	Lines []invoiceLine `msgpack:"lines"`
}

// extensionDecimal: decimal.Decimal results arrive as DecimalString in Call
// and in CallAs (struct fields, a whole result); DecimalString arguments
// (positional, nested, keyword) arrive as decimal.Decimal.
func extensionDecimal(t *testing.T, pool *Pool) {
	ctx := testCtx(t)
	out, err := pool.Call(ctx, "price")
	require.NoError(t, err)
	assert.Equal(t, DecimalString("19.99"), out)

	out, err = pool.Call(ctx, "invoice")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"id":    "inv-1",
		"total": DecimalString("123.45"),
		"lines": []any{
			map[string]any{"sku": "a", "price": DecimalString("0.10")},
			map[string]any{"sku": "b", "price": DecimalString("-3")},
		},
	}, out)

	inv, err := CallAs[invoice](ctx, pool, "invoice")
	require.NoError(t, err)
	assert.Equal(t, invoice{ID: "inv-1", Total: "123.45", Lines: []invoiceLine{{"a", "0.10"}, {"b", "-3"}}}, inv)

	price, err := CallAs[DecimalString](ctx, pool, "price")
	require.NoError(t, err)
	assert.Equal(t, DecimalString("19.99"), price)

	out, err = pool.Call(ctx, "decimal_info", DecimalString("1.10"))
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"is_decimal": true, "str": "1.10", "doubled": DecimalString("2.20")}, out)

	out, err = pool.Call(ctx, "decimal_kwargs", Kwargs{"a": DecimalString("1"), "b": "1"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": true, "b": false}, out)

	nested := []any{DecimalString("0.5"), map[string]any{"d": DecimalString("-7.25")}, map[any]any{int64(1): DecimalString("3")}}
	out, err = pool.Call(ctx, "echo", nested)
	require.NoError(t, err)
	assert.Equal(t, nested, out)

	out, err = pool.Call(ctx, "describe", nested)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"type": "decimal.Decimal", "value": DecimalString("0.5")}, out.([]any)[0])

	// Inside a struct argument msgpack's own rules apply (see Ext): the
	// field crosses as the string it is.
	type priced struct {
		Price DecimalString `msgpack:"price"`
	}
	out, err = pool.Call(ctx, "describe", priced{"1.5"})
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"price": map[string]any{"type": "str", "value": "1.5"}}, out)

	// A payload Python's decoder refuses: the arguments are not decodable.
	_, err = pool.Call(ctx, "decimal_info", DecimalString("not a number"))
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "decimal_info")
	out, err = pool.Call(ctx, "price")
	require.NoError(t, err)
	assert.Equal(t, DecimalString("19.99"), out)
}

// extensionWithSharedMemory: extension values and large bytes in one call,
// the bytes through the shared memory, both ways.
func extensionWithSharedMemory(t *testing.T, pool *Pool) {
	data := patternBytes(64 << 10)
	arg := []any{DecimalString("9.75"), data, map[string]any{"b": data, "d": DecimalString("1")}}
	out, err := pool.Call(testCtx(t), "echo", arg)
	require.NoError(t, err)
	list := out.([]any)
	assert.Equal(t, DecimalString("9.75"), list[0])
	assert.True(t, bytes.Equal(data, list[1].([]byte)))
	m := list[2].(map[string]any)
	assert.True(t, bytes.Equal(data, m["b"].([]byte)))
	assert.Equal(t, DecimalString("1"), m["d"])
}

type reading struct {
	Sensor string        `msgpack:"sensor"`
	Value  DecimalString `msgpack:"value"`
	Taken  string        `msgpack:"taken"`
	Tags   []string      `msgpack:"tags"`
}

// defaultHook: the module's set_default hook turns dataclasses into dicts
// (whose Decimals then cross as the extension) and dates into their
// isoformat; what it leaves alone is ErrResultNotEncodable.
func defaultHook(t *testing.T, pool *Pool) {
	ctx := testCtx(t)
	out, err := pool.Call(ctx, "a_date")
	require.NoError(t, err)
	assert.Equal(t, "2024-05-06", out)

	out, err = pool.Call(ctx, "reading")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"sensor": "t1", "value": DecimalString("21.50"), "taken": "2024-05-06", "tags": []any{"a", "b"},
	}, out)

	rs, err := CallAs[[]reading](ctx, pool, "readings")
	require.NoError(t, err)
	assert.Equal(t, []reading{
		{Sensor: "t1", Value: "21.50", Taken: "2024-05-06", Tags: []string{"a", "b"}},
		{Sensor: "t2", Value: "-0.5", Taken: "1999-12-31", Tags: []string{}},
	}, rs)

	_, err = pool.Call(ctx, "unknown_object")
	require.ErrorIs(t, err, ErrResultNotEncodable)
	assert.Contains(t, err.Error(), "object")

	out, err = pool.Call(ctx, "echo", "still here")
	require.NoError(t, err)
	assert.Equal(t, "still here", out)
}

type scoredItem struct {
	Name  string `msgpack:"name"`
	Score int64  `msgpack:"score"`
}

type scoredOrder struct {
	ID    string       `msgpack:"id"`
	Items []scoredItem `msgpack:"items"`
}

// callAsTypeMismatch: a Python float for an int64 field is
// ErrResultNotDecodable naming the path, the Python type, the Go type and
// the field.
func callAsTypeMismatch(t *testing.T, pool *Pool) {
	_, err := CallAs[scoredOrder](testCtx(t), pool, "scores")
	require.ErrorIs(t, err, ErrResultNotDecodable)
	for _, part := range []string{`result["items"][1]["score"]`, "Python float", "Go int64", "scoredItem.Score"} {
		assert.Contains(t, err.Error(), part)
	}
	assert.Equal(t,
		`pypool: result not decodable: result["items"][1]["score"]: a Python float does not fit Go int64 (field scoredItem.Score)`,
		err.Error())
}

// TestExtensionNotRegisteredInGo: a Decimal result without the Go side's
// Ext is ErrResultNotDecodable naming the code and Config.Extensions.
func TestExtensionNotRegisteredInGo(t *testing.T) {
	cfg := dataConfig(t, "python3", 0)
	cfg.Extensions = nil
	pool := newTestPool(t, cfg)
	_, err := pool.Call(testCtx(t), "price")
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "type 10")
	assert.Contains(t, err.Error(), "Config.Extensions")
}
