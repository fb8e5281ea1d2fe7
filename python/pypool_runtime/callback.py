"""call_go: Python code calls a Go function of Config.Callbacks during a call.

    from pypool import call_go, GoError

    def greet(user_id):
        user = call_go("lookup_user", user_id)   # runs the Go function, returns its result
        return "Hello, %s" % user["name"]

call_go sends a CALLBACK frame and waits for Go's answer: CB_RESULT gives
the Go function's result, CB_ERROR raises GoError with the Go error's
message, its Go type (go_type, such as "*errors.errorString") and a code:
"error" (the function returned an error), "panic" (it panicked),
"not_found" (no such name; the message lists the registered ones),
"bad_arguments", "result_not_encodable", "call_ended" (the call's context
ended first, or the stream was closed) or "not_answered" (the call was cut
off while the Go function ran).

While it waits, Go may send a CALL or a STREAM: a call that the Go function
makes with its context (nested callbacks), which runs here and is answered
before call_go returns. SIGINT (the call cut off) interrupts the wait with
KeyboardInterrupt; the nested calls Go sent that were not read yet are then
answered "interrupted" without running (_refuse_unread_calls).

call_go works in the worker's main thread while a call from Go runs (the
function Go called, a generator it streams, or code they call); elsewhere
(at import, in Config.SetUp, in another thread, between calls) it raises
RuntimeError: there is no Go caller to run the function for. In a unit
test, under testing.fake_callbacks, Python fakes answer instead (_fake).
"""

from __future__ import annotations

import sys

from . import CALLBACK, CB_ERROR, CB_RESULT, CALL, STREAM, channel, shm
from .errors import not_encodable
from .frames import ProtocolViolation
from .interrupt import MAIN_THREAD, STATE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List

    from .channel import Channel


class GoError(Exception):
    """A Go callback failed: message is the Go error's text, go_type its Go
    type, code what happened (see the module's docstring)."""

    def __init__(self, message: str, code: str = "error", go_type: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.go_type = go_type

    def __str__(self) -> str:
        if self.go_type:
            return "%s (Go %s)" % (self.message, self.go_type)
        return self.message


# Named as user code imports it (from pypool import GoError): tracebacks and
# the Type of the *PythonError Go gets say pypool.GoError.
GoError.__module__ = "pypool"


# What call_go runs instead of calling Go, set by testing.fake_callbacks
# (a unit test outside a worker): fake(name, args); None in a worker.
_fake: Any = None


def call_go(name: str, *args: Any) -> Any:
    """Call the Go function registered as name in Config.Callbacks with args
    and return its result; GoError when it fails."""
    import _thread

    if type(name) is not str:
        raise TypeError("call_go() takes the Go callback's name as a str first, not %s" % type(name).__name__)
    if _fake is not None:  # pypool_runtime.testing.fake_callbacks: a unit test, no Go
        return _fake(name, args)
    worker = channel.CURRENT
    if _thread.get_ident() != MAIN_THREAD:
        aio = sys.modules.get(__package__ + ".aio")
        if aio is not None and aio._server is not None and aio._server.on_loop_thread():
            raise RuntimeError(
                "call_go(%r) from a task on the worker's event loop: with Config.AsyncCalls, Go functions cannot be"
                " called from async functions (their calls run at once on the loop, which Go does not pause);"
                " call them from a sync function" % name
            )
        raise RuntimeError("call_go(%r) from a thread other than the worker's main thread: only the call Go made can call back" % name)
    if worker is None or not (STATE.in_user_code or _awaiting()):
        raise RuntimeError("call_go(%r) outside a call from Go: Go functions can only be called while Go waits for a call" % name)
    return _wait(worker, name, list(args))


def _awaiting() -> bool:
    """Whether an async call runs: its coroutine runs on the worker's loop
    (aio.run) outside the runtime's marker of user code."""
    aio = sys.modules.get(__package__ + ".aio")
    return aio is not None and getattr(aio, "_task", None) is not None


def _wait(worker: Channel, name: str, args: List[Any]) -> Any:
    if worker.streams and worker.streams[-1].batch:
        from .stream import send_pending

        send_pending(worker)  # the items a generator made before it calls Go
    worker.callback_seq += 1
    seq = worker.callback_seq
    shared, shm.ACTIVE = shm.ACTIVE, None  # arguments and nested calls' values cross inline
    try:
        try:
            body = worker.packb([CALLBACK, seq, name, args])
        except Exception as exc:
            detail, hint = not_encodable(args, exc, "args")
            raise TypeError("call_go(%r): an argument cannot be encoded for Go: %s%s" % (name, detail, "; " + hint if hint else "")) from None
        if len(body) > worker.max_message:
            raise ValueError(
                "call_go(%r): the arguments encode to %d bytes, the limit is %d (Config.MaxMessageSize, the worker's --max-message); "
                "raise it, or pass less" % (name, len(body), worker.max_message)
            )  # fmt: skip
        # Back in the user's code that called call_go when it returns.
        was_user = STATE.enter_runtime()
        worker.callbacks_waiting += 1
        worker.awaited.add(seq)
        try:
            worker.send(body)
            return _answer(worker, seq)
        finally:
            worker.awaited.discard(seq)
            worker.answered.pop(seq, None)
            worker.callbacks_waiting -= 1
            shm.ACTIVE = shared  # before the user's code is interruptible again
            STATE.leave_runtime(was_user)
    finally:
        shm.ACTIVE = shared


def _answer(worker: Channel, seq: int) -> Any:
    """Wait for the answer to callback seq, serving nested calls meanwhile.
    The answer may have been read already, by a wait nested in this one
    (Channel.control kept it)."""
    while True:
        message = worker.answered.pop(seq, None)
        if message is None:
            try:
                worker.wait_input()
            except KeyboardInterrupt:
                _refuse_unread_calls(worker)
                raise
            body = worker.read_message()
            kind = body[1] if len(body) > 1 and 0x90 <= body[0] <= 0x9F else -1
            if kind == CALL or kind == STREAM:
                worker.handle(body)  # a call made inside the Go callback
                continue
            message = worker.decode(body)
        kind = message[0]
        if (kind == CB_RESULT or kind == CB_ERROR) and len(message) >= 2 and message[1] == seq:
            if kind == CB_RESULT and len(message) == 3:
                return message[2]
            if kind == CB_ERROR and len(message) == 5:
                _, _, code, go_type, text = message
                raise GoError(text, code, go_type)
            raise ProtocolViolation("a callback answer has %d fields" % len(message))
        worker.control(message)  # credit for a stream in progress, or a late answer


def _refuse_unread_calls(worker: Channel) -> None:
    """The call was cut off while call_go waited: answer the nested calls Go
    made meanwhile and this worker has not read, without running them. Go
    sends its interrupt only after such a call's frame is written, so every
    one is in the input now; left there, the serve loop would run it after
    this call's reply, as a new call, for a caller that has given up (Go's
    drain reads its reply either way). Other frames (a late answer, credit)
    go to control, as anywhere else."""
    while worker.input_waiting():
        body = worker.read_message()
        found = worker.frame_head(body, 2)  # its arguments may not decode: it is not run anyway
        if found is None or len(found[1]) < 2:
            raise ProtocolViolation("a frame is not an array that starts with an integer kind")
        head = found[1]
        if head[0] == CALL or head[0] == STREAM:
            worker.send_error(
                head[1], "interrupted", "KeyboardInterrupt",
                "not run: the call whose Go callback made it was cut off before this worker read it",
            )  # fmt: skip
        else:
            worker.control(worker.decode(body))

