package pypool

// audit_codec_test.go: the msgpack spec's format boundaries (fixint and
// negative fixint, uint 8..64, int 8..64, float 32/64, fixstr and str
// 8/16/32, bin 8/16/32, fixarray and array 16/32, fixmap and map 16/32,
// fixext 1..16 and ext 8/16/32, timestamps 32/64/96) on the Go side's own
// decoder (decode.go), on msgpack's decoding of the same bytes for CallAs
// targets (decode_into.go), and on the encoder of calls (protocol.go), then
// through both Python codecs (testdata/pymod/pypool_auditcodec.py). The
// Python codecs' own conformance is python/tests/test_msgpack_port.py.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// hx decodes hex digits (spaces ignored) for the tables below.
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// cat joins byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// repeatItems is n copies of item.
func repeatItems(item []byte, n int) []byte { return bytes.Repeat(item, n) }

// specDecodeCases are msgpack encodings at the boundaries of every format,
// with the value docs/types.md's "Call gives Go" column says they decode to
// (nil: an error), minimal forms and the longer ones no packer writes but
// the spec allows.
func specDecodeCases() []struct {
	name string
	b    []byte
	want any
	bad  bool
} {
	ts := func(sec int64, nsec int64) time.Time { return time.Unix(sec, nsec).UTC() }
	strs := func(n int) string { return strings.Repeat("s", n) }
	bins := func(n int) []byte { return bytes.Repeat([]byte{'b'}, n) }
	nils := func(n int) []any { return make([]any, n) }
	strMap := func(n int) (map[string]any, []byte) {
		m, b := map[string]any{}, []byte{}
		for i := range n {
			k := fmt.Sprintf("k%05d", i)
			m[k] = nil
			b = append(append(b, 0xa6), k...)
			b = append(b, 0xc0)
		}
		return m, b
	}
	m15, b15 := strMap(15)
	m16, b16 := strMap(16)
	m65536, b65536 := strMap(65536)
	cases := []struct {
		name string
		b    []byte
		want any
		bad  bool
	}{
		{"nil", hx("c0"), nil, false},
		{"false", hx("c2"), false, false},
		{"true", hx("c3"), true, false},
		{"never used 0xc1", hx("c1"), nil, true},
		{"positive fixint 0", hx("00"), int64(0), false},
		{"positive fixint 127", hx("7f"), int64(127), false},
		{"negative fixint -32", hx("e0"), int64(-32), false},
		{"negative fixint -1", hx("ff"), int64(-1), false},
		{"uint8 0", hx("cc00"), int64(0), false},
		{"uint8 255", hx("ccff"), int64(255), false},
		{"uint16 65535", hx("cdffff"), int64(65535), false},
		{"uint32 max", hx("ceffffffff"), int64(math.MaxUint32), false},
		{"uint64 0", hx("cf0000000000000000"), int64(0), false},
		{"uint64 max int64", hx("cf7fffffffffffffff"), int64(math.MaxInt64), false},
		{"uint64 2^63", hx("cf8000000000000000"), uint64(1 << 63), false},
		{"uint64 max", hx("cfffffffffffffffff"), uint64(math.MaxUint64), false},
		{"int8 -128", hx("d080"), int64(-128), false},
		{"int8 127", hx("d07f"), int64(127), false},
		{"int16 min", hx("d18000"), int64(math.MinInt16), false},
		{"int16 max", hx("d17fff"), int64(math.MaxInt16), false},
		{"int32 min", hx("d280000000"), int64(math.MinInt32), false},
		{"int32 -1", hx("d2ffffffff"), int64(-1), false},
		{"int64 min", hx("d38000000000000000"), int64(math.MinInt64), false},
		{"int64 max", hx("d37fffffffffffffff"), int64(math.MaxInt64), false},
		{"float32 1.5", hx("ca3fc00000"), 1.5, false},
		{"float32 -0", hx("ca80000000"), math.Copysign(0, -1), false},
		{"float32 max", hx("ca7f7fffff"), float64(math.MaxFloat32), false},
		{"float32 smallest denormal", hx("ca00000001"), float64(math.SmallestNonzeroFloat32), false},
		{"float32 +inf", hx("ca7f800000"), math.Inf(1), false},
		{"float32 nan", hx("ca7fc00000"), math.NaN(), false},
		{"float64 max", hx("cb7fefffffffffffff"), math.MaxFloat64, false},
		{"float64 smallest denormal", hx("cb0000000000000001"), math.SmallestNonzeroFloat64, false},
		{"float64 -inf", hx("cbfff0000000000000"), math.Inf(-1), false},
		{"fixstr 0", hx("a0"), "", false},
		{"fixstr 31", cat(hx("bf"), []byte(strs(31))), strs(31), false},
		{"fixstr utf-8", cat(hx("a6"), []byte("héllo")), "héllo", false},
		{"str8 0", hx("d900"), "", false},
		{"str8 31 (not minimal)", cat(hx("d91f"), []byte(strs(31))), strs(31), false},
		{"str8 32", cat(hx("d920"), []byte(strs(32))), strs(32), false},
		{"str8 255", cat(hx("d9ff"), []byte(strs(255))), strs(255), false},
		{"str16 0", hx("da0000"), "", false},
		{"str16 256", cat(hx("da0100"), []byte(strs(256))), strs(256), false},
		{"str16 65535", cat(hx("daffff"), []byte(strs(65535))), strs(65535), false},
		{"str32 0", hx("db00000000"), "", false},
		{"str32 65536", cat(hx("db00010000"), []byte(strs(65536))), strs(65536), false},
		{"bin8 0", hx("c400"), []byte{}, false},
		{"bin8 255", cat(hx("c4ff"), bins(255)), bins(255), false},
		{"bin16 0", hx("c50000"), []byte{}, false},
		{"bin16 256", cat(hx("c50100"), bins(256)), bins(256), false},
		{"bin16 65535", cat(hx("c5ffff"), bins(65535)), bins(65535), false},
		{"bin32 0", hx("c600000000"), []byte{}, false},
		{"bin32 65536", cat(hx("c600010000"), bins(65536)), bins(65536), false},
		{"fixarray 0", hx("90"), []any{}, false},
		{"fixarray 15", cat(hx("9f"), repeatItems(hx("c0"), 15)), nils(15), false},
		{"array16 0", hx("dc0000"), []any{}, false},
		{"array16 15 (not minimal)", cat(hx("dc000f"), repeatItems(hx("c0"), 15)), nils(15), false},
		{"array16 16", cat(hx("dc0010"), repeatItems(hx("c0"), 16)), nils(16), false},
		{"array16 65535", cat(hx("dcffff"), repeatItems(hx("c0"), 65535)), nils(65535), false},
		{"array32 0", hx("dd00000000"), []any{}, false},
		{"array32 65536", cat(hx("dd00010000"), repeatItems(hx("c0"), 65536)), nils(65536), false},
		{"fixmap 0", hx("80"), map[string]any{}, false},
		{"fixmap 15", cat(hx("8f"), b15), m15, false},
		{"map16 0", hx("de0000"), map[string]any{}, false},
		{"map16 16", cat(hx("de0010"), b16), m16, false},
		{"map32 0", hx("df00000000"), map[string]any{}, false},
		{"map32 65536", cat(hx("df00010000"), b65536), m65536, false},
		{"fixmap int keys", hx("82 ff c0 cc80 c3"), map[any]any{int64(-1): nil, int64(128): true}, false},
		{"fixmap a nil key", hx("81 c0 01"), map[any]any{nil: int64(1)}, false},
		{"fixmap duplicate key: the last", hx("82 a161 01 a161 02"), map[string]any{"a": int64(2)}, false},
		{"timestamp32 0", hx("d6ff00000000"), ts(0, 0), false},
		{"timestamp32 max", hx("d6ffffffffff"), ts(math.MaxUint32, 0), false},
		{"timestamp64 0", hx("d7ff0000000000000000"), ts(0, 0), false},
		{"timestamp64 2^32 s", hx("d7ff0000000100000000"), ts(1<<32, 0), false},
		{"timestamp64 max", hx("d7ffee6b27ffffffffff"), ts(1<<34-1, 999999999), false},
		{"timestamp64 nanoseconds above 10^9", hx("d7ffffffffffffffffff"), ts(1<<34-1, 1<<30-1), false},
		{"timestamp96 0", hx("c70cff000000000000000000000000"), ts(0, 0), false},
		{"timestamp96 -2.3 s", hx("c70cff29b92700fffffffffffffffd"), ts(-3, 700000000), false},
		{"timestamp96 year 1", hx("c70cff00000000fffffff1886e0900"), time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"timestamp96 2^34 s", hx("c70cff000000000000000400000000"), ts(1<<34, 0), false},
		{"timestamp32 as ext8", hx("c704ff00000001"), ts(1, 0), false},
		{"timestamp64 as ext16", hx("c80008ff0000000100000000"), ts(1<<32, 0), false},
		{"timestamp of 1 byte", hx("d4ff00"), nil, true},
		{"timestamp of 2 bytes", hx("d5ff0000"), nil, true},
		{"timestamp of 16 bytes", cat(hx("d8ff"), make([]byte, 16)), nil, true},
		{"timestamp of 0 bytes", hx("c700ff"), nil, true},
		{"timestamp of 3 bytes", hx("c703ff000000"), nil, true},
		{"timestamp of 5 bytes", hx("c705ff0000000000"), nil, true},
		{"fixext1 of an unknown code", hx("d40500"), nil, true},
		{"ext32 of an unknown code", hx("c90000000105aa"), nil, true},
		{"array of an unknown code", hx("91c1"), nil, true},
	}
	return cases
}

// normalized is what msgpack's DecodeInterface gives, in the types Call
// gives (docs/types.md): ints as int64 (uint64 above MaxInt64), float32 as
// float64, times in UTC, maps of strings as map[string]any.
func normalized(v any) any {
	switch v := v.(type) {
	case int8:
		return int64(v)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v)
		}
		return v
	case float32:
		return float64(v)
	case time.Time:
		return v.UTC()
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = normalized(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = normalized(x)
		}
		return out
	case map[any]any:
		allStrings := true
		for k := range v {
			_, ok := k.(string)
			allStrings = allStrings && ok
		}
		if allStrings {
			out := make(map[string]any, len(v))
			for k, x := range v {
				out[k.(string)] = normalized(x)
			}
			return out
		}
		out := make(map[any]any, len(v))
		for k, x := range v {
			out[normalized(k)] = normalized(x)
		}
		return out
	}
	return v
}

// msgpackDecode is msgpack's view of b as one value: what DecodeInterface
// gives (maps of any keys), normalized; an error for bytes after it too.
func msgpackDecode(b []byte) (any, error) {
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r)
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeUntypedMap() })
	v, err := dec.DecodeInterface()
	if err == nil && r.Len() != 0 {
		err = errTrailing
	}
	return normalized(v), err
}

var errTrailing = assert.AnError

// sameValue compares two decoded values, NaN equal to NaN and -0 not +0.
func sameValue(t *testing.T, want, got any, msgAndArgs ...any) {
	t.Helper()
	if w, ok := want.(float64); ok {
		g, ok := got.(float64)
		if assert.True(t, ok, msgAndArgs...) {
			assert.Equal(t, math.Float64bits(w) == math.Float64bits(g) || (math.IsNaN(w) && math.IsNaN(g)), true, msgAndArgs...)
		}
		return
	}
	assert.Equal(t, want, got, msgAndArgs...)
}

// TestAuditCodecSpecBoundariesAgainstMsgpack: docs/types.md's "Call gives
// Go" column, format by format at the spec's boundaries, in minimal and
// longer forms: the Go side's decoder gives the documented value, and
// msgpack's DecodeInterface reads the same bytes as the same value (its
// int widths, float32 and local times normalized as the table says Call
// does). Every proper prefix of a value is an error in both, as is 0xc1
// and a timestamp of a length the spec does not define.
func TestAuditCodecSpecBoundariesAgainstMsgpack(t *testing.T) {
	for _, tc := range specDecodeCases() {
		got, err := decodeValue(tc.b, false, nil)
		theirs, theirErr := msgpackDecode(tc.b)
		if tc.bad {
			assert.ErrorIs(t, err, ErrResultNotDecodable, tc.name)
			assert.Error(t, theirErr, "msgpack: %s", tc.name)
			continue
		}
		if assert.NoError(t, err, tc.name) {
			sameValue(t, tc.want, got, tc.name)
		}
		if assert.NoError(t, theirErr, "msgpack: %s", tc.name) {
			sameValue(t, tc.want, theirs, "msgpack: %s", tc.name)
		}
		if len(tc.b) > 64 {
			continue
		}
		for n := range len(tc.b) {
			_, err := decodeValue(tc.b[:n], false, nil)
			assert.ErrorIs(t, err, ErrResultNotDecodable, "%s cut to %d bytes", tc.name, n)
			_, theirErr := msgpackDecode(tc.b[:n])
			assert.Error(t, theirErr, "msgpack: %s cut to %d bytes", tc.name, n)
		}
	}
}

// TestAuditCodecWhereMsgpackDiffers: the bytes the Go side's decoder reads
// otherwise than msgpack's DecodeInterface, each for a documented reason:
// a key Go's maps can not hold is an error that says so (docs/types.md: "A
// dict whose keys are bytes or tuples cannot be a Go map key"; msgpack's
// own map decoder panics on it), nesting is bounded (decode.go's
// maxDecodeDepth: a hostile worker can not exhaust the stack), and a
// result is the whole rest of its frame (bytes after the value are an
// error, where msgpack stops after one value).
func TestAuditCodecWhereMsgpackDiffers(t *testing.T) {
	for name, b := range map[string][]byte{
		"bin key":   hx("81 c40161 01"),
		"array key": hx("81 9101 01"),
		"map key":   hx("81 80 01"),
	} {
		_, err := decodeValue(b, false, nil)
		require.ErrorIs(t, err, ErrResultNotDecodable, name)
		assert.Contains(t, err.Error(), "can not be a key of a Go map (Call gives map[any]any): decode the result with CallAs", name)
		assert.Panics(t, func() { _, _ = msgpackDecode(b) }, "msgpack: %s", name)
	}
	deep := cat(bytes.Repeat([]byte{0x91}, maxDecodeDepth+1), hx("c0"))
	_, err := decodeValue(deep, false, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	assert.Contains(t, err.Error(), "nested more than")
	_, err = msgpackDecode(deep)
	assert.NoError(t, err, "msgpack reads any depth")

	_, err = decodeValue(hx("01 02"), false, nil)
	require.ErrorIs(t, err, ErrResultNotDecodable)
	v, err := msgpack.NewDecoder(bytes.NewReader(hx("01 02"))).DecodeInterface()
	require.NoError(t, err)
	assert.Equal(t, int8(1), v)
}

// TestAuditCodecCallAsBoundariesAgainstMsgpack: docs/types.md, "CallAs
// decodes the result ... (with CallAs, msgpack's rules for the target type
// apply)", and "Numbers are checked against their Go type, not cut to fit
// ... where msgpack alone would keep the low bits". At each integer
// format's ends, into each Go integer type, float32 and the string and
// byte types: where the number fits (or the target is not a number),
// decodeValueInto gives exactly what msgpack.Unmarshal gives; where it does
// not, msgpack keeps the low bits and pypool fails, naming the number.
func TestAuditCodecCallAsBoundariesAgainstMsgpack(t *testing.T) {
	encodings := []string{"00", "7f", "e0", "ff", "cc80", "ccff", "cd0100", "cdffff", "ce00010000", "ceffffffff",
		"cf0000000100000000", "cf7fffffffffffffff", "cf8000000000000000", "cfffffffffffffffff", "d080", "d0ff",
		"d18000", "d1ff7f", "d280000000", "d2ffff7fff", "d38000000000000000", "d3ffffffff7fffffff"}
	targets := []any{new(int8), new(int16), new(int32), new(int64), new(int), new(uint8), new(uint16), new(uint32),
		new(uint64), new(uint), new(float64)}
	fits := func(b []byte, target reflect.Type) bool {
		d := msgpack.NewDecoder(bytes.NewReader(b))
		v, err := d.DecodeInterfaceLoose()
		require.NoError(t, err)
		switch target.Kind() {
		case reflect.Float64:
			return true
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
			if u, ok := v.(uint64); ok {
				return u <= math.MaxInt64 && reflect.Zero(target).OverflowInt(int64(u)) == false
			}
			return !reflect.Zero(target).OverflowInt(v.(int64))
		}
		if i, ok := v.(int64); ok {
			return i >= 0 && !reflect.Zero(target).OverflowUint(uint64(i))
		}
		return !reflect.Zero(target).OverflowUint(v.(uint64))
	}
	for _, enc := range encodings {
		b := hx(enc)
		for _, target := range targets {
			typ := reflect.TypeOf(target).Elem()
			ours, theirs := reflect.New(typ), reflect.New(typ)
			err := decodeValueInto(b, ours.Interface(), nil)
			require.NoError(t, msgpack.Unmarshal(b, theirs.Interface()), "%s into %s", enc, typ)
			if fits(b, typ) {
				if assert.NoError(t, err, "%s into %s", enc, typ) {
					assert.Equal(t, theirs.Elem().Interface(), ours.Elem().Interface(), "%s into %s", enc, typ)
				}
				continue
			}
			if assert.ErrorIs(t, err, ErrResultNotDecodable, "%s into %s: msgpack gives %v", enc, typ, theirs.Elem()) {
				assert.Contains(t, err.Error(), "does not fit Go "+typ.String(), enc)
			}
		}
	}
	// float32: a float 32 decodes as it is, in both; a float 64 (what
	// Python sends) is rounded as a Go conversion rounds, where msgpack
	// refuses it (docs/types.md: "A Python float ... into a float32 is
	// rounded to the nearest float32"), and one beyond float32's range fails.
	for _, enc := range []string{"ca3fc00000", "ca7f7fffff", "ca00000001", "caff800000"} {
		var ours, theirs float32
		require.NoError(t, decodeValueInto(hx(enc), &ours, nil), enc)
		require.NoError(t, msgpack.Unmarshal(hx(enc), &theirs), enc)
		assert.Equal(t, math.Float32bits(theirs), math.Float32bits(ours), enc)
	}
	for _, f := range []float64{0.1, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-50, math.Inf(1)} {
		b := binary.BigEndian.AppendUint64([]byte{0xcb}, math.Float64bits(f))
		var ours, theirs float32
		require.NoError(t, decodeValueInto(b, &ours, nil), "%g", f)
		assert.Equal(t, math.Float32bits(float32(f)), math.Float32bits(ours), "%g", f)
		assert.Error(t, msgpack.Unmarshal(b, &theirs), "%g", f)
	}
	for _, f := range []float64{1e39, -1e39, math.MaxFloat64} {
		b := binary.BigEndian.AppendUint64([]byte{0xcb}, math.Float64bits(f))
		var ours float32
		assert.ErrorIs(t, decodeValueInto(b, &ours, nil), ErrResultNotDecodable, "%g", f)
	}
	// str and bin into string and []byte, each format at its ends.
	for _, b := range [][]byte{hx("a0"), cat(hx("bf"), bytes.Repeat([]byte("s"), 31)), cat(hx("d9ff"), bytes.Repeat([]byte("s"), 255)),
		cat(hx("da0100"), bytes.Repeat([]byte("s"), 256)), cat(hx("db00010000"), bytes.Repeat([]byte("s"), 65536)),
		hx("c400"), cat(hx("c4ff"), bytes.Repeat([]byte("b"), 255)), cat(hx("c50100"), bytes.Repeat([]byte("b"), 256)),
		cat(hx("c600010000"), bytes.Repeat([]byte("b"), 65536))} {
		var ourS, theirS string
		var ourB, theirB []byte
		require.NoError(t, decodeValueInto(b, &ourS, nil))
		require.NoError(t, msgpack.Unmarshal(b, &theirS))
		assert.Equal(t, theirS, ourS)
		require.NoError(t, decodeValueInto(b, &ourB, nil))
		require.NoError(t, msgpack.Unmarshal(b, &theirB))
		assert.Equal(t, theirB, ourB)
	}
}

// encodedArg is the encoding of v as the one argument of a call: what the
// call encoder writes between the arguments' array header and the nil of
// no keyword arguments.
func encodedArg(t *testing.T, e *callEncoder, v any) []byte {
	t.Helper()
	frame, err := e.encode(1, "f", []any{v}, nil)
	require.NoError(t, err)
	head := hx("95 02 01 a166 91")
	require.Equal(t, head, frame[frameHeaderSize:frameHeaderSize+len(head)])
	require.Equal(t, byte(0xc0), frame[len(frame)-1])
	return bytes.Clone(frame[frameHeaderSize+len(head) : len(frame)-1])
}

// blob is an extension type whose payload is its bytes.
type blob []byte

// TestAuditCodecEncoderSpecBoundaries: docs/types.md's "Go argument"
// column, at each format's boundaries: the call encoder writes the
// smallest form the spec has (as Python's packer writes it: ints as small
// as they fit, non-negative ones unsigned; a float32 as float 32; strings
// as str, []byte as bin; time.Time as the smallest timestamp; a
// registered type as fixext or ext by its payload's size), on msgpack's
// path and on the walk of a pool with extensions, and the Go decoder
// reads back the documented value.
func TestAuditCodecEncoderSpecBoundaries(t *testing.T) {
	s := func(n int) string { return strings.Repeat("s", n) }
	b := func(n int) []byte { return bytes.Repeat([]byte{'b'}, n) }
	items := func(n int) []any { return make([]any, n) }
	cases := []struct {
		in   any
		want []byte
		back any
	}{
		{0, hx("00"), int64(0)}, {127, hx("7f"), int64(127)}, {128, hx("cc80"), int64(128)}, {255, hx("ccff"), int64(255)},
		{256, hx("cd0100"), int64(256)}, {65535, hx("cdffff"), int64(65535)}, {65536, hx("ce00010000"), int64(65536)},
		{uint32(math.MaxUint32), hx("ceffffffff"), int64(math.MaxUint32)}, {int64(1 << 32), hx("cf0000000100000000"), int64(1 << 32)},
		{int64(math.MaxInt64), hx("cf7fffffffffffffff"), int64(math.MaxInt64)},
		{uint64(math.MaxUint64), hx("cfffffffffffffffff"), uint64(math.MaxUint64)},
		{-1, hx("ff"), int64(-1)}, {int8(-32), hx("e0"), int64(-32)}, {-33, hx("d0df"), int64(-33)}, {-128, hx("d080"), int64(-128)},
		{-129, hx("d1ff7f"), int64(-129)}, {int16(math.MinInt16), hx("d18000"), int64(math.MinInt16)},
		{-32769, hx("d2ffff7fff"), int64(-32769)}, {int32(math.MinInt32), hx("d280000000"), int64(math.MinInt32)},
		{int64(math.MinInt32) - 1, hx("d3ffffffff7fffffff"), int64(math.MinInt32) - 1},
		{int64(math.MinInt64), hx("d38000000000000000"), int64(math.MinInt64)},
		{float32(1.5), hx("ca3fc00000"), 1.5}, {float32(math.MaxFloat32), hx("ca7f7fffff"), float64(math.MaxFloat32)},
		{1.5, hx("cb3ff8000000000000"), 1.5},
		{"", hx("a0"), ""}, {s(31), cat(hx("bf"), []byte(s(31))), s(31)}, {s(32), cat(hx("d920"), []byte(s(32))), s(32)},
		{s(255), cat(hx("d9ff"), []byte(s(255))), s(255)}, {s(256), cat(hx("da0100"), []byte(s(256))), s(256)},
		{s(65535), cat(hx("daffff"), []byte(s(65535))), s(65535)}, {s(65536), cat(hx("db00010000"), []byte(s(65536))), s(65536)},
		{[]byte{}, hx("c400"), []byte{}}, {b(255), cat(hx("c4ff"), b(255)), b(255)}, {b(256), cat(hx("c50100"), b(256)), b(256)},
		{b(65535), cat(hx("c5ffff"), b(65535)), b(65535)}, {b(65536), cat(hx("c600010000"), b(65536)), b(65536)},
		{[]any{}, hx("90"), []any{}}, {items(15), cat(hx("9f"), repeatItems(hx("c0"), 15)), items(15)},
		{items(16), cat(hx("dc0010"), repeatItems(hx("c0"), 16)), items(16)},
		{items(65535), cat(hx("dcffff"), repeatItems(hx("c0"), 65535)), items(65535)},
		{items(65536), cat(hx("dd00010000"), repeatItems(hx("c0"), 65536)), items(65536)},
		{map[string]any{}, hx("80"), map[string]any{}},
		{time.Unix(0, 0), hx("d6ff00000000"), time.Unix(0, 0).UTC()},
		{time.Unix(math.MaxUint32, 0), hx("d6ffffffffff"), time.Unix(math.MaxUint32, 0).UTC()},
		{time.Unix(1<<32, 0), hx("d7ff0000000100000000"), time.Unix(1<<32, 0).UTC()},
		{time.Unix(0, 1), hx("d7ff0000000400000000"), time.Unix(0, 1).UTC()},
		{time.Unix(1<<34-1, 999999999), hx("d7ffee6b27ffffffffff"), time.Unix(1<<34-1, 999999999).UTC()},
		{time.Unix(1<<34, 0), hx("c70cff000000000000000400000000"), time.Unix(1<<34, 0).UTC()},
		{time.Unix(-3, 700000000), hx("c70cff29b92700fffffffffffffffd"), time.Unix(-3, 700000000).UTC()},
	}
	extCases := map[int][]byte{0: hx("c700 07"), 1: hx("d407"), 2: hx("d507"), 3: hx("c703 07"), 4: hx("d607"),
		8: hx("d707"), 16: hx("d807"), 17: hx("c711 07"), 255: hx("c7ff 07"), 256: hx("c80100 07"),
		65535: hx("c8ffff 07"), 65536: hx("c900010000 07")}
	blobs := newExtRegistry([]Extension{Ext(7, func(b blob) ([]byte, error) { return b, nil },
		func(p []byte) (blob, error) { return blob(p), nil })})
	for name, codec := range map[string]*valueCodec{"msgpack": nil, "walk": {exts: blobs}} {
		e := newCallEncoder(1<<30, codec)
		for _, tc := range cases {
			got := encodedArg(t, e, tc.in)
			if !assert.Equal(t, tc.want, got, "%s: %T %.40v", name, tc.in, tc.in) {
				continue
			}
			back, err := decodeValue(got, false, codec)
			require.NoError(t, err)
			assert.Equal(t, tc.back, back, "%s: %T %.40v", name, tc.in, tc.in)
			theirs, err := msgpackDecode(got)
			require.NoError(t, err)
			assert.Equal(t, tc.back, theirs, "msgpack: %s: %T %.40v", name, tc.in, tc.in)
		}
		if codec == nil {
			continue
		}
		for n, head := range extCases {
			payload := bytes.Repeat([]byte{'x'}, n)
			got := encodedArg(t, e, blob(payload))
			assert.Equal(t, cat(head, payload), got, "an extension's payload of %d bytes", n)
			back, err := decodeValue(got, false, codec)
			require.NoError(t, err)
			assert.Equal(t, blob(payload), back)
		}
	}
}

// TestAuditCodecBoundariesThroughPython: the encoder's boundary values
// through each Python codec and back (python3's pure codec, Debian's
// msgpack C extension where it is installed): Python decodes each as the
// type table says (int, float, str, bytes, list, dict, datetime) at its
// full size, and its encoding of it decodes in Go as the documented value.
func TestAuditCodecBoundariesThroughPython(t *testing.T) {
	values := []any{0, 127, 128, 255, 256, 65535, 65536, uint32(math.MaxUint32), int64(1 << 32), int64(math.MaxInt64),
		uint64(math.MaxUint64), -1, int8(-32), -33, -128, -129, int16(math.MinInt16), -32769, int32(math.MinInt32),
		int64(math.MinInt32) - 1, int64(math.MinInt64), float32(1.5), float32(math.MaxFloat32), math.SmallestNonzeroFloat64,
		"", strings.Repeat("s", 31), strings.Repeat("s", 32), strings.Repeat("s", 255), strings.Repeat("s", 256),
		strings.Repeat("é", 32768), strings.Repeat("s", 65536), []byte{}, bytes.Repeat([]byte{1}, 255), bytes.Repeat([]byte{1}, 256),
		bytes.Repeat([]byte{1}, 65535), bytes.Repeat([]byte{1}, 65536), make([]any, 15), make([]any, 16), make([]any, 65536),
		map[string]any{}, time.Unix(math.MaxUint32, 0), time.Unix(1<<32, 0), time.Unix(1<<34-1, 999999000),
		time.Unix(1<<34, 0), time.Unix(-3, 700000000)}
	wantTypes := []string{"int", "int", "int", "int", "int", "int", "int", "int", "int", "int", "int", "int", "int", "int",
		"int", "int", "int", "int", "int", "int", "int", "float", "float", "float", "str", "str", "str", "str", "str", "str",
		"str", "bytes", "bytes", "bytes", "bytes", "bytes", "list", "list", "list", "dict", "datetime", "datetime",
		"datetime", "datetime", "datetime"}
	require.Len(t, wantTypes, len(values))
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.Module = "pypool_auditcodec"
			cfg.Python = python
			cfg.SharedMemoryThreshold = -1 // every byte through the codecs
			pool := newTestPool(t, cfg)
			described, err := pool.Call(testCtx(t), "describe", values)
			require.NoError(t, err)
			for i, d := range described.([]any) {
				pair := d.([]any)
				assert.Equal(t, wantTypes[i], pair[0], "%T %.30v", values[i], values[i])
				if n := reflect.ValueOf(values[i]); n.Kind() == reflect.String || n.Kind() == reflect.Slice || n.Kind() == reflect.Map {
					size := int64(n.Len())
					if n.Kind() == reflect.String {
						size = int64(len([]rune(n.String())))
					}
					assert.Equal(t, size, pair[1], "%T of %d", values[i], n.Len())
				}
			}
			back, err := pool.Call(testCtx(t), "echo", values)
			require.NoError(t, err)
			// A datetime is no map (TestAuditCodecCallAsExtensionIsNoMap).
			_, err = CallAs[map[string]int](testCtx(t), pool, "echo", time.Unix(1<<31, 0))
			require.ErrorIs(t, err, ErrResultNotDecodable)
			assert.Contains(t, err.Error(), "a Python datetime does not fit Go map[string]int")
			e := newCallEncoder(1<<30, nil)
			for i, got := range back.([]any) {
				want, err := decodeValue(encodedArg(t, e, values[i]), false, nil)
				require.NoError(t, err)
				assert.Equal(t, want, got, "%T %.30v", values[i], values[i])
			}
		})
	}
}

// farTimes are times whose day count from 1970 does not fit in 32 bits
// (beyond about 5.8 million years from 1970), some of which msgpack's C
// extension, passing that count through a C int, reads as a date in
// Python's datetime range: 2^32 days and 5 seconds is 1970-01-01 00:00:05.
func farTimes() []time.Time {
	return []time.Time{
		time.Unix(86400<<32+5, 0),
		time.Unix(-(86400 << 32), 0),
		time.Unix(86400<<32+86400*365*55, 123456789),
		time.Unix(math.MaxInt64, 0),
		time.Unix(math.MinInt64, 0),
		time.Unix(86400*math.MaxInt32+86400, 0),
		time.Unix(86400*math.MinInt32-86400, 0),
	}
}

// TestAuditCodecFarTimesAreRefusedNotMisread: docs/types.md's time.Time row
// ("datetime (aware, UTC)") and docs/errors.md's "argument Python cannot
// decode: ErrBadArguments, keeps the worker". A time.Time Python's datetime
// can not hold (years 1 to 9999) is refused by the worker, on both codecs,
// however far out it is: never read as another date.
func TestAuditCodecFarTimesAreRefusedNotMisread(t *testing.T) {
	for name, python := range interpreters(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.Module = "pypool_auditcodec"
			cfg.Python = python
			cfg.Callbacks = map[string]Callback{
				"far": func(context.Context, []any) (any, error) { return time.Unix(86400<<32+5, 0), nil },
			}
			pool := newTestPool(t, cfg)
			pids := workerPids(pool)
			for _, when := range farTimes() {
				got, err := pool.Call(testCtx(t), "echo", when)
				require.ErrorIs(t, err, ErrBadArguments, "%d s came back as %v", when.Unix(), got)
				assert.Contains(t, err.Error(), "date value out of range")
				_, err = pool.Call(testCtx(t), "echo", map[string]any{"when": []any{when}})
				require.ErrorIs(t, err, ErrBadArguments, "%d s, nested", when.Unix())
			}
			got, err := pool.Call(testCtx(t), "ask", "far")
			if err == nil {
				t.Errorf("a callback's far time reached Python as %v", got)
			}
			assert.Equal(t, pids, workerPids(pool), "a bad argument cost the worker")
			got, err = pool.Call(testCtx(t), "echo", time.Unix(1<<34, 0))
			require.NoError(t, err)
			assert.Equal(t, time.Unix(1<<34, 0).UTC(), got)
		})
	}
}

// TestAuditCodecFarTimesStayFar: the encoder's side of the test above,
// without Python: each far time's timestamp is written with a day count
// that fits in 32 bits and is still beyond datetime's year 9999 (and
// before its year 1), on the path of every frame Go writes (a call, its
// keyword arguments, a callback's answer) and in Config.SetUpArgs; nearer
// times are written as they are.
func TestAuditCodecFarTimesStayFar(t *testing.T) {
	const datetimeMaxDays = 2932896 // 9999-12-31 from 1970-01-01
	const datetimeMinDays = -719162 // 0001-01-01
	check := func(frame []byte, when time.Time) {
		i := bytes.Index(frame, hx("c70cff"))
		require.GreaterOrEqual(t, i, 0)
		sec := int64(binary.BigEndian.Uint64(frame[i+7:]))
		days := sec / 86400
		assert.True(t, days >= math.MinInt32 && days <= math.MaxInt32, "%v: %d days", when, days)
		if when.Unix() > 0 {
			assert.Greater(t, days, int64(datetimeMaxDays), "%v", when)
		} else {
			assert.Less(t, days, int64(datetimeMinDays), "%v", when)
		}
		assert.Equal(t, uint32(when.Nanosecond()), binary.BigEndian.Uint32(frame[i+3:]), "%v: its nanoseconds", when)
	}
	for name, codec := range map[string]*valueCodec{"msgpack": nil, "walk": pointCodec("")} {
		e := newCallEncoder(1<<20, codec)
		for _, when := range farTimes() {
			frame, err := e.encode(1, "f", []any{"x", when}, nil)
			require.NoError(t, err, name)
			check(frame, when)
			frame, err = e.encode(1, "f", nil, Kwargs{"at": []any{struct{ At time.Time }{when}}})
			require.NoError(t, err, name)
			check(frame, when)
			frame, err = e.encodeControl(kindCallbackResult, 3, func(e *callEncoder) error {
				return errors.Join(e.enc.EncodeUint(1), e.value(when))
			})
			require.NoError(t, err, name)
			check(frame, when)
			frame, err = e.encode(1, "f", []any{make([]byte, 2*farTimesSearch), when}, nil)
			require.NoError(t, err, name)
			check(frame, when) // a frame large enough to be scanned without the search
			args, err := setUpArgs(Config{SetUpArgs: []any{when}})
			require.NoError(t, err)
			frame, err = base64.StdEncoding.DecodeString(args)
			require.NoError(t, err)
			check(frame, when)
		}
		for _, when := range []time.Time{time.Unix(-1, 0), time.Unix(86400*math.MaxInt32, 0), time.Unix(86400*math.MinInt32, 5)} {
			frame, err := e.encode(1, "f", []any{when}, nil)
			require.NoError(t, err)
			i := bytes.Index(frame, hx("c70cff"))
			require.GreaterOrEqual(t, i, 0)
			assert.Equal(t, when.Unix(), int64(binary.BigEndian.Uint64(frame[i+7:])), "%v is written as it is", when)
		}
	}
}

// TestAuditCodecCallAsExtensionIsNoMap: docs/types.md, "An unregistered
// code is an error that names it", and "A result that does not fit says
// where and what". msgpack, decoding into a map, skips an extension
// value's header (its DecodeMapLen) and reads the payload as the map: an
// unregistered code whose payload is a map filled a Go map, and a
// timestamp of 2^31 seconds (its payload starts with 0x80, an empty
// fixmap) gave an empty map, with no error. Into a map, at any depth, an
// extension value (other than a registered one, which is its Go value by
// then) is an error that says where.
func TestAuditCodecCallAsExtensionIsNoMap(t *testing.T) {
	unregistered := hx("d6 05 81a16101") // ext 5 (not registered), payload {"a": 1}
	strPayload := hx("d6 05 81a161a162") // ext 5, payload {"a": "b"}
	when := hx("d6ff 80000000")          // 2038-01-19 03:14:08 UTC, payload 0x80...
	whenAt := func(prefix string) []byte { return cat(hx(prefix), when) }
	cases := []struct {
		b      []byte
		target any
		want   string
	}{
		{unregistered, new(map[string]int), "result: msgpack extension type 5 is not registered"},
		{strPayload, new(map[string]string), "result: msgpack extension type 5 is not registered"},
		{cat(hx("91"), unregistered), new([]map[string]int), "result[0]: msgpack extension type 5 is not registered"},
		{cat(hx("81 a16d"), unregistered), new(struct {
			M map[string]int `msgpack:"m"`
		}), `result["m"]: msgpack extension type 5 is not registered`},
		{when, new(map[string]int), "result: a Python datetime does not fit Go map[string]int"},
		{whenAt("81 a16b"), new(map[string]map[string]any), `result["k"]: a Python datetime does not fit Go map[string]interface {}`},
		{whenAt("91"), new([]*map[string]bool), "result[0]: a Python datetime does not fit Go map[string]bool"},
	}
	for _, tc := range cases {
		err := decodeValueInto(tc.b, tc.target, nil)
		if assert.ErrorIs(t, err, ErrResultNotDecodable, "% x into %T gave %v", tc.b, tc.target, reflect.ValueOf(tc.target).Elem()) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
	// What msgpack decodes into those types is kept: a time into a time
	// or an interface, a map into a map.
	var at struct {
		T time.Time      `msgpack:"t"`
		A any            `msgpack:"a"`
		M map[string]int `msgpack:"m"`
	}
	require.NoError(t, decodeValueInto(cat(hx("83 a174"), when, hx("a161"), when, hx("a16d 81a16101")), &at, nil))
	assert.Equal(t, time.Unix(1<<31, 0).UTC(), at.T.UTC())
	assert.Equal(t, time.Unix(1<<31, 0).UTC(), at.A.(time.Time).UTC())
	assert.Equal(t, map[string]int{"a": 1}, at.M)
}

// BenchmarkBoundFarTimes: what the far times' check costs a frame with a
// time, a small frame without one, and one with a 1 MiB bytes argument.
func BenchmarkBoundFarTimes(b *testing.B) {
	e := newCallEncoder(64<<20, nil)
	for name, args := range map[string][]any{
		"trivial": {"testing"},
		"time":    {time.Unix(1, 0)},
		"1MiB":    {make([]byte, 1<<20)},
	} {
		frame, err := e.encode(1, "f", args, nil)
		require.NoError(b, err)
		frame = bytes.Clone(frame[frameHeaderSize:])
		b.Run(name, func(b *testing.B) {
			for range b.N {
				boundFarTimes(frame)
			}
		})
	}
}
