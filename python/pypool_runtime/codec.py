"""Chooses the msgpack codec: the msgpack C extension when it is importable
(msgpack >= 1.0), the pure-Python codec otherwise. Both encode and decode
identically; the C extension is just faster. Both take the hooks of ext.py
(numpy arrays and scalars, pypool_runtime.Array, user extensions, the
user's default hook), and both accept values nested as deep as msgpack
>= 1.2 does: with msgpack 1.0, whose C packer stops at 511 levels, values
nested deeper are packed by the pure codec (on that error path only).

The module-level names (NAME, packb, unpackb, Unpacker, ExtType, PURE) are
the automatic choice, made at their first use; load() gives a codec by
name, so the worker can be forced to the pure codec (``--codec pure``).
Neither codec is imported with this module. The worker finds the one it
runs before the user's paths are on sys.path; the C codec it loads later
(load with defer=True, deferred): its HELLO and its first calls are encoded
and decoded by the pure codec (purecodec.py, 1 ms to import), which puts
the same bytes on the wire, and msgpack (with collections and datetime, 5-6
ms of every start) is loaded once the worker is idle, after a few frames,
or at the first value the pure codec would decode otherwise, through
stdlib's guarded import. Without the C codec, the pure codec is the codec
from the start. The pure codec's module (datetime at its first use) is
imported otherwise only when it runs, or, with the C codec loaded at once,
at the first value only it encodes (nested deeper than msgpack 1.0 packs)
or the first unencodable value's detail (pure_module).

Below them are the byte-level shortcuts the worker takes on its hot paths,
the same whichever codec is chosen: bytes_result_head (with bin_header)
encodes a RESULT around a bytes value that is then written without being
copied.
"""

from __future__ import annotations

import _thread  # built in
import os
import struct
import sys
from os import write as os_write  # bound before the user's module runs (as frames.py's)

from . import CALL, RESULT, ext, stdlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Callable, Dict, List, Optional, Tuple, Union

C_NAME = "msgpack-c"
PURE_NAME = "pure"  # purecodec.NAME


class Codec:
    """A codec's entry points.

    name is "msgpack-c" or "pure"; packb(obj) -> bytes and unpackb(data) ->
    obj use the options fixed by the protocol; Unpacker() makes an incremental
    decoder with the same options (feed, read_array_header, unpack, skip);
    ExtType is the class of ext values other than timestamps.

    The worker's hot paths: decode_call(body) -> (id, name, args) of an
    ordinary CALL frame (no keyword arguments), or None for any other frame,
    which then takes the general path (purecodec.decode_call, _load_c's);
    decode_call_context(body) -> (id, name, args, context) of an ordinary
    CALL frame that carries the call's context (its sixth element, a map:
    callctx.py; decoded, or its bytes for callctx to decode when asked),
    or None, as decode_call does for the others;
    result_frame(id, value) -> the whole frame of [RESULT, id, value],
    length included, as bytes or, when large, as two parts to write in turn
    (see purecodec.result_frame).

    finish is None for a codec that is loaded. A worker's C codec is
    loaded later (load with defer=True, deferred): until then, finish is
    the function that loads it (at once, when called), name is already the
    codec's, ExtType is None, and the other entry points are the pure
    codec's, which load the codec for the values where the two would differ
    (then answer with it). finish then sets every entry point to the loaded
    codec's, in place; what bound them before keeps working, one call
    deeper, until it binds them again.

    A plain class: collections.namedtuple would cost a few ms of import at
    every worker start."""

    __slots__ = ("name", "packb", "unpackb", "Unpacker", "ExtType", "decode_call", "result_frame", "decode_call_context", "finish")

    def __init__(
        self,
        name: str,
        packb: Callable[[Any], bytes],
        unpackb: Callable[..., Any],
        Unpacker: Callable[..., Any],
        ExtType: Any,
        decode_call: Callable[[Any], Any],
        result_frame: Callable[[int, Any], Any],
        decode_call_context: Optional[Callable[[Any], Any]] = None,
        finish: Optional[Callable[[], None]] = None,
    ) -> None:
        self.name = name
        self.finish = finish
        self.packb = packb
        self.unpackb = unpackb
        self.Unpacker = Unpacker
        self.ExtType = ExtType
        self.decode_call = decode_call
        self.result_frame = result_frame
        self.decode_call_context = decode_call_context or _call_with_context(unpackb)


def _call_with_context(unpackb: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The decode_call_context of a codec whose unpackb is unpackb: the whole
    frame decoded at once, as the general path would, then checked as
    decode_call checks a CALL without one."""

    def decode_call_context(body: Union[bytes, memoryview]) -> Optional[Tuple[int, str, List[Any], Dict[str, Any]]]:
        try:
            if body[0] != 0x96 or body[1] != CALL:
                return None
            _, call_id, name, args, kwargs, context = unpackb(body)
        except Exception:  # undecodable: the general path tells what is wrong
            return None
        if kwargs is None and type(args) is list and type(name) is str and type(call_id) is int and call_id >= 0 and type(context) is dict:
            return (call_id, name, args, context)
        return None

    return decode_call_context


JOIN_LIMIT = 64 << 10  # purecodec.JOIN_LIMIT (test_codec checks they agree)
_pack_I = struct.Struct(">I").pack


# The pure codec's module, configured by pure_module; msgpack's ExtType and
# Timestamp once the C codec is loaded.
_purecodec: Any = None
_msgpack_types: Any = None


def pure_module() -> Any:
    """The pure codec's module (purecodec.py), imported at its first use
    (stdlib.runtime_module: its own imports, datetime, come from the
    interpreter's entries) and given the hooks the C codec takes in _load_c,
    built for its own ExtType, and, when the C codec is loaded, msgpack's
    own ext classes to encode as the C packer does."""
    global _purecodec
    if _purecodec is None:
        module = stdlib.runtime_module("purecodec")

        def unknown_ext(code: int, data: bytes) -> Any:
            if _standing_in and _thread.get_ident() in _standing_in:  # for a deferred codec: its own ExtType
                raise _NeedsLoadedCodec
            return module.ExtType(code, data)

        module.set_hooks(ext.default_for(module.ExtType), ext.ext_hook_for(unknown_ext))  # type: ignore[arg-type]
        if _msgpack_types is not None:
            module.pack_msgpack_types(*_msgpack_types)
        _purecodec = module
    return _purecodec


_pure: Any = None


def _pure_codec() -> Codec:
    """The pure codec (PURE), made at its first use."""
    global _pure
    if _pure is None:
        m = pure_module()
        _pure = Codec(
            PURE_NAME, m.packb, m.unpackb, m.Unpacker, m.ExtType, m.decode_call, m.result_frame, m.decode_call_context,
        )  # fmt: skip
    return _pure


# What the C packer raises for values nested deeper than its limit.
_TOO_DEEP = "recursion limit exceeded."


def _too_deep(exc: ValueError) -> bool:
    return exc.args == (_TOO_DEEP,)


def _load_c() -> Codec:
    """The msgpack C extension, or ImportError when it is missing or too old."""
    global _msgpack_types
    # The standard msgpack, with the standard modules it imports, also after
    # the user's paths are on sys.path and the user's code ran (deferred).
    msgpack = stdlib.import_set_aside("msgpack")

    if msgpack.version < (1, 0, 0):
        raise ImportError("msgpack %s is older than 1.0" % (msgpack.version,))
    # Imported directly, so that a pure-Python msgpack (MSGPACK_PUREPYTHON,
    # or a build without the extension) never passes for the C one.
    from msgpack import _cmsgpack

    default = ext.default_for(msgpack.ExtType)
    # The pure packer, which takes the values too deep for msgpack 1.0, must
    # encode msgpack's own ext classes as the C packer does.
    _msgpack_types = (msgpack.ExtType, msgpack.Timestamp)
    if _purecodec is not None:
        _purecodec.pack_msgpack_types(*_msgpack_types)

    def packb(obj: Any) -> bytes:
        # A Packer per call, as msgpack.packb does: Packers hold a buffer and
        # are not safe to share between threads.
        try:
            return _cmsgpack.Packer(use_bin_type=True, datetime=True, default=default).pack(obj)
        except ValueError as exc:
            if not _too_deep(exc):
                raise
        return pure_module().packb(obj)

    # The options fixed by the protocol that are not the C Unpacker's defaults
    # (raw=False and use_list=True are).
    unpack_options = dict(strict_map_key=False, timestamp=3, ext_hook=ext.ext_hook_for(msgpack.ExtType))
    c_unpackb, c_unpacker = _cmsgpack.unpackb, _cmsgpack.Unpacker

    def unpackb(data: Any) -> Any:
        return c_unpackb(data, **unpack_options)

    def unpacker(**options: Any) -> Any:
        # max_buffer_size=0 lifts the 100 MiB default: a frame is bounded by --max-message.
        return c_unpacker(max_buffer_size=0, **unpack_options, **options)

    def decode_call(body: Union[bytes, memoryview]) -> Optional[Tuple[int, str, List[Any]]]:
        # The whole frame in one call of the C unpacker (a trivial call's
        # head parsed in Python, then its arguments unpacked, took twice as
        # long); its first and last bytes first, so that the frames of the
        # general path (keyword arguments, a STREAM) are not decoded twice.
        try:
            if body[0] != 0x95 or body[1] != CALL or body[-1] != 0xC0:
                return None
            _, call_id, name, args, kwargs = c_unpackb(body, **unpack_options)
        except Exception:  # short, undecodable: the general path tells what is wrong
            return None
        if kwargs is None and type(args) is list and type(name) is str and type(call_id) is int and call_id >= 0:
            return (call_id, name, args)
        return None

    # One Packer for the replies: only the worker's main thread uses it.
    # Packer.pack resets the Packer's buffer on errors too.
    pack_reply = _cmsgpack.Packer(use_bin_type=True, datetime=True, default=default).pack

    def result_frame(call_id: int, value: Any) -> Union[bytes, Tuple[bytes, Any]]:
        cls = type(value)
        if cls is bytes and call_id <= 0xFFFFFFFF:
            # The frame's start, then the bytes in one copy (through the
            # Packer they were copied three times: into its buffer, out of
            # it, behind the length).
            n = len(value)
            if n <= 0xFF:
                head, size = _pack_B_B(0xC4, n), n + 2
            elif n <= 0xFFFF:
                head, size = _pack_B_H(0xC5, n), n + 3
            elif n > JOIN_LIMIT:
                return _bytes_result_parts(call_id, value)
            else:
                head, size = _pack_B_I(0xC6, n), n + 5
            if call_id < 0x80:
                return _pack_frame_fixint(size + 3, 0x93, RESULT, call_id) + head + value
            if call_id <= 0xFF:
                return _pack_frame_u8(size + 4, 0x93, RESULT, 0xCC, call_id) + head + value
            if call_id <= 0xFFFF:
                return _pack_frame_u16(size + 5, 0x93, RESULT, 0xCD, call_id) + head + value
            return _pack_frame_u32(size + 7, 0x93, RESULT, 0xCE, call_id) + head + value
        if cls is bytearray and len(value) > JOIN_LIMIT:
            return _bytes_result_parts(call_id, value)
        try:
            body = pack_reply([RESULT, call_id, value])
        except ValueError as exc:
            if not _too_deep(exc):
                raise
            return pure_module().result_frame(call_id, value)
        size = len(body)
        if size <= JOIN_LIMIT:
            return _pack_I(size) + body
        return _pack_I(size), body

    return Codec(C_NAME, packb, unpackb, unpacker, msgpack.ExtType, decode_call, result_frame)


def load(name: str = "auto", defer: bool = False) -> Codec:
    """Return the codec called name: "auto" (C extension if importable, else
    pure), "pure", or "msgpack-c" (ImportError when unavailable). With
    defer (the worker's start), "auto" gives the C codec loaded later, when
    msgpack's C extension is found among sys.path's entries, without
    importing it (so, before the user's paths are on sys.path: the
    interpreter's own): the pure codec stands in for it until then
    (deferred), so that HELLO and the first calls do not wait for msgpack's
    import (5-6 ms); the pure codec otherwise."""
    if defer and name == "auto":
        return deferred(C_NAME, _load_c) if _c_extension_found() else _pure_codec()
    if name == PURE_NAME:
        return _pure_codec()
    if name == C_NAME:
        return _load_c()
    if name == "auto":
        try:
            return _load_c()
        except Exception:  # missing, too old, or broken: the pure codec always works
            return _pure_codec()
    raise ValueError("unknown codec %r: use auto, %s or %s" % (name, PURE_NAME, C_NAME))


_default: Any = None
_DEFAULT_NAMES = {"NAME": "name", "packb": "packb", "unpackb": "unpackb", "Unpacker": "Unpacker", "ExtType": "ExtType"}


def __getattr__(name: str) -> Any:
    # NAME, packb, ... of the automatic choice, and PURE, made at their
    # first use (PEP 562): importing this module imports no codec.
    global _default
    if name == "PURE":
        return _pure_codec()
    if name in _DEFAULT_NAMES:
        if _default is None:
            _default = load()
        return getattr(_default, _DEFAULT_NAMES[name])
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


# -- Byte-level shortcuts -----------------------------------------------------

_pack_B_B = struct.Struct(">BB").pack
_pack_B_H = struct.Struct(">BH").pack
_pack_B_I = struct.Struct(">BI").pack
# A RESULT frame's start up to its value, by the id's encoding (as purecodec's).
_pack_frame_fixint = struct.Struct(">IBBB").pack  # frame length, fixarray 3, RESULT, id < 0x80
_pack_frame_u8 = struct.Struct(">IBBBB").pack  # ... 0xcc, id
_pack_frame_u16 = struct.Struct(">IBBBH").pack  # ... 0xcd, id
_pack_frame_u32 = struct.Struct(">IBBBI").pack  # ... 0xce, id


def bin_header(size: int) -> bytes:
    """The msgpack header of a bin value of size bytes, as packb writes it
    (bin 8, 16 or 32); struct.error above 2**32 - 1 bytes."""
    if size <= 0xFF:
        return _pack_B_B(0xC4, size)
    if size <= 0xFFFF:
        return _pack_B_H(0xC5, size)
    return _pack_B_I(0xC6, size)


def _bytes_result_parts(call_id: int, data: Union[bytes, bytearray]) -> Tuple[bytes, Union[bytes, bytearray]]:
    # A large bytes RESULT's frame in two parts: up to the data, and the data.
    if len(data) > 0xFFFFFFFF:  # as packb says it
        raise ValueError("%s object is too large" % type(data).__name__)
    head = bytes_result_head(call_id, len(data))
    return _pack_I(len(head) + len(data)) + head, data


def bytes_result_head(call_id: int, size: int) -> bytes:
    """The encoding of [RESULT, call_id, data] up to the bytes of data, a
    bytes value of size bytes: followed by data, it is exactly what packb
    writes for the whole message, so data can be sent without a copy."""
    # [RESULT, call_id, as packb writes them: a fixarray of 3, RESULT (a
    # positive fixint), call_id as the smallest uint.
    if 0 <= call_id <= 0x7F:
        head = _pack_B_B_B(0x93, RESULT, call_id)
    elif 0 <= call_id <= 0xFF:
        head = _pack_B_B_B_B(0x93, RESULT, 0xCC, call_id)
    elif 0 <= call_id <= 0xFFFF:
        head = _pack_B_B_B_H(0x93, RESULT, 0xCD, call_id)
    elif 0 <= call_id <= 0xFFFFFFFF:
        head = _pack_B_B_B_I(0x93, RESULT, 0xCE, call_id)
    elif 0 <= call_id <= 0xFFFFFFFFFFFFFFFF:
        head = _pack_B_B_B_Q(0x93, RESULT, 0xCF, call_id)
    else:  # not a call id Go sends
        head = pure_module().packb([RESULT, call_id, b""])[:-2]  # without the empty bin 8
    return head + bin_header(size)


_pack_B_B_B = struct.Struct(">BBB").pack
_pack_B_B_B_B = struct.Struct(">BBBB").pack
_pack_B_B_B_H = struct.Struct(">BBBH").pack
_pack_B_B_B_I = struct.Struct(">BBBI").pack
_pack_B_B_B_Q = struct.Struct(">BBBQ").pack


# -- The C codec loaded later (load with defer=True) --------------------------

# The most CALL frames the pure codec decodes for a deferred codec: it loads
# the codec at the next one, whatever serve loop calls it (serve.py's loads
# it sooner).
INTERIM_CALLS = 16

# The entry points finish sets to the loaded codec's.
_ENTRY_POINTS = ("name", "packb", "unpackb", "Unpacker", "ExtType", "decode_call", "result_frame", "decode_call_context")


class _NeedsLoadedCodec(Exception):
    """An ext value of a code that no extension decodes, met by the pure
    codec while it stands in for a codec not loaded yet: that codec's own
    ExtType class is what it decodes to."""


# The threads (by id) in which the pure codec decodes for a deferred codec
# (_standing_in_for): a thread of the user's that decodes meanwhile gets
# what it asked for.
_standing_in: Dict[int, bool] = {}


def _standing_in_for(decode: Callable[[Any], Any], data: Any) -> Any:
    thread = _thread.get_ident()
    if thread in _standing_in:  # nested: an extension's decoder that decodes
        return decode(data)
    _standing_in[thread] = True
    try:
        return decode(data)
    finally:
        del _standing_in[thread]


def deferred(name: str, loader: Callable[[], Codec]) -> Codec:
    """The codec name, loaded by loader() when codec.finish() is called (a
    worker calls it once idle or after a few frames; a fork server's
    template as it warms up). Until then the pure codec, which puts the
    same bytes on the wire, encodes and decodes for it, and loads it for a
    value it refuses (then the loaded codec answers, with its own error),
    for a value to encode once the user's code imported msgpack (its
    ExtType and Timestamp are the C codec's to encode), or for one it
    decodes to another class (an ext value of a code no extension decodes:
    the loaded codec's ExtType), and at the INTERIM_CALLS + 1st CALL frame.
    Should loader fail (a C extension that was found but does not load),
    the pure codec stays, with name "pure", and a line on stderr says so."""
    pure = _pure_codec()

    def finish() -> None:
        if codec.finish is None:
            return
        try:
            loaded = loader()
        except Exception as exc:
            loaded = pure
            line = "pypool worker: the %s codec did not load (%s: %s): the pure codec runs instead\n" % (name, type(exc).__name__, exc)
            try:
                sys.stderr.write(line)
            except Exception:  # the module replaced it (None, a closed file): fd 2 itself
                try:
                    os_write(2, line.encode("utf-8", "backslashreplace"))
                except OSError:
                    pass
        for entry in _ENTRY_POINTS:
            setattr(codec, entry, getattr(loaded, entry))
        codec.finish = None

    def encoder(pure_encode: Callable[..., Any], entry: str) -> Callable[..., Any]:
        # packb and result_frame (their value last): the pure codec's, but
        # for a value it refuses, a container too large for it, or once the
        # user's code imported msgpack; then the loaded codec's.
        def encode(*args: Any) -> Any:
            if codec.finish is not None and _large(args[-1]):
                finish()
            if codec.finish is not None and not _users_msgpack():
                try:
                    return pure_encode(*args)
                except Exception:
                    finish()
            return getattr(codec, entry)(*args)

        return encode

    def unpackb(data: Any) -> Any:
        if codec.finish is not None and len(data) > INTERIM_MAX_FRAME:
            finish()
        if codec.finish is not None:
            try:
                return _standing_in_for(pure.unpackb, data)
            except Exception:
                finish()
        return codec.unpackb(data)

    def unpacker(**options: Any) -> Any:
        finish()
        return codec.Unpacker(**options)

    calls = [0]

    def decode_call(body: Any) -> Optional[Tuple[int, str, List[Any]]]:
        if interim_call(body):
            # None for what it does not decode (unknown ext values too):
            # the general path (unpackb) then loads the codec.
            return _standing_in_for(pure.decode_call, body)
        return codec.decode_call(body)

    def decode_call_context(body: Any) -> Optional[Tuple[int, str, List[Any], Any]]:
        if interim_call(body):
            return _standing_in_for(pure.decode_call_context, body)
        return codec.decode_call_context(body)

    def interim_call(body: Any) -> bool:
        # Whether the pure codec decodes this CALL frame for the codec: not
        # after INTERIM_CALLS of them (a serve loop that never calls
        # finish), nor a large one (the pure codec decodes a list of a
        # million floats in about 0.4 s, msgpack-c in 0.1 plus its 6 ms of
        # import).
        if codec.finish is None:
            return False
        calls[0] += 1
        if calls[0] > INTERIM_CALLS or len(body) > INTERIM_MAX_FRAME:
            finish()
            return False
        return True

    def _users_msgpack() -> bool:
        # The user's code imported msgpack: its ExtType, a tuple, would be an
        # array to the pure packer until msgpack's classes are known to it
        # (pack_msgpack_types, as the C codec loads). Then finish, first.
        if _msgpack_types is None and "msgpack" in sys.modules:
            finish()
            return True
        return False

    codec = Codec(name, encoder(pure.packb, "packb"), unpackb, unpacker, None, decode_call, encoder(pure.result_frame, "result_frame"),
                  decode_call_context, finish)  # fmt: skip
    return codec


# The largest frame the pure codec decodes for a deferred codec, and the
# most elements of a list, tuple or dict it encodes for one: larger ones
# load the codec first, whose import (about 6 ms) is then the smaller cost.
INTERIM_MAX_FRAME = 64 << 10
INTERIM_MAX_ITEMS = 1024


def _large(value: Any) -> bool:
    """Whether value is a container too large for the pure codec to encode
    while it stands in (INTERIM_MAX_ITEMS)."""
    cls = type(value)
    return (cls is list or cls is tuple or cls is dict) and len(value) > INTERIM_MAX_ITEMS


def _c_extension_found() -> bool:
    """Whether msgpack's C extension (msgpack/_cmsgpack, which msgpack >= 1.0
    has) is among sys.path's entries, looked up without importing msgpack."""
    import _imp  # built in, loaded by the interpreter's start

    spec = stdlib._path_finder().find_spec("msgpack", [p for p in sys.path if p])
    locations = getattr(spec, "submodule_search_locations", None) if spec is not None else None
    if not locations:
        return False
    for location in locations:
        for suffix in _imp.extension_suffixes():
            try:
                os.stat(os.path.join(location, "_cmsgpack" + suffix))
                return True
            except OSError:
                pass
    return False


# -- Where a value cannot be encoded (error path only) ---------------------------


def find_unencodable(value: Any, root: str = "result") -> Optional[Tuple[str, Any, Exception]]:
    """(path, element, error) of the first element of value, in the order the
    codecs encode (items in order, a key before its value), that the codecs
    refuse on its own, hooks included (an element a hook encodes is not the
    one; an ndarray of an unsupported dtype is): path is a Python expression from "result", as
    "result['items'][1]['score']" ("a key of result[2]" for a dict key),
    and error what packing the element alone raises. None when every element
    is encodable on its own (the value is then too deep, or cyclic: depth
    limits are not looked at). root names value in the path ("args" for
    call_go's arguments). For the error path: it walks the whole value."""
    purecodec = pure_module()
    ext_type = purecodec.ExtType
    seen = set()
    stack = [iter(((root, value),))]
    while stack:
        for path, item in stack[-1]:
            break
        else:
            stack.pop()
            continue
        cls = type(item)
        # Subclasses as the codecs see them: a dict's are maps, a list's or
        # a tuple's arrays, except ExtType (a tuple).
        if isinstance(item, dict):
            children = _map_children(item, path)
        elif isinstance(item, (list, tuple)) and not isinstance(item, ext_type):
            children = _array_children(item, path)
        else:
            if (cls is bytes or cls is bytearray) and len(item) <= 0xFFFFFFFF:
                continue  # no need to copy it to know
            try:
                purecodec.packb(item)
            except Exception as exc:
                return path, item, exc
            continue
        if id(item) not in seen:  # a container met again (a cycle, or shared) was checked already
            seen.add(id(item))
            stack.append(children)
    return None


def _array_children(items: Any, path: str) -> Any:
    if path.startswith("a key of "):  # inside a tuple key: the key is the place
        for item in items:
            yield path, item
        return
    for i, item in enumerate(items):
        yield "%s[%d]" % (path, i), item


def _map_children(mapping: Any, path: str) -> Any:
    for key, item in mapping.items():
        yield "a key of " + path, key
        text = repr(key)
        if len(text) > 60:
            text = text[:57] + "..."
        yield "%s[%s]" % (path, text), item
