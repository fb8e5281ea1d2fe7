"""A pure-Python msgpack codec, used when the msgpack C extension is missing.

It reproduces msgpack-python's C extension (``msgpack._cmsgpack``) used as
``packb(obj, use_bin_type=True, datetime=True, default=D)`` and
``unpackb(data, raw=False, strict_map_key=False, timestamp=3, use_list=True,
ext_hook=H)``: the same bytes out, the same values in, and the same exception
classes for the same failures (error messages match where that is cheap). The
tests compare the two over a broad corpus whenever the C extension is
importable. The hooks D and H are set with set_hooks (codec.py gives both
codecs those of ext.py); without them, values the packer does not know are
errors and ext values other than timestamps decode as ExtType.

The packer accepts containers nested as deep as msgpack >= 1.2's C packer
does (1024 levels below the top-level object), deeper than msgpack 1.0's
(511): the C codec hands values between the two limits to this packer.

Speed matters, since most workers run this codec: packing dispatches on the
exact type through a dict and appends to one bytearray; unpacking tests the
first byte for the frequent fix* formats and uses a table for the others.
Both recurse as deep as the data nests; data that the C extension accepts but
that is too deep for the interpreter's recursion limit at the point of the
call is retried with more headroom (see _with_headroom).

The datetime module is imported at the first datetime packed or timestamp
unpacked (_datetime_module), not with this module: it costs 2 to 3 ms of
every pure-codec worker's start, for values few calls carry. It comes from
the interpreter's own entries then (stdlib.own_module), even after the
user's paths are on sys.path.
"""

from __future__ import annotations

import struct
import sys

from . import stdlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Callable, Dict, List, Optional, Tuple, Union

    Buffer = Union[bytes, bytearray, memoryview]
    Packer = Callable[[Any, bytearray, int], None]
    # See _unpack for what decoders take and return.
    Decoder = Callable[[bytes, int, int], Tuple[Any, int]]

NAME = "pure"


# -- Exceptions: the names and bases of msgpack.exceptions -------------------


class UnpackException(Exception):
    """Base class of some of the exceptions raised while unpacking."""


class OutOfData(UnpackException):
    """The Unpacker needs more data to return the next object."""


class FormatError(ValueError, UnpackException):
    """Invalid msgpack format (the byte 0xc1)."""


class StackError(ValueError, UnpackException):
    """The data nests deeper than the C extension allows."""


class ExtraData(ValueError):
    """unpackb() found bytes after the object."""

    def __init__(self, unpacked: Any, extra: bytes) -> None:
        super().__init__(unpacked, extra)
        self.unpacked = unpacked
        self.extra = extra

    def __str__(self) -> str:
        return "unpack(b) received extra data."


class ExtType(tuple):
    """An ext value with an application-defined code (0..127), as msgpack.ExtType:
    a (code, data) tuple. Written out rather than made with
    collections.namedtuple, whose import costs a few ms at every worker start."""

    __slots__ = ()

    def __new__(cls, code: int, data: bytes) -> "ExtType":
        if not isinstance(code, int):
            raise TypeError("code must be int")
        if not isinstance(data, bytes):
            raise TypeError("data must be bytes")
        if not 0 <= code <= 127:
            raise ValueError("code must be 0~127")
        return tuple.__new__(cls, (code, data))

    def __getnewargs__(self) -> "Tuple[int, bytes]":
        return (self[0], self[1])

    def __repr__(self) -> str:
        return "ExtType(code=%r, data=%r)" % (self[0], self[1])

    @property
    def code(self) -> int:
        return self[0]

    @property
    def data(self) -> bytes:
        return self[1]


# -- Limits of the C extension ------------------------------------------------

# Packer: the top-level object may contain containers nested this deep, as in
# msgpack >= 1.2's C packer (DEFAULT_RECURSE_LIMIT; msgpack 1.0's is 511).
_PACK_NEST_LIMIT = 1024
# Unpacker: at most this many containers may be open at once.
_UNPACK_STACK_SIZE = 1024
# Largest length msgpack can express.
_ITEM_LIMIT = 0xFFFFFFFF

# The datetime module, its class datetime, the epoch and timedelta, set by
# _datetime_module at their first use.
_datetime: Any = None
_EPOCH: Any = None
_timedelta: Any = None


def _datetime_module() -> Any:
    """The standard datetime module, imported at its first use from the
    interpreter's own entries (a private copy if the user's code imported a
    datetime of its own first); its datetime class is then packed as a
    timestamp (_PACKERS)."""
    global _datetime, _EPOCH, _timedelta
    if _datetime is None:
        module = stdlib.own_module("datetime")
        _EPOCH = module.datetime(1970, 1, 1, tzinfo=module.timezone.utc)
        _timedelta = module.timedelta
        _PACKERS[module.datetime] = _pack_datetime
        _datetime = module
    return _datetime


def _is_datetime(cls: type) -> bool:
    """Whether cls is the standard datetime.datetime (not a subclass: the C
    extension refuses those), for values met before _datetime_module ran:
    a datetime exists only once something imported datetime."""
    return cls.__name__ == "datetime" and cls.__module__ == "datetime" and cls is _datetime_module().datetime

# -- Packing ------------------------------------------------------------------

_pack_B_B = struct.Struct(">BB").pack
_pack_B_H = struct.Struct(">BH").pack
_pack_B_I = struct.Struct(">BI").pack
_pack_B_Q = struct.Struct(">BQ").pack
_pack_B_b = struct.Struct(">Bb").pack
_pack_B_h = struct.Struct(">Bh").pack
_pack_B_i = struct.Struct(">Bi").pack
_pack_B_q = struct.Struct(">Bq").pack
_pack_B_d = struct.Struct(">Bd").pack
_pack_B_B_b = struct.Struct(">BBb").pack
_pack_B_H_b = struct.Struct(">BHb").pack
_pack_B_I_b = struct.Struct(">BIb").pack
_pack_ts32 = struct.Struct(">BbI").pack
_pack_ts64 = struct.Struct(">BbQ").pack
_pack_ts96 = struct.Struct(">BBbIq").pack


def _tp_name(cls: type) -> str:
    """The C-level name of a type (tp_name), as msgpack's messages show it:
    the bare name for classes made by a class statement (heap types that are
    not immutable) and for builtins, "module.name" for other C types."""
    if cls.__flags__ & (1 << 9) and not cls.__flags__ & (1 << 8):
        return cls.__name__
    if cls.__module__ == "builtins":
        return cls.__name__
    return cls.__module__ + "." + cls.__name__


def _recursion_limit_exceeded() -> ValueError:
    return ValueError("recursion limit exceeded.")


def _pack_nil(obj: None, buf: bytearray, limit: int) -> None:
    buf.append(0xC0)


def _pack_bool(obj: bool, buf: bytearray, limit: int) -> None:
    buf.append(0xC3 if obj else 0xC2)


def _pack_int(obj: int, buf: bytearray, limit: int) -> None:
    # Like the C extension, non-negative values use the unsigned formats.
    if obj >= 0:
        if obj < 0x80:
            buf.append(obj)
        elif obj <= 0xFF:
            buf += _pack_B_B(0xCC, obj)
        elif obj <= 0xFFFF:
            buf += _pack_B_H(0xCD, obj)
        elif obj <= 0xFFFFFFFF:
            buf += _pack_B_I(0xCE, obj)
        elif obj <= 0xFFFFFFFFFFFFFFFF:
            buf += _pack_B_Q(0xCF, obj)
        else:
            _pack_default(obj, buf, limit)  # beyond 64 bits: the C packer calls its default= hook
    elif obj >= -0x20:
        buf.append(obj + 0x100)
    elif obj >= -0x80:
        buf += _pack_B_b(0xD0, obj)
    elif obj >= -0x8000:
        buf += _pack_B_h(0xD1, obj)
    elif obj >= -0x80000000:
        buf += _pack_B_i(0xD2, obj)
    elif obj >= -0x8000000000000000:
        buf += _pack_B_q(0xD3, obj)
    else:
        _pack_default(obj, buf, limit)


def _pack_float(obj: float, buf: bytearray, limit: int) -> None:
    buf += _pack_B_d(0xCB, obj)


def _pack_str(obj: str, buf: bytearray, limit: int) -> None:
    data = obj.encode()  # UTF-8; lone surrogates raise UnicodeEncodeError like the C extension
    n = len(data)
    if n < 0x20:
        buf.append(0xA0 | n)
    else:
        buf += _str_header(n)
    buf += data


def _str_header(n: int) -> bytes:
    """The header of a str of n >= 32 bytes (see _pack_str)."""
    if n <= 0xFF:
        return _pack_B_B(0xD9, n)
    if n <= 0xFFFF:
        return _pack_B_H(0xDA, n)
    if n <= _ITEM_LIMIT:
        return _pack_B_I(0xDB, n)
    raise ValueError("unicode string is too large")


def _pack_bin(obj: Union[bytes, bytearray, memoryview], n: int, buf: bytearray) -> None:
    if n <= 0xFF:
        buf += _pack_B_B(0xC4, n)
    elif n <= 0xFFFF:
        buf += _pack_B_H(0xC5, n)
    elif n <= _ITEM_LIMIT:
        buf += _pack_B_I(0xC6, n)
    else:
        raise ValueError("%.200s object is too large" % _tp_name(type(obj)))
    buf += obj


def _pack_bytes(obj: Union[bytes, bytearray], buf: bytearray, limit: int) -> None:
    _pack_bin(obj, len(obj), buf)


def _pack_memoryview(obj: memoryview, buf: bytearray, limit: int) -> None:
    # The C extension packs the raw bytes of a C-contiguous view of any format.
    if not obj.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    _pack_bin(obj.cast("B"), obj.nbytes, buf)


def _pack_array(obj: Union[list, tuple], buf: bytearray, limit: int) -> None:
    n = len(obj)
    if n < 0x10:
        buf.append(0x90 | n)
    elif n <= 0xFFFF:
        buf += _pack_B_H(0xDC, n)
    elif n <= _ITEM_LIMIT:
        buf += _pack_B_I(0xDD, n)
    else:
        raise ValueError("list is too large")
    if n:
        if not limit:
            raise _recursion_limit_exceeded()
        limit -= 1
        packers = _PACKERS
        for item in obj:
            cls = type(item)
            # Short strs and small ints inline: the common items of a flat list.
            if cls is str:
                data = item.encode()
                if len(data) < 0x20:
                    buf.append(0xA0 | len(data))
                else:
                    buf += _str_header(len(data))
                buf += data
                continue
            if cls is int and 0 <= item < 0x80:
                buf.append(item)
                continue
            try:
                pack = packers[cls]
            except KeyError:
                pack = _packer_for_subclass(item)
            pack(item, buf, limit)


def _pack_map(obj: dict, buf: bytearray, limit: int) -> None:
    n = len(obj)
    if n < 0x10:
        buf.append(0x80 | n)
    elif n <= 0xFFFF:
        buf += _pack_B_H(0xDE, n)
    elif n <= _ITEM_LIMIT:
        buf += _pack_B_I(0xDF, n)
    else:
        raise ValueError("dict is too large")
    if n:
        if not limit:
            raise _recursion_limit_exceeded()
        limit -= 1
        packers = _PACKERS
        for key, value in obj.items():
            if type(key) is str:  # the common key, inline
                data = key.encode()
                if len(data) < 0x20:
                    buf.append(0xA0 | len(data))
                else:
                    buf += _str_header(len(data))
                buf += data
            else:
                try:
                    pack = packers[type(key)]
                except KeyError:
                    pack = _packer_for_subclass(key)
                pack(key, buf, limit)
            try:
                pack = packers[type(value)]
            except KeyError:
                pack = _packer_for_subclass(value)
            pack(value, buf, limit)


def _pack_ext_header(code: int, n: int, buf: bytearray) -> None:
    if n == 1:
        buf += _pack_B_b(0xD4, code)
    elif n == 2:
        buf += _pack_B_b(0xD5, code)
    elif n == 4:
        buf += _pack_B_b(0xD6, code)
    elif n == 8:
        buf += _pack_B_b(0xD7, code)
    elif n == 16:
        buf += _pack_B_b(0xD8, code)
    elif n <= 0xFF:
        buf += _pack_B_B_b(0xC7, n, code)
    elif n <= 0xFFFF:
        buf += _pack_B_H_b(0xC8, n, code)
    elif n <= _ITEM_LIMIT:
        buf += _pack_B_I_b(0xC9, n, code)
    else:
        raise ValueError("EXT data is too large")


def _pack_ext(obj: ExtType, buf: bytearray, limit: int) -> None:
    data = obj.data
    _pack_ext_header(obj.code, len(data), buf)
    buf += data


def _pack_datetime(obj: Any, buf: bytearray, limit: int) -> None:
    if obj.tzinfo is None:
        _pack_default(obj, buf, limit)  # naive: the C packer calls its default= hook
        return
    # Exact integer arithmetic, as the C extension does (not via float seconds).
    delta = obj - _EPOCH
    _pack_timestamp(delta.days * 86400 + delta.seconds, delta.microseconds * 1000, buf)


def _pack_timestamp(seconds: int, nanoseconds: int, buf: bytearray) -> None:
    # The smallest of the three timestamp formats that holds the value.
    if seconds >> 34 == 0:
        data64 = nanoseconds << 34 | seconds
        if data64 >> 32 == 0:
            buf += _pack_ts32(0xD6, -1, data64)
        else:
            buf += _pack_ts64(0xD7, -1, data64)
    else:
        buf += _pack_ts96(0xC7, 12, -1, nanoseconds, seconds)


# Exact types. datetime.datetime, added by _datetime_module, is exact-only:
# the C extension refuses subclasses.
_PACKERS: Dict[type, Packer] = {
    type(None): _pack_nil,
    bool: _pack_bool,
    int: _pack_int,
    float: _pack_float,
    str: _pack_str,
    bytes: _pack_bytes,
    bytearray: _pack_bytes,
    memoryview: _pack_memoryview,
    list: _pack_array,
    tuple: _pack_array,
    dict: _pack_map,
    ExtType: _pack_ext,
}

# Subclasses are tested in the order of the C extension's checks: ExtType, a
# namedtuple, must come before tuple.
_SUBCLASS_PACKERS: Tuple[Tuple[Any, Packer], ...] = (
    (int, _pack_int),
    (float, _pack_float),
    ((bytes, bytearray), _pack_bytes),
    (str, _pack_str),
    (dict, _pack_map),
    (ExtType, _pack_ext),
    ((list, tuple), _pack_array),
    (memoryview, _pack_memoryview),
)


def _subclass_packer(obj: Any) -> Optional[Packer]:
    for types, pack in _SUBCLASS_PACKERS:
        if isinstance(obj, types):
            return pack
    if _datetime is None and _is_datetime(type(obj)):
        return _pack_datetime
    return None


def _packer_for_subclass(obj: Any) -> Packer:
    """The packer of a value whose exact type _PACKERS does not hold: that of
    the builtin it derives from, else the default hook's."""
    return _subclass_packer(obj) or _pack_default


# -- The hooks ------------------------------------------------------------------
#
# Only reached for values the packer does not encode itself and for ext
# values, so the common types pay nothing for them.

_default: Optional[Callable[[Any], Any]] = None
_ext_hook: Optional[Callable[[int, bytes], Any]] = None


def set_hooks(default: Optional[Callable[[Any], Any]], ext_hook: Optional[Callable[[int, bytes], Any]]) -> None:
    """Give the codec msgpack's default= and ext_hook= (None: none): default
    is called with each value the packer cannot encode itself (an unknown
    type, an int beyond 64 bits, a naive datetime) and its return value is
    encoded instead, without calling it again for that value; ext_hook is
    called with (code, data) of each ext value other than a timestamp, and
    its return value is the decoded value."""
    global _default, _ext_hook
    _default, _ext_hook = default, ext_hook


def pack_msgpack_types(ext_type: type, timestamp: type) -> None:
    """Encode the msgpack package's own ExtType and Timestamp classes as its
    C packer does: the C codec hands this packer the values nested deeper
    than msgpack 1.0 allows, and those may hold them."""
    global _SUBCLASS_PACKERS
    _PACKERS[ext_type] = _pack_ext
    _PACKERS[timestamp] = _pack_msgpack_timestamp  # the exact class only, as in the C packer
    _SUBCLASS_PACKERS = tuple(
        ((ExtType, ext_type), pack) if pack is _pack_ext else (types, pack) for types, pack in _SUBCLASS_PACKERS
    )


def _pack_msgpack_timestamp(obj: Any, buf: bytearray, limit: int) -> None:
    _pack_timestamp(obj.seconds, obj.nanoseconds, buf)


def _pack_default(obj: Any, buf: bytearray, limit: int) -> None:
    """Pack a value the packer cannot encode itself, as the C Packer does:
    through its default hook, once."""
    default = _default
    if default is not None:
        obj = default(obj)
    _pack_converted(obj, buf, limit)


def _pack_converted(obj: Any, buf: bytearray, limit: int) -> None:
    """Pack what the default hook returned: with no second call to the hook,
    so what the packer still cannot encode fails with the C Packer's error."""
    cls = type(obj)
    pack = _PACKERS.get(cls) or _subclass_packer(obj)
    if pack is None:
        raise TypeError("can not serialize '%.200s' object" % _tp_name(cls))
    if pack is _pack_int and not -0x8000000000000000 <= obj <= 0xFFFFFFFFFFFFFFFF:
        raise OverflowError("Integer value out of range")
    if pack is _pack_datetime and obj.tzinfo is None:
        raise ValueError("can not serialize 'datetime.datetime' object where tzinfo=None")
    pack(obj, buf, limit)


def _pack(obj: Any) -> bytes:
    buf = bytearray()
    try:
        pack = _PACKERS[type(obj)]
    except KeyError:
        pack = _packer_for_subclass(obj)
    pack(obj, buf, _PACK_NEST_LIMIT)
    return bytes(buf)


def packb(obj: Any) -> bytes:
    """Encode obj as msgpack, exactly as the C extension's packb(obj,
    use_bin_type=True, datetime=True, default=D) with the hook D of
    set_hooks, but to msgpack >= 1.2's nesting limit."""
    try:
        return _pack(obj)
    except RecursionError:
        return _with_headroom(_pack, obj)


# -- Unpacking ----------------------------------------------------------------


class _Incomplete(Exception):
    """Internal: the data ends inside an object."""


class _TooLong(_Incomplete):
    """Internal: a container declares more items than the data could hold.
    unpackb() reports it as the C extension does (its default max_array_len
    and max_map_len derive from the input's size); for the Unpacker it only
    means that more data is needed."""


_unpack_H = struct.Struct(">H").unpack_from
_unpack_I = struct.Struct(">I").unpack_from
_unpack_Q = struct.Struct(">Q").unpack_from
_unpack_b = struct.Struct(">b").unpack_from
_unpack_h = struct.Struct(">h").unpack_from
_unpack_i = struct.Struct(">i").unpack_from
_unpack_q = struct.Struct(">q").unpack_from
_unpack_f = struct.Struct(">f").unpack_from
_unpack_d = struct.Struct(">d").unpack_from
_unpack_ts96 = struct.Struct(">Iq").unpack_from


def _unpack(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    """Decode the value at data[pos]: return (value, offset after it).

    depth is the number of enclosing containers. The decoders of _DECODERS
    take the same arguments, pos being the offset just after the first byte.
    Short data raises _Incomplete, IndexError or struct.error; the public
    entry points turn those into msgpack's errors."""
    b = data[pos]
    pos += 1
    if b < 0x80:  # positive fixint
        return b, pos
    if b >= 0xE0:  # negative fixint
        return b - 0x100, pos
    if b >= 0xC0:
        return _DECODERS[b - 0xC0](data, pos, depth)
    if b >= 0xA0:  # fixstr
        end = pos + (b & 0x1F)
        if end > len(data):
            raise _Incomplete
        return data[pos:end].decode(), end
    if b >= 0x90:
        return _unpack_array(data, pos, b & 0x0F, depth)
    return _unpack_map(data, pos, b & 0x0F, depth)


def _unpack_array(data: bytes, pos: int, n: int, depth: int) -> Tuple[List[Any], int]:
    if depth >= _UNPACK_STACK_SIZE:
        raise StackError
    if n > len(data):
        raise _TooLong("%d exceeds max_array_len(%d)", n, len(data))
    depth += 1
    items: List[Any] = []
    append = items.append
    unpack = _unpack
    for _ in range(n):
        item, pos = unpack(data, pos, depth)
        append(item)
    return items, pos


def _unpack_map(data: bytes, pos: int, n: int, depth: int) -> Tuple[Dict[Any, Any], int]:
    if depth >= _UNPACK_STACK_SIZE:
        raise StackError
    if n > len(data) // 2:
        raise _TooLong("%d exceeds max_map_len(%d)", n, len(data) // 2)
    depth += 1
    result: Dict[Any, Any] = {}
    unpack = _unpack
    for _ in range(n):
        key, pos = unpack(data, pos, depth)
        value, pos = unpack(data, pos, depth)
        result[key] = value
    return result, pos


def _take(data: bytes, pos: int, n: int) -> Tuple[bytes, int]:
    end = pos + n
    if end > len(data):
        raise _Incomplete
    return data[pos:end], end


class _HookFailed(Exception):
    """Internal: the ext hook raised IndexError or struct.error, which mean
    short data inside the decoder. The entry points raise the hook's own
    exception again, as the C extension lets it through."""


def _ext_value(code: int, payload: bytes) -> Any:
    if code != -1:
        hook = _ext_hook
        if hook is None:
            return ExtType(code, payload)
        try:
            return hook(code, payload)
        except (IndexError, struct.error) as exc:
            raise _HookFailed(exc) from None
    # A timestamp, converted as the C extension does with timestamp=3:
    # epoch + timedelta(days, seconds, microseconds), with C's truncating
    # division and the day count passed through a C int (which wraps a
    # time more than about 5.8 million years from 1970 into datetime's
    # range: Go never writes one, see protocol.go's boundFarTimes).
    n = len(payload)
    if n == 4:
        (seconds,) = _unpack_I(payload)
        nanoseconds = 0
    elif n == 8:
        (data64,) = _unpack_Q(payload)
        seconds = data64 & 0x00000003FFFFFFFF
        nanoseconds = data64 >> 34
    elif n == 12:
        nanoseconds, seconds = _unpack_ts96(payload)
    else:
        raise ValueError("Unpack failed: error = -1")
    days = abs(seconds) // 86400
    if seconds < 0:
        days = -days
    rest = seconds - days * 86400
    days = (days + 0x80000000 & 0xFFFFFFFF) - 0x80000000
    if _datetime is None:
        _datetime_module()
    return _EPOCH + _timedelta(days, rest, nanoseconds // 1000)


def _d_nil(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return None, pos


def _d_never_used(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    raise FormatError


def _d_false(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return False, pos


def _d_true(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return True, pos


def _d_bin8(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _take(data, pos + 1, data[pos])


def _d_bin16(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _take(data, pos + 2, _unpack_H(data, pos)[0])


def _d_bin32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _take(data, pos + 4, _unpack_I(data, pos)[0])


def _d_ext8(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    payload, end = _take(data, pos + 2, data[pos])
    return _ext_value(_unpack_b(data, pos + 1)[0], payload), end


def _d_ext16(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    payload, end = _take(data, pos + 3, _unpack_H(data, pos)[0])
    return _ext_value(_unpack_b(data, pos + 2)[0], payload), end


def _d_ext32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    payload, end = _take(data, pos + 5, _unpack_I(data, pos)[0])
    return _ext_value(_unpack_b(data, pos + 4)[0], payload), end


def _d_float32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_f(data, pos)[0], pos + 4


def _d_float64(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_d(data, pos)[0], pos + 8


def _d_uint8(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return data[pos], pos + 1


def _d_uint16(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_H(data, pos)[0], pos + 2


def _d_uint32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_I(data, pos)[0], pos + 4


def _d_uint64(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_Q(data, pos)[0], pos + 8


def _d_int8(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_b(data, pos)[0], pos + 1


def _d_int16(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_h(data, pos)[0], pos + 2


def _d_int32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_i(data, pos)[0], pos + 4


def _d_int64(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_q(data, pos)[0], pos + 8


def _fixext(size: int) -> Decoder:
    def decode(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
        payload, end = _take(data, pos + 1, size)
        return _ext_value(_unpack_b(data, pos)[0], payload), end

    return decode


def _d_str8(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    raw, end = _take(data, pos + 1, data[pos])
    return raw.decode(), end


def _d_str16(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    raw, end = _take(data, pos + 2, _unpack_H(data, pos)[0])
    return raw.decode(), end


def _d_str32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    raw, end = _take(data, pos + 4, _unpack_I(data, pos)[0])
    return raw.decode(), end


def _d_array16(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_array(data, pos + 2, _unpack_H(data, pos)[0], depth)


def _d_array32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_array(data, pos + 4, _unpack_I(data, pos)[0], depth)


def _d_map16(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_map(data, pos + 2, _unpack_H(data, pos)[0], depth)


def _d_map32(data: bytes, pos: int, depth: int) -> Tuple[Any, int]:
    return _unpack_map(data, pos + 4, _unpack_I(data, pos)[0], depth)


# Decoders for the first bytes 0xc0..0xdf, in order.
_DECODERS: Tuple[Decoder, ...] = (
    _d_nil, _d_never_used, _d_false, _d_true,
    _d_bin8, _d_bin16, _d_bin32,
    _d_ext8, _d_ext16, _d_ext32,
    _d_float32, _d_float64,
    _d_uint8, _d_uint16, _d_uint32, _d_uint64,
    _d_int8, _d_int16, _d_int32, _d_int64,
    _fixext(1), _fixext(2), _fixext(4), _fixext(8), _fixext(16),
    _d_str8, _d_str16, _d_str32,
    _d_array16, _d_array32,
    _d_map16, _d_map32,
)  # fmt: skip

_SHORT_DATA = (_Incomplete, IndexError, struct.error)


def _as_bytes(data: Buffer) -> bytes:
    return data if type(data) is bytes else memoryview(data).tobytes()


def _unpack_all(data: bytes) -> Any:
    try:
        obj, pos = _unpack(data, 0, 0)
    except _TooLong as exc:
        raise ValueError(exc.args[0] % exc.args[1:]) from None
    except _SHORT_DATA:
        raise ValueError("Unpack failed: incomplete input") from None
    except _HookFailed as exc:
        raise exc.args[0] from None
    if pos < len(data):
        raise ExtraData(obj, data[pos:])
    return obj


def unpackb(data: Buffer) -> Any:
    """Decode one msgpack value, exactly as the C extension's
    unpackb(data, raw=False, strict_map_key=False, timestamp=3, use_list=True)."""
    if type(data) is not bytes:
        data = memoryview(data).tobytes()
    try:
        return _unpack_all(data)
    except RecursionError:
        return _with_headroom(_unpack_all, data)


def unpack_head(data: bytes) -> Tuple[Any, int]:
    """The msgpack value data starts with, and the offset just after it;
    ValueError when data does not start with a whole value."""
    try:
        return _unpack(data, 0, 0)
    except _SHORT_DATA:
        raise ValueError("incomplete msgpack value") from None
    except _HookFailed as exc:
        raise exc.args[0] from None


def _with_headroom(func: Callable[[Any], Any], arg: Any) -> Any:
    """Run func(arg) with room for the deepest nesting the C extension accepts.

    The codec uses at most three frames per nesting level (1024 levels), and
    the hooks a few more where they are called. A RecursionError means the
    caller's stack left too little room below the interpreter's limit: raise
    the limit for this one call (Python frames are cheap on the C stack) and
    try again."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(old + 8 * max(_UNPACK_STACK_SIZE, _PACK_NEST_LIMIT) + 100)
    try:
        return func(arg)
    finally:
        sys.setrecursionlimit(old)


# -- Skipping (structure only, as the C extension's skip) ---------------------

# Bytes that follow the first byte of fixed-size values, for 0xc0..0xdf;
# None for the variable-size formats handled in _skip.
_FIXED_SIZES = (
    0, None, 0, 0,  # nil, never used, false, true
    None, None, None, None, None, None,  # bin 8/16/32, ext 8/16/32
    4, 8, 1, 2, 4, 8, 1, 2, 4, 8,  # float 32/64, uint 8..64, int 8..64
    2, 3, 5, 9, 17,  # fixext 1/2/4/8/16 (code byte + data)
    None, None, None, None, None, None, None,  # str 8/16/32, array 16/32, map 16/32
)  # fmt: skip


def _skip(data: bytes, pos: int, depth: int) -> int:
    """Return the offset after the value at data[pos], decoding no string or ext."""
    b = data[pos]
    pos += 1
    if b < 0x80 or b >= 0xE0:
        return pos
    if 0xA0 <= b < 0xC0:
        length = b & 0x1F
    elif b < 0xA0:
        count = b & 0x0F if b >= 0x90 else (b & 0x0F) * 2
        return _skip_items(data, pos, count, depth)
    else:
        fixed = _FIXED_SIZES[b - 0xC0]
        if fixed is not None:
            length = fixed
        elif b == 0xC1:
            raise FormatError
        elif b in (0xC4, 0xC7, 0xD9):  # 8-bit length
            length = data[pos] + (b == 0xC7)
            pos += 1
        elif b in (0xC5, 0xC8, 0xDA):  # 16-bit length
            length = _unpack_H(data, pos)[0] + (b == 0xC8)
            pos += 2
        elif b in (0xC6, 0xC9, 0xDB):  # 32-bit length
            length = _unpack_I(data, pos)[0] + (b == 0xC9)
            pos += 4
        else:  # array 16/32, map 16/32
            if b in (0xDC, 0xDE):
                count = _unpack_H(data, pos)[0]
                pos += 2
            else:
                count = _unpack_I(data, pos)[0]
                pos += 4
            return _skip_items(data, pos, count * 2 if b >= 0xDE else count, depth)
    pos += length
    if pos > len(data):
        raise _Incomplete
    return pos


def _skip_items(data: bytes, pos: int, count: int, depth: int) -> int:
    if depth >= _UNPACK_STACK_SIZE:
        raise StackError
    for _ in range(count):
        pos = _skip(data, pos, depth + 1)
    return pos


# -- Unpacker -----------------------------------------------------------------


class Unpacker:
    """The part of msgpack.Unpacker the runtime uses: feed() bytes, then read
    values one at a time. A read that needs more data raises OutOfData and
    consumes nothing, so it can be retried after the next feed()."""

    def __init__(self) -> None:
        self._data = b""
        self._pos = 0

    def feed(self, data: Buffer) -> None:
        self._data = self._data[self._pos :] + _as_bytes(data)
        self._pos = 0

    def _run(self, step: Callable[[bytes, int, int], Any]) -> Any:
        data = self._data
        if self._pos >= len(data):
            raise OutOfData("No more data to unpack.")
        try:
            try:
                return step(data, self._pos, 0)
            except RecursionError:
                return _with_headroom(lambda pos: step(data, pos, 0), self._pos)
        except _SHORT_DATA:
            raise OutOfData("No more data to unpack.") from None
        except _HookFailed as exc:
            raise exc.args[0] from None

    def unpack(self) -> Any:
        obj, self._pos = self._run(_unpack)
        return obj

    def skip(self) -> None:
        self._pos = self._run(_skip)

    def read_array_header(self) -> int:
        def header(data: bytes, pos: int, depth: int) -> Tuple[int, int]:
            b = data[pos]
            if 0x90 <= b <= 0x9F:
                return b & 0x0F, pos + 1
            if b == 0xDC:
                return _unpack_H(data, pos + 1)[0], pos + 3
            if b == 0xDD:
                return _unpack_I(data, pos + 1)[0], pos + 5
            raise ValueError("Unexpected type header on stream")

        n, self._pos = self._run(header)
        return n


# -- The worker's hot paths ---------------------------------------------------
#
# A call's arguments and a reply's value are usually a few short strs, small
# ints, floats and the like: these functions go straight at those shapes and
# fall back on the general code for the rest, with the same results.

_pack_I_into = struct.Struct(">I").pack_into
_pack_frame_fixint = struct.Struct(">IBBB").pack  # frame length, fixarray 3, RESULT, id < 0x80
_pack_frame_u8 = struct.Struct(">IBBBB").pack  # ... 0xcc, id
_pack_frame_u16 = struct.Struct(">IBBBH").pack  # ... 0xcd, id
_pack_frame_u32 = struct.Struct(">IBBBI").pack  # ... 0xce, id

# Encodings of the values that fit in one byte's header, by size or value.
_FIXSTR_HEADS = tuple(bytes([0xA0 | n]) for n in range(0x20))
_FIXINTS = tuple(bytes([n]) for n in range(0x80))


# Frames above this size are returned in two parts, so that the large part
# is written without being copied.
JOIN_LIMIT = 64 << 10


def result_frame(call_id: int, value: Any) -> Union[bytes, Tuple[bytes, Buffer]]:
    """The frame (4-byte big-endian length, then body) of the RESULT
    [3, call_id, value], whose body is exactly packb([3, call_id, value]);
    the same exceptions when value cannot be encoded. A large frame may come
    as a pair of parts to be written one after the other. call_id must be in
    0..2**64 - 1."""
    # The usual values: their header (head) and payload (data, b"" for the
    # scalars) are joined to the frame's start in one copy of the payload.
    cls = type(value)
    if cls is str:
        data = value.encode()
        n = len(data)
        if n < 0x20:
            head = _FIXSTR_HEADS[n]
            n += 1
        elif n <= JOIN_LIMIT:
            head = _str_header(n)
            n += len(head)
        else:
            return _result_frame_parts(call_id, _str_header(n), data)
    elif cls is bytes and (n := len(value)) <= 0xFFFF:
        data = value
        if n <= 0xFF:
            head = _pack_B_B(0xC4, n)
            n += 2
        else:
            head = _pack_B_H(0xC5, n)
            n += 3
    else:
        data = b""
        n = 1
        if cls is int and 0 <= value < 0x80:
            head = _FIXINTS[value]
        elif value is None:
            head = b"\xc0"
        elif cls is bool:
            head = b"\xc3" if value else b"\xc2"
        elif cls is float:
            head = _pack_B_d(0xCB, value)
            n = 9
        else:
            try:
                return _result_frame(call_id, value)
            except RecursionError:
                return _with_headroom(lambda v: _result_frame(call_id, v), value)
    if call_id < 0x80:
        return _pack_frame_fixint(n + 3, 0x93, 3, call_id) + head + data
    if call_id <= 0xFFFF:
        if call_id <= 0xFF:
            return _pack_frame_u8(n + 4, 0x93, 3, 0xCC, call_id) + head + data
        return _pack_frame_u16(n + 5, 0x93, 3, 0xCD, call_id) + head + data
    if call_id <= 0xFFFFFFFF:
        return _pack_frame_u32(n + 7, 0x93, 3, 0xCE, call_id) + head + data
    buf = bytearray(b"\0\0\0\0\x93\x03")
    _pack_int(call_id, buf, 0)
    buf += head
    buf += data
    _pack_I_into(buf, 0, len(buf) - 4)
    return bytes(buf)


def _result_frame_parts(call_id: int, value_head: bytes, payload: Buffer) -> Tuple[bytes, Buffer]:
    # The frame up to the payload of a large str or bin value, and that payload.
    buf = bytearray(b"\0\0\0\0\x93\x03")
    _pack_int(call_id, buf, 0)
    buf += value_head
    _pack_I_into(buf, 0, len(buf) - 4 + len(payload))
    return bytes(buf), payload


def _result_frame(call_id: int, value: Any) -> Union[bytes, Tuple[bytes, Buffer]]:
    # What packb([3, call_id, value]) does, behind the frame's length.
    cls = type(value)
    if (cls is bytes or cls is bytearray) and len(value) > JOIN_LIMIT:
        n = len(value)
        if n > _ITEM_LIMIT:
            raise ValueError("%.200s object is too large" % _tp_name(cls))
        return _result_frame_parts(call_id, _pack_B_I(0xC6, n) if n > 0xFFFF else _pack_B_H(0xC5, n), value)
    buf = bytearray(b"\0\0\0\0\x93\x03")
    _pack_int(call_id, buf, 0)
    try:
        pack = _PACKERS[type(value)]
    except KeyError:
        pack = _packer_for_subclass(value)
    pack(value, buf, _PACK_NEST_LIMIT - 1)  # one level is the reply's array
    _pack_I_into(buf, 0, len(buf) - 4)
    return bytes(buf)


def decode_call(body: Union[bytes, memoryview]) -> Optional[Tuple[int, str, List[Any]]]:
    """(id, name, args) of a CALL frame's body as the Go side writes it when
    there are no keyword arguments: fixarray 5, kind 2, an unsigned id, a
    fixstr or str 8 name, a fixarray of arguments, then nil, exactly what
    unpackb(body)[1:4] gives. None for any other frame, and for one that
    does not decode: the caller takes the general path, which reproduces
    the C extension's errors. The worker's hot path, in one Python frame:
    the usual arguments (short strs, small ints, bins up to 64 KiB) are
    decoded inline, the others by _unpack; a memoryview body (a large
    frame) by unpack_args_view."""
    try:
        if body[0] != 0x95 or body[1] != 2 or body[-1] != 0xC0:
            return None
        code = body[2]
        if code < 0x80:
            call_id, pos = code, 3
        elif code == 0xCD:
            call_id, pos = body[3] << 8 | body[4], 5
        elif code == 0xCE:
            call_id, pos = _unpack_I(body, 3)[0], 7
        elif code == 0xCC:
            call_id, pos = body[3], 4
        elif code == 0xCF:
            call_id, pos = _unpack_Q(body, 3)[0], 11
        else:
            return None
        code = body[pos]
        if 0xA0 <= code < 0xC0:
            start = pos + 1
            pos = start + (code & 0x1F)
        elif code == 0xD9:
            start = pos + 2
            pos = start + body[pos + 1]
        else:
            return None
        if type(body) is not bytes:
            name = str(body[start:pos], "utf-8")
            args = unpack_args_view(body, pos)
            return None if args is None else (call_id, name, args)
        name = body[start:pos].decode()
        # The arguments: a fixarray that must end where the last byte (the
        # nil of no keyword arguments) begins.
        b = body[pos]
        if b & 0xF0 != 0x90:
            return None
        end = len(body) - 1
        count = b & 0x0F
        args: List[Any] = [None] * count
        pos += 1
        i = 0
        while i < count:
            b = body[pos]
            if 0xA0 <= b < 0xC0:  # fixstr
                stop = pos + (b - 0x9F)
                if stop > end:
                    return None
                args[i] = body[pos + 1 : stop].decode()
                pos = stop
            elif b < 0x80:  # positive fixint
                args[i] = b
                pos += 1
            elif b == 0xC4:  # bin 8
                stop = pos + 2 + body[pos + 1]
                if stop > end:
                    return None
                args[i] = body[pos + 2 : stop]
                pos = stop
            elif b == 0xD9:  # str 8
                stop = pos + 2 + body[pos + 1]
                if stop > end:
                    return None
                args[i] = body[pos + 2 : stop].decode()
                pos = stop
            elif b == 0xC5:  # bin 16
                stop = pos + 3 + (body[pos + 1] << 8 | body[pos + 2])
                if stop > end:
                    return None
                args[i] = body[pos + 3 : stop]
                pos = stop
            else:  # depth 2: inside the message's array and the arguments' array
                args[i], pos = _unpack(body, pos, 2)
            i += 1
        if pos != end:
            return None
    except Exception:  # short, undecodable: the general path tells what is wrong
        return None
    return (call_id, name, args)


def decode_call_context(body: Union[bytes, memoryview]) -> Optional[Tuple[int, str, List[Any], bytes]]:
    """(id, name, args, context) of a CALL frame's body that carries the
    call's context (callctx.py): fixarray 6, kind 2, then the values of
    decode_call's frame and a map, what unpackb(body)[1:4] gives, with
    the map still encoded (its bytes: callctx decodes them if the function
    asks for its context, most never do); None for any other frame (and a
    memoryview body: a large frame), which takes the general path. Each
    value is decoded where it starts (_unpack), without the whole frame's
    entry point."""
    try:
        if type(body) is not bytes or body[0] != 0x96 or body[1] != 2:
            return None
        call_id, pos = _unpack(body, 2, 1)
        name, pos = _unpack(body, pos, 1)
        args, pos = _unpack(body, pos, 1)
        if body[pos] != 0xC0:
            return None
        b = body[pos + 1]
    except Exception:  # short, undecodable: the general path tells what is wrong
        return None
    if not (0x80 <= b <= 0x8F or b == 0xDE or b == 0xDF) or type(args) is not list or type(name) is not str or type(call_id) is not int or call_id < 0:
        return None
    return (call_id, name, args, body[pos + 1 :])


def unpack_args_view(data: memoryview, pos: int) -> Any:
    """The arguments of a CALL frame read into a memoryview (a large one),
    an array at data[pos] that must end where the last byte of data (the
    nil of no keyword arguments) begins: only strs and bins are decoded
    here, copying each payload once; None for anything else (the caller
    takes the general path)."""
    b = data[pos]
    if b & 0xF0 != 0x90:
        return None
    end = len(data) - 1
    pos += 1
    args: List[Any] = []
    for _ in range(b & 0x0F):
        b = data[pos]
        if 0xA0 <= b < 0xC0:
            start, size = pos + 1, b & 0x1F
        else:
            width = _VIEW_WIDTHS.get(b)
            if width is None:
                return None
            start = pos + 1 + width
            size = int.from_bytes(data[pos + 1 : start], "big")
        pos = start + size
        if pos > end:
            return None
        args.append(bytes(data[start:pos]) if 0xC4 <= b <= 0xC6 else str(data[start:pos], "utf-8"))
    return args if pos == end else None


# bin 8/16/32 and str 8/16/32: the width of their length.
_VIEW_WIDTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
