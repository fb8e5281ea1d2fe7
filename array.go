package pypool

// array.go is Array, numpy's ndarray on the Go side: its element types, its
// shape and the typed views of its data. How an Array crosses the wire is in
// array_codec.go.

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"unsafe"
)

// DType names an Array's element type as numpy does.
type DType string

// The element types an Array can hold, named as numpy names them.
const (
	Bool    DType = "bool"
	Int8    DType = "int8"
	Int16   DType = "int16"
	Int32   DType = "int32"
	Int64   DType = "int64"
	Uint8   DType = "uint8"
	Uint16  DType = "uint16"
	Uint32  DType = "uint32"
	Uint64  DType = "uint64"
	Float32 DType = "float32"
	Float64 DType = "float64"
)

// Size returns the number of bytes of one element, or 0 for a DType that is
// not one of the constants above.
func (d DType) Size() int {
	switch d {
	case Bool, Int8, Uint8:
		return 1
	case Int16, Uint16:
		return 2
	case Int32, Uint32, Float32:
		return 4
	case Int64, Uint64, Float64:
		return 8
	}
	return 0
}

// ErrDType is returned by Array's views when the array holds another element
// type than the one asked for, and by CallAs when a 1-d ndarray's dtype is
// not the element type of the slice it is decoded into.
var ErrDType = errors.New("pypool: the array's element type is not the one asked for")

// Array is an n-dimensional array of numbers: numpy's ndarray on the Go
// side. It crosses to Python as a numpy.ndarray (or, where numpy is not
// importable, a pypool_runtime.Array), and an ndarray returned by Python
// decodes as an Array: in Call's results, and in CallAs targets of type Array
// or of a slice type (see CallAs).
//
// Build one from a Go slice with ArrayOf, and read its elements through the
// view of its DType (Float64s, Int32s, ...).
type Array struct {
	// DType is the element type.
	DType DType
	// Shape holds the length of each dimension; an empty Shape is a 0-d
	// array holding one element.
	Shape []int
	// Data holds the elements in C order (the last index varies fastest)
	// and in the host's byte order: len(Data) == Len()*DType.Size().
	Data []byte
}

// Element is the set of Go types an Array's elements can have.
type Element interface {
	~bool | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// ArrayOf returns an Array of data with the given shape, by default
// [len(data)] (a 1-d array). The Array shares data's memory: no element is
// copied, and writes to one show in the other. For a 0-d array, set the
// Shape of a one-element array to nil.
//
// ArrayOf panics when the shape has a negative dimension or does not hold
// exactly len(data) elements, as slicing out of range does: it is a mistake
// in the program, not in its input.
func ArrayOf[T Element](data []T, shape ...int) Array {
	if len(shape) == 0 {
		shape = []int{len(data)}
	} else {
		shape = slices.Clone(shape)
	}
	if n, err := elementCount(shape); err != nil || n != len(data) {
		panic(fmt.Sprintf("pypool.ArrayOf: shape %v does not hold the %d elements of the data", shape, len(data)))
	}
	dtype := dtypeOf[T]()
	return Array{DType: dtype, Shape: shape, Data: bytesOf(data)}
}

// Len returns the number of elements: the product of Shape (1 for a 0-d
// array).
func (a Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

// Float64s returns the elements of an array of Float64, in C order, as a
// []float64 that shares the array's Data: writes through one show in the
// other. (Data not aligned for the element type, which only an Array built
// by hand from a sub-slice can have, is copied instead.) An array of
// another DType gives an error wrapping ErrDType, and an inconsistent one
// (Data of another size than Shape says) an error too.
func (a Array) Float64s() ([]float64, error) { return view[float64](a, Float64) }

// Float32s is Float64s for an array of Float32.
func (a Array) Float32s() ([]float32, error) { return view[float32](a, Float32) }

// Int64s is Float64s for an array of Int64.
func (a Array) Int64s() ([]int64, error) { return view[int64](a, Int64) }

// Int32s is Float64s for an array of Int32.
func (a Array) Int32s() ([]int32, error) { return view[int32](a, Int32) }

// Int16s is Float64s for an array of Int16.
func (a Array) Int16s() ([]int16, error) { return view[int16](a, Int16) }

// Int8s is Float64s for an array of Int8.
func (a Array) Int8s() ([]int8, error) { return view[int8](a, Int8) }

// Uint8s is Float64s for an array of Uint8.
func (a Array) Uint8s() ([]uint8, error) { return view[uint8](a, Uint8) }

// Uint16s is Float64s for an array of Uint16.
func (a Array) Uint16s() ([]uint16, error) { return view[uint16](a, Uint16) }

// Uint32s is Float64s for an array of Uint32.
func (a Array) Uint32s() ([]uint32, error) { return view[uint32](a, Uint32) }

// Uint64s is Float64s for an array of Uint64.
func (a Array) Uint64s() ([]uint64, error) { return view[uint64](a, Uint64) }

// Bools is Float64s for an array of Bool. A byte of Data other than 0 and 1
// (possible only in an Array built by hand) is true, as in numpy; the
// result is then a copy rather than a view.
func (a Array) Bools() ([]bool, error) {
	if err := a.check(Bool); err != nil {
		return nil, err
	}
	for _, b := range a.Data {
		if b > 1 {
			out := make([]bool, len(a.Data))
			for i, b := range a.Data {
				out[i] = b != 0
			}
			return out, nil
		}
	}
	return view[bool](a, Bool)
}

// view returns a's elements as a []E sharing a.Data, after checking that a
// holds want. Data that is not aligned for E (only an Array built by hand
// from a sub-slice can have it) is copied into an aligned slice instead:
// converting a misaligned pointer is undefined, and the race detector's
// checkptr aborts the program on it.
func view[E Element](a Array, want DType) ([]E, error) {
	if err := a.check(want); err != nil {
		return nil, err
	}
	n := len(a.Data) / want.Size()
	if n == 0 {
		return []E{}, nil
	}
	p := unsafe.Pointer(unsafe.SliceData(a.Data))
	if uintptr(p)%unsafe.Alignof(*new(E)) != 0 {
		out := make([]E, n)
		copy(bytesOf(out), a.Data)
		return out, nil
	}
	return unsafe.Slice((*E)(p), n), nil
}

// check reports whether a holds elements of type want and is consistent:
// a known DType, no negative dimension, and Data of the size Shape says.
func (a Array) check(want DType) error {
	if a.DType != want {
		return fmt.Errorf("%w: the array holds %s, not %s", ErrDType, orUnset(a.DType), want)
	}
	return a.validate()
}

// validate reports whether a is consistent: a known DType, no negative
// dimension, and Data of the size Shape says.
func (a Array) validate() error {
	size := a.DType.Size()
	if size == 0 {
		return fmt.Errorf("pypool: the Array's DType %s is not one of pypool's (Float64, Int32, ...)", orUnset(a.DType))
	}
	n, err := elementCount(a.Shape)
	if err == nil && n > math.MaxInt/size {
		err = fmt.Errorf("shape %v of %s is larger than memory", a.Shape, a.DType)
	}
	if err != nil {
		return fmt.Errorf("pypool: Array: %w", err)
	}
	if len(a.Data) != n*size {
		return fmt.Errorf("pypool: the Array's Data holds %d bytes, its shape %v of %s needs %d",
			len(a.Data), a.Shape, a.DType, n*size)
	}
	return nil
}

func orUnset(d DType) string {
	if d == "" {
		return `"" (unset)`
	}
	return string(d)
}

// elementCount returns the product of shape, or an error for a negative
// dimension or a product that overflows an int. As numpy does, the overflow
// check ignores dimensions of 0.
func elementCount(shape []int) (int, error) {
	n, empty := 1, false
	for _, d := range shape {
		switch {
		case d < 0:
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		case d == 0:
			empty = true
		case n > math.MaxInt/d:
			return 0, fmt.Errorf("shape %v holds more elements than an int counts", shape)
		default:
			n *= d
		}
	}
	if empty {
		return 0, nil
	}
	return n, nil
}

// dtypeOf returns the DType of the Element type T.
func dtypeOf[T Element]() DType {
	switch reflect.TypeFor[T]().Kind() {
	case reflect.Bool:
		return Bool
	case reflect.Int8:
		return Int8
	case reflect.Int16:
		return Int16
	case reflect.Int32:
		return Int32
	case reflect.Int64:
		return Int64
	case reflect.Uint8:
		return Uint8
	case reflect.Uint16:
		return Uint16
	case reflect.Uint32:
		return Uint32
	case reflect.Uint64:
		return Uint64
	case reflect.Float32:
		return Float32
	default:
		return Float64
	}
}

// bytesOf returns the memory of s as bytes, without copying.
func bytesOf[T Element](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(s[0])))
}

// alignedBytes returns n zeroed bytes aligned to 8, so that views of any
// element type are plain conversions.
func alignedBytes(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), n)
}
