"""Chooses the msgpack codec: the msgpack C extension when it is importable
(msgpack >= 1.0), the pure-Python codec otherwise. Both encode and decode
identically; the C extension is just faster.

The module-level names are the automatic choice; load() gives a codec by name,
so the worker can be forced to the pure codec (``--codec pure``).
"""

from __future__ import annotations

import collections
import functools

from . import purecodec

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any

C_NAME = "msgpack-c"
PURE_NAME = purecodec.NAME


class Codec(collections.namedtuple("Codec", "name packb unpackb Unpacker ExtType")):
    """A codec's entry points.

    name is "msgpack-c" or "pure"; packb(obj) -> bytes and unpackb(data) ->
    obj use the options fixed by the protocol; Unpacker() makes an incremental
    decoder with the same options (feed, read_array_header, unpack, skip);
    ExtType is the class of ext values other than timestamps."""

    __slots__ = ()


PURE = Codec(PURE_NAME, purecodec.packb, purecodec.unpackb, purecodec.Unpacker, purecodec.ExtType)


def _load_c() -> Codec:
    """The msgpack C extension, or ImportError when it is missing or too old."""
    import msgpack

    if msgpack.version < (1, 0, 0):
        raise ImportError("msgpack %s is older than 1.0" % (msgpack.version,))
    # Imported directly, so that a pure-Python msgpack (MSGPACK_PUREPYTHON,
    # or a build without the extension) never passes for the C one.
    from msgpack import _cmsgpack

    def packb(obj: Any) -> bytes:
        # A Packer per call, as msgpack.packb does: Packers hold a buffer and
        # are not safe to share between threads.
        return _cmsgpack.Packer(use_bin_type=True, datetime=True).pack(obj)

    unpack_options = dict(raw=False, strict_map_key=False, timestamp=3, use_list=True)
    unpackb = functools.partial(_cmsgpack.unpackb, **unpack_options)
    # max_buffer_size=0 lifts the 100 MiB default: a frame is bounded by --max-message.
    unpacker = functools.partial(_cmsgpack.Unpacker, max_buffer_size=0, **unpack_options)
    return Codec(C_NAME, packb, unpackb, unpacker, msgpack.ExtType)


def load(name: str = "auto") -> Codec:
    """Return the codec called name: "auto" (C extension if importable, else
    pure), "pure", or "msgpack-c" (ImportError when unavailable)."""
    if name == PURE_NAME:
        return PURE
    if name == C_NAME:
        return _load_c()
    if name == "auto":
        try:
            return _load_c()
        except Exception:  # missing, too old, or broken: the pure codec always works
            return PURE
    raise ValueError("unknown codec %r: use auto, %s or %s" % (name, PURE_NAME, C_NAME))


_default = load()
NAME = _default.name
packb = _default.packb
unpackb = _default.unpackb
Unpacker = _default.Unpacker
ExtType = _default.ExtType
