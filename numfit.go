package pypool

// numfit.go fits a result's numbers to a CallAs target before msgpack
// decodes it. msgpack's rules for numbers are lax one way and strict the
// other: it stores an integer into a narrower Go integer by cutting its
// bits (300 into a uint8 gives 44, -1 into a uint gives 2^64-1, with no
// error), and it refuses a float64 for a float32, though every Python
// float is a float64. So, before msgpack, the value is walked alongside the
// target type, as msgpack will decode it:
//
//   - an integer out of its Go integer's range, or a float out of float32's,
//     is a mismatch, reported as typeerr.go reports one (where, what, which
//     field): the call fails with ErrResultNotDecodable instead of giving a
//     wrong number;
//   - a float64 bound for a float32 is rewritten as the float32 nearest to
//     it, as a Go conversion rounds.
//
//   - an extension value where the target is a map is a mismatch too:
//     msgpack, decoding a map, skips an extension's header and reads its
//     payload as the map (an unregistered code's payload, or a timestamp's
//     seconds, would fill it). Registered extensions are their Go values'
//     encodings by then (decode_into.go).
//
// Only targets that can hold an integer, a float32 or a map are walked
// (holdsNumbers); values the walk does not model (extension values, times,
// types that decode themselves, interfaces) are skipped, left to msgpack.

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"sync"

	"github.com/pypool/pypool/internal/wire"
)

// fitNumbers returns b with its floats bound for float32 targets written as
// float32, or the first number that does not fit its target in t. A value
// that is not well-formed is returned as it is, for msgpack to refuse.
func fitNumbers(b []byte, t reflect.Type, structTag string) ([]byte, *typeMismatch) {
	if !holdsNumbers(t) {
		return b, nil
	}
	f := numberFitter{r: wire.NewReader(b), in: b, structTag: structTag}
	if miss := f.value(t, 0); miss != nil {
		slices.Reverse(miss.steps)
		return nil, &typeMismatch{path: formatPath(miss.steps), problem: miss.problem, field: miss.field}
	}
	if f.r.Err() != nil || f.out == nil {
		return b, nil
	}
	return append(f.out, f.in[f.done:]...), nil
}

// numberFitter is one walk of fitNumbers.
type numberFitter struct {
	r         wire.Reader
	in        []byte
	out       []byte // in[:done] as rewritten; nil until a rewrite
	done      int
	structTag string
}

// numberMiss is a number that does not fit, with the path to it, innermost
// step first (steps are added as the walk returns).
type numberMiss struct {
	steps   []any
	problem string
	field   string // the innermost struct field
}

// at adds the step (a list index or a dict key) and, if none is set yet,
// the struct field a miss was found under.
func (m *numberMiss) at(step any, field string) *numberMiss {
	m.steps = append(m.steps, step)
	if m.field == "" {
		m.field = field
	}
	return m
}

func (f *numberFitter) pos() int { return len(f.in) - f.r.Len() }

// peek returns the next code, or 0xc1 (which msgpack never uses) at the end.
func (f *numberFitter) peek() byte {
	if f.r.Len() == 0 {
		return 0xc1
	}
	return f.in[f.pos()]
}

// value fits the next value to t.
func (f *numberFitter) value(t reflect.Type, depth int) *numberMiss {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > wire.MaxDepth || f.r.Len() == 0 || !holdsNumbers(t) {
		f.r.Skip()
		return nil
	}
	switch k := t.Kind(); {
	case isIntKind(k):
		return f.integer(t)
	case k == reflect.Float32:
		return f.float32()
	case k == reflect.Slice || k == reflect.Array:
		return f.list(t, depth)
	case k == reflect.Map:
		return f.mapping(t, depth)
	case k == reflect.Struct:
		return f.structure(t, depth)
	}
	f.r.Skip()
	return nil
}

// integer checks that an integer fits the integer type t.
func (f *numberFitter) integer(t reflect.Type) *numberMiss {
	v, big, ok := f.r.Integer()
	if !ok {
		f.r.Skip() // not an integer: msgpack's rules
		return nil
	}
	text := strconv.FormatInt(int64(v), 10)
	if big {
		text = strconv.FormatUint(v, 10)
	}
	lo, hi := intRange(t)
	var fits bool
	switch {
	case t.Kind() < reflect.Uint: // signed
		fits = !big && int64(v) >= lo && int64(v) <= hi
	case big:
		fits = t.Bits() == 64
	default: // unsigned
		fits = int64(v) >= 0 && (t.Bits() == 64 || int64(v) <= hi)
	}
	if fits {
		return nil
	}
	rng := fmt.Sprintf("%d to %d", lo, hi)
	if t.Kind() >= reflect.Uint && t.Bits() == 64 {
		rng = "0 to " + strconv.FormatUint(math.MaxUint64, 10)
	}
	return &numberMiss{problem: fmt.Sprintf("the Python int %s does not fit Go %s (%s)", text, typeName(t), rng)}
}

// intRange is the range of the integer type t; hi is -1 for a uint64,
// whose top does not fit an int64.
func intRange(t reflect.Type) (lo, hi int64) {
	bits := t.Bits()
	if t.Kind() >= reflect.Uint {
		if bits == 64 {
			return 0, -1
		}
		return 0, 1<<bits - 1
	}
	if bits == 64 {
		return math.MinInt64, math.MaxInt64
	}
	return -1 << (bits - 1), 1<<(bits-1) - 1
}

// float32 rewrites a float64 as the float32 nearest to it, unless it is
// beyond float32's range (infinities and NaN cross as they are).
func (f *numberFitter) float32() *numberMiss {
	if f.peek() != 0xcb {
		f.r.Skip() // a float32, an integer (msgpack converts it), or no number
		return nil
	}
	start := f.pos()
	f.r.Byte()
	p := f.r.Take(8)
	if p == nil {
		return nil
	}
	x := math.Float64frombits(binary.BigEndian.Uint64(p))
	if math.Abs(x) > math.MaxFloat32 && !math.IsInf(x, 0) {
		return &numberMiss{problem: fmt.Sprintf("the Python float %g does not fit Go float32 (at most %g in size)", x, math.MaxFloat32)}
	}
	if f.out == nil {
		f.out = make([]byte, 0, len(f.in))
	}
	f.out = append(f.out, f.in[f.done:start]...)
	f.out = binary.BigEndian.AppendUint32(append(f.out, 0xca), math.Float32bits(float32(x)))
	f.done = f.pos()
	return nil
}

// items opens a container: its item count, if it is one of perItem values
// an item (1: a list, 2: a dict); anything else is skipped.
func (f *numberFitter) items(perItem int) (int, bool) {
	c := f.peek()
	isList := c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd
	isMap := c >= 0x80 && c <= 0x8f || c == 0xde || c == 0xdf
	if perItem == 1 && isList {
		return f.r.ArrayLen(), true
	}
	if perItem == 2 && isMap {
		return f.r.MapLen(), true
	}
	f.r.Skip()
	return 0, false
}

func (f *numberFitter) list(t reflect.Type, depth int) *numberMiss {
	n, ok := f.items(1)
	for i := 0; ok && i < n && f.r.Err() == nil; i++ {
		if miss := f.value(t.Elem(), depth+1); miss != nil {
			return miss.at(i, "")
		}
	}
	return nil
}

func (f *numberFitter) mapping(t reflect.Type, depth int) *numberMiss {
	if wire.IsExt(f.peek()) {
		return &numberMiss{problem: f.extProblem(t)}
	}
	if !holdsNumbers(t.Key()) && !holdsNumbers(t.Elem()) {
		if depth > 0 { // at the top, nothing follows: no need to read past it
			f.r.Skip() // nothing to fit inside
		}
		return nil
	}
	n, ok := f.items(2)
	for i := 0; ok && i < n && f.r.Err() == nil; i++ {
		start := f.pos()
		if miss := f.value(t.Key(), depth+1); miss != nil {
			miss.problem = "a dict key: " + miss.problem
			return miss
		}
		if miss := f.value(t.Elem(), depth+1); miss != nil {
			return miss.at(f.key(start), "")
		}
	}
	return nil
}

// extProblem says why the extension value that comes next does not fit
// the map type t: its code is not registered (decode.go's error), or what
// it is in Python does not fit a map.
func (f *numberFitter) extProblem(t reflect.Type) string {
	d := valueDecoder{codec: &valueCodec{}, lenient: true}
	d.Reset(f.in[f.pos():])
	v := d.value(0)
	if bad, ok := v.(badExt); ok {
		return bad.err.Error()
	}
	return fmt.Sprintf("a Python %s does not fit Go %s", pythonType(v), typeName(t))
}

// key decodes, for a path, the dict key that starts at start.
func (f *numberFitter) key(start int) any {
	d := valueDecoder{codec: &valueCodec{}, lenient: true}
	d.Reset(f.in[start:])
	return d.value(0)
}

func (f *numberFitter) structure(t reflect.Type, depth int) *numberMiss {
	fields := keyedFields(t, f.structTag)
	if c := f.peek(); c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd {
		n, _ := f.items(1)
		for i := 0; i < n && f.r.Err() == nil; i++ {
			if n != len(fields.list) {
				f.r.Skip() // msgpack refuses it
				continue
			}
			if miss := f.value(fields.list[i].typ, depth+1); miss != nil {
				return miss.at(i, fields.list[i].name)
			}
		}
		return nil
	}
	n, ok := f.items(2)
	for i := 0; ok && i < n && f.r.Err() == nil; i++ {
		c := f.peek()
		if !(c >= 0xa0 && c <= 0xbf || c >= 0xd9 && c <= 0xdb) { // a key that is no str names no field
			f.r.Skip()
			f.r.Skip()
			continue
		}
		name := f.r.Str()
		field, ok := fields.byKey[name]
		if !ok {
			f.r.Skip()
			continue
		}
		if miss := f.value(field.typ, depth+1); miss != nil {
			return miss.at(name, field.name)
		}
	}
	return nil
}

// numberHolders caches holdsNumbers by type.
var numberHolders sync.Map

// holdsNumbers reports whether msgpack, decoding into t, can store a number
// into an integer or a float32, or read a map, that fitNumbers walks to: t
// is one, or holds one in its elements, keys or fields (not behind an
// interface, a time, an Array or a type that decodes itself).
func holdsNumbers(t reflect.Type) bool {
	if v, ok := numberHolders.Load(t); ok {
		return v.(bool)
	}
	holds := numbersIn(t, make(map[reflect.Type]bool))
	numberHolders.Store(t, holds)
	return holds
}

func numbersIn(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if seen[t] || t == timeType || t == arrayType || decodesItself(t) {
		return false
	}
	seen[t] = true
	switch k := t.Kind(); {
	case isIntKind(k), k == reflect.Float32:
		return true
	case k == reflect.Slice, k == reflect.Array:
		return numbersIn(t.Elem(), seen)
	case k == reflect.Map:
		return true
	case k == reflect.Struct:
		for i := range t.NumField() {
			if sf := t.Field(i); (sf.IsExported() || sf.Anonymous) && numbersIn(sf.Type, seen) {
				return true
			}
		}
	}
	return false
}
