package pypool

// decode_into.go decodes a result into a CallAs target: msgpack's rules for
// typed targets, with pypool's own values fitted in around them. In order:
//
//  1. one ndarray into *Array or *[]E (E an Element type): directly, without
//     msgpack;
//  2. values of registered extensions are rewritten as the msgpack encoding
//     of the Go value their decode function returns;
//  3. msgpack decodes; Array fields read ndarrays with Array.DecodeMsgpack;
//  4. if that fails and the value holds ndarrays, they are rewritten as
//     nested lists of numbers and msgpack tries again;
//  5. if that fails too, typeerr.go finds where the value and the target
//     part ways, for the error.
//
// Rewriting never touches a container's header: msgpack counts elements, not
// bytes, so an extension value is replaced in place by another value.

import (
	"bytes"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// decodeValueInto decodes a msgpack value into the value v points to, with
// msgpack's rules for typed targets (struct fields by their msgpack tags,
// else by codec's struct tag, else by name) and the steps above.
func decodeValueInto(b []byte, v any, codec *valueCodec) error {
	if codec == nil {
		codec = &valueCodec{}
	}
	if done, err := decodeArrayInto(b, v, codec.shared); done {
		return err
	}
	if codec.shared != nil {
		var err error
		if b, err = rewriteShared(b, codec.shared); err != nil {
			return resultError(err)
		}
	}
	if err := checkDeclaredSizes(b); err != nil {
		return fmt.Errorf("%w: %w", ErrResultNotDecodable, err)
	}
	b, err := rewriteRegistered(b, codec)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrResultNotDecodable, err)
	}
	err = unmarshal(b, v, codec.structTag)
	if err != nil && containsExt(b, extNDArray) {
		lists, rerr := rewriteNDArrays(b)
		if rerr != nil {
			err = rerr // the reason there was no retry
		} else {
			reflect.ValueOf(v).Elem().SetZero()
			err = unmarshal(lists, v, codec.structTag)
		}
	}
	if err != nil {
		return describeMismatch(b, v, codec, err)
	}
	return nil
}

// unmarshal is msgpack's decoding with Config.StructTag.
func unmarshal(b []byte, v any, structTag string) error {
	if structTag == "" {
		return msgpack.Unmarshal(b, v)
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.SetCustomStructTag(structTag)
	return dec.Decode(v)
}

// marshal is msgpack's encoding with Config.StructTag, and ints as small as
// they fit, as Python writes them.
func marshal(v any, structTag string) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetCustomStructTag(structTag)
	enc.UseCompactInts(true)
	err := enc.Encode(v)
	return buf.Bytes(), err
}

// describeMismatch is the error for a value msgpack could not decode into
// v: where the value and v's type part ways when that can be found, else
// msgpack's own error.
func describeMismatch(b []byte, v any, codec *valueCodec, cause error) error {
	d := wireDecoder{b: b, codec: codec, lenient: true}
	value := d.value(0)
	if d.err == nil {
		if m := findMismatch(value, reflect.TypeOf(v).Elem(), codec.structTag); m != nil {
			return fmt.Errorf("%w: %s", ErrResultNotDecodable, m)
		}
	}
	return fmt.Errorf("%w: into %T: %v", ErrResultNotDecodable, v, cause)
}

// decodeArrayInto decodes a value that is one ndarray into an *Array or a
// *[]E of an Element type, without msgpack. done is false for other targets
// and other values.
func decodeArrayInto(b []byte, v any, shared *sharedMem) (done bool, err error) {
	switch v.(type) {
	case *Array, *[]float64, *[]float32, *[]int64, *[]int32, *[]int16, *[]int8, *[]uint8, *[]uint16, *[]uint32, *[]uint64, *[]bool:
	default:
		return false, nil
	}
	a, ok, err := singleArray(b, shared)
	if !ok || err != nil {
		return ok, err
	}
	switch out := v.(type) {
	case *Array:
		*out = a
		return true, nil
	case *[]float64:
		return true, sliceInto(a, out, Float64)
	case *[]float32:
		return true, sliceInto(a, out, Float32)
	case *[]int64:
		return true, sliceInto(a, out, Int64)
	case *[]int32:
		return true, sliceInto(a, out, Int32)
	case *[]int16:
		return true, sliceInto(a, out, Int16)
	case *[]int8:
		return true, sliceInto(a, out, Int8)
	case *[]uint8:
		return true, sliceInto(a, out, Uint8)
	case *[]uint16:
		return true, sliceInto(a, out, Uint16)
	case *[]uint32:
		return true, sliceInto(a, out, Uint32)
	case *[]uint64:
		return true, sliceInto(a, out, Uint64)
	case *[]bool:
		return true, sliceInto(a, out, Bool)
	}
	return false, nil
}

// singleArray decodes b when it is one ndarray, inline or in the shared
// memory; ok is false for any other value.
func singleArray(b []byte, shared *sharedMem) (a Array, ok bool, err error) {
	d := wireDecoder{b: b}
	c := d.byte1()
	if !isExtCode(c) {
		return Array{}, false, nil
	}
	code, payload := scanExt(&d, c)
	switch {
	case d.err != nil || len(d.b) != 0:
		return Array{}, false, nil
	case code == extNDArray:
		a, err = decodeNDArray(payload)
	case code == extShmNDArray && shared != nil:
		a, err = newSharedReader(shared, len(b)).array(payload)
	default:
		return Array{}, false, nil
	}
	if err != nil {
		return Array{}, true, resultError(fmt.Errorf("result: ndarray: %w", err))
	}
	return a, true, nil
}

// sliceInto sets out to a view of a, a 1-d array of dtype.
func sliceInto[E Element](a Array, out *[]E, dtype DType) error {
	switch {
	case len(a.Shape) != 1:
		return fmt.Errorf("%w: result: a %d-d ndarray (shape %v) does not fit Go %T, which takes a 1-d one: decode into a pypool.Array",
			ErrResultNotDecodable, len(a.Shape), a.Shape, *out)
	case a.DType != dtype:
		return fmt.Errorf("%w: result: %w: an ndarray of %s does not fit Go %T, which takes %s",
			ErrResultNotDecodable, ErrDType, a.DType, *out, dtype)
	}
	var err error
	*out, err = view[E](a, dtype)
	return err
}

// isExtCode reports whether c starts an extension value.
func isExtCode(c byte) bool {
	return c >= 0xc7 && c <= 0xc9 || c >= 0xd4 && c <= 0xd8
}

// rewriteRegistered replaces the values of registered extensions in b with
// the msgpack encoding of what their decode function returns.
func rewriteRegistered(b []byte, codec *valueCodec) ([]byte, error) {
	if codec.exts.byCode == nil {
		return b, nil
	}
	return rewriteExts(b, func(code int8, payload []byte) ([]byte, bool, error) {
		x := codec.exts.forCode(code)
		if x == nil {
			return nil, false, nil
		}
		v, err := x.decodeValue(bytes.Clone(payload))
		if err != nil {
			return nil, false, err
		}
		out, err := marshal(v, codec.structTag)
		if err != nil {
			return nil, false, fmt.Errorf("extension %d: re-encoding its %T for msgpack: %w", code, v, err)
		}
		return out, true, nil
	})
}

// rewriteNDArrays replaces the ndarrays in b with nested lists of numbers.
func rewriteNDArrays(b []byte) ([]byte, error) {
	return rewriteExts(b, func(code int8, payload []byte) ([]byte, bool, error) {
		if code != extNDArray {
			return nil, false, nil
		}
		a, err := decodeNDArray(payload)
		if err != nil {
			return nil, false, err
		}
		var buf bytes.Buffer
		if err := encodeAsLists(msgpack.NewEncoder(&buf), a); err != nil {
			return nil, false, err
		}
		return buf.Bytes(), true, nil
	})
}

// rewriteExts returns b with each extension value for which replace returns
// ok replaced by the bytes it returns; b itself when none is.
func rewriteExts(b []byte, replace func(code int8, payload []byte) (out []byte, ok bool, err error)) ([]byte, error) {
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

// containsExt reports whether b holds an extension value of the code.
func containsExt(b []byte, code int8) bool {
	found := false
	_ = scanExts(b, func(_, _ int, c int8, _ []byte) error {
		found = found || c == code
		return nil
	})
	return found
}

// scalarSizes holds the bytes after the code of the msgpack formats 0xca
// (float 32) to 0xd3 (int 64).
var scalarSizes = [...]int{4, 8, 1, 2, 4, 8, 1, 2, 4, 8}

// scanExts calls fn for each extension value in the msgpack data b, with its
// start and end in b, its code and its payload.
func scanExts(b []byte, fn func(start, end int, code int8, payload []byte) error) error {
	return scanItems(b, nil, fn)
}

// checkDeclaredSizes checks, before msgpack decodes b, that no array or map
// in it declares more items than the bytes after its header could hold:
// msgpack's decoder makes a map of the declared size at once, so that a
// 9-byte message could otherwise make it allocate gigabytes. It also
// checks that no value is nested deeper than maxDecodeDepth, as Call's
// decoder does (with the same error): msgpack's decoder recurses without
// a bound, and a deep enough value overflows the goroutine's stack, which
// kills the Go process. It reads b without recursion.
func checkDeclaredSizes(b []byte) error {
	d := wireDecoder{b: b}
	var open []int // the values still to come in each enclosing container, innermost last
	for len(d.b) > 0 && d.err == nil {
		for len(open) > 0 && open[len(open)-1] == 0 {
			open = open[:len(open)-1]
		}
		if len(open) > maxDecodeDepth { // a value at the depth Call's decoder refuses
			return fmt.Errorf("values nested more than %d levels deep", maxDecodeDepth)
		}
		if len(open) > 0 {
			open[len(open)-1]--
		}
		count, perItem, ok := containerHeader(&d)
		switch {
		case !ok:
			if c := d.byte1(); isExtCode(c) {
				scanExt(&d, c)
			} else {
				skipScalar(&d, c)
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

// scanItems reads the msgpack data b as a flat sequence of items (container
// headers hold counts, not sizes), not looking into extension payloads. It
// calls container, if not nil, for each array or map header with its item
// count, the msgpack values per item (1 or 2) and the bytes after the
// header; and ext, if not nil, for each extension value with its start and
// end in b, its code and its payload.
func scanItems(b []byte, container func(count, perItem, rest int) error, ext func(start, end int, code int8, payload []byte) error) error {
	d := wireDecoder{b: b}
	for len(d.b) > 0 && d.err == nil {
		start := len(b) - len(d.b)
		if count, perItem, ok := containerHeader(&d); ok {
			if container != nil && d.err == nil {
				if err := container(count, perItem, len(d.b)); err != nil {
					return err
				}
			}
			continue
		}
		c := d.byte1()
		if !isExtCode(c) {
			skipScalar(&d, c)
			continue
		}
		code, payload := scanExt(&d, c)
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
func containerHeader(d *wireDecoder) (count, perItem int, ok bool) {
	switch c := d.b[0]; {
	case c >= 0x80 && c <= 0x8f: // fixmap
		d.take(1)
		return int(c & 0x0f), 2, true
	case c >= 0x90 && c <= 0x9f: // fixarray
		d.take(1)
		return int(c & 0x0f), 1, true
	case c == 0xdc || c == 0xdd: // array 16/32
		d.take(1)
		return d.size(2 << (c - 0xdc)), 1, true
	case c == 0xde || c == 0xdf: // map 16/32
		d.take(1)
		return d.size(2 << (c - 0xde)), 2, true
	}
	return 0, 0, false
}

// skipScalar skips the rest of a value that is neither a container nor an
// extension, whose first byte c was read.
func skipScalar(d *wireDecoder, c byte) {
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		// fixint, nil, bool: the code is the value
	case c >= 0xa0 && c <= 0xbf: // fixstr
		d.take(int(c & 0x1f))
	case c >= 0xc4 && c <= 0xc6: // bin 8/16/32
		d.take(d.size(1 << (c - 0xc4)))
	case c >= 0xd9 && c <= 0xdb: // str 8/16/32
		d.take(d.size(1 << (c - 0xd9)))
	case c >= 0xca && c <= 0xd3:
		d.take(scalarSizes[c-0xca])
	default:
		d.fail("unknown msgpack code 0x%02x", c)
	}
}

// scanExt reads the rest of an extension value whose first byte was c.
func scanExt(d *wireDecoder, c byte) (code int8, payload []byte) {
	var n int
	if c >= 0xd4 { // fixext 1/2/4/8/16
		n = 1 << (c - 0xd4)
	} else { // ext 8/16/32
		n = d.size(1 << (c - 0xc7))
	}
	code = int8(d.byte1())
	return code, d.take(n)
}

// skipValue skips one msgpack value, the items of containers included.
func skipValue(d *wireDecoder) {
	for pending := 1; pending > 0 && d.err == nil; pending-- {
		if len(d.b) == 0 {
			d.fail("the data ends inside a value")
			return
		}
		if count, perItem, ok := containerHeader(d); ok {
			pending += count * perItem
			continue
		}
		c := d.byte1()
		if isExtCode(c) {
			scanExt(d, c)
		} else {
			skipScalar(d, c)
		}
	}
}
