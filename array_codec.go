package pypool

// array_codec.go is how an Array crosses the wire: the NDARRAY extension
// (type 127), whose payload is msgpack [dtype, shape] followed by the raw
// elements in C order, dtype being numpy's dtype.str ("<f8", "|b1", ...).
// It also holds Array's msgpack hooks, which let an Array sit anywhere in a
// struct or a map, and the "array-like" conversion of nested lists of
// numbers. The payload comes from another process that may be broken or
// hostile: every length is checked before it is used.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/pypool/pypool/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Extension type codes reserved by pypool (user extensions use 0..119).
const (
	extNDArray    = 127 // an ndarray, inline
	extShmBytes   = 126 // bytes in the worker's shared memory
	extShmNDArray = 125 // an ndarray whose data is in the worker's shared memory
	maxUserExt    = 119 // the largest code Config.Extensions may use
)

// maxDims bounds the dimensions of an array read from the wire (numpy 2
// allows 64).
const maxDims = 64

// hostOrder is numpy's byte-order character for this machine.
var hostOrder = func() byte {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return '<'
	}
	return '>'
}()

// wireKinds maps numpy's dtype.str without its byte-order character to a
// DType.
var wireKinds = map[string]DType{
	"b1": Bool, "i1": Int8, "u1": Uint8,
	"i2": Int16, "i4": Int32, "i8": Int64,
	"u2": Uint16, "u4": Uint32, "u8": Uint64,
	"f4": Float32, "f8": Float64,
}

// parseWireDType reads numpy's dtype.str: "|" for one-byte types, "<" or ">"
// for the others. It returns whether the bytes need swapping into the host's
// order.
func parseWireDType(s string) (dtype DType, swap bool, err error) {
	if len(s) == 3 {
		dtype = wireKinds[s[1:]]
		order, single := s[0], dtype.Size() == 1
		if dtype != "" && (order == '|') == single && (single || order == '<' || order == '>') {
			return dtype, !single && order != hostOrder, nil
		}
	}
	return "", false, fmt.Errorf("unknown dtype %q (pypool reads |b1, |i1, |u1 and <, > of i2 i4 i8 u2 u4 u8 f4 f8)", s)
}

// wireDTypes maps a DType to numpy's dtype.str in the host's byte order.
var wireDTypes = func() map[DType]string {
	m := make(map[DType]string, len(wireKinds))
	for kind, dtype := range wireKinds {
		order := hostOrder
		if dtype.Size() == 1 {
			order = '|'
		}
		m[dtype] = string(order) + kind
	}
	return m
}()

// decodeNDArray parses an NDARRAY payload into an Array whose Data is a
// fresh buffer aligned to 8 bytes, in the host's byte order.
func decodeNDArray(payload []byte) (Array, error) {
	d := wire.NewReader(payload)
	if n := d.ArrayLen(); d.Err() == nil && n != 2 {
		d.Fail("the header has %d fields, not [dtype, shape]", n)
	}
	wireDType := d.Str()
	ndim := d.ArrayLen()
	if d.Err() != nil {
		return Array{}, fmt.Errorf("bad header: %v", d.Err())
	}
	dtype, swap, err := parseWireDType(wireDType)
	if err != nil {
		return Array{}, err
	}
	shape, err := readShape(&d, ndim)
	if err != nil {
		return Array{}, err
	}
	return arrayFromWire(dtype, shape, d.Rest(), swap)
}

// readShape reads the ndim dimensions of an ndarray header.
func readShape(d *wire.Reader, ndim int) ([]int, error) {
	if ndim > maxDims {
		return nil, fmt.Errorf("%d dimensions (at most %d)", ndim, maxDims)
	}
	shape := make([]int, ndim)
	for i := range shape {
		v, big, ok := d.Integer()
		switch {
		case d.Err() != nil || !ok:
			return nil, fmt.Errorf("bad shape: dimension %d is not an integer", i)
		case !big && int64(v) < 0:
			return nil, fmt.Errorf("negative dimension %d in the shape", int64(v))
		case big || v > math.MaxInt:
			return nil, fmt.Errorf("dimension %d overflows an int", v)
		}
		shape[i] = int(v)
	}
	return shape, nil
}

// arrayFromWire copies data, checked against the shape, into a new Array.
func arrayFromWire(dtype DType, shape []int, data []byte, swap bool) (Array, error) {
	n, err := elementCount(shape)
	if err != nil || n > math.MaxInt/dtype.Size() {
		return Array{}, fmt.Errorf("shape %v of %s overflows: more bytes than memory can hold", shape, dtype)
	}
	if want := n * dtype.Size(); len(data) != want {
		return Array{}, fmt.Errorf("size mismatch: shape %v of %s needs %d bytes of data, the payload has %d",
			shape, dtype, want, len(data))
	}
	a := Array{DType: dtype, Shape: shape, Data: alignedBytes(len(data))}
	copy(a.Data, data)
	normalizeFromWire(a, swap)
	return a, nil
}

// normalizeFromWire puts the data of an array just read from the wire in
// the host's byte order (swap: it is in the other one), and its bools in
// Go's 0 or 1.
func normalizeFromWire(a Array, swap bool) {
	switch {
	case swap:
		swapBytes(a.Data, a.DType.Size())
	case a.DType == Bool:
		for i, b := range a.Data { // numpy's bool is any non-zero byte
			if b > 1 {
				a.Data[i] = 1
			}
		}
	}
}

// swapBytes reverses the bytes of each element of an aligned buffer.
func swapBytes(data []byte, size int) {
	if len(data) == 0 {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(data))
	switch size {
	case 2:
		s := unsafe.Slice((*uint16)(p), len(data)/2)
		for i, v := range s {
			s[i] = bits.ReverseBytes16(v)
		}
	case 4:
		s := unsafe.Slice((*uint32)(p), len(data)/4)
		for i, v := range s {
			s[i] = bits.ReverseBytes32(v)
		}
	case 8:
		s := unsafe.Slice((*uint64)(p), len(data)/8)
		for i, v := range s {
			s[i] = bits.ReverseBytes64(v)
		}
	}
}

// appendNDArrayHeader appends the msgpack [dtype, shape] that starts an
// NDARRAY payload.
func appendNDArrayHeader(b []byte, a Array) []byte {
	dtype := wireDTypes[a.DType]
	b = append(b, 0x92, 0xa0|byte(len(dtype)))
	b = append(b, dtype...)
	b = wire.AppendArrayHeader(b, len(a.Shape))
	for _, d := range a.Shape {
		b = wire.AppendUint(b, uint64(d))
	}
	return b
}

// EncodeMsgpack writes the array as an NDARRAY extension (msgpack ext type
// 127), which Python decodes as a numpy.ndarray. It implements
// msgpack.CustomEncoder, so that an Array crosses as an ndarray anywhere
// in an argument: in a struct, a map or a slice.
func (a Array) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := a.validate(); err != nil {
		return err
	}
	var buf [64]byte
	header := appendNDArrayHeader(buf[:0], a)
	size := len(header) + len(a.Data)
	if size > math.MaxUint32 {
		return fmt.Errorf("pypool: an Array of %d bytes is larger than a msgpack extension can hold (4 GiB)", len(a.Data))
	}
	if err := enc.EncodeExtHeader(extNDArray, size); err != nil {
		return err
	}
	if _, err := enc.Writer().Write(header); err != nil {
		return err
	}
	_, err := enc.Writer().Write(a.Data)
	return err
}

// DecodeMsgpack reads an NDARRAY extension, or an array-like value: a
// number or bool (a 0-d array), or a list of them, or rectangular nested
// lists of them. The dtype of an array-like value is inferred as numpy
// does: bool when all elements are bools, int64 when all are ints (or
// bools), float64 when any is a float (and for an empty list); uint64 when
// an int is above math.MaxInt64 and none is negative. It implements
// msgpack.CustomDecoder, so that Array works as a CallAs target and in
// struct fields and maps of one.
func (a *Array) DecodeMsgpack(dec *msgpack.Decoder) error {
	c, err := dec.PeekCode()
	if err != nil {
		return err
	}
	if !msgpcode.IsExt(c) {
		v, err := dec.DecodeInterface()
		if err != nil {
			return err
		}
		*a, err = arrayLike(v)
		return err
	}
	code, n, err := dec.DecodeExtHeader()
	switch {
	case err != nil:
		return err
	case code == extShmBytes || code == extShmNDArray:
		return fmt.Errorf("pypool: extension %d: shared-memory reference with no shared memory", code)
	case code != extNDArray:
		return fmt.Errorf("pypool: an Array can not hold a value of extension type %d", code)
	}
	payload, err := readExtPayload(dec, n)
	if err != nil {
		return err
	}
	if *a, err = decodeNDArray(payload); err != nil {
		return fmt.Errorf("pypool: ndarray: %w", err)
	}
	return nil
}

// readExtPayload reads n bytes without trusting n: the buffer grows with the
// bytes actually read, so that a declared length beyond the end of the
// message does not allocate it.
func readExtPayload(dec *msgpack.Decoder, n int) ([]byte, error) {
	const chunk = 1 << 20
	buf := make([]byte, 0, min(n, chunk))
	for len(buf) < n {
		k := min(n-len(buf), chunk)
		buf = slices.Grow(buf, k)
		if err := dec.ReadFull(buf[len(buf) : len(buf)+k]); err != nil {
			return nil, fmt.Errorf("msgpack: extension of %d bytes: %w", n, err)
		}
		buf = buf[:len(buf)+k]
	}
	return buf, nil
}

// arrayLike converts a number, a bool, or rectangular nested lists of them
// (as decoded by msgpack or by decodeValue) into an Array. See
// Array.DecodeMsgpack for the inferred dtype.
func arrayLike(v any) (Array, error) {
	shape, err := arrayLikeShape(v)
	if err != nil {
		return Array{}, err
	}
	n, err := elementCount(shape)
	if err != nil {
		return Array{}, fmt.Errorf("pypool: array-like value: %w", err)
	}
	leaves := make([]any, 0, n)
	if leaves, err = flatten(v, shape, leaves, nil); err != nil {
		return Array{}, err
	}
	dtype, err := inferDType(leaves)
	if err != nil {
		return Array{}, err
	}
	a := Array{DType: dtype, Shape: shape, Data: alignedBytes(n * dtype.Size())}
	fillArray(a, leaves)
	return a, nil
}

// arrayLikeShape reads the shape from the first element of each level.
func arrayLikeShape(v any) ([]int, error) {
	shape := []int{}
	for {
		list, ok := v.([]any)
		if !ok {
			return shape, nil
		}
		if len(shape) == maxDims {
			return nil, fmt.Errorf("pypool: array-like value nested more than %d levels deep", maxDims)
		}
		shape = append(shape, len(list))
		if len(list) == 0 {
			return shape, nil
		}
		v = list[0]
	}
}

// flatten appends the elements of v in C order, checking that v has the
// given shape; at is the index of v, for the error message.
func flatten(v any, shape []int, leaves []any, at []int) ([]any, error) {
	list, isList := v.([]any)
	switch {
	case len(shape) == 0 && !isList:
		if !isNumber(v) {
			return nil, fmt.Errorf("pypool: array-like value: element %v is a Python %s, not a number or bool",
				at, pythonType(v))
		}
		return append(leaves, v), nil
	case len(shape) == 0 || !isList || len(list) != shape[0]:
		return nil, fmt.Errorf("pypool: array-like value is ragged: element %v is not like the first of its level (shape %v)",
			at, shape)
	}
	for i, item := range list {
		var err error
		if leaves, err = flatten(item, shape[1:], leaves, append(at, i)); err != nil {
			return nil, err
		}
	}
	return leaves, nil
}

func isNumber(v any) bool {
	switch v.(type) {
	case bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64:
		return true
	}
	return false
}

// inferDType chooses the dtype of array-like elements as numpy does.
func inferDType(leaves []any) (DType, error) {
	if len(leaves) == 0 {
		return Float64, nil
	}
	allBools, anyFloat, anyNegative, anyBig := true, false, false, false
	for _, v := range leaves {
		switch v := v.(type) {
		case bool:
			continue
		case float32, float64:
			anyFloat = true
		case uint64:
			anyBig = anyBig || v > math.MaxInt64
		case int8, int16, int32, int64:
			anyNegative = anyNegative || toFloat(v) < 0
		}
		allBools = false
	}
	switch {
	case allBools:
		return Bool, nil
	case anyFloat:
		return Float64, nil
	case anyBig && anyNegative:
		return "", fmt.Errorf("pypool: array-like value mixes negative ints and ints above int64: no integer dtype holds both")
	case anyBig:
		return Uint64, nil
	}
	return Int64, nil
}

// fillArray writes leaves, of the kinds inferDType accepted, into a.
func fillArray(a Array, leaves []any) {
	switch a.DType {
	case Bool:
		s, _ := a.Bools()
		for i, v := range leaves {
			s[i] = v.(bool)
		}
	case Float64:
		s, _ := a.Float64s()
		for i, v := range leaves {
			s[i] = toFloat(v)
		}
	case Uint64:
		s, _ := a.Uint64s()
		for i, v := range leaves {
			if u, ok := v.(uint64); ok {
				s[i] = u
			} else {
				s[i] = uint64(toInt(v))
			}
		}
	default:
		s, _ := a.Int64s()
		for i, v := range leaves {
			s[i] = toInt(v)
		}
	}
}

// toFloat and toInt convert the elements arrayLike accepts.
func toFloat(v any) float64 {
	switch v := v.(type) {
	case float64:
		return v
	case float32:
		return float64(v)
	case uint64:
		return float64(v)
	}
	return float64(toInt(v))
}

func toInt(v any) int64 {
	switch v := v.(type) {
	case bool:
		if v {
			return 1
		}
		return 0
	case int8:
		return int64(v)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case int64:
		return v
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	case uint64:
		return int64(v)
	}
	return 0
}

// encodeAsLists writes a as nested msgpack arrays of its elements (a 0-d
// array as its one element), for targets that take lists of numbers.
func encodeAsLists(enc *msgpack.Encoder, a Array) error {
	elem, err := elementEncoder(a)
	if err != nil {
		return err
	}
	if tooManyLists(a.Shape, 1<<16+maxDims*a.Len()) {
		return fmt.Errorf("an ndarray of shape %v holds too many empty lists to write as lists", a.Shape)
	}
	next := 0
	var level func(dim int) error
	level = func(dim int) error {
		if dim == len(a.Shape) {
			next++
			return elem(enc, next-1)
		}
		if err := enc.EncodeArrayLen(a.Shape[dim]); err != nil {
			return err
		}
		for range a.Shape[dim] {
			if err := level(dim + 1); err != nil {
				return err
			}
		}
		return nil
	}
	return level(0)
}

// tooManyLists reports whether nested lists of the shape take more than
// limit lists. An empty ndarray of shape [1<<40, 0] is a few bytes on the
// wire and a trillion empty lists.
func tooManyLists(shape []int, limit int) bool {
	total, lists := 0, 1 // lists: how many at the current level
	for _, d := range shape {
		total += lists
		if total > limit || (d != 0 && lists > limit/d) {
			return true
		}
		lists *= d
	}
	return false
}

// elementEncoder returns a function that writes a's element i.
func elementEncoder(a Array) (func(enc *msgpack.Encoder, i int) error, error) {
	switch a.DType {
	case Bool:
		s, err := a.Bools()
		return func(enc *msgpack.Encoder, i int) error { return enc.EncodeBool(s[i]) }, err
	case Float32:
		s, err := a.Float32s()
		return func(enc *msgpack.Encoder, i int) error { return enc.EncodeFloat32(s[i]) }, err
	case Float64:
		s, err := a.Float64s()
		return func(enc *msgpack.Encoder, i int) error { return enc.EncodeFloat64(s[i]) }, err
	case Uint64:
		s, err := a.Uint64s()
		return func(enc *msgpack.Encoder, i int) error { return enc.EncodeUint(s[i]) }, err
	}
	ints, err := intsOf(a)
	return func(enc *msgpack.Encoder, i int) error { return enc.EncodeInt(ints(i)) }, err
}

// intsOf returns a reader of the elements of an array of signed ints or of
// unsigned ints narrower than 64 bits.
func intsOf(a Array) (func(i int) int64, error) {
	switch a.DType {
	case Int8:
		s, err := a.Int8s()
		return func(i int) int64 { return int64(s[i]) }, err
	case Int16:
		s, err := a.Int16s()
		return func(i int) int64 { return int64(s[i]) }, err
	case Int32:
		s, err := a.Int32s()
		return func(i int) int64 { return int64(s[i]) }, err
	case Int64:
		s, err := a.Int64s()
		return func(i int) int64 { return s[i] }, err
	case Uint8:
		s, err := a.Uint8s()
		return func(i int) int64 { return int64(s[i]) }, err
	case Uint16:
		s, err := a.Uint16s()
		return func(i int) int64 { return int64(s[i]) }, err
	case Uint32:
		s, err := a.Uint32s()
		return func(i int) int64 { return int64(s[i]) }, err
	}
	return nil, a.validate()
}
