package pypool

// ext.go is Config.Extensions: Go types of the user's that cross as msgpack
// extension types. A pool's extensions live in its workerSpec (valueCodec),
// never in msgpack's global registry, which is an unsynchronized map shared
// by every user of msgpack in the program.

import (
	"fmt"
	"math"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// Extension makes values of one Go type cross as a msgpack extension type,
// both ways. Build it with Ext and list it in Config.Extensions; the Python
// side registers the same code with pypool_runtime.register_ext.
type Extension struct {
	code   int8
	typ    reflect.Type
	encode func(any) ([]byte, error)
	decode func([]byte) (any, error)
}

// Ext returns the Extension that writes values of type T as msgpack
// extension type code, with encode giving the payload, and reads extension
// values of that code with decode. Codes 0..119 are free for users; New
// refuses others.
//
// A value is written as the extension when its dynamic type is exactly T and
// it is a call argument, a Kwargs value, or an element or map value (or key)
// inside []any, map[string]any and map[any]any arguments, at any depth.
// Inside structs and typed slices msgpack's own rules apply: give T an
// EncodeMsgpack method (msgpack.CustomEncoder) to reach those.
//
// Call returns the T that decode returns. CallAs gives a T wherever the
// target has a field (or element) of type T: the value decode returns is
// re-encoded with msgpack (and Config.StructTag) and decoded into the target.
//
// decode gets a payload that it may keep. Both functions may be called by
// several of the pool's workers at once.
func Ext[T any](code int8, encode func(T) ([]byte, error), decode func([]byte) (T, error)) Extension {
	x := Extension{code: code, typ: reflect.TypeFor[T]()}
	if encode != nil {
		x.encode = func(v any) ([]byte, error) { return encode(v.(T)) }
	}
	if decode != nil {
		x.decode = func(b []byte) (any, error) { return decode(b) }
	}
	return x
}

// encodeValue writes v, of the extension's type, as the extension.
func (x *Extension) encodeValue(enc *msgpack.Encoder, v any) error {
	payload, err := x.encode(v)
	if err != nil {
		return fmt.Errorf("extension %d (%s): %w", x.code, x.typ, err)
	}
	if len(payload) > math.MaxUint32 {
		return fmt.Errorf("extension %d (%s): a payload of %d bytes is larger than msgpack allows (4 GiB)",
			x.code, x.typ, len(payload))
	}
	if err := enc.EncodeExtHeader(x.code, len(payload)); err != nil {
		return err
	}
	_, err = enc.Writer().Write(payload)
	return err
}

// decodeValue reads the payload of an extension value.
func (x *Extension) decodeValue(payload []byte) (any, error) {
	v, err := x.decode(payload)
	if err != nil {
		return nil, fmt.Errorf("extension %d (%s): %w", x.code, x.typ, err)
	}
	return v, nil
}

// extRegistry holds a pool's extensions by Go type, for encoding, and by
// code, for decoding. It is built once by Config.spec and only read after,
// by all the pool's workers at once.
type extRegistry struct {
	byType map[reflect.Type]*Extension
	byCode map[int8]*Extension
}

// newExtRegistry indexes validated extensions; none gives the zero registry,
// whose lookups find nothing.
func newExtRegistry(exts []Extension) extRegistry {
	if len(exts) == 0 {
		return extRegistry{}
	}
	r := extRegistry{
		byType: make(map[reflect.Type]*Extension, len(exts)),
		byCode: make(map[int8]*Extension, len(exts)),
	}
	for i := range exts {
		x := exts[i]
		r.byType[x.typ] = &x
		r.byCode[x.code] = &x
	}
	return r
}

// forValue returns the extension of v's dynamic type, or nil.
func (r *extRegistry) forValue(v any) *Extension {
	if r.byType == nil {
		return nil
	}
	return r.byType[reflect.TypeOf(v)]
}

// forCode returns the extension of a code, or nil.
func (r *extRegistry) forCode(code int8) *Extension {
	return r.byCode[code] // a nil map finds nothing
}

// validateExtensions checks Config.Extensions.
func validateExtensions(exts []Extension) error {
	codes := make(map[int8]int, len(exts))
	types := make(map[reflect.Type]int, len(exts))
	for i, x := range exts {
		if err := x.validate(); err != nil {
			return fmt.Errorf("pypool: Config.Extensions[%d]: %w", i, err)
		}
		if j, dup := codes[x.code]; dup {
			return fmt.Errorf("pypool: Config.Extensions[%d] and [%d] both use code %d: give each type its own code",
				j, i, x.code)
		}
		if j, dup := types[x.typ]; dup {
			return fmt.Errorf("pypool: Config.Extensions[%d] and [%d] both register Go type %s: keep one",
				j, i, x.typ)
		}
		codes[x.code], types[x.typ] = i, i
	}
	return nil
}

func (x Extension) validate() error {
	switch {
	case x.typ == nil:
		return fmt.Errorf("the zero Extension: build extensions with pypool.Ext")
	case x.code < 0 || x.code > maxUserExt:
		return fmt.Errorf("code %d of Go type %s is not free: use 0..%d (%d..127 are pypool's, negative codes msgpack's)",
			x.code, x.typ, maxUserExt, maxUserExt+1)
	case x.encode == nil || x.decode == nil:
		return fmt.Errorf("the Go type %s (code %d) needs both an encode and a decode function", x.typ, x.code)
	case x.typ.Kind() == reflect.Interface:
		return fmt.Errorf("the Go type %s (code %d) is an interface: register a concrete type, values are matched by their dynamic type",
			x.typ, x.code)
	case x.typ == reflect.TypeFor[Array]():
		return fmt.Errorf("pypool.Array (code %d) crosses as an ndarray already (extension %d)", x.code, extNDArray)
	}
	return nil
}
