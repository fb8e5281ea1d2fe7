package pypool

// decode.go turns msgpack values sent by the worker into Go values, the
// "Call gives Go" column of the type table (docs/types.md): nil, bool, int64
// (uint64 above math.MaxInt64), float64, string, []byte, []any,
// map[string]any (map[any]any when a key is not a string), time.Time in
// UTC, Array for an ndarray and the Go value of a registered extension.
// wireDecoder, the reader underneath, also parses the fields of the HELLO,
// RESULT and ERROR messages for protocol.go. CallAs targets go through
// msgpack's own rules instead (decodeValueInto, in decode_into.go).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"time"
)

// maxDecodeDepth bounds the nesting of decoded values, so that a hostile or
// broken peer cannot exhaust the goroutine stack.
const maxDecodeDepth = 10000

// decodeValue decodes a msgpack value into the Go types documented in
// docs/types.md: nil, bool, int64 (uint64 above math.MaxInt64), float64, string,
// []byte, []any, map[string]any (map[any]any when a key is not a string),
// time.Time in UTC, Array and the values of codec's extensions (codec may be
// nil: none).
//
// When owned is true, byte strings alias b instead of copying it.
func decodeValue(b []byte, owned bool, codec *valueCodec) (any, error) {
	d := wireDecoder{b: b, owned: owned, codec: codec, size0: len(b)}
	v := d.value(0)
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes after the value", len(d.b))
	}
	if d.err != nil {
		return nil, resultError(d.err)
	}
	return v, nil
}

// resultError is the error of a result that does not decode: it wraps
// ErrResultNotDecodable, unless the shared memory failed (a sharedFault,
// which kills the worker): that is the worker's fault, or the system's,
// not the result's.
func resultError(err error) error {
	if isSharedFault(err) {
		return fmt.Errorf("pypool: reading the result: %w", err)
	}
	return fmt.Errorf("%w: %w", ErrResultNotDecodable, err)
}

// wireDecoder is a small msgpack reader over a complete message. Every length
// it reads is checked against the bytes that remain, so a corrupt or hostile
// message can not make it allocate more than the message itself. The first
// error sticks; later reads return zero values.
type wireDecoder struct {
	b     []byte
	err   error
	owned bool        // byte strings may alias b
	codec *valueCodec // the registered extensions and shared memory; nil: none
	size0 int         // the value's size in the message, for the shared memory's budget

	// lenient turns an extension value that can not be decoded into a
	// badExt instead of an error (for describing a value msgpack failed on).
	lenient bool

	// shm resolves the shared-memory references SHM_BYTES and SHM_NDARRAY
	// (extension codes 126 and 125) against codec.shared, made at the
	// first reference (most replies have none). Without shared memory they
	// are an error.
	shm *sharedReader
}

func (d *wireDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.b = nil
}

// take returns the next n bytes.
func (d *wireDecoder) take(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.fail("message truncated: need %d bytes, have %d", n, len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *wireDecoder) byte1() byte {
	p := d.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

// size reads a big-endian unsigned length of width 1, 2 or 4 bytes.
func (d *wireDecoder) size(width int) int {
	p := d.take(width)
	switch {
	case p == nil:
		return 0
	case width == 1:
		return int(p[0])
	case width == 2:
		return int(binary.BigEndian.Uint16(p))
	default:
		return int(binary.BigEndian.Uint32(p))
	}
}

func (d *wireDecoder) rest() []byte {
	p := d.b
	d.b = nil
	return p
}

func (d *wireDecoder) peekNil() bool { return len(d.b) > 0 && d.b[0] == 0xc0 }
func (d *wireDecoder) skipNil()      { d.take(1) }

func (d *wireDecoder) arrayLen() int {
	c := d.byte1()
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f)
	case c == 0xdc:
		return d.size(2)
	case c == 0xdd:
		return d.size(4)
	}
	d.fail("expected an array, got code 0x%02x", c)
	return 0
}

func (d *wireDecoder) int() int64 {
	v, big, ok := d.integer()
	if !ok || big {
		d.fail("expected an integer of 64 bits")
		return 0
	}
	return int64(v)
}

func (d *wireDecoder) uint() uint64 {
	v, big, ok := d.integer()
	if !ok || (!big && int64(v) < 0) {
		d.fail("expected an unsigned integer")
		return 0
	}
	return v
}

// integer reads an integer field without boxing it (message ids are read
// on every call). v holds an int64's bits, or a uint64 above MaxInt64 when
// big is true; ok is false when the next value is not an integer.
func (d *wireDecoder) integer() (v uint64, big, ok bool) {
	if len(d.b) == 0 {
		d.fail("message truncated: need an integer")
		return 0, false, false
	}
	c := d.b[0]
	switch {
	case c <= 0x7f:
		d.b = d.b[1:]
		return uint64(c), false, true
	case c >= 0xe0:
		d.b = d.b[1:]
		return uint64(int64(int8(c))), false, true
	case c >= 0xcc && c <= 0xce: // uint 8/16/32
		d.b = d.b[1:]
		return uint64(d.size(1 << (c - 0xcc))), false, d.err == nil
	case c == 0xcf, c == 0xd3: // uint 64, int 64
		d.b = d.b[1:]
		p := d.take(8)
		if p == nil {
			return 0, false, false
		}
		u := binary.BigEndian.Uint64(p)
		return u, c == 0xcf && u > math.MaxInt64, true
	case c >= 0xd0 && c <= 0xd2: // int 8/16/32
		d.b = d.b[1:]
		p := d.take(1 << (c - 0xd0))
		switch len(p) {
		case 1:
			return uint64(int64(int8(p[0]))), false, true
		case 2:
			return uint64(int64(int16(binary.BigEndian.Uint16(p)))), false, true
		case 4:
			return uint64(int64(int32(binary.BigEndian.Uint32(p)))), false, true
		}
		return 0, false, false
	}
	return 0, false, false
}

// str reads a string field. It reads nothing but strings: decoding any
// value there would let an ndarray's header hold another ndarray, and so on,
// each in a decoder of its own that the nesting limit does not see.
func (d *wireDecoder) str() string {
	c := d.byte1()
	switch {
	case c >= 0xa0 && c <= 0xbf:
		return string(d.take(int(c & 0x1f)))
	case c >= 0xd9 && c <= 0xdb:
		return string(d.take(d.size(1 << (c - 0xd9))))
	}
	d.fail("expected a string")
	return ""
}

// pythonError reads the four fields code, type, message and traceback.
func (d *wireDecoder) pythonError() *PythonError {
	return &PythonError{Code: d.str(), Type: d.str(), Message: d.str(), Traceback: d.str()}
}

// value decodes one value of any type.
func (d *wireDecoder) value(depth int) any {
	if depth > maxDecodeDepth {
		d.fail("values nested more than %d levels deep", maxDecodeDepth)
		return nil
	}
	c := d.byte1()
	if d.err != nil {
		return nil
	}
	switch {
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	case c >= 0x80 && c <= 0x8f:
		return d.mapBody(int(c&0x0f), depth)
	case c >= 0x90 && c <= 0x9f:
		return d.arrayBody(int(c&0x0f), depth)
	case c >= 0xa0 && c <= 0xbf:
		return string(d.take(int(c & 0x1f)))
	}
	switch c {
	case 0xc0:
		return nil
	case 0xc2:
		return false
	case 0xc3:
		return true
	case 0xc4, 0xc5, 0xc6: // bin 8/16/32
		p := d.take(d.size(1 << (c - 0xc4)))
		if d.owned {
			return p[:len(p):len(p)]
		}
		return bytes.Clone(p)
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32
		n := d.size(1 << (c - 0xc7))
		return d.ext(n)
	case 0xca:
		p := d.take(4)
		if p == nil {
			return nil
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(p)))
	case 0xcb:
		p := d.take(8)
		if p == nil {
			return nil
		}
		return math.Float64frombits(binary.BigEndian.Uint64(p))
	case 0xcc, 0xcd, 0xce:
		return int64(d.size(1 << (c - 0xcc)))
	case 0xcf:
		p := d.take(8)
		if p == nil {
			return nil
		}
		u := binary.BigEndian.Uint64(p)
		if u > math.MaxInt64 {
			return u
		}
		return int64(u)
	case 0xd0:
		return int64(int8(d.byte1()))
	case 0xd1:
		p := d.take(2)
		if p == nil {
			return nil
		}
		return int64(int16(binary.BigEndian.Uint16(p)))
	case 0xd2:
		p := d.take(4)
		if p == nil {
			return nil
		}
		return int64(int32(binary.BigEndian.Uint32(p)))
	case 0xd3:
		p := d.take(8)
		if p == nil {
			return nil
		}
		return int64(binary.BigEndian.Uint64(p))
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16
		return d.ext(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb: // str 8/16/32
		return string(d.take(d.size(1 << (c - 0xd9))))
	case 0xdc, 0xdd:
		return d.arrayBody(d.size(2<<(c-0xdc)), depth)
	case 0xde, 0xdf:
		return d.mapBody(d.size(2<<(c-0xde)), depth)
	}
	d.fail("unknown msgpack code 0x%02x", c)
	return nil
}

func (d *wireDecoder) arrayBody(n, depth int) any {
	if n > len(d.b) { // every element takes at least one byte
		d.fail("array of %d elements in %d bytes", n, len(d.b))
		return nil
	}
	list := make([]any, n)
	for i := range list {
		list[i] = d.value(depth + 1)
	}
	return list
}

func (d *wireDecoder) mapBody(n, depth int) any {
	if n > len(d.b)/2 { // every entry takes at least two bytes
		d.fail("map of %d entries in %d bytes", n, len(d.b))
		return nil
	}
	keys := make([]any, n)
	values := make([]any, n)
	allStrings := true
	for i := range keys {
		keys[i] = d.value(depth + 1)
		values[i] = d.value(depth + 1)
		_, isString := keys[i].(string)
		allStrings = allStrings && isString
	}
	if d.err != nil {
		return nil
	}
	if allStrings {
		m := make(map[string]any, n)
		for i, k := range keys {
			m[k.(string)] = values[i]
		}
		return m
	}
	m := make(map[any]any, n)
	for i, k := range keys {
		if !hashable(k) {
			d.fail("a map key of Go type %T can not be a key of a Go map; decode into a typed target with CallAs", k)
			return nil
		}
		m[k] = values[i]
	}
	return m
}

// hashable reports whether a decoded value can be a key of a Go map.
func hashable(k any) bool {
	switch k.(type) {
	case nil, bool, int64, uint64, float64, string, time.Time:
		return true
	case []byte, []any, map[string]any, map[any]any, Array:
		return false
	}
	return reflect.ValueOf(k).Comparable()
}

// ext decodes an extension value of n bytes.
func (d *wireDecoder) ext(n int) any {
	code := int8(d.byte1())
	data := d.take(n)
	if d.err != nil {
		return nil
	}
	v, err := d.extValue(code, data)
	switch {
	case err == nil:
		return v
	case d.lenient:
		return badExt{code: code, err: err}
	}
	d.fail("%w", err)
	return nil
}

// extValue decodes the payload of an extension value: a timestamp, an
// ndarray, a shared-memory reference or a registered extension.
func (d *wireDecoder) extValue(code int8, data []byte) (any, error) {
	switch code {
	case -1:
		t, err := decodeTimestamp(data)
		if err != nil {
			return nil, err
		}
		return t, nil
	case extNDArray:
		a, err := decodeNDArray(data)
		if err != nil {
			return nil, fmt.Errorf("ndarray: %w", err)
		}
		return a, nil
	case extShmBytes, extShmNDArray:
		if d.codec == nil || d.codec.shared == nil {
			return nil, fmt.Errorf("extension %d: shared-memory reference with no shared memory", code)
		}
		if d.shm == nil {
			d.shm = newSharedReader(d.codec.shared, d.size0)
		}
		return d.shm.resolve(code, data)
	}
	if d.codec != nil {
		if x := d.codec.exts.forCode(code); x != nil {
			if !d.owned {
				data = bytes.Clone(data) // decode may keep it; the buffer is reused
			}
			return x.decodeValue(data[:len(data):len(data)])
		}
	}
	return nil, unknownExt(code)
}

// unknownExt is the error for an extension code nothing decodes.
func unknownExt(code int8) error {
	switch {
	case code < 0:
		return fmt.Errorf("msgpack extension type %d is reserved by msgpack and unknown to pypool", code)
	case code > maxUserExt:
		return fmt.Errorf("extension type %d is reserved by pypool and unknown to this version", code)
	}
	return fmt.Errorf("msgpack extension type %d is not registered: add a pypool.Ext for it to Config.Extensions", code)
}

// badExt stands for an extension value that could not be decoded, in a
// value decoded leniently.
type badExt struct {
	code int8
	err  error
}

// decodeTimestamp reads msgpack's timestamp extension (type -1).
func decodeTimestamp(data []byte) (time.Time, error) {
	switch len(data) {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(data)), 0).UTC(), nil
	case 8:
		v := binary.BigEndian.Uint64(data)
		return time.Unix(int64(v&(1<<34-1)), int64(v>>34)).UTC(), nil
	case 12:
		nsec := binary.BigEndian.Uint32(data)
		sec := int64(binary.BigEndian.Uint64(data[4:]))
		return time.Unix(sec, int64(nsec)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("bad timestamp length %d", len(data))
}

// pythonType names the Python type of a decoded value.
func pythonType(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case int8, int16, int32, int64, uint8, uint16, uint32, uint64:
		return "int"
	case float32, float64:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bytes"
	case []any:
		return "list"
	case map[string]any, map[any]any:
		return "dict"
	case time.Time:
		return "datetime"
	case Array:
		return "ndarray of " + string(v.DType)
	case badExt:
		return fmt.Sprintf("ext code %d", v.code)
	}
	return fmt.Sprintf("%T", v)
}
