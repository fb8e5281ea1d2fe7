"""The call's context: what Python code can read of the Go call it runs.

    import pypool

    def fetch(url):
        timeout = pypool.remaining()          # seconds left before Go's deadline, None without one
        tenant = pypool.current_call().metadata.get("tenant")
        return http_get(url, timeout=timeout, headers={"X-Tenant": tenant})

current_call() is the CallContext of the call that runs (the innermost
one: a call Go makes from a callback while call_go waits has its own),
None outside a call (at import, in Config.SetUp, between calls, in a
thread the call did not start with contextvars.copy_context(), or did
but Go sent no context: the fast path below sets no ContextVar). remaining()
is current_call().remaining(), None outside a call or without a deadline.
trace_context() is the W3C trace context of the Go caller's span as a
carrier dict ({"traceparent": ..., "tracestate": ...}, {} without one), for
opentelemetry.propagate.extract: spans started in it are children of the
Go span (the otel adapter, Go module github.com/pypool/pypool/otel, sends it).

Go sends the context as the last element of a CALL or STREAM frame, only
when there is one (protocol.go): "r" the seconds left, measured as Go wrote
the frame (so the two processes' clocks never matter; here it becomes a
time.monotonic() deadline when the frame is read), "a" the attempt (2 and
up: a retry of Config.CrashRetries), "m" the metadata
(pypool.WithMetadata), "tp"/"ts" the trace context. A call without one (no
deadline, no metadata, first attempt) takes the serve loop's fast path,
which records only the function's name (Channel.call_name); current_call()
then gives a CallContext with that name, attempt 1, no deadline and no
metadata.

The context is a contextvars.ContextVar: an async function's task (and
the tasks it starts) inherits it; after the call, a task it started sees
None. testing.call_context sets a fixed one for unit tests.
"""

from __future__ import annotations

import _contextvars
import _thread
import sys
import time

from . import channel
from .frames import ProtocolViolation
from .interrupt import MAIN_THREAD, STATE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional

# The record (see run) of the call that runs, when the runtime made one (a
# call with a context from Go, a nested call, testing.call_context).
_CURRENT: _contextvars.ContextVar[Optional[List[Any]]] = _contextvars.ContextVar("pypool_call", default=None)


def _readonly(mapping: Dict[str, str]) -> Mapping[str, str]:
    from types import MappingProxyType

    return MappingProxyType(mapping)


_EMPTY: Optional[Mapping[str, str]] = None


def _empty() -> Mapping[str, str]:
    global _EMPTY
    if _EMPTY is None:
        _EMPTY = _readonly({})
    return _EMPTY


class CallContext:
    """What Python can read of the Go call it runs.

    function: the name Go called (as Go wrote it: "function" or
    "module.function"). attempt: 1, or n for the n-th try of a call retried
    after its worker crashed (Config.CrashRetries). metadata: the caller's
    pypool.WithMetadata, a read-only mapping of str to str. deadline: the
    time.monotonic() value at which Go's context ends, None without a
    deadline. traceparent, tracestate: the W3C trace context of the Go
    span ("" without one)."""

    __slots__ = ("function", "attempt", "metadata", "deadline", "traceparent", "tracestate")

    def __init__(
        self,
        function: str,
        attempt: int = 1,
        metadata: Optional[Mapping[str, str]] = None,
        deadline: Optional[float] = None,
        traceparent: str = "",
        tracestate: str = "",
    ) -> None:
        self.function = function
        self.attempt = attempt
        self.metadata = _readonly(dict(metadata)) if metadata else _empty()
        self.deadline = deadline
        self.traceparent = traceparent
        self.tracestate = tracestate

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (0.0 once it passed), None
        without a deadline."""
        if self.deadline is None:
            return None
        return max(self.deadline - time.monotonic(), 0.0)

    def trace_context(self) -> Dict[str, str]:
        """The W3C trace context as a carrier for
        opentelemetry.propagate.extract ({} without one)."""
        carrier = {}
        if self.traceparent:
            carrier["traceparent"] = self.traceparent
            if self.tracestate:
                carrier["tracestate"] = self.tracestate
        return carrier

    def __repr__(self) -> str:
        return "CallContext(function=%r, attempt=%d, remaining=%r, metadata=%r, traceparent=%r)" % (
            self.function,
            self.attempt,
            self.remaining(),
            dict(self.metadata),
            self.traceparent,
        )


def from_wire(function: str, context: Any, received: float) -> CallContext:
    """The CallContext of a call to function whose frame carried context (a
    dict, see the module's docstring; None: no context), read at the
    time.monotonic() value received."""
    if context is None:
        return CallContext(function)
    context = decoded(context)
    left = context.get("r")
    deadline = None
    if left is not None:
        if type(left) is not float and type(left) is not int:
            raise ProtocolViolation("a call's time left is not a number")
        deadline = received + left
    attempt = context.get("a", 1)
    metadata = context.get("m")
    traceparent = context.get("tp", "")
    tracestate = context.get("ts", "")
    if type(attempt) is not int or (metadata is not None and type(metadata) is not dict):
        raise ProtocolViolation("a call's attempt is not an int or its metadata not a map")
    if type(traceparent) is not str or type(tracestate) is not str:
        raise ProtocolViolation("a call's trace context is not a str")
    cc = CallContext(function, attempt, None, deadline, traceparent, tracestate)
    if metadata:
        cc.metadata = _readonly(metadata)  # a fresh dict of the decoder's
    return cc


def decoded(context: Any) -> Dict[str, Any]:
    """A call's context (not None) as a dict: decoded if the frame's codec
    left it encoded (purecodec.decode_call_context)."""
    if type(context) is bytes:
        worker = channel.CURRENT
        try:
            context = (worker.unpackb if worker is not None else _pure_unpackb())(context)
        except Exception as exc:
            raise ProtocolViolation("a call's context does not decode: %s" % exc) from None
    if type(context) is not dict:
        raise ProtocolViolation("a call's context is not a map")
    return context


def late_interrupts(context: Any) -> int:
    """The frame's count of interrupts that came after their call's reply
    ("i", protocol.go; interrupt.Interrupts.begins_interrupted), 0 without a
    context or without the entry."""
    if context is None:
        return 0
    late = decoded(context).get("i", 0)
    if type(late) is not int or late < 0:
        raise ProtocolViolation("a call's count of late interrupts is not a non-negative int")
    return late


# What _CURRENT holds for a call: [function, context from the frame,
# time.monotonic() when it was read, its CallContext (made at the first
# current_call()), whether the call ended]. A list, not the CallContext
# itself: most calls never ask for theirs.
_FUNCTION, _CONTEXT, _RECEIVED, _MADE, _ENDED = range(5)


def _pure_unpackb() -> Any:
    from . import codec

    return codec.pure_module().unpackb


def enter(worker: Any, function: str, context: Any) -> Any:
    """Make the call to function whose frame carried context (None: none;
    a dict, or its msgpack bytes, decoded when asked for) the one
    current_call() tells of, until leave(worker, what enter returned).
    worker (serve.Worker) counts the calls entered."""
    if context is not None and type(context) is not dict and type(context) is not bytes:
        raise ProtocolViolation("a call's context is not a map")
    record = [function, context, _monotonic(), None, False]
    worker.contexts += 1
    return record, _CURRENT.set(record)


def leave(worker: Any, entered: Any) -> None:
    """The end of the call enter began: a task it started sees no call."""
    record, token = entered
    record[_ENDED] = True
    _CURRENT.reset(token)
    worker.contexts -= 1


def run(worker: Any, function: str, context: Any, call: Any, *args: Any) -> None:
    """call(*args) as the call to function whose frame carried context:
    current_call() gives its CallContext until it returns."""
    entered = enter(worker, function, context)
    try:
        call(*args)
    finally:
        leave(worker, entered)


_monotonic = time.monotonic


def enter_task(function: str, context: Any) -> Any:
    """For the task of an async function in async mode (aio.AsyncServer,
    on its loop thread): make the call to function whose frame carried
    context (None: none) current, so that a task created now inherits it.
    detach_task(what this returns) once the task is created; end_task when
    the call has ended (the task, and those it started, then see None)."""
    if context is not None and type(context) is not dict and type(context) is not bytes:
        raise ProtocolViolation("a call's context is not a map")
    record = [function, context, _monotonic(), None, False]
    return record, _CURRENT.set(record)


def detach_task(entered: Any) -> None:
    """The loop thread's own context no longer names the call; its task keeps it."""
    _CURRENT.reset(entered[1])


def end_task(entered: Any) -> None:
    """The end of the call enter_task began."""
    entered[0][_ENDED] = True


def fixed(cc: CallContext) -> Any:
    """What _CURRENT holds for a fixed CallContext (testing.call_context)."""
    return [cc.function, None, 0.0, cc, False]


def current_call() -> Optional[CallContext]:
    """The CallContext of the call that runs; None outside a call."""
    record = _CURRENT.get()
    if record is not None:
        if record[_ENDED]:
            return None
        cc = record[_MADE]
        if cc is None:
            cc = record[_MADE] = from_wire(record[_FUNCTION], record[_CONTEXT], record[_RECEIVED])
        return cc
    # A call of the serve loop's fast path (Go sent no context), if one
    # runs: its function's code, or the coroutine it returned, awaited on
    # the main thread or, in async mode, on the loop thread.
    worker = channel.CURRENT
    if worker is None:
        return None
    if _thread.get_ident() == MAIN_THREAD:
        if not (STATE.in_user_code or _awaiting()):
            return None
    elif not _main_awaits():
        return None
    return CallContext(getattr(worker, "call_name", ""))


def _awaiting() -> bool:
    """Whether the main thread awaits a coroutine of its call (aio.run)."""
    aio = sys.modules.get(__package__ + ".aio")
    return aio is not None and getattr(aio, "_task", None) is not None


def _main_awaits() -> bool:
    """Async mode: whether this is the loop thread while the main thread
    awaits there a coroutine of its call (AsyncServer.run)."""
    aio = sys.modules.get(__package__ + ".aio")
    server = getattr(aio, "_server", None) if aio is not None else None
    return server is not None and server.awaiting > 0 and server.on_loop_thread()


def remaining() -> Optional[float]:
    """Seconds left before the Go caller's deadline (0.0 once it passed);
    None without a deadline or outside a call."""
    cc = current_call()
    return None if cc is None else cc.remaining()


def trace_context() -> Dict[str, str]:
    """The Go caller's W3C trace context as a carrier dict for
    opentelemetry.propagate.extract; {} without one or outside a call."""
    cc = current_call()
    return {} if cc is None else cc.trace_context()
