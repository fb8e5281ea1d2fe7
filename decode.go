package pypool

// decode.go turns msgpack values sent by the worker into Go values, the
// "Call gives Go" column of the type table (docs/types.md): nil, bool, int64
// (uint64 above math.MaxInt64), float64, string, []byte, []any,
// map[string]any (map[any]any when a key is not a string), time.Time in
// UTC, Array for an ndarray and the Go value of a registered extension.
// valueDecoder reads them with internal/wire's msgpack reader, which also
// parses the fields of the messages for protocol.go. CallAs targets go
// through msgpack's own rules instead (decodeValueInto, in decode_into.go).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/pypool/pypool/internal/wire"
)

// maxDecodeDepth bounds the nesting of decoded values, so that a hostile or
// broken peer cannot exhaust the goroutine stack.
const maxDecodeDepth = wire.MaxDepth

// decodeValue decodes a msgpack value into the Go types documented in
// docs/types.md: nil, bool, int64 (uint64 above math.MaxInt64), float64, string,
// []byte, []any, map[string]any (map[any]any when a key is not a string),
// time.Time in UTC, Array and the values of codec's extensions (codec may be
// nil: none).
//
// When owned is true, byte strings alias b instead of copying it.
func decodeValue(b []byte, owned bool, codec *valueCodec) (any, error) {
	d := valueDecoder{owned: owned, codec: codec, size0: len(b)}
	d.Reset(b)
	v := d.value(0)
	if d.Err() == nil && d.Len() != 0 {
		d.Fail("%d trailing bytes after the value", d.Len())
	}
	switch {
	case errors.Is(d.Err(), errUnhashableKey):
		return nil, fmt.Errorf("%w: %s", ErrResultNotDecodable, unhashableKeyAt(b, codec))
	case d.Err() != nil:
		return nil, resultError(d.Err())
	}
	return v, nil
}

// errUnhashableKey is a dict key that can not be a key of a Go map (a
// list, bytes, a dict): decodeValue then decodes the value again, leniently,
// to say where it is.
var errUnhashableKey = errors.New("a Python dict key can not be a key of a Go map")

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

// valueDecoder decodes a complete msgpack value into the Go values Call
// gives, with wire.Reader's checks: no length is trusted beyond the bytes
// that remain, and the first error sticks.
type valueDecoder struct {
	wire.Reader
	owned bool        // byte strings may alias the message
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

// value decodes one value of any type.
func (d *valueDecoder) value(depth int) any {
	if depth > maxDecodeDepth {
		d.Fail("values nested more than %d levels deep", maxDecodeDepth)
		return nil
	}
	c := d.Byte()
	if d.Err() != nil {
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
		return string(d.Take(int(c & 0x1f)))
	}
	switch c {
	case 0xc0:
		return nil
	case 0xc2:
		return false
	case 0xc3:
		return true
	case 0xc4, 0xc5, 0xc6: // bin 8/16/32
		p := d.Take(d.Size(1 << (c - 0xc4)))
		if d.owned {
			return p[:len(p):len(p)]
		}
		return bytes.Clone(p)
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32
		n := d.Size(1 << (c - 0xc7))
		return d.ext(n)
	case 0xca:
		p := d.Take(4)
		if p == nil {
			return nil
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(p)))
	case 0xcb:
		p := d.Take(8)
		if p == nil {
			return nil
		}
		return math.Float64frombits(binary.BigEndian.Uint64(p))
	case 0xcc, 0xcd, 0xce:
		return int64(d.Size(1 << (c - 0xcc)))
	case 0xcf:
		p := d.Take(8)
		if p == nil {
			return nil
		}
		u := binary.BigEndian.Uint64(p)
		if u > math.MaxInt64 {
			return u
		}
		return int64(u)
	case 0xd0:
		return int64(int8(d.Byte()))
	case 0xd1:
		p := d.Take(2)
		if p == nil {
			return nil
		}
		return int64(int16(binary.BigEndian.Uint16(p)))
	case 0xd2:
		p := d.Take(4)
		if p == nil {
			return nil
		}
		return int64(int32(binary.BigEndian.Uint32(p)))
	case 0xd3:
		p := d.Take(8)
		if p == nil {
			return nil
		}
		return int64(binary.BigEndian.Uint64(p))
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16
		return d.ext(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb: // str 8/16/32
		return string(d.Take(d.Size(1 << (c - 0xd9))))
	case 0xdc, 0xdd:
		return d.arrayBody(d.Size(2<<(c-0xdc)), depth)
	case 0xde, 0xdf:
		return d.mapBody(d.Size(2<<(c-0xde)), depth)
	}
	d.Fail("unknown msgpack code 0x%02x", c)
	return nil
}

func (d *valueDecoder) arrayBody(n, depth int) any {
	if n > d.Len() { // every element takes at least one byte
		d.Fail("array of %d elements in %d bytes", n, d.Len())
		return nil
	}
	list := make([]any, n)
	for i := range list {
		list[i] = d.value(depth + 1)
	}
	return list
}

func (d *valueDecoder) mapBody(n, depth int) any {
	if n > d.Len()/2 { // every entry takes at least two bytes
		d.Fail("map of %d entries in %d bytes", n, d.Len())
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
	if d.Err() != nil {
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
		switch {
		case hashable(k):
			m[k] = values[i]
		case d.lenient:
			// Described, not decoded: the key stands in for itself, so
			// that the walk can say where it is (describeMismatch).
			m[&unhashableKey{k}] = values[i]
		default:
			d.Fail("%w", errUnhashableKey) // decodeValue says where (unhashableKeyAt)
			return nil
		}
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

// unhashableKey stands for a dict key that can not be a Go map key (a
// list, bytes, a dict) in a value decoded leniently; its String is the
// key's.
type unhashableKey struct{ key any }

// String is the key as fmt prints it.
func (u *unhashableKey) String() string { return fmt.Sprint(u.key) }

// ext decodes an extension value of n bytes.
func (d *valueDecoder) ext(n int) any {
	code := int8(d.Byte())
	data := d.Take(n)
	if d.Err() != nil {
		return nil
	}
	v, err := d.extValue(code, data)
	switch {
	case err == nil:
		return v
	case d.lenient && !isSharedFault(err): // a fault is the worker's, not the value's
		return badExt{code: code, err: err}
	}
	d.Fail("%w", err)
	return nil
}

// extValue decodes the payload of an extension value: a timestamp, an
// ndarray, a shared-memory reference or a registered extension.
func (d *valueDecoder) extValue(code int8, data []byte) (any, error) {
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
			// Only a worker that breaks the protocol sends one.
			return nil, brokenByWorker("extension %d: a shared-memory reference from a worker that has no shared memory", code)
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
