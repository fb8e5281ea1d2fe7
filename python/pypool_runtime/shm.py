"""The memory shared with Go for large payloads (Go's side: shm.go).

Go passes an anonymous memory file (a memfd, sealed against shrinking) as
file descriptor --shm-fd. A large bytes value or array then crosses as a
reference to it instead of through the pipes:

    ext 126 SHM_BYTES  [offset, length]                 -> bytes
    ext 125 SHM_ARRAY  [dtype, shape, offset, length]   -> an array (see ext.py)

Within a call, Go's values start at offset 0; this side writes the reply's
values after the end of the call's (aligned to 64 bytes), so that a result
made from an argument never overwrites it. What a function receives is a
copy (bytes, or an array that owns its data), never a view of this memory,
so nothing the user keeps changes under it at the next call.
"""

from __future__ import annotations

import os
import struct

from . import RESULT, stdlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Dict, Optional, Tuple, Union

    Buffer = Union[bytes, bytearray, memoryview]

EXT_SHM_ARRAY = 125
EXT_SHM_BYTES = 126

ALIGN = 64
GROW_STEP = 1 << 20


_pack_I = struct.Struct(">I").pack


class ReplyTooLarge(ValueError):
    """A reply's values do not fit: more than --max-message, or beyond the
    shared memory's limit. The worker answers message_too_large."""


def _align(n: int, to: int) -> int:
    return (n + to - 1) & ~(to - 1)


class SharedMemory:
    """One worker's end of the shared memory. threshold is the size from
    which a reply's bytes and arrays go through it; limit bounds the file's
    size (as on the Go side: twice --max-message, plus slack); max_message
    bounds one reply's values in it."""

    def __init__(self, fd: int, threshold: int, limit: int, max_message: int = 0) -> None:
        self.fd = fd
        self.threshold = threshold
        self.limit = limit
        # The most one reply may carry in it, as in its frame (--max-message).
        self.max_message = max_message or limit
        self._map: Any = None  # an mmap.mmap
        self._view: Optional[memoryview] = None
        self._size = 0
        self._args_end = 0  # end of the current call's values from Go
        self.used = 0  # end of the reply's values written so far; 0 while the reply has put none
        # The bytes objects read for the current call, by id: (object,
        # offset, length). A result that is one of them is sent back as a
        # reference to where it already is (see bytes_ref).
        self._received: Dict[int, Tuple[bytes, int, int]] = {}

    def begin_call(self) -> None:
        """Forget the last call's values: a new call's frame arrived."""
        self._args_end = 0
        self.used = 0
        if self._received:
            self._received = {}

    def view(self, offset: int, length: int) -> memoryview:
        """The bytes a reference from Go points to, checked against the limit
        and the file's size. The view is only valid until the next remap:
        callers copy it at once."""
        end = offset + length
        if offset < 0 or length < 0 or end > self.limit:
            raise ValueError("a shared-memory reference [%d, +%d) beyond the limit of %d bytes" % (offset, length, self.limit))
        if end > self._size:
            size = os.fstat(self.fd).st_size
            if end > size:
                raise ValueError("a shared-memory reference ends at %d, beyond the memory's %d bytes" % (end, size))
            self._remap(size, end)
        if end > self._args_end:
            self._args_end = end
        assert self._view is not None
        return self._view[offset:end]

    def read_bytes(self, offset: int, length: int) -> bytes:
        """A copy of the bytes at [offset, offset+length)."""
        data = self.view(offset, length).tobytes()
        self._received[id(data)] = (data, offset, length)
        return data

    def put(self, data: Buffer) -> int:
        """Copy data after the call's and the reply's values so far; return
        its offset. ValueError when it would take the file past the limit."""
        start = _align(max(self.used, self._args_end), ALIGN)
        n = memoryview(data).nbytes
        end = start + n
        if end - _align(self._args_end, ALIGN) > self.max_message:
            raise ReplyTooLarge("the reply's values take more than %d bytes (Config.MaxMessageSize)" % self.max_message)
        if end > self.limit:
            raise ReplyTooLarge(
                "the reply needs %d bytes of shared memory, more than its limit of %d (twice Config.MaxMessageSize)" % (end, self.limit)
            )
        if end > self._size:
            self._grow(end)
        assert self._view is not None
        self._view[start:end] = memoryview(data).cast("B")
        self.used = end
        return start

    def _grow(self, need: int) -> None:
        size = max(_align(need, GROW_STEP), min(2 * self._size, self.limit))
        current = os.fstat(self.fd).st_size
        if current < size:
            os.ftruncate(self.fd, size)
        else:
            size = current  # Go grew it already: map all of it
        self._remap(size, need)

    def _remap(self, size: int, need: int) -> None:
        """Map size bytes of the file, or, when the address space has no
        room for them (Config.Limits.AddressSpace), the need bytes the
        value at hand takes; MemoryError when not even those fit. A failed
        mapping leaves none: the next use maps again, where before it kept
        the old size without a mapping, and every later call through the
        shared memory failed (an AssertionError) until the worker ended."""
        # The old mapping is dropped, not closed: a view of it may still be
        # referenced, and closing an exported mmap raises BufferError.
        self._view = None
        self._map = None
        self._size = 0
        # mmap is imported at the first mapping (only a worker with shared
        # memory maps), from the interpreter's own entries.
        mmap = stdlib.import_module("mmap")
        lengths = [size]
        if _align(need, GROW_STEP) < size:
            lengths.append(_align(need, GROW_STEP))
        for length in lengths:
            try:
                self._map = mmap.mmap(self.fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
                break
            except OSError as exc:
                if exc.errno != stdlib.import_module("errno").ENOMEM:
                    raise
                if length == lengths[-1]:
                    raise MemoryError("cannot map %d bytes of the memory shared with Go: %s" % (length, exc)) from None
        self._view = memoryview(self._map)
        self._size = length


    def bytes_ref(self, data: Buffer) -> bytes:
        """The ext payload of SHM_BYTES for data: where it already is when
        it is a bytes object this call received (bytes do not change, and
        nothing is written over the call's values before Go reads the
        reply), else where put copies it."""
        received = self._received.get(id(data))
        if received is not None and received[0] is data:
            return _pure().packb([received[1], received[2]])
        return _pure().packb([self.put(data), memoryview(data).nbytes])

    def reply_bytes(self) -> int:
        """How many bytes of shared memory the reply uses so far."""
        return max(self.used - _align(self._args_end, ALIGN), 0)


def bytes_result_frame(mem: SharedMemory, call_id: int, data: Buffer) -> bytes:
    """The whole frame (length included) of a RESULT whose value is the
    large bytes-like data, which goes into the shared memory."""
    purecodec = _pure()
    body = purecodec.packb([RESULT, call_id, purecodec.ExtType(EXT_SHM_BYTES, mem.bytes_ref(data))])
    return _pack_I(len(body)) + body


def _pure() -> Any:
    """The pure codec's module, imported at its first use: it packs the
    small plain values of SHM_BYTES references, with either codec."""
    return stdlib.runtime_module("purecodec")


# The worker's shared memory, when Go gave it one (set by startup.open_shared_memory).
ACTIVE: Optional[SharedMemory] = None
