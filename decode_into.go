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
	"errors"
	"fmt"
	"reflect"

	"github.com/pypool/pypool/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
)

// decodeValueInto decodes a msgpack value into the value v points to, with
// msgpack's rules for typed targets (struct fields by their msgpack tags,
// else by codec's struct tag, else by name) and the steps above; a *any
// (CallAs[any]) gets what Call would return.
func decodeValueInto(b []byte, v any, codec *valueCodec) error {
	if codec == nil {
		codec = &valueCodec{}
	}
	if p, ok := v.(*any); ok { // CallAs[any], StreamAs[any]: as Call decodes (int64, UTC times)
		value, err := decodeValue(b, false, codec)
		switch {
		case err == nil:
			*p = value
			return nil
		case isSharedFault(err):
			return err
		}
		// The error as the steps below tell it: with where in the result.
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
	if err := wire.CheckDeclaredSizes(b); err != nil {
		return fmt.Errorf("%w: %w", ErrResultNotDecodable, err)
	}
	b, err := rewriteRegistered(b, codec)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrResultNotDecodable, err)
	}
	err = unmarshalFitted(b, v, codec.structTag)
	if err != nil && !errors.Is(err, errNumberFit) && wire.ContainsExt(b, extNDArray) {
		lists, rerr := rewriteNDArrays(b)
		if rerr != nil {
			err = rerr // the reason there was no retry
		} else {
			reflect.ValueOf(v).Elem().SetZero()
			err = unmarshalFitted(lists, v, codec.structTag)
		}
	}
	if errors.Is(err, errNumberFit) {
		return fmt.Errorf("%w: %w", ErrResultNotDecodable, err)
	}
	if err != nil {
		return describeMismatch(b, v, codec, err)
	}
	return nil
}

// unmarshalFitted is unmarshal of b with its numbers fitted to v's type
// first (numfit.go); a number that does not fit is a *numberFitError.
func unmarshalFitted(b []byte, v any, structTag string) error {
	fitted, m := fitNumbers(b, reflect.TypeOf(v).Elem(), structTag)
	if m != nil {
		return &numberFitError{m}
	}
	return unmarshal(fitted, v, structTag)
}

// numberFitError is a number of a result that does not fit its CallAs
// target (fitNumbers): it says where, and is errNumberFit.
type numberFitError struct{ m *typeMismatch }

// Error says where the number is and why it does not fit.
func (e *numberFitError) Error() string { return e.m.String() }

// Is reports whether target is errNumberFit.
func (e *numberFitError) Is(target error) bool { return target == errNumberFit }

// errNumberFit is what every numberFitError is (errors.Is).
var errNumberFit = errors.New("pypool: a number does not fit its Go type")

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
	d := valueDecoder{codec: codec, lenient: true}
	d.Reset(b)
	value := d.value(0)
	if isSharedFault(d.Err()) {
		return resultError(d.Err()) // the worker broke the shared memory's protocol
	}
	if d.Err() == nil {
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
	d := wire.NewReader(b)
	c := d.Byte()
	if !wire.IsExt(c) {
		return Array{}, false, nil
	}
	code, payload := d.ExtBody(c)
	switch {
	case d.Err() != nil || d.Len() != 0:
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

// dtypeFix says how to take an ndarray of got where a Go slice of want's
// elements was asked for: convert it in Python, or ask for got's slice
// (each DType is named as its Go element type).
func dtypeFix(got, want DType) string {
	fix := fmt.Sprintf("return array.astype(%q) from Python", want)
	if got.Size() != 0 {
		fix += fmt.Sprintf(", or decode into []%s", got)
	}
	return fix
}

// sliceInto sets out to a view of a, a 1-d array of dtype.
func sliceInto[E Element](a Array, out *[]E, dtype DType) error {
	switch {
	case len(a.Shape) != 1:
		return fmt.Errorf("%w: result: a %d-d ndarray (shape %v) does not fit Go %T, which takes a 1-d one: decode into a pypool.Array",
			ErrResultNotDecodable, len(a.Shape), a.Shape, *out)
	case a.DType != dtype:
		return fmt.Errorf("%w: result: %w: an ndarray of %s does not fit Go %T, which takes %s: %s",
			ErrResultNotDecodable, ErrDType, a.DType, *out, dtype, dtypeFix(a.DType, dtype))
	}
	var err error
	*out, err = view[E](a, dtype)
	return err
}

// rewriteRegistered replaces the values of registered extensions in b with
// the msgpack encoding of what their decode function returns.
func rewriteRegistered(b []byte, codec *valueCodec) ([]byte, error) {
	if codec.exts.byCode == nil {
		return b, nil
	}
	return wire.RewriteExts(b, func(code int8, payload []byte) ([]byte, bool, error) {
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
	return wire.RewriteExts(b, func(code int8, payload []byte) ([]byte, bool, error) {
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
