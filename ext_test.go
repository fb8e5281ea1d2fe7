package pypool

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

func TestExtensionsAreValidated(t *testing.T) {
	type other struct{}
	encodeOther := func(other) ([]byte, error) { return nil, nil }
	decodeOther := func([]byte) (other, error) { return other{}, nil }
	p := Ext(pointCode, encodePoint, decodePoint)
	cases := map[string]struct {
		exts []Extension
		want string
	}{
		"zero":             {[]Extension{{}}, "Config.Extensions[0]: the zero Extension: build extensions with pypool.Ext"},
		"reserved code":    {[]Extension{Ext(127, encodePoint, decodePoint)}, "Config.Extensions[0]: code 127 of Go type pypool.point is not free: use 0..119"},
		"negative code":    {[]Extension{Ext(-1, encodePoint, decodePoint)}, "code -1 of Go type pypool.point is not free"},
		"nil encode":       {[]Extension{Ext[point](1, nil, decodePoint)}, "needs both an encode and a decode function"},
		"nil decode":       {[]Extension{Ext[point](1, encodePoint, nil)}, "needs both an encode and a decode function"},
		"interface":        {[]Extension{Ext(1, func(error) ([]byte, error) { return nil, nil }, func([]byte) (error, error) { return nil, nil })}, "is an interface: register a concrete type"},
		"array":            {[]Extension{Ext(1, func(Array) ([]byte, error) { return nil, nil }, func([]byte) (Array, error) { return Array{}, nil })}, "crosses as an ndarray already"},
		"duplicate code":   {[]Extension{p, Ext(pointCode, encodeOther, decodeOther)}, "Config.Extensions[0] and [1] both use code 5: give each type its own code"},
		"duplicate type":   {[]Extension{p, Ext(6, encodePoint, decodePoint)}, "Config.Extensions[0] and [1] both register Go type pypool.point: keep one"},
		"second one wrong": {[]Extension{p, Ext(120, encodeOther, decodeOther)}, "Config.Extensions[1]: code 120"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Extensions = c.exts
			_, err := cfg.withDefaults()
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	cfg := testConfig(t)
	cfg.Extensions = []Extension{p, Ext(0, encodeOther, decodeOther), Ext(119, func(*other) ([]byte, error) { return nil, nil },
		func([]byte) (*other, error) { return nil, nil })}
	_, err := cfg.withDefaults()
	assert.NoError(t, err, "codes 0 and 119, a pointer type")
}

// TestExtensionEncoding: registered values are written as their extension
// as arguments, Kwargs values and inside []any and maps; inside structs and
// typed slices msgpack's rules apply.
func TestExtensionEncoding(t *testing.T) {
	codec := pointCodec("")
	enc := newCallEncoder(1<<20, codec)
	p, q := point{1, 2}, point{3, 4}
	type holder struct{ P point }
	args := []any{
		p,
		[]any{1, []any{q}, nil},
		map[string]any{"p": p, "nil": []any(nil)},
		map[any]any{p: "key", "value": q},
		holder{P: p},
		[]point{p},
		map[string]any(nil),
	}
	frame, err := enc.encode(1, "f", args, Kwargs{"q": q})
	require.NoError(t, err)
	msg, err := decodeValue(frame[frameHeaderSize:], false, codec)
	require.NoError(t, err)
	fields := msg.([]any)
	assert.Equal(t, []any{
		p,
		[]any{int64(1), []any{q}, nil},
		map[string]any{"p": p, "nil": nil},
		map[any]any{p: "key", "value": q},
		map[string]any{"P": map[string]any{"X": int64(1), "Y": int64(2)}},
		[]any{map[string]any{"X": int64(1), "Y": int64(2)}},
		nil,
	}, fields[3])
	assert.Equal(t, map[string]any{"q": q}, fields[4])

	_, err = enc.encode(2, "f", []any{[]any{point{X: -1}}}, nil)
	require.ErrorIs(t, err, ErrArgNotEncodable)
	require.ErrorIs(t, err, errBadPoint, "the encode function's error is kept")
	assert.Contains(t, err.Error(), "argument 0 ([]interface {}): extension 5 (pypool.point): bad point: negative X")
	_, err = enc.encode(3, "f", nil, Kwargs{"p": point{X: -1}})
	require.ErrorIs(t, err, errBadPoint)
	assert.Contains(t, err.Error(), "keyword arguments: extension 5")
}

func TestExtensionEncodingNestingLimit(t *testing.T) {
	enc := newCallEncoder(1<<20, pointCodec(""))
	var v any = point{}
	for range maxDecodeDepth + 2 {
		v = []any{v}
	}
	_, err := enc.encode(1, "f", []any{v}, nil)
	require.ErrorIs(t, err, ErrArgNotEncodable)
	assert.Contains(t, err.Error(), "nested more than")
}

func TestExtensionCallDecoding(t *testing.T) {
	codec := pointCodec("")
	b, err := msgpack.Marshal(map[string]any{"a": []any{msgpack.RawMessage(pointValue(t, point{7, 8}))}})
	require.NoError(t, err)
	v, err := decodeValue(b, false, codec)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{"a": []any{point{7, 8}}}, v)

	_, err = decodeValue(extValue(t, pointCode, []byte{1, 2, 3}), false, codec)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	require.ErrorIs(t, err, errBadPoint)
	assert.Contains(t, err.Error(), "extension 5 (pypool.point): bad point: 3 bytes, not 8")

	_, err = decodeValue(pointValue(t, point{}), false, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "msgpack extension type 5 is not registered: add a pypool.Ext for it to Config.Extensions")
}

func TestUnknownExtensionErrors(t *testing.T) {
	for code, want := range map[int8]string{
		0:             "msgpack extension type 0 is not registered: add a pypool.Ext for it to Config.Extensions",
		119:           "msgpack extension type 119 is not registered",
		120:           "extension type 120 is reserved by pypool and unknown to this version",
		-5:            "msgpack extension type -5 is reserved by msgpack",
		extShmBytes:   "extension 126: a shared-memory reference from a worker that has no shared memory",
		extShmNDArray: "extension 125: a shared-memory reference from a worker that has no shared memory",
	} {
		_, err := decodeValue(extValue(t, code, []byte{0x92, 0, 0}), false, pointCodec(""))
		if code == extShmBytes || code == extShmNDArray {
			// The worker broke the protocol (docs/errors.md): its error, not the value's.
			require.ErrorIs(t, err, ErrProtocol)
			assert.True(t, isSharedFault(err), "the worker is replaced")
		} else {
			require.ErrorIs(t, err, ErrResultNotDecodable)
		}
		assert.Contains(t, err.Error(), want)
	}
}

// TestExtensionMapKeys: a registered value can be a key of map[any]any when
// it is comparable; an Array never is.
func TestExtensionMapKeys(t *testing.T) {
	codec := pointCodec("")
	b := append([]byte{0x81}, pointValue(t, point{1, 1})...)
	b = append(b, 0x01)
	v, err := decodeValue(b, false, codec)
	require.NoError(t, err)
	assert.Equal(t, map[any]any{point{1, 1}: int64(1)}, v)

	b = append([]byte{0x81}, ndarrayExt(t, "|u1", []int{1}, []byte{1})...)
	b = append(b, 0x01)
	_, err = decodeValue(b, false, codec)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "result: a Python dict key (ndarray of uint8) can not be a key of a Go map")
}

// TestExtensionCallAs: CallAs fills fields of the registered type, also
// through Config.StructTag, in slices and maps of them.
func TestExtensionCallAs(t *testing.T) {
	type shape struct {
		Name   string           `json:"name"`
		Center point            `json:"center"`
		Path   []point          `json:"path"`
		Named  map[string]point `json:"named"`
		Any    any              `json:"any"`
	}
	value := map[string]any{
		"name":   "s",
		"center": msgpack.RawMessage(pointValue(t, point{1, 2})),
		"path":   []any{msgpack.RawMessage(pointValue(t, point{3, 4}))},
		"named":  map[string]any{"o": msgpack.RawMessage(pointValue(t, point{0, 0}))},
		"any":    msgpack.RawMessage(pointValue(t, point{5, 6})),
	}
	b, err := msgpack.Marshal(value)
	require.NoError(t, err)
	var got shape
	require.NoError(t, decodeValueInto(b, &got, pointCodec("json")))
	assert.Equal(t, shape{Name: "s", Center: point{1, 2}, Path: []point{{3, 4}}, Named: map[string]point{"o": {}},
		Any: map[string]any{"x": int8(5), "y": int8(6)}}, got)

	var p point
	require.NoError(t, decodeValueInto(pointValue(t, point{9, 9}), &p, pointCodec("")))
	assert.Equal(t, point{9, 9}, p)

	err = decodeValueInto(extValue(t, pointCode, []byte{1}), &p, pointCodec(""))
	require.ErrorIs(t, err, ErrResultNotDecodable)
	require.ErrorIs(t, err, errBadPoint)
}

// TestExtensionsThroughThePool: a pool's extensions reach its workers'
// encoder and decoders (the fake worker echoes extension values as they
// came).
func TestExtensionsThroughThePool(t *testing.T) {
	cfg := testConfig(t)
	cfg.Extensions = []Extension{Ext(pointCode, encodePoint, decodePoint)}
	pool, err := fakePoolConfig(t, cfg, "ok", 1)
	require.NoError(t, err)

	out, err := pool.Call(testCtx(t), "echo", []any{point{1, 2}, ArrayOf([]int16{1, 2, 3})})
	require.NoError(t, err)
	list := out.([]any)
	assert.Equal(t, point{1, 2}, list[0])
	assertSameArray(t, ArrayOf([]int16{1, 2, 3}), list[1].(Array))

	type holder struct {
		P point   `msgpack:"p"`
		V []int16 `msgpack:"v"`
	}
	got, err := CallAs[holder](testCtx(t), pool, "echo", map[string]any{"p": point{3, 4}, "v": ArrayOf([]int16{5})})
	require.NoError(t, err)
	assert.Equal(t, holder{P: point{3, 4}, V: []int16{5}}, got)

	floats, err := CallAs[[]float64](testCtx(t), pool, "echo", ArrayOf([]float64{0.5, 1.5}))
	require.NoError(t, err)
	assert.Equal(t, []float64{0.5, 1.5}, floats)

	plain, err := fakePool(t, "ok", 1)
	require.NoError(t, err)
	_, err = plain.Call(testCtx(t), "echo", pointValueArg(t))
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "Config.Extensions")
}

// pointValueArg is a point's extension value as a raw argument, for a pool
// that does not know the extension.
func pointValueArg(t *testing.T) msgpack.RawMessage {
	return msgpack.RawMessage(pointValue(t, point{1, 2}))
}
