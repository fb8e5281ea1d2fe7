"""The configured modules' public functions described for Go (Pool.Functions).

describe(modules) answers the runtime's own call FUNCTIONS_FUNCTION
(serve.py): for every public function Go may call, its name as Go calls it,
its parameters (name, kind, default), its type hints and whether it is
async or a generator, as plain values that cross as msgpack.

A hint is a small map, never a string for Go to parse:
{"kind": "list", "args": [{"kind": "str"}]}. The kinds: none, any, bool,
int, float, str, bytes, datetime, list, dict, tuple (args; a tuple[X, ...]
has args [X, {"kind": "ellipsis"}]), optional (args [X]: Optional[X], X |
None), union (args), literal (values), ndarray (numpy's), iterator (args
[item]: Iterator, Generator, AsyncIterator, AsyncGenerator), typeddict,
dataclass and namedtuple (name, fields: [{"name", "hint", "required"}]; a
class met again inside its own fields has its name only), and unknown (repr:
what Python prints for the hint). What Go does with each is the
generator's business (cmd/pypoolgen).

This module is imported at the first Pool.Functions call only, through
stdlib.runtime_module, so that inspect and typing (milliseconds of import)
come from the interpreter's own entries, never from a user's path, and no
worker start pays for them.
"""

from __future__ import annotations

from . import stdlib
from .serve import public_functions

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only.
    from typing import Any, Dict, List, Optional

_inspect: Any = None
_typing: Any = None

# The classes that map to a plain kind.
_SIMPLE = {
    "builtins.bool": "bool",
    "builtins.int": "int",
    "builtins.float": "float",
    "builtins.str": "str",
    "builtins.bytes": "bytes",
    "builtins.bytearray": "bytes",
    "builtins.NoneType": "none",
    "builtins.object": "any",
    "datetime.datetime": "datetime",
}
# The generic origins (what typing.get_origin gives).
_ORIGINS = {
    "builtins.list": "list",
    "builtins.dict": "dict",
    "builtins.tuple": "tuple",
    "collections.abc.Iterator": "iterator",
    "collections.abc.Generator": "iterator",
    "collections.abc.AsyncIterator": "iterator",
    "collections.abc.AsyncGenerator": "iterator",
}
# Bare typing aliases (List without [X], ...), by their repr.
_BARE = {
    "typing.List": "list",
    "typing.Dict": "dict",
    "typing.Tuple": "tuple",
    "typing.Iterator": "iterator",
    "typing.Generator": "iterator",
    "typing.AsyncIterator": "iterator",
    "typing.AsyncGenerator": "iterator",
}


def _load() -> None:
    global _inspect, _typing
    if _inspect is None:
        _typing = stdlib.own_module("typing")
        _inspect = stdlib.own_module("inspect")


def describe(modules: List[Any]) -> List[Dict[str, Any]]:
    """The public functions of modules as Go may call them: those of the
    first module by their plain names, the others' as "module.function"
    (serve.callable_functions's names), each module's in source order (in
    __all__'s, if it has one; by name if that is a set)."""
    _load()
    out = []
    for i, module in enumerate(modules):
        functions = public_functions(module).items()
        if isinstance(getattr(module, "__all__", None), (set, frozenset)):
            # In an order PYTHONHASHSEED changes: the bindings written
            # from it would change from run to run.
            functions = sorted(functions)
        for name, function in functions:
            name = name if i == 0 else module.__name__ + "." + name
            if _unencodable(name) is not None:
                continue  # not UTF-8 (a lone surrogate set through __all__): Go cannot name it
            try:
                info = describe_function(name, module.__name__, function)
                where = _unencodable(info)
                if where is not None:
                    raise ValueError("%s cannot cross to Go" % where)
                out.append(info)
            except Exception as exc:  # an object whose inspection fails: said, not fatal to the others
                out.append({"name": name, "module": module.__name__, "class": False, "async": False,
                            "generator": False, "doc": "", "params": [], "result": None,
                            "error": _text("not described (%s: %s)" % (type(exc).__name__, exc))})  # fmt: skip
    return out


def _text(text: str) -> str:
    """text as UTF-8 can carry it: a lone surrogate as its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _unencodable(value: Any, path: str = "") -> Optional[str]:
    """Where in a description is a value msgpack cannot carry to Go (a str
    that is not UTF-8, an int beyond 64 bits), or None: one such value
    would fail the whole Pool.Functions call."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "%s %s" % (path or "its name", ascii(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**64:
            return "%s %d" % (path, value)
    elif isinstance(value, dict):
        for k, v in value.items():
            where = _unencodable(k, path + "[key]") or _unencodable(v, "%s[%r]" % (path, k))
            if where is not None:
                return where
    elif isinstance(value, list):
        for i, v in enumerate(value):
            where = _unencodable(v, "%s[%d]" % (path, i))
            if where is not None:
                return where
    return None


def describe_function(name: str, module: str, function: Any) -> Dict[str, Any]:
    """One function's description (see the module's docstring)."""
    _load()
    inspect = _inspect
    unwrapped = inspect.unwrap(function)
    is_async = inspect.iscoroutinefunction(unwrapped) or inspect.isasyncgenfunction(unwrapped)
    generator = inspect.isgeneratorfunction(unwrapped) or inspect.isasyncgenfunction(unwrapped)
    doc = _text(inspect.getdoc(function) or "")
    info: Dict[str, Any] = {
        "name": name,
        "module": module,
        "class": inspect.isclass(function),
        "async": bool(is_async),
        "generator": bool(generator),
        "doc": doc,
        "params": [],
        "result": None,
    }
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:  # a builtin without a signature, say
        info["error"] = "no signature: %s" % exc
        return info
    hints, error = _hints(function)
    if error:
        info["error"] = error
    namespace = _namespace(function)
    for param in signature.parameters.values():
        hint = hints.get(param.name, _MISSING)
        if hint is _MISSING and param.annotation is not param.empty:
            hint = _resolved(param.annotation, namespace)  # unresolved: described as unknown
        described: Dict[str, Any] = {
            "name": param.name,
            "kind": _KINDS[param.kind],
            "has_default": param.default is not param.empty,
            "hint": None if hint is _MISSING else _described_hint(hint, "parameter " + param.name, info),
        }
        if param.default is not param.empty:
            described["default"] = _repr(param.default)
        info["params"].append(described)
    result = hints.get("return", _MISSING)
    if result is _MISSING and signature.return_annotation is not signature.empty:
        result = _resolved(signature.return_annotation, namespace)
    if result is not _MISSING:
        info["result"] = _described_hint(result, "the result", info)
    return info


def _described_hint(hint: Any, what: str, info: Dict[str, Any]) -> Dict[str, Any]:
    """describe_hint(hint), or, when looking at the hint raises (an object
    whose attributes raise), an unknown hint and why in info's error: one
    hint's failure does not hide the function's parameters."""
    try:
        return describe_hint(hint)
    except Exception as exc:
        why = "the hint of %s not described (%s: %s)" % (what, type(exc).__name__, _text(str(exc)))
        info["error"] = info["error"] + "; " + why if info.get("error") else why
        return {"kind": "unknown", "repr": _repr(hint)}


class _Missing:
    pass


_MISSING = _Missing()

_KINDS = {
    0: "positional_only",
    1: "positional_or_keyword",
    2: "var_positional",
    3: "keyword_only",
    4: "var_keyword",
}


def _hints(function: Any) -> Any:
    """typing.get_type_hints of function and "", or, when its annotations do
    not all resolve (a name not defined, say), those that do, each resolved
    on its own, and why the others did not (they stay strings)."""
    try:
        return _typing.get_type_hints(function), ""
    except Exception as exc:
        # cmd/pypoolgen binds a function with this error (its parameters
        # are all there); one whose error starts "no signature" or "not
        # described" it refuses (its parameters are unknown).
        error = "type hints not resolved (%s: %s)" % (type(exc).__name__, exc)
    hints = {}
    annotations = getattr(function, "__annotations__", None) or {}
    namespace = _namespace(function)
    for name, annotation in annotations.items():
        hints[name] = _resolved(annotation, namespace)
    return hints, error


def _resolved(annotation: Any, namespace: Dict[str, Any]) -> Any:
    """A string annotation evaluated in namespace, as get_type_hints does
    (one at a time); the string itself if it does not evaluate."""
    if isinstance(annotation, str):
        try:
            return eval(annotation, namespace)
        except Exception:
            pass
    return annotation


def _namespace(function: Any) -> Dict[str, Any]:
    """The globals a callable's string annotations are evaluated in: its
    function's module's, for a def, a functools.partial of one (which
    typing.get_type_hints refuses) and a callable object (its class's
    __call__)."""
    target = _inspect.unwrap(function)
    for _ in range(100):  # a partial of a partial...
        inner = getattr(target, "func", None)
        if inner is None or not hasattr(target, "keywords"):
            break
        target = _inspect.unwrap(inner)
    if not hasattr(target, "__globals__") and not _inspect.isclass(target):
        target = getattr(type(target), "__call__", target)
    namespace = getattr(target, "__globals__", None)
    return namespace if isinstance(namespace, dict) else {}


def _qualified(obj: Any) -> str:
    return "%s.%s" % (getattr(obj, "__module__", ""), getattr(obj, "__qualname__", getattr(obj, "__name__", "")))


def _repr(value: Any) -> str:
    """repr(value) as the same text in every run: the Go bindings written
    from it are compared byte for byte (pypoolgen -check)."""
    try:
        text = _text(_stable_repr(value, 0))
    except Exception:
        text = "<%s>" % type(value).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _stable_repr(value: Any, depth: int) -> str:
    """repr(value) without what changes from one run to the next: a set's
    items (in an order PYTHONHASHSEED changes) are sorted, and an object's
    address (" at 0x7f...": a sentinel object(), a lambda) is left out."""
    cls = type(value)
    if depth < 8:
        if cls is set or cls is frozenset:
            if not value:
                return cls.__name__ + "()"
            text = "{" + ", ".join(sorted(_stable_repr(v, depth + 1) for v in value)) + "}"
            return text if cls is set else "frozenset(" + text + ")"
        if cls is list:
            return "[" + ", ".join(_stable_repr(v, depth + 1) for v in value) + "]"
        if cls is tuple:
            return "(" + ", ".join(_stable_repr(v, depth + 1) for v in value) + ("," if len(value) == 1 else "") + ")"
        if cls is dict:
            return "{" + ", ".join("%s: %s" % (_stable_repr(k, depth + 1), _stable_repr(v, depth + 1)) for k, v in value.items()) + "}"
    return _ADDRESS.sub("", repr(value))


class _Address:
    """re.compile(" at 0x[0-9A-Fa-f]+") compiled at its first use (re from
    the interpreter's own modules, as inspect and typing)."""

    pattern: Any = None

    def sub(self, repl: str, text: str) -> str:
        if " at 0x" not in text:
            return text
        if self.pattern is None:
            self.pattern = stdlib.own_module("re").compile(" at 0x[0-9A-Fa-f]+")
        return self.pattern.sub(repl, text)


_ADDRESS = _Address()


def _hint_repr(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__qualname__ if hint.__module__ == "builtins" else _qualified(hint)
    if isinstance(hint, str):
        return _text(hint)
    return _repr(hint)


# Unresolved string hints that name numpy's ndarray: a module that imports
# numpy only under TYPE_CHECKING, or runs where numpy is not installed.
_NDARRAY_NAMES = ("numpy.ndarray", "np.ndarray", "ndarray")
_NDARRAY_PREFIXES = ("numpy.ndarray[", "np.ndarray[", "NDArray[", "npt.NDArray[", "numpy.typing.NDArray[")


def describe_hint(hint: Any, seen: Optional[List[Any]] = None) -> Dict[str, Any]:
    """A type hint as a small structured description (the module's docstring
    lists the kinds)."""
    _load()
    typing = _typing
    seen = seen if seen is not None else []
    if hint is None or hint is type(None):
        return {"kind": "none"}
    if hint is typing.Any:
        return {"kind": "any"}
    supertype = getattr(hint, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return describe_hint(supertype, seen)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is not None:
        if origin is typing.Union or _qualified(origin) == "types.UnionType":
            rest = [a for a in args if a is not type(None)]
            if len(rest) < len(args) and len(rest) == 1:
                return {"kind": "optional", "args": [describe_hint(rest[0], seen)]}
            described = [describe_hint(a, seen) for a in args]
            return {"kind": "union", "args": described}
        if origin is typing.Literal:
            # Values Go can hold: no int beyond int64, no str UTF-8
            # cannot carry.
            values = [a for a in args if type(a) in (bool, int, float, str, bytes) or a is None]
            values = [a for a in values if (type(a) is not int or -(2**63) <= a < 2**63) and _unencodable(a) is None]
            if len(values) == len(args):
                return {"kind": "literal", "values": list(values)}
            return {"kind": "unknown", "repr": _hint_repr(hint)}
        if _qualified(origin) == "typing.Annotated" or getattr(hint, "__metadata__", None) is not None:
            return describe_hint(args[0], seen)
        if getattr(origin, "__name__", "") == "ndarray" and getattr(origin, "__module__", "") == "numpy":
            return {"kind": "ndarray"}
        kind = _ORIGINS.get(_qualified(origin))
        if kind is not None:
            if kind == "iterator":
                return {"kind": "iterator", "args": [describe_hint(args[0], seen)] if args else [{"kind": "any"}]}
            described = [{"kind": "ellipsis"} if a is Ellipsis else describe_hint(a, seen) for a in args]
            if kind == "tuple" and args == ((),):  # tuple[()]
                described = []
            return {"kind": kind, "args": described}
        return {"kind": "unknown", "repr": _hint_repr(hint)}
    if isinstance(hint, type):
        qualified = _qualified(hint)
        simple = _SIMPLE.get(qualified)
        if simple is not None:
            return {"kind": simple}
        kind = _ORIGINS.get(qualified)
        if kind is not None:
            return {"kind": kind, "args": [{"kind": "any"}] if kind == "iterator" else []}
        if hint.__module__ == "numpy" and hint.__name__ == "ndarray":
            return {"kind": "ndarray"}
        described_class = _describe_class(hint, seen)
        if described_class is not None:
            return described_class
    if isinstance(hint, str) and (hint in _NDARRAY_NAMES or hint.startswith(_NDARRAY_PREFIXES)):
        return {"kind": "ndarray"}
    bare = _BARE.get(_repr(hint))
    if bare is not None:
        return {"kind": bare, "args": [{"kind": "any"}] if bare == "iterator" else []}
    return {"kind": "unknown", "repr": _hint_repr(hint)}


def _describe_class(cls: Any, seen: List[Any]) -> Optional[Dict[str, Any]]:
    """A TypedDict, dataclass or NamedTuple class with its fields; None for
    another class."""
    if _typing_is_typeddict(cls):
        kind = "typeddict"
    elif "__dataclass_fields__" in vars(cls) or hasattr(cls, "__dataclass_fields__"):
        kind = "dataclass"
    elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
        kind = "namedtuple"
    else:
        return None
    described: Dict[str, Any] = {"kind": kind, "name": cls.__name__, "module": getattr(cls, "__module__", "")}
    if cls in seen:
        return described  # recursive: its fields are described where it was met first
    seen.append(cls)
    try:
        try:
            hints = _typing.get_type_hints(cls)
        except Exception:
            hints = dict(getattr(cls, "__annotations__", {}))
        if kind == "typeddict":
            names = list(hints)
            required = set(getattr(cls, "__required_keys__", names))
        elif kind == "dataclass":
            fields = cls.__dataclass_fields__
            names = [n for n, f in fields.items() if getattr(f, "_field_type", None) is None or str(f._field_type) == "_FIELD"]
            required = set(names)
        else:
            names = list(cls._fields)
            required = set(names)
        described["fields"] = [
            {
                "name": n,
                "hint": describe_hint(hints[n], seen) if n in hints else None,
                "required": n in required,
            }
            for n in names
        ]
    finally:
        seen.pop()
    return described


def _typing_is_typeddict(cls: Any) -> bool:
    check = getattr(_typing, "is_typeddict", None)
    if check is not None:
        return bool(check(cls))
    return type(cls).__name__ == "_TypedDictMeta"
