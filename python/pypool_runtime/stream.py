"""Streams: a STREAM call's result iterated, its items sent to Go as they come.

The rule for what streams: a result whose type has ``__next__`` (a
generator, any iterator) is iterated; one whose type has ``__aiter__`` (an
async generator or iterator) is iterated on the worker's event loop
(aio.sync_iter); any other result is refused with the code not_an_iterator
(a TypeError that names what the function returned, without a traceback):
a list is not streamed, use Call for it.

Items travel in ITEMS frames. A frame goes when it holds BATCH_ITEMS items
or about BATCH_BYTES, or LINGER_SECONDS after its first item: a fast
generator costs one frame per few hundred items, and no item waits more
than the linger for the ones after it. The linger is a SIGALRM timer
(setitimer), armed once per frame, whose handler sends the frame while the
generator's code runs (sleeps, waits for I/O); when the module's code
installed a SIGALRM handler of its own, the runtime leaves SIGALRM alone and
sends each item in a frame of its own. Python sends at most `window`
frames beyond the CREDIT Go gave back, then waits: a slow Go loop makes the
generator wait, not the worker's memory grow. Before each frame it looks
for a CLOSE from Go (the loop ended early): then it closes the generator
(GeneratorExit runs its finally blocks) and ends the stream with RESULT nil.

An exception in the generator ends the stream with its ERROR after the
items before it; SIGINT (Go's interrupt of a cut-off stream) raises
KeyboardInterrupt in the generator, or, when it comes while the runtime
sends or waits, ends the stream at the next safe point the same way.
"""

from __future__ import annotations

try:  # _signal is signal without its enum wrappers (worker.py imported it already)
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal  # type: ignore[no-redef]

from . import ITEMS, RESULT, channel, shm
from .errors import exception_message, not_encodable, type_name
from .frames import ProtocolViolation
from .interrupt import STATE, Interrupted

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List

    from .channel import Channel

# A frame is sent when it holds this many items, or about this many bytes
# (estimated from the lengths of str and bytes items), or when its first
# item waited this long.
BATCH_ITEMS = 256
BATCH_BYTES = 64 << 10
LINGER_SECONDS = 0.002


class StreamState:
    """A stream in progress: its credit (frames it may still send) and
    whether Go asked for its end. Channel.control updates both."""

    __slots__ = ("call_id", "credit", "closing", "batch", "size", "sent", "in_next", "flush_due", "callbacks", "worker", "name")

    def __init__(self, call_id: int, credit: int) -> None:
        self.call_id = call_id
        self.credit = credit
        self.closing = False
        self.batch: List[Any] = []  # items produced, not yet sent
        self.size = 0  # the batch's estimated size in bytes
        self.sent = 0  # items sent so far
        self.in_next = False  # the generator's code runs
        self.flush_due = False  # the batch's linger passed while it could not be sent
        self.callbacks = 0  # call_go waits below this stream (Channel.callbacks_waiting at its start)
        self.worker: Any = None  # the Channel
        self.name = ""


class NotAnIterator(TypeError):
    """What a STREAM call's function returned cannot be streamed: Go gets
    the refusal not_an_iterator, with a hint and without a traceback (the
    function returned normally; the only frames would be the runtime's)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def iterator_of(result: Any, name: str) -> Any:
    """The iterator a STREAM call's result gives, by the module's rule. An
    awaitable (an async def function's coroutine) is awaited first, on the
    worker's event loop, as a call's is: its value is what streams. Any
    other result raises NotAnIterator."""
    cls = type(result)
    awaited = False
    if not hasattr(cls, "__next__") and not hasattr(cls, "__aiter__") and hasattr(cls, "__await__"):
        from . import aio

        if aio.is_awaitable(result):
            result = aio.run(result)
            cls = type(result)
            awaited = True
    if hasattr(cls, "__next__"):
        return result
    if hasattr(cls, "__aiter__"):
        from .aio import sync_iter

        return sync_iter(result)
    what = "%s() returned %s" % (name, _a_value_of(result))
    if awaited:
        what = "%s() returned a coroutine, which returned %s" % (name, _a_value_of(result))
    raise NotAnIterator(
        "%s, not an iterator: Stream iterates a generator or an iterator" % what,
        "call it with Call or CallAs to get its result in one piece, or make it a generator function "
        "(one that uses yield, or async def with yield) to stream its items",
    )


def _a_value_of(value: Any) -> str:
    """'None', 'a list', 'an int', 'an instance of module.Class'."""
    if value is None:
        return "None"
    cls = type(value)
    module = getattr(cls, "__module__", None)
    if module in (None, "builtins"):
        return ("an " if cls.__name__[:1] in "aeiou" else "a ") + cls.__name__
    return "an instance of %s.%s" % (module, cls.__qualname__)


def run(worker: Channel, call_id: int, name: str, args: List[Any], kwargs: Dict[str, Any], window: Any) -> None:
    """Answer a STREAM frame: call the function, stream what it returns."""
    if type(window) is not int or window <= 0:
        raise ProtocolViolation("a STREAM frame's window is not a positive integer")
    function = worker.function(name)
    if function is None:
        worker.send_error(call_id, "function_not_found", "AttributeError", worker.not_found(name))
        return
    try:
        result = STATE.call_user(function, args, kwargs)
        iterator = iterator_of(result, name)
    except NotAnIterator as exc:
        worker.send_error(call_id, "not_an_iterator", "TypeError", str(exc), hint=exc.hint)
        return
    except BaseException as exc:
        worker.send_exception(call_id, exc)
        return
    state = StreamState(call_id, window)
    state.worker, state.name = worker, name
    state.callbacks = worker.callbacks_waiting
    worker.streams.append(state)
    shared, shm.ACTIVE = shm.ACTIVE, None  # items cross inline
    was_user = STATE.enter_runtime()
    timer = _arm_timer()
    try:
        _pump(worker, state, iterator, name, timer)
    finally:
        if timer is not None:
            timer(signal.ITIMER_REAL, 0)  # no late alarm after the stream
        STATE.leave_runtime(was_user)
        shm.ACTIVE = shared
        worker.streams.remove(state)


def _next_item(step: Callable[[], Any]) -> Any:
    """step(), as the user's code: interruptible."""
    return STATE.call_user(step)


def _arm_timer() -> Any:
    """setitimer, when the stream may use SIGALRM for its linger; else None
    (the user's code handles SIGALRM: a batch then waits for its next item
    or its size)."""
    setitimer = getattr(signal, "setitimer", None)
    if setitimer is None:  # pragma: no cover - not Unix
        return None
    current = signal.getsignal(signal.SIGALRM)
    if current is not _on_alarm:
        if current != signal.SIG_DFL:
            return None
        signal.signal(signal.SIGALRM, _on_alarm)
    return setitimer


def _on_alarm(signum: int, frame: Any) -> None:
    """A batch's first item has waited LINGER_SECONDS: send the batch now if
    the main thread is in the generator's code (not in the runtime's, not
    waiting in call_go) and the stream has credit; else the loop sends it
    after the item in progress."""
    worker = channel.CURRENT
    if worker is None or not worker.streams:
        return
    state = worker.streams[-1]
    if state.batch and not (state.in_next and STATE.in_user_code and send_pending(worker)):
        state.flush_due = True


def send_pending(worker: Channel) -> bool:
    """Send the innermost stream's batch at once, from the generator's code
    (the linger's alarm, or call_go before it waits: the items made before
    the callback need not wait for it). False when it cannot be sent now
    (no credit, a call_go of an enclosing call waits, an item that needs the
    loop's care); the loop then sends it after the item in progress.

    All of it is the runtime's code, from its first look at the batch to the
    batch emptied: the alarm's handler sends only from the user's code, so
    an alarm that lands in the middle of call_go's send cannot send the same
    items again (Go once got an item twice that way), and a SIGINT is kept
    for the loop."""
    was_user = STATE.enter_runtime()
    try:
        state = worker.streams[-1] if worker.streams else None
        if state is None or not state.batch:
            return True
        if worker.callbacks_waiting != state.callbacks or state.credit <= 0 or state.closing:
            return False
        try:
            body = worker.packb([ITEMS, state.call_id, state.batch])
        except BaseException:  # a hook's SystemExit too
            return False  # the loop finds the item and reports it
        if len(body) > worker.max_message:
            return False
        worker.send(body)
        state.credit -= 1
        state.sent += len(state.batch)
        state.batch = []
        state.size = 0
        return True
    finally:
        # A SIGINT meanwhile is kept for the loop: the call goes on.
        STATE.leave_runtime(was_user, keep_pending=True)


def _pump(worker: Channel, state: StreamState, iterator: Iterator[Any], name: str, timer: Any) -> None:
    step = iterator.__next__
    real = signal.ITIMER_REAL if timer is not None else 0
    while True:
        try:
            state.in_next = True
            try:
                item = _next_item(step)
            finally:
                state.in_next = False
            if STATE.pending and STATE.take_pending():
                raise Interrupted
        except StopIteration:
            if not state.batch or _flush(worker, state, iterator):
                worker.send_message([RESULT, state.call_id, None])
            return
        except BaseException as exc:
            # The items before the exception, then the exception.
            if isinstance(exc, KeyboardInterrupt) or not state.batch or _flush(worker, state, iterator):
                _close_quietly(iterator)
                worker.send_exception(state.call_id, exc)
            return
        batch = state.batch
        if not batch and timer is not None:
            timer(real, LINGER_SECONDS)
        batch.append(item)
        cls = type(item)
        state.size += len(item) if (cls is str or cls is bytes or cls is bytearray) else 9
        if len(batch) >= BATCH_ITEMS or state.size >= BATCH_BYTES or state.flush_due or timer is None:
            if not _flush(worker, state, iterator):
                return


def _flush(worker: Channel, state: StreamState, iterator: Any) -> bool:
    """Send the batch; False when the stream is over instead (Go closed it,
    an item does not encode, an interrupt), its end sent."""
    batch = state.batch
    state.batch = []
    state.size = 0
    state.flush_due = False
    try:
        if _send(worker, state, batch, state.name, state.sent):
            state.sent += len(batch)
            return True
    except KeyboardInterrupt as exc:
        _close_quietly(iterator)
        worker.send_exception(state.call_id, exc)
        return False
    except _NotEncodable as exc:
        _close_quietly(iterator)
        worker.send_error(state.call_id, exc.code, exc.type_name, exc.message, hint=exc.hint)
        return False
    _closed(worker, state, iterator)
    return False


class _NotEncodable(Exception):
    def __init__(self, code: str, type_name: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code, self.type_name, self.message, self.hint = code, type_name, message, hint


def _send(worker: Channel, state: StreamState, batch: List[Any], name: str, sent: int) -> bool:
    """Send batch in one ITEMS frame (or more, when it is too large for
    one), after waiting for credit; False when Go closed the stream."""
    if state.credit <= 0 or worker.input_waiting():
        _take_control(worker, state)
    if state.closing:
        return False
    try:
        body = worker.packb([ITEMS, state.call_id, batch])
    except BaseException as exc:  # a hook's SystemExit too (set_default, register_ext, an item's __class__)
        # Send the items before the one that does not encode, then say which.
        for index, item in enumerate(batch):
            try:
                worker.packb(item)
            except BaseException as item_exc:
                if index:
                    _send(worker, state, batch[:index], name, sent)
                detail, hint = not_encodable(item, item_exc, "item")
                raise _NotEncodable(
                    "result_not_encodable", type_name(item_exc),
                    "cannot encode item %d of %s() for Go: %s" % (sent + index, name, detail), hint,
                ) from None  # fmt: skip
        raise _NotEncodable("result_not_encodable", type_name(exc), "cannot encode items of %s(): %s" % (name, exception_message(exc))) from None
    if len(body) > worker.max_message:
        if len(batch) == 1:
            raise _NotEncodable(
                "message_too_large", "ValueError",
                "item %d of %s() encodes to %d bytes, the limit is %d (Config.MaxMessageSize)" % (sent, name, len(body), worker.max_message),
                "raise Config.MaxMessageSize, or yield smaller items",
            )  # fmt: skip
        half = len(batch) // 2
        return _send(worker, state, batch[:half], name, sent) and _send(worker, state, batch[half:], name, sent + half)
    worker.send(body)
    state.credit -= 1
    return True


def _take_control(worker: Channel, state: StreamState) -> None:
    """Read what Go sent (credit, a close) and, while the stream has no
    credit and is not closing, wait for more."""
    while True:
        if state.closing:
            return
        if state.credit <= 0:
            worker.wait_input()
        elif not worker.input_waiting():
            return
        worker.control(worker.decode(worker.read_message()))


def _closed(worker: Channel, state: StreamState, iterator: Any) -> None:
    """Go closed the stream: close the generator, then end the stream."""
    try:
        close = getattr(iterator, "close", None)
        if close is not None:
            _next_item(close)
    except BaseException as exc:
        worker.send_exception(state.call_id, exc)
        return
    worker.send_message([RESULT, state.call_id, None])


def _close_quietly(iterator: Any) -> None:
    """Close the iterator after an error of its own or an interrupt: what
    its clean-up raises adds nothing to the error already being sent."""
    close = getattr(iterator, "close", None)
    if close is None:
        return
    try:
        _next_item(close)
    except BaseException:
        pass
