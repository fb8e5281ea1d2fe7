package pypool

// typeerr.go explains why msgpack could not decode a result into a CallAs
// target. msgpack only says `invalid code=cb decoding int64`; after it
// failed (never on the way of a successful call), the decoded value is
// walked alongside the target type, with msgpack's rules for what fits
// what, to the first place where they part: a path from the result, the
// Python type met, the Go type expected and the struct field it is for:
//
//	result["items"][3]["score"]: a Python float does not fit Go int64 (field Item.Score)
//
// The walk is a model of msgpack's rules, not msgpack itself: when it finds
// no mismatch, the caller reports msgpack's own error.

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

var (
	timeType  = reflect.TypeFor[time.Time]()
	arrayType = reflect.TypeFor[Array]()

	// decoderTypes are the interfaces through which a type decodes itself.
	decoderTypes = []reflect.Type{
		reflect.TypeFor[msgpack.CustomDecoder](),
		reflect.TypeFor[msgpack.Unmarshaler](),
		reflect.TypeFor[encoding.BinaryUnmarshaler](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	}
)

// typeMismatch says where and how a value does not fit a Go type.
type typeMismatch struct {
	path    string // result["items"][3]
	problem string // a Python float does not fit Go int64
	field   string // Item.Score: the innermost struct field, if any
}

// String describes the mismatch as the error's text shows it.
func (m *typeMismatch) String() string {
	if m.field == "" {
		return m.path + ": " + m.problem
	}
	return fmt.Sprintf("%s: %s (field %s)", m.path, m.problem, m.field)
}

// findMismatch returns the first place where v, as decodeValue (lenient)
// gives it, does not fit t; nil if it found none.
func findMismatch(v any, t reflect.Type, structTag string) *typeMismatch {
	f := mismatchFinder{structTag: structTag}
	return f.walk(v, t)
}

// mismatchFinder walks a value and a type together.
type mismatchFinder struct {
	structTag string
	path      []any  // list indices and dict keys from the result down
	field     string // the struct field being walked, "Item.Score"
}

func (f *mismatchFinder) walk(v any, t reflect.Type) *typeMismatch {
	if bad, ok := v.(badExt); ok {
		return f.at(bad.err.Error())
	}
	if v == nil {
		return nil // msgpack decodes nil into any type as its zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return f.expect(isTime(v) || isString(v), v, t)
	case t == arrayType:
		return f.arrayTarget(v)
	case decodesItself(t):
		return nil // its own rules: nothing to say
	}
	if a, ok := v.(Array); ok {
		return f.arrayValue(a, t)
	}
	return f.byKind(v, t)
}

// byKind applies msgpack's rules for each kind of target.
func (f *mismatchFinder) byKind(v any, t reflect.Type) *typeMismatch {
	switch k := t.Kind(); {
	case k == reflect.Interface:
		return f.anyTarget(v)
	case k == reflect.Bool:
		return f.expect(isBool(v), v, t)
	case isIntKind(k):
		return f.expect(isInt(v), v, t)
	case isFloatKind(k):
		return f.expect(isInt(v) || isFloat(v), v, t)
	case k == reflect.String:
		return f.expect(isString(v) || isBytes(v), v, t)
	case (k == reflect.Slice || k == reflect.Array) && t.Elem().Kind() == reflect.Uint8:
		return f.expect(isString(v) || isBytes(v), v, t)
	case k == reflect.Slice || k == reflect.Array:
		return f.listTarget(v, t)
	case k == reflect.Map:
		return f.mapTarget(v, t)
	case k == reflect.Struct:
		return f.structTarget(v, t)
	}
	return f.mismatch(v, t) // chan, func, complex: msgpack decodes none
}

// anyTarget checks v against an interface target: msgpack decodes
// anything into one, except dicts whose keys are not all strings.
func (f *mismatchFinder) anyTarget(v any) *typeMismatch {
	switch v := v.(type) {
	case badExt:
		return f.at(v.err.Error())
	case map[any]any:
		return f.at("a Python dict with keys that are not str does not fit a Go interface (msgpack makes map[string]any): use a map type with those keys, or Call")
	}
	return f.inItems(v, f.anyTarget)
}

// inItems walks visit into each item of a list, or each value of a dict
// with str keys, in order, and returns the first mismatch it finds.
func (f *mismatchFinder) inItems(v any, visit func(any) *typeMismatch) *typeMismatch {
	switch v := v.(type) {
	case []any:
		for i, item := range v {
			if m := f.in(i, func() *typeMismatch { return visit(item) }); m != nil {
				return m
			}
		}
	case map[string]any:
		for _, k := range sortedMapKeys(v) {
			if m := f.in(k, func() *typeMismatch { return visit(v[k]) }); m != nil {
				return m
			}
		}
	}
	return nil
}

func (f *mismatchFinder) listTarget(v any, t reflect.Type) *typeMismatch {
	list, ok := v.([]any)
	switch {
	case !ok:
		return f.mismatch(v, t)
	case t.Kind() == reflect.Array && len(list) > t.Len():
		return f.at(fmt.Sprintf("a Python list of %d items does not fit Go %s", len(list), typeName(t)))
	}
	for i, item := range list {
		if m := f.in(i, func() *typeMismatch { return f.walk(item, t.Elem()) }); m != nil {
			return m
		}
	}
	return nil
}

func (f *mismatchFinder) mapTarget(v any, t reflect.Type) *typeMismatch {
	dict, ok := asMap(v)
	if !ok {
		return f.mismatch(v, t)
	}
	for _, k := range sortedMapKeys(dict) {
		key := k
		if u, ok := k.(*unhashableKey); ok {
			key = u.key
		}
		if (&mismatchFinder{structTag: f.structTag}).walk(key, t.Key()) != nil {
			return f.at(fmt.Sprintf("a Python dict key %s (%s) does not fit Go %s", repr(key), pythonType(key), typeName(t.Key())))
		}
		if m := f.in(k, func() *typeMismatch { return f.walk(dict[k], t.Elem()) }); m != nil {
			return m
		}
	}
	return nil
}

// structTarget checks v against a struct target t: msgpack fills a struct
// from a dict by field names (unknown keys are skipped), or from a list of
// exactly one item per field.
func (f *mismatchFinder) structTarget(v any, t reflect.Type) *typeMismatch {
	keyed := keyedFields(t, f.structTag)
	fields := keyed.list
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedMapKeys(v) {
			if field, ok := keyed.byKey[k]; ok {
				if m := f.inField(k, field, v[k]); m != nil {
					return m
				}
			}
		}
		return nil
	case []any:
		if len(v) != 0 && len(v) != len(fields) {
			return f.at(fmt.Sprintf("a Python list of %d items does not fit Go %s, a struct of %d fields",
				len(v), typeName(t), len(fields)))
		}
		for i, item := range v {
			if m := f.inField(i, fields[i], item); m != nil {
				return m
			}
		}
		return nil
	case map[any]any:
		return f.at(fmt.Sprintf("a Python dict with keys that are not str does not fit Go %s", typeName(t)))
	}
	return f.mismatch(v, t)
}

// arrayTarget checks v against an Array target, which takes an ndarray or
// an array-like value.
func (f *mismatchFinder) arrayTarget(v any) *typeMismatch {
	if _, ok := v.(Array); ok {
		return nil
	}
	if _, err := arrayLike(v); err != nil {
		return f.at(fmt.Sprintf("a Python %s does not fit Go Array: %v",
			pythonType(v), strings.TrimPrefix(err.Error(), "pypool: ")))
	}
	return nil
}

// arrayValue checks the ndarray a against a target t that is not an
// Array: a is rewritten as nested lists of its elements, and fits lists of
// as many levels (or an interface) whose elements take the dtype.
func (f *mismatchFinder) arrayValue(a Array, t reflect.Type) *typeMismatch {
	elem, dims := t, 0
	for dims < len(a.Shape) && isListType(elem) {
		elem, dims = elem.Elem(), dims+1
	}
	for elem.Kind() == reflect.Pointer {
		elem = elem.Elem()
	}
	switch {
	case elem.Kind() == reflect.Interface, elem == arrayType, decodesItself(elem):
		return nil
	case dims == len(a.Shape) && dtypeFits(a.DType, elem.Kind()):
		return nil
	}
	return f.at(fmt.Sprintf("a Python ndarray of %s with shape %v does not fit Go %s", a.DType, a.Shape, typeName(t)))
}

// unhashableKeyAt says where the value b holds the first dict key (in the
// walk's order) that can not be a key of a Go map, what it is and what to
// do; decodeValue's error when it met one. It decodes b again, leniently:
// only on that error's way.
func unhashableKeyAt(b []byte, codec *valueCodec) string {
	d := valueDecoder{codec: codec, lenient: true}
	d.Reset(b)
	v := d.value(0)
	if d.Err() == nil {
		if m := (&mismatchFinder{}).unhashableKey(v); m != nil {
			return m.String()
		}
	}
	return errUnhashableKey.Error() + "; decode the result with CallAs into a map whose key type fits it"
}

// unhashableKey walks v, as decodeValue (lenient) gives it, to the first
// dict key that stands in for itself (an *unhashableKey).
func (f *mismatchFinder) unhashableKey(v any) *typeMismatch {
	dict, ok := v.(map[any]any)
	if !ok {
		return f.inItems(v, f.unhashableKey)
	}
	keys := sortedMapKeys(dict)
	for _, k := range keys {
		if u, ok := k.(*unhashableKey); ok {
			key := repr(u.key) + " "
			if _, isArray := u.key.(Array); isArray {
				key = "" // its Go struct says nothing to a reader of Python
			}
			return f.at(fmt.Sprintf("a Python dict key %s(%s) can not be a key of a Go map (Call gives map[any]any): "+
				"decode the result with CallAs into a map whose key type fits it (a Go array for a tuple, a string for bytes), "+
				"or make the key a str or an int in Python", key, pythonType(u.key)))
		}
	}
	for _, k := range keys {
		if m := f.in(k, func() *typeMismatch { return f.unhashableKey(dict[k]) }); m != nil {
			return m
		}
	}
	return nil
}

// in walks one step down the path.
func (f *mismatchFinder) in(step any, walk func() *typeMismatch) *typeMismatch {
	f.path = append(f.path, step)
	m := walk()
	f.path = f.path[:len(f.path)-1]
	return m
}

// inField walks into a struct field.
func (f *mismatchFinder) inField(step any, field structField, v any) *typeMismatch {
	outer := f.field
	f.field = field.name
	m := f.in(step, func() *typeMismatch { return f.walk(v, field.typ) })
	f.field = outer
	return m
}

func (f *mismatchFinder) expect(fits bool, v any, t reflect.Type) *typeMismatch {
	if fits {
		return nil
	}
	return f.mismatch(v, t)
}

func (f *mismatchFinder) mismatch(v any, t reflect.Type) *typeMismatch {
	return f.at(fmt.Sprintf("a Python %s does not fit Go %s", pythonType(v), typeName(t)))
}

func (f *mismatchFinder) at(problem string) *typeMismatch {
	return &typeMismatch{path: formatPath(f.path), problem: problem, field: f.field}
}

// formatPath writes a path as Python indexing: result["items"][3].
func formatPath(path []any) string {
	var b strings.Builder
	b.WriteString("result")
	for _, step := range path {
		b.WriteString("[" + repr(step) + "]")
	}
	return b.String()
}

// repr writes a dict key or list index as Python would.
func repr(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case bool:
		if v {
			return "True"
		}
		return "False"
	case nil:
		return "None"
	}
	return fmt.Sprint(v)
}

// structField is a struct field as msgpack matches it.
type structField struct {
	key  string       // the dict key it takes
	name string       // for messages: "Item.Score"
	typ  reflect.Type // its Go type
}

// structFields lists the fields msgpack decodes of struct type t, in order:
// matched by the msgpack tag, else by structTag, else by the field's name;
// "-" skips a field; embedded structs without a decoder of their own are
// inlined (depth bounds embedding cycles).
func structFields(t reflect.Type, structTag string, depth int) []structField {
	var fields []structField
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("msgpack")
		if tag == "" && structTag != "" {
			tag = sf.Tag.Get(structTag)
		}
		key, options, _ := strings.Cut(tag, ",")
		if key == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		if inner := inlined(sf, options); inner != nil && depth < 8 {
			fields = append(fields, structFields(inner, structTag, depth+1)...)
			continue
		}
		if key == "" {
			key = sf.Name
		}
		fields = append(fields, structField{key: key, name: typeName(t) + "." + sf.Name, typ: sf.Type})
	}
	return fields
}

// fieldsByKey are a struct type's fields as msgpack matches them, in
// order and by dict key (the first field of a key wins).
type fieldsByKey struct {
	list  []structField
	byKey map[string]structField
}

// keyedFieldCache holds fieldsByKey by struct type and struct tag.
var keyedFieldCache sync.Map

type keyedFieldKey struct {
	t   reflect.Type
	tag string
}

// keyedFields returns the fields of struct type t with structTag, once
// worked out per type and tag (typeerr.go and numfit.go walk them per value).
func keyedFields(t reflect.Type, structTag string) *fieldsByKey {
	key := keyedFieldKey{t, structTag}
	if v, ok := keyedFieldCache.Load(key); ok {
		return v.(*fieldsByKey)
	}
	list := structFields(t, structTag, 0)
	fields := &fieldsByKey{list: list, byKey: make(map[string]structField, len(list))}
	for _, field := range list {
		if _, dup := fields.byKey[field.key]; !dup {
			fields.byKey[field.key] = field
		}
	}
	v, _ := keyedFieldCache.LoadOrStore(key, fields)
	return v.(*fieldsByKey)
}

// inlined returns the struct type whose fields an embedded field lends to
// its parent, or nil.
func inlined(sf reflect.StructField, options string) reflect.Type {
	if !sf.Anonymous || strings.Contains(options, "noinline") {
		return nil
	}
	t := sf.Type
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == timeType || decodesItself(t) {
		return nil
	}
	return t
}

// decodesItself reports whether msgpack leaves t's decoding to t.
func decodesItself(t reflect.Type) bool {
	for _, it := range decoderTypes {
		if t.Implements(it) || reflect.PointerTo(t).Implements(it) {
			return true
		}
	}
	return false
}

// typeName names a Go type as its declaration in its own package does:
// Item, []Item, map[string]int64.
func typeName(t reflect.Type) string {
	switch {
	case t.Name() != "":
		return t.Name()
	case t.Kind() == reflect.Slice:
		return "[]" + typeName(t.Elem())
	case t.Kind() == reflect.Array:
		return fmt.Sprintf("[%d]%s", t.Len(), typeName(t.Elem()))
	case t.Kind() == reflect.Pointer:
		return "*" + typeName(t.Elem())
	case t.Kind() == reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	}
	return t.String()
}

func isListType(t reflect.Type) bool {
	k := t.Kind()
	return (k == reflect.Slice || k == reflect.Array) && t.Elem().Kind() != reflect.Uint8
}

// dtypeFits reports whether msgpack decodes the elements of an ndarray of
// dtype, written as numbers, into a Go value of kind k.
func dtypeFits(dtype DType, k reflect.Kind) bool {
	switch dtype {
	case Bool:
		return k == reflect.Bool
	case Float32, Float64:
		return isFloatKind(k)
	}
	return isIntKind(k) || isFloatKind(k)
}

func isIntKind(k reflect.Kind) bool { return k >= reflect.Int && k <= reflect.Uint64 }

func isFloatKind(k reflect.Kind) bool { return k == reflect.Float32 || k == reflect.Float64 }

func isBool(v any) bool { _, ok := v.(bool); return ok }

func isInt(v any) bool {
	switch v.(type) {
	case int64, uint64:
		return true
	}
	return false
}

func isFloat(v any) bool  { _, ok := v.(float64); return ok }
func isString(v any) bool { _, ok := v.(string); return ok }
func isBytes(v any) bool  { _, ok := v.([]byte); return ok }
func isTime(v any) bool   { _, ok := v.(time.Time); return ok }

// asMap returns a decoded dict with keys of any type.
func asMap(v any) (map[any]any, bool) {
	switch v := v.(type) {
	case map[any]any:
		return v, true
	case map[string]any:
		m := make(map[any]any, len(v))
		for k, item := range v {
			m[k] = item
		}
		return m, true
	}
	return nil, false
}

// sortedMapKeys returns a map's keys in a stable order, so that the first
// mismatch reported is the same from run to run.
func sortedMapKeys[K comparable, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	return keys
}
