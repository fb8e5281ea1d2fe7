"""Values beyond msgpack's own types: n-dimensional arrays, user extension
types and the user's default hook.

Both codecs take the two functions made here as msgpack takes its hooks:
default_for(ExtType) is the Packer's default= (called only for values the
packer cannot encode itself) and ext_hook_for(ExtType) the Unpacker's
ext_hook= (called for every ext value but timestamps). Each codec passes its
own ExtType class, so the bytes are the same whichever codec runs.

Encoding a value the packer does not know, in order:

1. a numpy bool, integer or float scalar -> its Python number;
2. a numpy.ndarray (or subclass) of a supported dtype -> NDARRAY (ext 127);
3. a pypool_runtime.Array -> NDARRAY;
4. an instance of a registered class (register_ext) -> its ext;
5. the user's hook (set_default) -> its return value, to which steps 1-4
   apply once more; the packer then encodes it, and the hooks apply again to
   whatever it contains, as with msgpack's default=;
6. else the packer's own error; for an ndarray of another dtype, a TypeError
   naming it.

numpy is never imported to encode (a numpy object exists only once its user
imported numpy); decoding imports it at the first NDARRAY, if it can.

NDARRAY's payload is msgpack [dtype, shape] followed by the elements' bytes
in C order, dtype being numpy's dtype.str (byte order, kind, size).
"""

from __future__ import annotations

import struct
import sys

from . import shm, stdlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

    Encoder = Callable[[Any], Any]
    Decoder = Callable[[bytes], Any]

# Ext codes: -1 is msgpack's timestamp; 120..127 are pypool's own.
NDARRAY = 127
SHM_BYTES = 126  # a bytes value in the worker's shared memory (see shm.py)
SHM_NDARRAY = 125  # an NDARRAY whose data is in shared memory
RESERVED_CODES = range(120, 128)
USER_CODES = range(0, 120)

# The dtypes NDARRAY carries, by numpy's dtype.str: (numpy name, item size,
# struct format character). Writers never use '=', so neither do readers.
_DTYPES: Dict[str, Tuple[str, int, str]] = {"|b1": ("bool", 1, "?"), "|i1": ("int8", 1, "b"), "|u1": ("uint8", 1, "B")}
for _order in "<>":
    for _kind, _size, _char, _name in (("i", 2, "h", "int16"), ("i", 4, "i", "int32"), ("i", 8, "q", "int64"),
                                       ("u", 2, "H", "uint16"), ("u", 4, "I", "uint32"), ("u", 8, "Q", "uint64"),
                                       ("f", 4, "f", "float32"), ("f", 8, "d", "float64")):  # fmt: skip
        _DTYPES["%s%s%d" % (_order, _kind, _size)] = (_name, _size, _char)
del _order, _kind, _size, _char, _name

_HOST_ORDER = "<" if sys.byteorder == "little" else ">"
# dtype.str of the host's byte order, by numpy name: what Array("float64", ...) means.
_HOST_DTYPES = {name: code for code, (name, _, _) in _DTYPES.items() if code[0] in "|" + _HOST_ORDER}
_SUPPORTED = "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64"


# -- The fallback array -----------------------------------------------------------


class Array:
    """An NDARRAY received while numpy is not importable: read-only.

    dtype is numpy's name for the element type ("float64"), shape a tuple of
    ints (() for a 0-d array, which holds one element), data a read-only
    memoryview of the elements in C order: cast to the element format and
    shape when their byte order is the host's (else, and for arrays with a
    zero in their shape, which memoryview cannot take, a flat view of the
    elements or of the bytes). byteorder is '<' or '>' as on the wire ('|'
    for one-byte elements). Sent back to Go, an Array encodes as the same
    NDARRAY.

    Array(dtype, shape, data) makes one: dtype a numpy name (the host's byte
    order) or a dtype string ("<f8", ">i4", "|u1"), data the elements'
    bytes, C order, exactly itemsize * prod(shape) of them."""

    __slots__ = ("_code", "_shape", "_bytes", "_view")
    __hash__ = None  # type: ignore[assignment]  # equal by value, as numpy's arrays are unhashable

    def __init__(self, dtype: str, shape: Iterable[int], data: Union[bytes, bytearray, memoryview]) -> None:
        code = _HOST_DTYPES.get(dtype, dtype)
        if code not in _DTYPES:
            raise ValueError("unsupported dtype %r (supported: %s)" % (dtype, _SUPPORTED))
        shape = tuple(shape)
        for n in shape:
            if type(n) is not int or n < 0:
                raise ValueError("shape %r is not a tuple of non-negative ints" % (shape,))
        data = bytes(data)
        expected = _count(shape) * _DTYPES[code][1]
        if len(data) != expected:
            raise ValueError(
                "%d bytes of data for dtype %s and shape %r, which take %d" % (len(data), code, shape, expected)
            )
        self._code = code
        self._shape = shape
        self._bytes = data
        self._view = _element_view(code, shape, data)

    @property
    def dtype(self) -> str:
        return _DTYPES[self._code][0]

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._shape

    @property
    def data(self) -> memoryview:
        return self._view

    @property
    def byteorder(self) -> str:
        return self._code[0]

    def tolist(self) -> Any:
        """The elements as nested lists of Python bools, ints or floats, as
        numpy's tolist(): a 0-d array gives its one element."""
        _, _, char = _DTYPES[self._code]
        order = "<" if self._code[0] == "|" else self._code[0]
        items = struct.unpack("%s%d%s" % (order, _count(self._shape), char), self._bytes)
        return _nest(items, self._shape)

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of unsized object")
        return self._shape[0]

    def __eq__(self, other: object) -> bool:
        """Same dtype name, shape and element values (byte order aside;
        NaN equals nothing, as in numpy)."""
        if not isinstance(other, Array):
            return NotImplemented
        return self.dtype == other.dtype and self._shape == other._shape and self.tolist() == other.tolist()

    def __repr__(self) -> str:
        order = "" if self._code[0] in "|" + _HOST_ORDER else ", byteorder=%r" % self._code[0]
        if _count(self._shape) <= 100:
            values = repr(self.tolist())
        else:
            values = "<%d bytes>" % len(self._bytes)
        return "Array(%s, shape=%r%s, %s)" % (self.dtype, self._shape, order, values)

    def _payload(self) -> bytes:
        return _header(self._code, self._shape) + self._bytes


def _count(shape: Tuple[int, ...]) -> int:
    """The number of elements of an array of this shape."""
    count = 1
    for n in shape:
        count *= n
    return count


def _nest(items: Any, shape: Tuple[int, ...]) -> Any:
    """items (flat, C order) as nested lists of this shape."""
    if not shape:
        return items[0]
    items = list(items)
    for axis in range(len(shape) - 1, 0, -1):  # the innermost lists first
        size = shape[axis]
        items = [items[i * size : (i + 1) * size] for i in range(_count(shape[:axis]))]
    return items


def _element_view(code: str, shape: Tuple[int, ...], data: bytes) -> memoryview:
    view = memoryview(data)
    if code[0] not in "|" + _HOST_ORDER:
        return view  # bytes: memoryview has no format for the other byte order
    char = _DTYPES[code][2]
    if 0 in shape or len(shape) > 64:  # shapes memoryview.cast refuses
        return view.cast(char)
    return view.cast(char, shape)


# -- NDARRAY ------------------------------------------------------------------------


def _pure() -> Any:
    """The pure codec's module, imported at its first use (an array's
    head): it packs and parses the small plain values of NDARRAY and
    SHM_NDARRAY payloads, with either codec."""
    return stdlib.runtime_module("purecodec")


def _header(code: str, shape: Tuple[int, ...]) -> bytes:
    return _pure().packb([code, list(shape)])


def _ndarray_payload(numpy: Any, array: Any) -> Optional[bytes]:
    """The NDARRAY payload of a numpy array, None for an unsupported dtype."""
    code = array.dtype.str
    if code not in _DTYPES:
        return None
    # ascontiguousarray copies only what is not C-contiguous; it also turns
    # a 0-d array into a 1-d one, whose bytes are the same.
    return b"".join((_header(code, array.shape), numpy.ascontiguousarray(array)))


def _unsupported_ndarray(array: Any) -> TypeError:
    return TypeError("can not serialize numpy array of dtype %s (supported: %s)" % (array.dtype.name, _SUPPORTED))


def _decode_ndarray(payload: bytes) -> Any:
    """An NDARRAY's value: a writable numpy.ndarray that owns its data when
    numpy is importable, else an Array."""
    code, shape, start = _parse_ndarray(payload)
    numpy = _numpy()
    if numpy is None:
        return Array(code, shape, payload[start:])
    return numpy.frombuffer(payload, numpy.dtype(code), _count(shape), start).reshape(shape).copy()


def _parse_ndarray(payload: bytes) -> Tuple[str, Tuple[int, ...], int]:
    """(dtype string, shape, offset of the data) of an NDARRAY payload;
    ValueError for anything but [dtype, shape] and exactly the data they
    call for."""
    try:
        head, start = _pure().unpack_head(payload)
    except Exception as exc:
        raise ValueError("bad NDARRAY: its [dtype, shape] head does not decode (%s)" % exc) from None
    if type(head) is not list or len(head) != 2 or type(head[0]) is not str or type(head[1]) is not list:
        raise ValueError("bad NDARRAY: its head is not [dtype, shape]")
    code, shape = head
    if code not in _DTYPES:
        raise ValueError("NDARRAY of unsupported dtype %r (supported: %s)" % (code, ", ".join(_DTYPES)))
    for n in shape:
        if type(n) is not int or n < 0:
            raise ValueError("bad NDARRAY: shape %r is not an array of non-negative ints" % (shape,))
    shape = tuple(shape)
    expected = _count(shape) * _DTYPES[code][1]
    if len(payload) - start != expected:
        raise ValueError(
            "bad NDARRAY: %d bytes of data for dtype %s and shape %r, which take %d"
            % (len(payload) - start, code, shape, expected)
        )
    return code, shape, start


def _shared_bytes(payload: bytes) -> bytes:
    """A SHM_BYTES value: a copy of the bytes it refers to."""
    memory = _active_shared_memory()
    ref = _unpack_ref(payload, 2, "[offset, length]")
    return memory.read_bytes(ref[0], ref[1])


def _shared_ndarray(payload: bytes) -> Any:
    """A SHM_NDARRAY value: an array (as _decode_ndarray makes) that owns a
    copy of the data it refers to."""
    memory = _active_shared_memory()
    code, shape, offset, length = _unpack_ref(payload, 4, "[dtype, shape, offset, length]")
    if type(code) is not str or code not in _DTYPES:
        raise ValueError("SHM_NDARRAY of unsupported dtype %r (supported: %s)" % (code, ", ".join(_DTYPES)))
    if type(shape) is not list or any(type(n) is not int or n < 0 for n in shape):
        raise ValueError("bad SHM_NDARRAY: shape %r is not an array of non-negative ints" % (shape,))
    shape = tuple(shape)
    if _count(shape) * _DTYPES[code][1] != length:
        raise ValueError("bad SHM_NDARRAY: %d bytes for dtype %s and shape %r" % (length, code, shape))
    view = memory.view(offset, length)
    numpy = _numpy()
    if numpy is None:
        return Array(code, shape, view.tobytes())
    return numpy.frombuffer(view, numpy.dtype(code), _count(shape)).reshape(shape).copy()


# Whether a value was read from the shared memory since the serve loop last
# called its begin_call: a call that neither read from it nor put anything
# in it (shm.SharedMemory.used) leaves nothing to forget, and the serve loop
# then does without that call (serve.py).
SHARED_READ = False


def _active_shared_memory() -> Any:
    global SHARED_READ
    memory = shm.ACTIVE
    if memory is None:
        raise ValueError("shared-memory reference with no shared memory")
    SHARED_READ = True
    return memory


def _unpack_ref(payload: bytes, fields: int, shape: str) -> List[Any]:
    try:
        ref = _pure().unpackb(payload)
    except Exception as exc:
        raise ValueError("bad shared-memory reference: %s" % exc) from None
    if type(ref) is not list or len(ref) != fields or any(type(n) is not int or n < 0 for n in ref[-2:]):
        raise ValueError("bad shared-memory reference: not %s" % shape)
    return ref


def _shared_ndarray_ref(ext_type: type, memory: Any, numpy: Any, array: Any) -> Any:
    """The SHM_NDARRAY value of a large array of a supported dtype, whose
    data is copied into the shared memory."""
    data = numpy.ascontiguousarray(array)
    offset = memory.put(data)
    return ext_type(SHM_NDARRAY, _pure().packb([array.dtype.str, list(array.shape), offset, data.nbytes]))


_numpy_module: Any = None  # None: not tried yet; False: not importable; else numpy


def _numpy() -> Any:
    """numpy, imported at the first NDARRAY decoded; None when not importable."""
    global _numpy_module
    if _numpy_module is None:
        try:
            import numpy
        except ImportError:
            numpy = False
        _numpy_module = numpy
    return _numpy_module or None


# -- numpy scalars ----------------------------------------------------------------

_numpy_scalar_types: Any = None  # numpy's bool, integer and float scalar types of <= 64 bits, once numpy is seen


def numpy_scalar_value(obj: Any) -> Any:
    """obj.item(), the Python bool, int or float that stands for obj, when obj
    is a numpy scalar of an exact type among bool_, int8..int64 (and their C
    aliases), uint8..uint64, float16, float32 and float64; None otherwise
    (ndarrays, longdouble, complex, datetime64, timedelta64, strs...)."""
    global _numpy_scalar_types
    cls = type(obj)
    if cls.__module__ != "numpy":
        return None
    types = _numpy_scalar_types
    if types is None:
        numpy = sys.modules.get("numpy")
        if numpy is None:
            return None
        # Type codes: bool, the signed and unsigned C integers, half, single, double.
        types = _numpy_scalar_types = frozenset(numpy.dtype(code).type for code in "?bhilqBHILQefd")
    if cls not in types:
        return None
    return obj.item()


# -- User extensions and the default hook ------------------------------------------

# Registered classes: class -> (code, encode). Decoders by code, pypool's own included.
_encoders: Dict[type, Tuple[int, Encoder]] = {}
_decoders: Dict[int, Decoder] = {NDARRAY: _decode_ndarray, SHM_BYTES: _shared_bytes, SHM_NDARRAY: _shared_ndarray}
_user_default: Optional[Callable[[Any], Any]] = None

# Classes whose instances the packers encode without a hook: a registered
# encoder could never be called for them.
_NATIVE = (int, float, str, bytes, bytearray, dict, list, tuple, memoryview, type(None))


def register_ext(cls: type, code: int, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> None:
    """Make instances of cls (and of its subclasses) cross as msgpack ext
    values of this code, both ways: encode(obj) -> bytes when a result holds
    one, decode(bytes) -> obj when Go sends the code (in arguments or keyword
    arguments). Go registers the same code with pypool.Ext in
    Config.Extensions.

    code is in 0..119 (120..127 are pypool's own); ValueError for a reserved
    code, or a code or class already registered."""
    if not isinstance(cls, type):
        raise TypeError("register_ext: cls must be a class, not %r" % (cls,))
    if issubclass(cls, _NATIVE) or cls is Array:
        raise TypeError("register_ext: %s values are encoded without hooks; register another class" % cls.__name__)
    if type(code) is not int or code not in USER_CODES:
        reserved = " (120..127 are reserved for pypool)" if code in RESERVED_CODES else ""
        raise ValueError("register_ext: code %r is not in 0..119%s" % (code, reserved))
    if not callable(encode) or not callable(decode):
        raise TypeError("register_ext: encode and decode must be callable")
    if code in _decoders:
        raise ValueError("register_ext: code %d is already registered" % code)
    if cls in _encoders:
        raise ValueError("register_ext: %s is already registered with code %d" % (cls.__name__, _encoders[cls][0]))
    _encoders[cls] = (code, encode)
    _decoders[code] = decode


def ext_type(code: int, *, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]) -> Callable[[type], type]:
    """register_ext as a class decorator:

        @ext_type(5, encode=lambda p: p.pack(), decode=Point.unpack)
        class Point: ..."""

    def register(cls: type) -> type:
        register_ext(cls, code, encode, decode)
        return cls

    return register


def unregister_ext(code: int) -> None:
    """Forget the user extension of this code (for tests, and modules that
    register again when reloaded); KeyError if none is registered."""
    if code not in USER_CODES or code not in _decoders:
        raise KeyError(code)
    del _decoders[code]
    for cls, (registered, _) in list(_encoders.items()):
        if registered == code:
            del _encoders[cls]


def set_default(func: Optional[Callable[[Any], Any]]) -> None:
    """Encode what nothing else encodes through func, as msgpack's default=:
    func(obj) returns a value to encode instead (numpy arrays, Arrays and
    registered classes included), or raises (TypeError, say) to refuse obj.
    It sees what the packer cannot encode itself and no registered class
    covers: instances of other classes, ints beyond 64 bits and naive
    datetimes. None removes it."""
    global _user_default
    if func is not None and not callable(func):
        raise TypeError("set_default: %r is not callable" % (func,))
    _user_default = func


# -- The hooks the codecs take ------------------------------------------------------


def default_for(ext_type: type) -> Callable[[Any], Any]:
    """The default= hook of a codec whose ext values are of class ext_type:
    steps 1-6 of the module's docstring. It returns obj itself when nothing
    applies, so that the packer raises the error it raises without a hook."""

    def convert(obj: Any) -> Any:
        # Steps 1-4: obj itself when none applies.
        cls = type(obj)
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            if cls.__module__ == "numpy":
                value = numpy_scalar_value(obj)
                if value is not None:
                    return value
            if isinstance(obj, numpy.ndarray):
                memory = shm.ACTIVE
                if memory is not None and obj.nbytes >= memory.threshold and obj.dtype.str in _DTYPES:
                    return _shared_ndarray_ref(ext_type, memory, numpy, obj)
                payload = _ndarray_payload(numpy, obj)
                return obj if payload is None else ext_type(NDARRAY, payload)
        if isinstance(obj, Array):
            return ext_type(NDARRAY, obj._payload())
        if _encoders:
            for base in cls.__mro__:  # the nearest registered class
                entry = _encoders.get(base)
                if entry is not None:
                    return ext_type(entry[0], _encoded(entry[1], obj))
        return obj

    def default(obj: Any) -> Any:
        value = convert(obj)
        if value is not obj:
            return value
        hook = _user_default
        if hook is not None and not _awaitable(obj):
            value = hook(obj)
            if value is not obj:  # not given to the hook again, as with msgpack
                obj = value
                value = convert(obj)
                if value is not obj:
                    return value
        numpy = sys.modules.get("numpy")
        if numpy is not None and isinstance(obj, numpy.ndarray):
            raise _unsupported_ndarray(obj)
        return obj

    return default


def _awaitable(obj: Any) -> bool:
    """Awaitables are not the user's default hook's: the worker awaits a
    result that is one (see aio.py), and one nested in a result is not
    encodable."""
    from .aio import is_awaitable

    return is_awaitable(obj)


def _encoded(encode: Callable[[Any], Any], obj: Any) -> bytes:
    data = encode(obj)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            "the ext encoder of %s returned %s, not bytes" % (type(obj).__name__, type(data).__name__)
        )
    return bytes(data)


def ext_hook_for(ext_type: type) -> Callable[[int, bytes], Any]:
    """The ext_hook= of a codec whose unknown ext values are of class
    ext_type: registered codes (and NDARRAY) decode, others stay ext_type."""

    def ext_hook(code: int, data: bytes) -> Any:
        decode = _decoders.get(code)
        if decode is None:
            return ext_type(code, data)
        return decode(data)

    return ext_hook
