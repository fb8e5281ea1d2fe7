"""Frames: the length-prefixed messages on the protocol's descriptors.

A frame is a 4-byte big-endian length, then that many bytes of msgpack (the
message kinds are in worker.py's docstring). FrameReader reads them from Go's
pipe without losing their boundaries; write_frame, write_frame_bytes and
write_all write them, looping over partial writes. ProtocolViolation is what
a reader (or the serve loop) raises when Go sends what the protocol does not
allow. This module knows nothing of the messages inside the frames.
"""

from __future__ import annotations

import io
import struct

# Bound here, at the runtime's import, not looked up at each write: a module
# that replaces os.write or os.writev (a test double, a sandbox) must not
# take the protocol's replies with it.
from os import write as os_write
from os import writev as os_writev

from .codec import JOIN_LIMIT

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import List, Union

HEADER = struct.Struct(">I")
_unpack_header = HEADER.unpack_from
# Frames up to this size are read through one buffer, normally with one read
# per frame; larger bodies are read straight into a buffer of their own.
READ_BUFFER_SIZE = 64 << 10


class ProtocolViolation(Exception):
    """Go sent something this protocol does not allow."""


class FrameReader:
    """Reads frames from a pipe without losing their boundaries."""

    def __init__(self, fd: int, max_message: int) -> None:
        # FileIO.readinto is one read(2), retried on EINTR (PEP 475).
        self._file = io.FileIO(fd, "rb", closefd=False)
        self._readinto = self._file.readinto
        self._buf = bytearray(READ_BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._start = 0  # unread bytes are _buf[_start:_end]
        self._end = 0
        self._max_message = max_message
        self._big = bytearray()

    def _fill(self, need: int) -> bool:
        """Make need <= len(_buf) bytes available at _start; False at end of input."""
        if self._start + need > len(self._buf):
            # Move the unread bytes to the front (through a copy: they may overlap).
            unread = self._buf[self._start : self._end]
            self._buf[: len(unread)] = unread
            self._start, self._end = 0, len(unread)
        while self._end - self._start < need:
            got = self._file.readinto(self._view[self._end :])
            if not got:
                return False
            self._end += got
        return True

    def buffered(self) -> bool:
        """Whether bytes of a next frame have been read already."""
        return self._end > self._start

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self) -> Union[bytes, memoryview, None]:
        """The next frame's body, or None at the end of input between frames."""
        # The usual case first: a small frame that is already in the buffer
        # or, when the buffer is empty, arrives with a single read.
        start = self._start
        end = self._end
        if start == end:
            end = self._readinto(self._view)
            if not end:
                self._start = self._end = 0
                return None
            start = 0
        if end - start >= 4:
            stop = start + 4 + _unpack_header(self._buf, start)[0]
            if stop <= end and stop - start - 4 <= self._max_message:
                self._start = stop
                self._end = end
                return self._view[start + 4 : stop].tobytes()
        self._start = start
        self._end = end
        return self._read_slow()

    def _read_slow(self) -> Union[bytes, memoryview, None]:
        if self._start == self._end:
            self._start = self._end = 0
        if not self._fill(HEADER.size):
            if self._start == self._end:
                return None
            raise ProtocolViolation("the input ended inside a frame header")
        (size,) = HEADER.unpack_from(self._buf, self._start)
        if size > self._max_message:
            raise ProtocolViolation("a %d-byte frame exceeds --max-message %d" % (size, self._max_message))
        self._start += HEADER.size
        if size <= len(self._buf):
            if not self._fill(size):
                raise ProtocolViolation("the input ended inside a %d-byte frame" % size)
            start = self._start
            self._start = start + size
            return self._view[start : start + size].tobytes()
        # Large bodies are read into one buffer kept for the next large frame:
        # a fresh one would cost its zeroing and page faults every time. The
        # codec copies what it keeps out of it.
        if len(self._big) < size:
            self._big = bytearray(size)
        view = memoryview(self._big)[:size]
        have = self._end - self._start
        view[:have] = self._view[self._start : self._end]
        self._start = self._end = 0
        while have < size:
            got = self._file.readinto(view[have:])
            if not got:
                raise ProtocolViolation("the input ended inside a %d-byte frame" % size)
            have += got
        return view


def write_frame(fd: int, body: bytes) -> None:
    """Write one frame, looping over partial writes (a signal may cut a long one).
    Bodies up to codec.JOIN_LIMIT are joined to their header and written with
    one write(); larger ones with writev(), so that they are not copied."""
    header = HEADER.pack(len(body))
    if len(body) <= JOIN_LIMIT:
        data = header + body
        written = os_write(fd, data)
        if written < len(data):
            write_all(fd, [memoryview(data)[written:]])
    else:
        write_all(fd, [memoryview(header), memoryview(body)])


def write_frame_bytes(fd: int, frame: bytes) -> None:
    """Write a whole frame, length included."""
    written = os_write(fd, frame)
    if written < len(frame):  # a signal cut the write short
        write_all(fd, [memoryview(frame)[written:]])


def write_all(fd: int, parts: List[memoryview]) -> None:
    """Write parts in order with writev(), looping over partial writes."""
    while parts:
        written = os_writev(fd, parts)
        while parts and written >= len(parts[0]):
            written -= len(parts[0])
            parts.pop(0)
        if parts:
            parts[0] = parts[0][written:]
