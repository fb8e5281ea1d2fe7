"""A test kit for the Python side: unit-test a module that imports pypool
with plain unittest or pytest, without Go (docs/testing-python.md).

Put the repository's python/ directory on sys.path (PYTHONPATH), for
example ``PYTHONPATH="$(go list -m -f '{{.Dir}}' github.com/pypool/pypool)/python"``:
``import pypool`` is then this runtime package, as in a worker (python/pypool.py),
and importing this module registers the ``pypool`` name too.

    from pypool import testing
    import my_module

    def test_greet():
        with testing.fake_callbacks({"lookup_user": lambda user_id: {"name": "Ada"}}):
            assert testing.call(my_module.greet, 7) == "Hello, Ada"

fake_callbacks(fakes) makes call_go(name, *args) call fakes[name](*args)
instead of Go, with the checks of a real callback: the arguments must
encode (TypeError, as call_go's), the fake's result crosses the codec (a
tuple comes back a list), and an unknown name raises GoError with code
"not_found" and the message Go gives. A fake raises GoError to act as a Go
function that returns an error; other exceptions are bugs of the fake and
propagate unchanged. The fakes answer the thread that entered the manager
(and a testing.call a test runs in a thread of its own), not threads the
code under test starts: a worker refuses call_go from those.

call(function, *args, **kwargs) runs function as a call from Go does: the
arguments cross the codec first, a coroutine function is awaited, and the
result is encoded with the worker's codec and hooks (register_ext,
set_default, numpy): one that cannot cross raises NotEncodable with the
message and hint Go's *PythonError has (code "result_not_encodable"),
one that encodes to more than MAX_MESSAGE_SIZE bytes MessageTooLarge
(code "message_too_large"). check_crosses(value) does the same checks for
any value. It runs function
in a call context as a worker would (pypool.current_call() gives its name,
attempt 1), unless a call_context is active: then in that one.

call_context(remaining=None, metadata=None, attempt=1, function="function",
traceparent="", tracestate="") fixes the call context for the code under
it, as a call from Go with that deadline (seconds from now), metadata and
attempt would: pypool.remaining(), pypool.current_call() and
pypool.trace_context() answer as in a worker. Metadata beyond Go's limits
is refused (ValueError), a trace context Go would not send is dropped. Outside one (and outside
call()), current_call() is None and remaining() is None, as at a worker's
import.

    def test_fetch_uses_the_deadline():
        with testing.call_context(remaining=2.0, metadata={"tenant": "acme"}):
            assert testing.call(my_module.fetch, "/items") == ...
"""

from __future__ import annotations

import _contextvars
import _thread
import sys

from . import callback, callctx, codec
from .errors import not_encodable, type_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

__all__ = ["MAX_MESSAGE_SIZE", "MessageTooLarge", "NotEncodable", "call", "call_context", "check_crosses", "fake_callbacks"]

# As in a worker (startup.prepare): user code imports the runtime as pypool.
_pypool = sys.modules.setdefault("pypool", sys.modules[__package__])
if _pypool is not sys.modules[__package__]:
    import os as _os

    _shim = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "pypool.py")
    _file = getattr(_pypool, "__file__", None)
    if _file is None or _os.path.abspath(_file) != _shim:  # not python/pypool.py, which is importing this module
        raise ImportError(
            "pypool.testing: the module named pypool is %r, not pypool's runtime (%s): the code under test would call"
            " it; put pypool's python/ directory first on sys.path (PYTHONPATH), or import pypool.testing before it"
            % (_file, _os.path.dirname(_os.path.abspath(__file__)))
        )
sys.modules.setdefault("pypool.testing", sys.modules[__name__])


class NotEncodable(TypeError):
    """A value cannot cross to Go: message and hint are those of the
    *PythonError a real call gives (code "result_not_encodable"), type_ the
    encoder's exception type as that error's Type."""

    code = "result_not_encodable"

    def __init__(self, message: str, hint: str, type_: str) -> None:
        super().__init__(message + ("; " + hint if hint else ""))
        self.message = message
        self.hint = hint
        self.type = type_


class MessageTooLarge(ValueError):
    """A value crosses, but encodes to more than MAX_MESSAGE_SIZE bytes: a
    real call fails with this message and hint (code "message_too_large")."""

    code = "message_too_large"
    type = "ValueError"

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message + "; " + hint)
        self.message = message
        self.hint = hint


# Config.MaxMessageSize of the pool the module runs in (Go's default,
# DefaultMaxMessageSize: 64 MiB); 0: no limit checked. Set it to your
# Config's value when it is not the default.
MAX_MESSAGE_SIZE = 64 << 20

# A bytes result from this size crosses through the shared memory
# (DefaultSharedMemoryThreshold): a worker then counts its bytes alone.
_SHARED_THRESHOLD = 64 << 10


def _result_size(value: Any, data: bytes) -> int:
    """How many bytes a worker counts for a result that encodes to data,
    as its default Config does: the bytes of a large bytes value (through
    the shared memory), or the RESULT frame's body of a call id < 128."""
    if type(value) in (bytes, bytearray) and len(value) >= _SHARED_THRESHOLD:
        return len(value)
    return len(data) + 3


def _codec() -> codec.Codec:
    return codec.load()  # the worker's default choice: msgpack's C extension, else the pure codec


def check_crosses(value: Any, name: str = "function") -> Any:
    """Encode value as a call's result is encoded for Go, and return it as it
    decodes again (tuples become lists); NotEncodable, with the real
    error's message and hint, when it cannot cross. name is the function
    that returned it, as the message names it."""
    c = _codec()
    cls = type(value)
    try:
        data = c.packb(value)
    except Exception as exc:
        detail, hint = not_encodable(value, exc)
        if hasattr(cls, "__next__") or hasattr(cls, "__aiter__"):
            hint = "it returned an iterator: iterate it from Go with Pool.Stream"
        raise NotEncodable("cannot encode the result of %s() for Go: %s" % (name, detail), hint, type_name(exc)) from None
    size = _result_size(value, data)
    if MAX_MESSAGE_SIZE and size > MAX_MESSAGE_SIZE:
        from .serve import TOO_LARGE_HINT

        raise MessageTooLarge(
            "the result of %s() encodes to %d bytes, the limit is %d (Config.MaxMessageSize)" % (name, size, MAX_MESSAGE_SIZE), TOO_LARGE_HINT
        )
    try:
        return c.unpackb(data)
    except TypeError:
        if not _tuple_key(value):  # a decode hook's own error (register_ext)
            raise
        raise TypeError(
            "the result of %s() encodes, but does not decode: a Python dict key (list: a tuple or a list) can not be a key of a"
            " Go map (Call gives map[any]any): decode the result with CallAs into a map whose key type fits it (a Go array"
            " for a tuple), or make the key a str or an int in Python" % name
        ) from None


def _tuple_key(value: Any) -> bool:
    """Whether value (which encodes) holds a dict whose key is a tuple:
    it decodes as a list, which can be no dict's key."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, tuple):
                    return True
                todo.append(child)
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return False


def call(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run function(*args, **kwargs) as a call from Go runs it, and return
    its result as check_crosses does: the arguments must cross (TypeError),
    an awaitable result is awaited (asyncio.run), and a result that cannot
    cross raises NotEncodable."""
    name = getattr(function, "__name__", "function")
    c = _codec()
    try:
        data = c.packb([list(args), kwargs])
    except Exception as exc:
        detail = not_encodable([list(args), kwargs], exc, "arguments")[0]
        raise TypeError("call(%s): an argument cannot cross between Go and Python: %s" % (name, detail)) from None
    try:
        args, kwargs = c.unpackb(data)
    except TypeError:
        if not _tuple_key([args, kwargs]):  # a decode hook's own error (register_ext)
            raise
        raise TypeError(
            "call(%s): an argument cannot cross between Go and Python: a dict key that is a tuple or a list decodes"
            " in Python as a list, which can not be a dict key (a worker answers bad_arguments)" % name
        ) from None
    global _running
    with _fakes_lock:
        _running += 1
        callback._fake = _dispatch
    _fakes.calls = getattr(_fakes, "calls", 0) + 1
    try:
        return _call(function, name, args, kwargs)
    finally:
        _fakes.calls -= 1
        with _fakes_lock:
            _running -= 1
            _release()


def _call(function: Callable[..., Any], name: str, args: Any, kwargs: Any) -> Any:
    context = None
    current = callctx.current_call()
    if current is None or current is _AUTOMATIC.get():  # as a worker runs a call: in one of its own
        context = call_context(function=name)
        token = _AUTOMATIC.set(context.__enter__())
    try:
        result = function(*args, **kwargs)
        if hasattr(type(result), "__await__"):
            import asyncio

            if asyncio._get_running_loop() is not None:  # an async test: asyncio.run would refuse, obscurely
                close = getattr(result, "close", None)
                if close is not None:
                    close()  # no "never awaited" warning
                raise RuntimeError(
                    "call(%s): %s() returned an awaitable, which call cannot run to its end inside a running event loop"
                    " (an async test): await %s(...) in the test, under call_context if it reads the call context, and"
                    " pass its result to check_crosses; or call it from a sync test" % (name, name, name)
                )
            result = asyncio.run(_awaited(result))  # the task copies the call context
    finally:
        if context is not None:
            context.__exit__(None, None, None)
            _AUTOMATIC.reset(token)
    return check_crosses(result, name)


# The CallContext that call made for the call it runs (not a call_context
# of the test's): a call nested in it (in a fake callback, say) gets one of
# its own, as a call Go makes does.
_AUTOMATIC: Any = _contextvars.ContextVar("pypool_testing_automatic", default=None)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


# call_context's outer values, innermost last, in each context.
_OUTER: Any = _contextvars.ContextVar("pypool_call_context_outer", default=())


class call_context:
    """A context manager (and decorator) that fixes the call context (see
    the module's docstring): under it, pypool.current_call() is a
    CallContext with these values, remaining() counts down from remaining
    seconds (None: no deadline), and the metadata must be a map of str to
    str, as pypool.WithMetadata's in Go (TypeError otherwise). context is
    the CallContext, for assertions. Nested ones replace the outer one
    until they exit."""

    def __init__(
        self,
        remaining: Optional[float] = None,
        metadata: Optional[Dict[str, str]] = None,
        attempt: int = 1,
        function: str = "function",
        traceparent: str = "",
        tracestate: str = "",
    ) -> None:
        metadata = dict(metadata or {})
        for key, value in metadata.items():
            if type(key) is not str or type(value) is not str or not key:
                raise TypeError("call_context: metadata maps non-empty str keys to str values, as Go's WithMetadata; got %r: %r" % (key, value))
        _check_metadata(metadata)
        metadata = {key: metadata[key] for key in sorted(metadata)}  # in Go's order: a worker's iterates so
        if type(function) is not str:
            raise TypeError("call_context: function is the name Go called, a str, not %r" % (function,))
        if type(attempt) is not int or attempt < 1:
            raise TypeError("call_context: attempt is an int from 1, not %r" % (attempt,))
        if remaining is not None and (type(remaining) not in (int, float) or remaining != remaining):
            raise TypeError("call_context: remaining is the seconds left (an int or float) or None, not %r" % (remaining,))
        if type(traceparent) is not str or type(tracestate) is not str:
            raise TypeError("call_context: traceparent and tracestate are str")
        # As Go's WithTraceContext: a traceparent not of the W3C form is not
        # sent (nor its tracestate), an invalid tracestate is not sent.
        if not _valid_traceparent(traceparent):
            traceparent = tracestate = ""
        elif len(tracestate) > _MAX_TRACE_HEADER or not _printable_ascii(tracestate):
            tracestate = ""
        self._values = (remaining, metadata, attempt, function, traceparent, tracestate)
        self.context: Optional[callctx.CallContext] = None

    def __enter__(self) -> callctx.CallContext:
        import time

        remaining, metadata, attempt, function, traceparent, tracestate = self._values
        deadline = None if remaining is None else time.monotonic() + remaining
        self.context = callctx.CallContext(function, attempt, metadata, deadline, traceparent, tracestate)
        # What to restore is kept in the context it was changed in, not on
        # the instance: one instance may be entered in several threads (or
        # tasks) at once, each leaving in its own order.
        _OUTER.set(_OUTER.get() + (callctx._CURRENT.get(),))
        callctx._CURRENT.set(callctx.fixed(self.context))
        return self.context

    def __exit__(self, *exc_info: Any) -> None:
        outer = _OUTER.get()
        callctx._CURRENT.set(outer[-1])
        _OUTER.set(outer[:-1])

    def __call__(self, test: Callable[..., Any]) -> Callable[..., Any]:
        return _decorated(self, test)


# fake_callbacks' managers entered in each thread (_fakes.stack, innermost
# last), and in all threads (_entered, last entered last): while any is
# (or a testing.call runs), call_go calls _dispatch. _fakes.calls counts
# the testing.call calls that run in a thread.
_fakes = _thread._local()
_fakes_lock = _thread.allocate_lock()
_entered: List[fake_callbacks] = []


def _remove_last(managers: List[Any], manager: Any) -> None:
    for i in range(len(managers) - 1, -1, -1):
        if managers[i] is manager:
            del managers[i]
            return


# How many testing.call calls run, in all threads: while any does (or a
# fake_callbacks is entered), call_go calls _dispatch.
_running = 0


def _release() -> None:
    """call_go back to the runtime's own when nothing needs _dispatch
    (under _fakes_lock)."""
    if not _entered and not _running:
        callback._fake = None


def _dispatch(name: str, args: Any) -> Any:
    """call_go(name, *args) under fake_callbacks: the innermost manager of
    this thread answers; in a thread with none, that runs a testing.call
    (a test's thread), the manager entered last; in another (one the code
    under test started), the worker's refusal."""
    stack = getattr(_fakes, "stack", None)
    if not stack and getattr(_fakes, "calls", 0):
        with _fakes_lock:
            stack = _entered[-1:]
        if not stack:
            raise RuntimeError(
                "call_go(%r) in testing.call with no testing.fake_callbacks active: give the Go function a fake"
                " (a worker would call Config.Callbacks[%r])" % (name, name)
            )
    if not stack:
        raise RuntimeError(
            "call_go(%r) from a thread other than the worker's main thread: only the call Go made can call back"
            " (testing.fake_callbacks answers the thread that entered it)" % name
        )
    return stack[-1]._call(name, list(args))


# Go's limits (callctx.go): MaxMetadataEntries, MaxMetadataKeySize,
# MaxMetadataSize, and maxTraceHeader.
_MAX_METADATA_ENTRIES = 64
_MAX_METADATA_KEY_SIZE = 128
_MAX_METADATA_SIZE = 8 << 10
_MAX_TRACE_HEADER = 512


def _check_metadata(metadata: Dict[str, str]) -> None:
    """ValueError, naming the limit as Go's *MetadataError does, for
    metadata a call from Go cannot carry (Go fails the call before it
    reaches a worker)."""
    if len(metadata) > _MAX_METADATA_ENTRIES:
        raise ValueError("call_context: metadata: %d keys, at most %d (MaxMetadataEntries)" % (len(metadata), _MAX_METADATA_ENTRIES))
    size = 0
    for key in sorted(metadata):
        value = metadata[key]
        try:
            encoded_key = key.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("call_context: metadata key %r: the key is not valid UTF-8 (UTF-8)" % key) from None
        if len(encoded_key) > _MAX_METADATA_KEY_SIZE:
            raise ValueError(
                "call_context: metadata key %r...: the key is %d bytes, at most %d (MaxMetadataKeySize)" % (key[:32], len(encoded_key), _MAX_METADATA_KEY_SIZE)
            )
        try:
            size += len(encoded_key) + len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("call_context: metadata key %r: the value is not valid UTF-8 (UTF-8)" % key) from None
    if size > _MAX_METADATA_SIZE:
        raise ValueError("call_context: metadata: keys and values are %d bytes, at most %d (MaxMetadataSize)" % (size, _MAX_METADATA_SIZE))


def _printable_ascii(text: str) -> bool:
    return all(" " <= c <= "~" for c in text)


def _valid_traceparent(text: str) -> bool:
    """Whether Go's WithTraceContext sends text (validTraceparent): a W3C
    traceparent of version 00, or of a later version whose first 55
    characters are of version 00's form."""
    if (
        len(text) < 55
        or (len(text) > 55 and (text[:2] == "00" or text[55] != "-"))
        or text[:2] == "ff"
        or len(text) > _MAX_TRACE_HEADER
        or not _printable_ascii(text[55:])
    ):
        return False
    for i in range(55):
        if i in (2, 35, 52):
            if text[i] != "-":
                return False
        elif text[i] not in "0123456789abcdef":
            return False
    return text[3:35] != "0" * 32 and text[36:52] != "0" * 16


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def _go_quote(text: str) -> str:
    """text quoted as Go's %q (strconv.Quote) quotes it: printable
    characters as they are (unicode.IsPrint: letters, marks, numbers,
    punctuation, symbols, the ASCII space), others escaped."""
    import unicodedata

    out = ['"']
    for c in text:
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c == " " or unicodedata.category(c)[0] in "LMNPS":
            out.append(c)
        elif c < " " or c == "\x7f":
            out.append("\\x%02x" % ord(c))
        elif ord(c) < 0x10000:
            out.append("\\u%04x" % ord(c))
        else:
            out.append("\\U%08x" % ord(c))
    out.append('"')
    return "".join(out)


def _decorated(manager: Any, test: Callable[..., Any]) -> Callable[..., Any]:
    """test run under the context manager manager: an async def test is
    run under it while it is awaited, not while its coroutine is made; a
    class has each of its methods (inherited ones too) whose name starts
    with "test" run so."""
    import functools
    import inspect

    if isinstance(test, type):  # a test class: each of its test methods, as unittest.mock.patch does
        for attr in dir(test):  # inherited ones too, set on test (its bases are left as they are)
            value = inspect.getattr_static(test, attr)
            if attr.startswith("test") and inspect.isfunction(value):
                setattr(test, attr, _decorated(manager, value))
        return test
    if inspect.iscoroutinefunction(test):

        @functools.wraps(test)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with manager:
                return await test(*args, **kwargs)

        return run_async

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> Any:
        with manager:
            return test(*args, **kwargs)

    return run


class fake_callbacks:
    """A context manager (and decorator) under which call_go(name, *args)
    calls fakes[name](*args) instead of a Go function of Config.Callbacks
    (see the module's docstring). calls lists the (name, args) call_go was
    given, in order. Nested ones replace the outer fakes until they exit.
    The fakes answer the thread that entered the manager (and its async
    tasks) only: a worker refuses call_go from a thread a call started,
    and a manager entered in two threads gives each its own fakes."""

    def __init__(self, fakes: Dict[str, Callable[..., Any]]) -> None:
        self.fakes = dict(fakes)
        for name in self.fakes:
            if type(name) is not str:
                raise TypeError("fake_callbacks: the names are str, as Config.Callbacks' keys; got %r" % (name,))
        self.calls: List[tuple] = []

    def __enter__(self) -> fake_callbacks:
        with _fakes_lock:
            _fakes.__dict__.setdefault("stack", []).append(self)
            _entered.append(self)
            callback._fake = _dispatch
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with _fakes_lock:
            _remove_last(_fakes.__dict__.get("stack", []), self)  # the innermost entry of self in this thread
            _remove_last(_entered, self)
            _release()

    def __call__(self, test: Callable[..., Any]) -> Callable[..., Any]:
        return _decorated(self, test)

    def _call(self, name: str, args: List[Any]) -> Any:
        c = _codec()
        try:
            args = c.unpackb(c.packb(args))
        except Exception as exc:  # as callback._wait says it
            detail, hint = not_encodable(args, exc, "args")
            raise TypeError("call_go(%r): an argument cannot be encoded for Go: %s%s" % (name, detail, "; " + hint if hint else "")) from None
        size = len(c.packb([0, 1, name, args]))  # the CALLBACK frame's body, as callback._wait measures it
        if MAX_MESSAGE_SIZE and size > MAX_MESSAGE_SIZE:
            raise ValueError(
                "call_go(%r): the arguments encode to %d bytes, the limit is %d (Config.MaxMessageSize, the worker's --max-message); "
                "raise it, or pass less" % (name, size, MAX_MESSAGE_SIZE)
            )  # fmt: skip
        self.calls.append((name, args))
        fake = self.fakes.get(name)
        if fake is None:
            registered = ", ".join(sorted(self.fakes)) or "(none)"
            raise callback.GoError(
                "no Go callback named %s; registered (Config.Callbacks): %s" % (_go_quote(name), registered), "not_found"
            )
        result = fake(*args)
        if hasattr(type(result), "__await__"):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # no "never awaited" warning
            raise TypeError(
                "the fake callback %r returned a %s: a fake stands for a Go function, which returns its value; make it a plain def"
                % (name, type(result).__name__)
            )
        try:
            return c.unpackb(c.packb(result))
        except Exception as exc:
            # Not the worker's hint (set_default, register_ext): those
            # encode Python's values for Go, not what Go sends.
            detail = not_encodable(result, exc)[0]
            raise TypeError(
                "the fake callback %r returned a value Go could not send: %s; return what the Go function would: None, a"
                " bool, number, str, bytes, list, dict, an aware datetime or a value of a registered extension" % (name, detail)
            ) from None

