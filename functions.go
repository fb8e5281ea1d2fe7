package pypool

// functions.go is Pool.Functions: the configured modules' public functions
// as the runtime's introspect.py describes them (signatures and type
// hints), for start-up validation and for cmd/pypoolgen, the generator of
// typed Go bindings.

import (
	"context"
	"fmt"
	"strings"
)

// functionsFunction is the runtime's description of the modules' functions
// (FUNCTIONS_FUNCTION in serve.py).
const functionsFunction = "_pypool_functions"

// Function is a Python function that Go may call, as Pool.Functions
// describes it.
type Function struct {
	// Name is the name Go calls it by: "function" for a function of
	// Config.Module, "module.function" for one of Config.Modules' others.
	Name string `msgpack:"name"`
	// Module is the module that defines it.
	Module string `msgpack:"module"`
	// Class is true for a class (a TypedDict, dataclass, NamedTuple or
	// another public class of the module: Go may call it, it returns an
	// instance).
	Class bool `msgpack:"class"`
	// Async is true for an async def (a coroutine or async generator
	// function); Go calls it as any other, the worker awaits it.
	Async bool `msgpack:"async"`
	// Generator is true for a generator function (async or not): call it
	// with Pool.Stream or StreamAs.
	Generator bool `msgpack:"generator"`
	// Doc is its docstring, cleaned up as inspect.getdoc does.
	Doc string `msgpack:"doc"`
	// Params are its parameters in order.
	Params []Param `msgpack:"params"`
	// Result is its return hint, nil when it has none.
	Result *Hint `msgpack:"result"`
	// Error says why its signature or some of its hints could not be read
	// (a hint naming a type that is not defined, say); the hints that could
	// are in Params and Result, the others are of kind HintUnknown.
	Error string `msgpack:"error"`
}

// Param is a parameter of a Function.
type Param struct {
	Name string    `msgpack:"name"`
	Kind ParamKind `msgpack:"kind"`
	// HasDefault is true when the parameter has a default value, whose
	// Python repr is Default: the same text in every run (no object's
	// address, a set's items sorted), at most 200 characters.
	HasDefault bool   `msgpack:"has_default"`
	Default    string `msgpack:"default"`
	// Hint is its type hint, nil when it has none.
	Hint *Hint `msgpack:"hint"`
}

// ParamKind is how a parameter is passed, as Python's inspect.Parameter.kind says.
type ParamKind string

// The kinds of parameters.
const (
	ParamPositionalOnly      ParamKind = "positional_only"       // before a / in the signature
	ParamPositionalOrKeyword ParamKind = "positional_or_keyword" // the usual kind
	ParamVarPositional       ParamKind = "var_positional"        // *args
	ParamKeywordOnly         ParamKind = "keyword_only"          // after * or *args
	ParamVarKeyword          ParamKind = "var_keyword"           // **kwargs
)

// Hint is a Python type hint as a structured description: its Kind, and
// for some kinds Args (the parameters of a generic: a list's element, a
// dict's key and value), Fields and Name (a class), Values (a Literal's) or
// Repr (an unknown hint as Python prints it).
type Hint struct {
	Kind HintKind `msgpack:"kind"`
	// Args are a generic's arguments: a list's item, a dict's key and
	// value, a tuple's items (tuple[int, ...]: the int's, then one of kind
	// HintEllipsis), an optional's one type, a union's members, an
	// iterator's item.
	Args []Hint `msgpack:"args"`
	// Name and Module name a TypedDict, dataclass or NamedTuple class.
	Name   string `msgpack:"name"`
	Module string `msgpack:"module"`
	// Fields are a class's fields in order; nil for a class met again
	// inside its own fields (a recursive type): they are where it was met
	// first.
	Fields []HintField `msgpack:"fields"`
	// Values are a Literal's values.
	Values []any `msgpack:"values"`
	// Repr is what Python prints for a hint of kind HintUnknown.
	Repr string `msgpack:"repr"`
}

// HintField is a field of a TypedDict, dataclass or NamedTuple.
type HintField struct {
	Name string `msgpack:"name"`
	Hint *Hint  `msgpack:"hint"` // nil without a hint
	// Required is false for a key a TypedDict may leave out (total=False,
	// NotRequired).
	Required bool `msgpack:"required"`
}

// HintKind is the kind of a Hint.
type HintKind string

// The kinds of hints.
const (
	HintNone       HintKind = "none"       // None
	HintAny        HintKind = "any"        // typing.Any, object
	HintBool       HintKind = "bool"       // bool
	HintInt        HintKind = "int"        // int
	HintFloat      HintKind = "float"      // float
	HintStr        HintKind = "str"        // str
	HintBytes      HintKind = "bytes"      // bytes, bytearray
	HintDatetime   HintKind = "datetime"   // datetime.datetime
	HintList       HintKind = "list"       // list[int], typing.List[int]
	HintDict       HintKind = "dict"       // dict[str, int], typing.Dict[str, int]
	HintTuple      HintKind = "tuple"      // tuple[int, str], tuple[int, ...]
	HintEllipsis   HintKind = "ellipsis"   // the ... of tuple[int, ...]
	HintOptional   HintKind = "optional"   // Optional[int], int | None
	HintUnion      HintKind = "union"      // Union[int, str], int | str
	HintLiteral    HintKind = "literal"    // Literal["a", "b"]
	HintNDArray    HintKind = "ndarray"    // numpy.ndarray, numpy.typing.NDArray[...]
	HintIterator   HintKind = "iterator"   // Iterator[int], Generator[int, None, None], and their async forms
	HintTypedDict  HintKind = "typeddict"  // a TypedDict class
	HintDataclass  HintKind = "dataclass"  // a dataclass
	HintNamedTuple HintKind = "namedtuple" // a NamedTuple class
	HintUnknown    HintKind = "unknown"    // anything else (set[int], a class of the module): see Repr
)

// String returns the hint as Python would write it (list[int],
// Optional[int], Item): for messages and comments.
func (h *Hint) String() string {
	if h == nil {
		return "(no hint)"
	}
	args := func() string {
		parts := make([]string, len(h.Args))
		for i := range h.Args {
			parts[i] = h.Args[i].String()
		}
		return strings.Join(parts, ", ")
	}
	switch h.Kind {
	case HintNone:
		return "None"
	case HintAny:
		return "Any"
	case HintDatetime:
		return "datetime"
	case HintEllipsis:
		return "..."
	case HintNDArray:
		return "numpy.ndarray"
	case HintList, HintDict, HintTuple:
		if len(h.Args) == 0 {
			return string(h.Kind)
		}
		return string(h.Kind) + "[" + args() + "]"
	case HintOptional:
		return "Optional[" + args() + "]"
	case HintUnion:
		return "Union[" + args() + "]"
	case HintIterator:
		return "Iterator[" + args() + "]"
	case HintLiteral:
		parts := make([]string, len(h.Values))
		for i, v := range h.Values {
			if s, ok := v.(string); ok {
				parts[i] = fmt.Sprintf("%q", s)
			} else {
				parts[i] = fmt.Sprint(v)
			}
		}
		return "Literal[" + strings.Join(parts, ", ") + "]"
	case HintTypedDict, HintDataclass, HintNamedTuple:
		return h.Name
	case HintUnknown:
		return h.Repr
	}
	return string(h.Kind)
}

// Functions returns the public functions of the pool's modules, those Go
// may call, with their signatures and type hints as Python's
// inspect.signature and typing.get_type_hints see them: Config.Module's
// first, by their plain names, then those of Config.Modules' others as
// "module.function", each module's in the order it defines them. It is a
// call of the runtime's own, made like any other (a worker checked out, ctx
// honoured, counted in Stats and traced, under the name
// "_pypool_functions"); the module's code does not run, but for its
// annotations, evaluated as typing.get_type_hints does. The first call in a
// worker imports Python's inspect and typing there.
//
// Use it to check at start-up that the module has the functions a program
// needs; cmd/pypoolgen uses it to write typed Go bindings.
func (p *Pool) Functions(ctx context.Context) ([]Function, error) {
	var out []Function
	err := p.call(ctx, nil, functionsFunction, nil, exchange{into: func(b []byte, _ bool, codec *valueCodec) error {
		return decodeValueInto(b, &out, codec)
	}})
	return out, err
}
