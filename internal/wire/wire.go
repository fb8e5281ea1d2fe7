// Package wire is the bytes pypool and its workers exchange, knowing
// nothing of the pool: frames (a 4-byte big-endian length and a msgpack
// body), the worker's handshake (HELLO), a msgpack reader over a complete
// message, the appenders of msgpack headers, and the scanner that reads a
// msgpack value as a flat sequence of items (its declared sizes and depth
// checked, its extension values found or replaced).
//
// The messages themselves, and the values users see, are the root
// package's (protocol.go, decode.go). Everything here reads bytes from
// another process that may be broken or hostile: every length is checked
// against the bytes that remain before it is used.
package wire

import (
	"encoding/binary"
	"fmt"
	"math"
)

// MaxDepth bounds the nesting of decoded values, so that a hostile or
// broken peer cannot exhaust the goroutine stack.
const MaxDepth = 10000

// Reader is a small msgpack reader over a complete message. Every length
// it reads is checked against the bytes that remain, so a corrupt or
// hostile message can not make it allocate more than the message itself.
// The first error sticks; later reads return zero values.
type Reader struct {
	b   []byte
	err error
}

// NewReader returns a Reader of the message b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Reset makes d a Reader of the message b, as NewReader(b) does, in place
// (a Reader embedded in a larger decoder is then not copied).
func (d *Reader) Reset(b []byte) { d.b, d.err = b, nil }

// Err returns the first error of the reads so far.
func (d *Reader) Err() error { return d.err }

// Len returns how many bytes are left to read.
func (d *Reader) Len() int { return len(d.b) }

// Fail records an error, unless one was recorded already, and drops the
// bytes left.
func (d *Reader) Fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	d.b = nil
}

// Take returns the next n bytes.
func (d *Reader) Take(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.Fail("message truncated: need %d bytes, have %d", n, len(d.b))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

// Byte returns the next byte.
func (d *Reader) Byte() byte {
	p := d.Take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

// Size reads a big-endian unsigned length of width 1, 2 or 4 bytes.
func (d *Reader) Size(width int) int {
	p := d.Take(width)
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

// Rest returns the bytes left; nothing is left to read after it.
func (d *Reader) Rest() []byte {
	p := d.b
	d.b = nil
	return p
}

func (d *Reader) peekNil() bool { return len(d.b) > 0 && d.b[0] == 0xc0 }
func (d *Reader) skipNil()      { d.Take(1) }

// ArrayLen reads the header of an array and returns its length.
func (d *Reader) ArrayLen() int {
	c := d.Byte()
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f)
	case c == 0xdc:
		return d.Size(2)
	case c == 0xdd:
		return d.Size(4)
	}
	d.Fail("expected an array, got code 0x%02x", c)
	return 0
}

// MapLen reads the header of a map and returns its number of pairs.
func (d *Reader) MapLen() int {
	c := d.Byte()
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f)
	case c == 0xde:
		return d.Size(2)
	case c == 0xdf:
		return d.Size(4)
	}
	d.Fail("expected a map, got code 0x%02x", c)
	return 0
}

// Int reads an integer of 64 bits.
func (d *Reader) Int() int64 {
	v, big, ok := d.Integer()
	if !ok || big {
		d.Fail("expected an integer of 64 bits")
		return 0
	}
	return int64(v)
}

// Uint reads a non-negative integer.
func (d *Reader) Uint() uint64 {
	v, big, ok := d.Integer()
	if !ok || (!big && int64(v) < 0) {
		d.Fail("expected an unsigned integer")
		return 0
	}
	return v
}

// Integer reads an integer field without boxing it (message ids are read
// on every call). v holds an int64's bits, or a uint64 above MaxInt64 when
// big is true; ok is false when the next value is not an integer.
func (d *Reader) Integer() (v uint64, big, ok bool) {
	if len(d.b) == 0 {
		d.Fail("message truncated: need an integer")
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
		return uint64(d.Size(1 << (c - 0xcc))), false, d.err == nil
	case c == 0xcf, c == 0xd3: // uint 64, int 64
		d.b = d.b[1:]
		p := d.Take(8)
		if p == nil {
			return 0, false, false
		}
		u := binary.BigEndian.Uint64(p)
		return u, c == 0xcf && u > math.MaxInt64, true
	case c >= 0xd0 && c <= 0xd2: // int 8/16/32
		d.b = d.b[1:]
		p := d.Take(1 << (c - 0xd0))
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

// Str reads a string field. It reads nothing but strings: decoding any
// value there would let an ndarray's header hold another ndarray, and so
// on, each in a decoder of its own that the nesting limit does not see.
func (d *Reader) Str() string {
	c := d.Byte()
	switch {
	case c >= 0xa0 && c <= 0xbf:
		return string(d.Take(int(c & 0x1f)))
	case c >= 0xd9 && c <= 0xdb:
		return string(d.Take(d.Size(1 << (c - 0xd9))))
	}
	d.Fail("expected a string")
	return ""
}

// AppendArrayHeader appends the header of an array of n elements to b.
func AppendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

// AppendUint appends v to b in its shortest msgpack form.
func AppendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}
