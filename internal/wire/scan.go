package wire

import "fmt"

// The scanner reads msgpack data as a flat sequence of items: container
// headers hold counts, not sizes, so that a value is read without
// recursion and an extension value can be replaced in place by another
// value without touching the headers around it.

// IsExt reports whether c starts an extension value.
func IsExt(c byte) bool {
	return c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8
}

// ExtBody reads the rest of an extension value whose first byte, c, was
// read: its code and its payload.
func (d *Reader) ExtBody(c byte) (code int8, payload []byte) {
	var n int
	if c >= 0xd4 { // fixext 1/2/4/8/16
		n = 1 << (c - 0xd4)
	} else { // ext 8/16/32
		n = d.Size(1 << (c - 0xc7))
	}
	code = int8(d.Byte())
	return code, d.Take(n)
}

// Skip reads one msgpack value, the items of containers included, and
// returns its bytes.
func (d *Reader) Skip() []byte {
	start := d.b
	for pending := 1; pending > 0 && d.err == nil; pending-- {
		if len(d.b) == 0 {
			d.Fail("the data ends inside a value")
			return nil
		}
		if count, perItem, ok := d.containerHeader(); ok {
			pending += count * perItem
			continue
		}
		c := d.Byte()
		if IsExt(c) {
			d.ExtBody(c)
		} else {
			d.skipScalar(c)
		}
	}
	if d.err != nil {
		return nil
	}
	return start[:len(start)-len(d.b)]
}

// CheckDeclaredSizes checks, before a decoder that trusts them reads b
// (msgpack's), that no array or map in it declares more items than the
// bytes after its header could hold: msgpack's decoder makes a map of the
// declared size at once, so that a 9-byte message could otherwise make it
// allocate gigabytes. It also checks that no value is nested deeper than
// MaxDepth: msgpack's decoder recurses without a bound, and a deep enough
// value overflows the goroutine's stack, which kills the Go process. It
// reads b without recursion.
func CheckDeclaredSizes(b []byte) error {
	d := NewReader(b)
	var open []int // the values still to come in each enclosing container, innermost last
	for len(d.b) > 0 && d.err == nil {
		for len(open) > 0 && open[len(open)-1] == 0 {
			open = open[:len(open)-1]
		}
		if len(open) > MaxDepth { // a value at the depth the decoders refuse
			return fmt.Errorf("values nested more than %d levels deep", MaxDepth)
		}
		if len(open) > 0 {
			open[len(open)-1]--
		}
		count, perItem, ok := d.containerHeader()
		switch {
		case !ok:
			if c := d.Byte(); IsExt(c) {
				d.ExtBody(c)
			} else {
				d.skipScalar(c)
			}
		case d.err != nil:
		case count > len(d.b)/perItem:
			return fmt.Errorf("a container declares %d items in the %d bytes that follow it", count, len(d.b))
		case count > 0:
			open = append(open, count*perItem)
		}
	}
	return d.err
}

// RewriteExts returns b with each extension value for which replace
// returns ok replaced by the bytes it returns; b itself when none is.
func RewriteExts(b []byte, replace func(code int8, payload []byte) (out []byte, ok bool, err error)) ([]byte, error) {
	var out []byte
	last := 0
	err := scanExts(b, func(start, end int, code int8, payload []byte) error {
		rep, ok, err := replace(code, payload)
		if err != nil || !ok {
			return err
		}
		out = append(append(out, b[last:start]...), rep...)
		last = end
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case out == nil:
		return b, nil
	}
	return append(out, b[last:]...), nil
}

// ContainsExt reports whether b holds an extension value of the code.
func ContainsExt(b []byte, code int8) bool {
	found := false
	_ = scanExts(b, func(_, _ int, c int8, _ []byte) error {
		found = found || c == code
		return nil
	})
	return found
}

// EachExt calls fn with the code and the payload of each extension value
// in the msgpack data b, not looking into payloads. The payload is a part
// of b, which fn may change in place.
func EachExt(b []byte, fn func(code int8, payload []byte)) error {
	return scanExts(b, func(_, _ int, code int8, payload []byte) error {
		fn(code, payload)
		return nil
	})
}

// scalarSizes holds the bytes after the code of the msgpack formats 0xca
// (float 32) to 0xd3 (int 64).
var scalarSizes = [...]int{4, 8, 1, 2, 4, 8, 1, 2, 4, 8}

// scanExts calls fn for each extension value in the msgpack data b, with its
// start and end in b, its code and its payload.
func scanExts(b []byte, fn func(start, end int, code int8, payload []byte) error) error {
	return scanItems(b, nil, fn)
}

// scanItems reads the msgpack data b as a flat sequence of items (container
// headers hold counts, not sizes), not looking into extension payloads. It
// calls container, if not nil, for each array or map header with its item
// count, the msgpack values per item (1 or 2) and the bytes after the
// header; and ext, if not nil, for each extension value with its start and
// end in b, its code and its payload.
func scanItems(b []byte, container func(count, perItem, rest int) error, ext func(start, end int, code int8, payload []byte) error) error {
	d := NewReader(b)
	for len(d.b) > 0 && d.err == nil {
		start := len(b) - len(d.b)
		if count, perItem, ok := d.containerHeader(); ok {
			if container != nil && d.err == nil {
				if err := container(count, perItem, len(d.b)); err != nil {
					return err
				}
			}
			continue
		}
		c := d.Byte()
		if !IsExt(c) {
			d.skipScalar(c)
			continue
		}
		code, payload := d.ExtBody(c)
		if ext != nil && d.err == nil {
			if err := ext(start, len(b)-len(d.b), code, payload); err != nil {
				return err
			}
		}
	}
	return d.err
}

// containerHeader reads the header of an array or a map (perItem 1 or 2
// msgpack values per item); ok is false, and nothing is read, for any
// other value.
func (d *Reader) containerHeader() (count, perItem int, ok bool) {
	switch c := d.b[0]; {
	case c >= 0x80 && c <= 0x8f: // fixmap
		d.Take(1)
		return int(c & 0x0f), 2, true
	case c >= 0x90 && c <= 0x9f: // fixarray
		d.Take(1)
		return int(c & 0x0f), 1, true
	case c == 0xdc || c == 0xdd: // array 16/32
		d.Take(1)
		return d.Size(2 << (c - 0xdc)), 1, true
	case c == 0xde || c == 0xdf: // map 16/32
		d.Take(1)
		return d.Size(2 << (c - 0xde)), 2, true
	}
	return 0, 0, false
}

// skipScalar skips the rest of a value that is neither a container nor an
// extension, whose first byte c was read.
func (d *Reader) skipScalar(c byte) {
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		// fixint, nil, bool: the code is the value
	case c >= 0xa0 && c <= 0xbf: // fixstr
		d.Take(int(c & 0x1f))
	case c >= 0xc4 && c <= 0xc6: // bin 8/16/32
		d.Take(d.Size(1 << (c - 0xc4)))
	case c >= 0xd9 && c <= 0xdb: // str 8/16/32
		d.Take(d.Size(1 << (c - 0xd9)))
	case c >= 0xca && c <= 0xd3:
		d.Take(scalarSizes[c-0xca])
	default:
		d.Fail("unknown msgpack code 0x%02x", c)
	}
}
