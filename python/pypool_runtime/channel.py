"""The channel: the worker's side of the conversation with Go, as the code
that serves more than a plain call uses it (stream.py, callback.py).

A Channel sends and reads frames on the protocol's descriptors, encodes and
decodes with the worker's codec, waits for input (interruptibly, through the
interrupt state), and keeps the bookkeeping of what is in progress inside a
call: the streams (innermost last) and the call_go calls waiting for Go.
It also answers for the serve loop what a stream or a callback needs of it
(look a function up, answer with an error, serve a nested call): serve.Worker,
the one subclass, implements those.

CURRENT is the channel of the worker that serves calls (None before it
serves): call_go and a stream's linger alarm reach it there.

This module imports no other module of the runtime's that could import it
back: stream.py, callback.py and serve.py all depend on it, never the other
way round.
"""

from __future__ import annotations

from select import select  # bound before the user's module runs (as frames.py's os_write)

from . import CB_ERROR, CB_RESULT, CLOSE, CREDIT
from .frames import FrameReader, ProtocolViolation, write_frame
from .interrupt import STATE, Interrupts

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

    from .codec import Codec


class Channel:
    """The worker's connection to Go during a call.

    codec: the worker's codec; packb and unpackb are its encoder and
    decoder, max_message the largest frame body either side may send.
    interrupts: the process's interrupt state (interrupt.STATE).
    streams: the streams in progress, innermost last (stream.StreamState).
    callback_seq: the last call_go's sequence number; callbacks_waiting: the
    call_go calls waiting for Go's answer, awaited their sequence numbers;
    answered: the answers to those calls that a wait nested in them read
    (control), by sequence number, for their own wait to take."""

    def __init__(self, codec: Codec, reader: FrameReader, out_fd: int, max_message: int) -> None:
        self.codec = codec
        self.packb = codec.packb
        self.unpackb = codec.unpackb
        self.reader = reader
        self.out_fd = out_fd
        self.max_message = max_message
        self.interrupts: Interrupts = STATE
        self.streams: List[Any] = []
        self.callback_seq = 0
        self.callbacks_waiting = 0
        self.awaited: Set[int] = set()
        self.answered: Dict[int, List[Any]] = {}

    # -- Frames --------------------------------------------------------------

    def send(self, body: bytes) -> None:
        """Send one frame whose body (encoded already) is body."""
        write_frame(self.out_fd, body)

    def send_message(self, message: List[Any]) -> None:
        """Send one message of the runtime's own (no user values in it)."""
        write_frame(self.out_fd, self.packb(message))

    def read_message(self) -> Union[bytes, memoryview]:
        """The next frame's body; BrokenPipeError at the end of input."""
        body = self.reader.read()
        if body is None:
            raise BrokenPipeError("Go closed the worker's input during a call")
        return body

    def decode(self, body: Union[bytes, memoryview]) -> List[Any]:
        """A frame's message; ProtocolViolation unless it is an array that
        starts with an integer kind."""
        message = self.unpackb(body)
        if type(message) is not list or not message or type(message[0]) is not int:
            raise ProtocolViolation("a frame is not an array that starts with an integer kind")
        return message

    def frame_head(self, body: Union[bytes, bytearray, memoryview], count: int) -> Optional[Tuple[int, List[Any]]]:
        """The length of a frame's array and its first count values, decoded
        without the rest (which may not decode); None when even those do
        not decode. ProtocolViolation unless the first is an integer kind."""
        unpacker = self.codec.Unpacker()
        unpacker.feed(bytes(body))
        try:
            length = unpacker.read_array_header()
            head = [unpacker.unpack() for _ in range(min(length, count))]
        except Exception:
            return None
        if not head or type(head[0]) is not int:
            raise ProtocolViolation("a frame is not an array that starts with an integer kind")
        return length, head

    def wait_input(self) -> None:
        """Wait until a frame can be read; SIGINT interrupts the wait
        (KeyboardInterrupt), also one that came while the runtime was busy."""
        if self.reader.buffered():
            return
        self.interrupts.wait_readable(self.reader.fileno())

    def input_waiting(self) -> bool:
        """Whether a frame from Go waits to be read, without blocking."""
        if self.reader.buffered():
            return True
        return bool(select([self.reader.fileno()], [], [], 0)[0])

    def control(self, message: List[Any]) -> None:
        """Take a message that flows while a call runs, outside of the wait
        that expects it: credit or a close for a stream in progress; the
        answer to a call_go that still waits, below the one that read it
        (Go answers them as it pleases when it cuts a call off), kept for
        it; else a late answer (its stream or callback is over), which is
        dropped."""
        kind = message[0]
        if kind == CREDIT or kind == CLOSE:
            if len(message) != (3 if kind == CREDIT else 2):
                raise ProtocolViolation("a CREDIT or CLOSE frame has %d fields" % len(message))
            for state in self.streams:
                if state.call_id == message[1]:
                    if kind == CLOSE:
                        state.closing = True
                    elif type(message[2]) is int and message[2] > 0:
                        state.credit += message[2]
                    else:
                        raise ProtocolViolation("a CREDIT frame's count is not a positive integer")
            return
        if kind == CB_RESULT or kind == CB_ERROR:
            if len(message) >= 2 and message[1] in self.awaited:
                self.answered[message[1]] = message
            return
        raise ProtocolViolation("unexpected message kind %d" % kind)

    # -- Answered by the serve loop (serve.Worker) ----------------------------

    def function(self, name: str) -> Optional[Callable[..., Any]]:
        """The function Go may call as name, or None."""
        raise NotImplementedError

    def not_found(self, name: str) -> str:
        """Why name cannot be called: the message of function_not_found."""
        raise NotImplementedError

    def handle(self, body: Union[bytes, memoryview]) -> None:
        """Serve one CALL or STREAM frame (a nested call) and answer it."""
        raise NotImplementedError

    def send_error(self, call_id: int, code: str, type_: str, message: str, tb: str = "", hint: str = "") -> None:
        """End call call_id with an ERROR frame; hint, if any, says how to
        fix the error (PythonError.Hint)."""
        raise NotImplementedError

    def send_exception(self, call_id: int, exc: BaseException) -> None:
        """End call call_id with the ERROR frame of exc (code interrupted for
        a KeyboardInterrupt, else exception)."""
        raise NotImplementedError


# The channel of the worker that serves calls (serve.Worker.serve sets it).
CURRENT: Optional[Channel] = None
