package pypool

import (
	"context"
	"fmt"
)

// Kwargs holds Python keyword arguments. Passed as the last argument of a
// call, it becomes the function's **kwargs (anywhere else it is an error
// wrapping ErrArgNotEncodable):
//
//	pool.Call(ctx, "greet", "Ada", pypool.Kwargs{"greeting": "Hello"})
type Kwargs map[string]any

// splitKwargs separates a trailing Kwargs from the positional arguments.
func splitKwargs(args []any) ([]any, Kwargs) {
	if n := len(args); n > 0 {
		if kw, ok := args[n-1].(Kwargs); ok {
			return args[:n-1], kw
		}
	}
	return args, nil
}

// decodeFunc decodes a RESULT's value before the read buffer is reused;
// owned says the value may keep b (see frameReader.next), codec holds the
// pool's struct tag and extensions.
type decodeFunc func(b []byte, owned bool, codec *valueCodec) error

// Caller is what CallAs and StreamAs call through: a *Pool, or a *Worker inside a
// transaction.
type Caller interface {
	callInto(ctx context.Context, fn string, args []any, into decodeFunc) error
	streamInto(ctx context.Context, fn string, args []any, each itemFunc) error
}

// CallAs is Call with the result decoded straight into a T: a struct (fields
// matched by their `msgpack:"name"` tags, else by Config.StructTag, else by
// name), a slice, a map or a scalar. A result that does not fit T gives an
// error wrapping ErrResultNotDecodable that says where and what:
//
//	result["items"][3]["score"]: a Python float does not fit Go int64 (field Item.Score)
//
// numpy arrays: an ndarray returned as a whole decodes into an Array as it
// is, and a 1-d one into a []E of its own element type (a []float64 for
// float64, ...) without an element-by-element copy; another dtype is an
// error wrapping ErrDType. Inside T, an Array (field, element or map value)
// takes an ndarray as it is; where a part of T needs numbers (a
// [][]float64, an int64 field), ndarrays are decoded as nested lists of
// their elements instead, in all of T (an Array field then holds the
// elements with the dtype inferred from the list). Values of
// Config.Extensions fill the parts of T of their Go type.
//
//	type Point struct{ X, Y float64 }
//	pt, err := pypool.CallAs[Point](ctx, pool, "centroid", points)
func CallAs[T any](ctx context.Context, c Caller, fn string, args ...any) (T, error) {
	var out T
	err := c.callInto(ctx, fn, args, func(b []byte, _ bool, codec *valueCodec) error {
		return decodeValueInto(b, &out, codec)
	})
	return out, err
}

// CallBytes calls fn, whose result must be bytes (or a bytearray), and
// appends the result to buf, returning the extended slice: like
// strconv.AppendInt, it lets a loop of calls with large results reuse one
// buffer (pass buf[:0]) instead of allocating one per call, which for
// results of a MiB or more costs Go's allocator and collector more than the
// call itself. A result of another type gives an error wrapping
// ErrResultNotDecodable.
//
//	buf, err = pypool.CallBytes(ctx, pool, buf[:0], "render_png", scene)
func CallBytes(ctx context.Context, c Caller, buf []byte, fn string, args ...any) ([]byte, error) {
	err := c.callInto(ctx, fn, args, func(b []byte, _ bool, codec *valueCodec) error {
		var err error
		buf, err = appendBytesResult(buf, b, codec)
		return err
	})
	return buf, err
}

// appendBytesResult appends the bytes that the msgpack value b holds (a
// bin, or a reference to the shared memory) to buf.
func appendBytesResult(buf, b []byte, codec *valueCodec) ([]byte, error) {
	d := wireDecoder{b: b}
	c := d.byte1()
	switch {
	case c >= 0xc4 && c <= 0xc6: // bin 8/16/32
		p := d.take(d.size(1 << (c - 0xc4)))
		if d.err == nil && len(d.b) == 0 {
			return append(buf, p...), nil
		}
	case isExtCode(c):
		code, payload := scanExt(&d, c)
		if d.err == nil && len(d.b) == 0 && code == extShmBytes && codec != nil && codec.shared != nil {
			return newSharedReader(codec.shared, len(b)).appendBytes(buf, payload)
		}
	}
	got, err := decodeValue(b, false, codec)
	if err != nil {
		return buf, err
	}
	return buf, fmt.Errorf("%w: the result is a Python %s, not bytes", ErrResultNotDecodable, pythonType(got))
}
