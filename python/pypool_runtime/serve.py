"""The serve loop: answer Go's calls until the end of input.

Worker reads CALL and STREAM frames, calls the function each names among
the configured modules' public functions, and answers with RESULT or ERROR
(worker.py's docstring has the messages). The common call (no keyword
arguments, a function that exists and returns an encodable value of
ordinary size) is handled inline in serve, with local names; everything
else goes through its methods. A STREAM goes to stream.py, an awaitable
result to aio.py; while a call runs, stream.py and callback.py talk to Go
through the Worker as a channel.Channel.
"""

from __future__ import annotations

from select import select  # bound before the user's module runs (as frames.py's os_write)

from . import CALL, ERROR, STREAM, channel, ext, shm
from .channel import Channel
from .errors import address_space_hint, clip_utf8, describe_exception, exception_message, not_encodable, type_name, utf8_safe
from .frames import HEADER, FrameReader, ProtocolViolation, os_write, write_all, write_frame, write_frame_bytes
from .interrupt import Interrupted

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Callable, Dict, List, Optional, Tuple, Union

    from .codec import Codec


# How long a worker whose codec is not loaded yet waits for its first call
# before it loads it (Worker._serve_until_loaded): the first call of New
# comes at once; a worker started ahead of its calls loads it meanwhile.
FIRST_CALL_WAIT = 0.1
# The most frames it serves (with the pure codec standing in) before it
# loads its codec, idle or not.
INTERIM_FRAMES = 8


def public_functions(module: Any) -> Dict[str, Callable[..., Any]]:
    """What Go may call: the callables named in __all__ if the module has one,
    else its callables whose names do not start with '_' and that the module
    itself defines (so `from os import system` exposes nothing)."""
    names = getattr(module, "__all__", None)
    if names is not None:
        candidates = {name: getattr(module, name, None) for name in names if isinstance(name, str)}
    else:
        candidates = {
            name: value for name, value in vars(module).items() if getattr(value, "__module__", None) == module.__name__
        }
    return {name: value for name, value in candidates.items() if not name.startswith("_") and callable(value)}


def callable_functions(modules: List[Any]) -> Dict[str, Callable[..., Any]]:
    """The names Go may call: "module.function" for the public functions of
    every configured module, and the plain "function" for those of the
    first. One dict lookup per call, whatever the number of modules."""
    functions: Dict[str, Callable[..., Any]] = {}
    for module in modules:
        for name, function in public_functions(module).items():
            functions[module.__name__ + "." + name] = function
    functions.update(public_functions(modules[0]))
    return functions


# TOO_LARGE_HINT is the hint of a result that encodes to more than
# Config.MaxMessageSize: a generator's items each cross on their own.
TOO_LARGE_HINT = "raise Config.MaxMessageSize, or return less: yield the result in pieces from a generator and iterate them with Pool.Stream"

# PING_FUNCTION is the runtime's own no-op, which Go's Pool.Ping calls. Its
# name is private, so no function of the user's module can take it.
PING_FUNCTION = "_pypool_ping"


def ping() -> None:
    """The function PING_FUNCTION names."""
    return None


# FUNCTIONS_FUNCTION is the runtime's own description of the modules' public
# functions (introspect.py), which Go's Pool.Functions calls.
FUNCTIONS_FUNCTION = "_pypool_functions"


# ASYNC_FUNCTIONS_FUNCTION is the runtime's list of the async functions among
# the modules' public ones, in async mode (--async-calls, aio.AsyncServer):
# the calls Go may send to a worker that runs others.
ASYNC_FUNCTIONS_FUNCTION = "_pypool_async_functions"


def functions_of(modules: List[Any]) -> Callable[[], List[Dict[str, Any]]]:
    """The function FUNCTIONS_FUNCTION names for modules: introspect.describe,
    imported at its first call (no worker start pays for inspect and typing)."""

    def functions() -> List[Dict[str, Any]]:
        from . import stdlib

        return stdlib.runtime_module("introspect").describe(modules)

    return functions


class Worker(Channel):
    """Serves the functions of the configured modules (functions: the names
    Go may call, as callable_functions gives them) to Go."""

    def __init__(
        self,
        module_name: str,
        functions: Dict[str, Callable[..., Any]],
        codec: Codec,
        reader: FrameReader,
        out_fd: int,
        max_message: int,
        modules: Optional[List[str]] = None,
    ) -> None:
        super().__init__(codec, reader, out_fd, max_message)
        self._module_name = module_name
        self._modules = modules or [module_name]
        self._functions = functions
        self._decode_call = codec.decode_call
        self._result_frame = codec.result_frame
        # The call context (callctx.py): the name of the call of the fast
        # path that runs, which sets no CallContext; the calls running
        # with one (callctx.run).
        self.call_name = ""
        self.contexts = 0

    def serve(self) -> None:
        """Answer calls until the end of input.

        The common call (no keyword arguments, a function that exists and
        returns an encodable value of ordinary size) is handled inline with
        local names, with or without the call's context (callctx.py: set
        for the call, left before the next frame is read); everything else
        goes through the methods below."""
        channel.CURRENT = self
        if self.codec.finish is not None and self._serve_until_loaded():
            return
        self._bind_codec()
        interrupts = self.interrupts
        read = self.reader.read
        decode_call = self._decode_call
        result_frame = self._result_frame
        functions = self._functions
        out_fd = self.out_fd
        max_frame = self.max_message + HEADER.size
        write = os_write
        shared = shm.ACTIVE
        shared_from = shared.threshold if shared is not None else 1 << 64
        decode_call_context = self.codec.decode_call_context
        entered = None  # the last call's context (callctx.enter)
        while True:
            if entered is not None:
                _callctx.leave(self, entered)
                entered = None
            # Let go of the last call's values before the next call's arrive:
            # large ones could otherwise not reuse their memory.
            body = call = args = result = frame = None
            body = read()
            if body is None:
                return
            if shared is not None and (shared.used or ext.SHARED_READ):  # the last call used it
                ext.SHARED_READ = False
                shared.begin_call()
            call = decode_call(body)
            if call is None:
                call = decode_call_context(body)
                if call is None:
                    self._handle_general(body)
                    continue
                call_id, name, args, context = call
                if _callctx is None and not self._contexts_loaded(call_id):
                    continue
                entered = self._enter_context(name, context)
                if interrupts.idle and self._interrupted_before(call_id, context):
                    continue
            else:
                call_id, name, args = call
                if interrupts.idle and self._interrupted_before(call_id, None):
                    continue
            try:
                function = functions[name]  # not functions.get: one call less
            except KeyError:
                function = None
            if function is None:
                self._call(call_id, name, args, {})
                continue
            # As interrupts.call_user does, inline.
            self.call_name = name  # for callctx.current_call: Go sent no context
            try:
                try:
                    interrupts.in_user_code = True
                    result = function(*args)
                finally:
                    interrupts.in_user_code = False
            except BaseException as exc:  # SystemExit too: the worker stays alive
                self.send_exception(call_id, exc)
                continue
            cls = type(result)
            if (cls is bytes or cls is bytearray) and len(result) >= shared_from:
                self._send_shared_bytes(call_id, name, result)
                continue
            try:
                frame = result_frame(call_id, result)
            except BaseException as exc:  # a hook's SystemExit too (set_default, register_ext)
                frame = exc  # sent below, outside the except block: it may be an awaitable's
            if type(frame) is not bytes or (size := len(frame)) > max_frame or (shared is not None and shared.used):
                if isinstance(frame, BaseException):
                    self._send_refused(call_id, name, result, frame)
                else:
                    self._send_frame(call_id, name, frame)
                continue
            written = write(out_fd, frame)
            if written < size:  # a signal cut the write short
                write_all(out_fd, [memoryview(frame)[written:]])

    def serve_async(self, names: List[str]) -> None:
        """serve in async mode (--async-calls): aio.AsyncServer reads the
        frames, runs the calls of the async functions names as tasks on
        the loop thread and gives every other frame to handle."""
        channel.CURRENT = self
        if self.codec.finish is not None:
            self.codec.finish()  # before the loop thread binds the codec's entry points
        self._bind_codec()
        from . import aio

        aio.serve_async(self, names)

    def _bind_codec(self) -> None:
        """Bind the loaded codec's own entry points, not those of a deferred
        codec that forwarded to them (codec.deferred)."""
        codec = self.codec
        self.packb, self.unpackb = codec.packb, codec.unpackb
        self._decode_call, self._result_frame = codec.decode_call, codec.result_frame

    def _serve_until_loaded(self) -> bool:
        """Serve with a codec that is not loaded yet (codec.deferred) until
        it is: load it once no frame waits, after the first call (or
        FIRST_CALL_WAIT without one), so that the first result does not wait
        for msgpack's import, or after INTERIM_FRAMES frames when calls keep
        coming (the pure codec, which stands in for it meanwhile, is slower).
        True at the end of input."""
        codec = self.codec
        reader = self.reader
        wait = FIRST_CALL_WAIT
        served = 0
        while codec.finish is not None:
            if served >= INTERIM_FRAMES or not reader.buffered() and not select([reader.fileno()], [], [], wait)[0]:
                codec.finish()
                break
            wait = 0.0
            served += 1
            body = reader.read()
            if body is None:
                return True
            shared = shm.ACTIVE
            if shared is not None and (shared.used or ext.SHARED_READ):  # as serve does
                ext.SHARED_READ = False
                shared.begin_call()
            self.handle(body)
        return False

    def function(self, name: str) -> Optional[Callable[..., Any]]:
        """The function Go may call as name, or None."""
        return self._functions.get(name)

    def handle(self, body: Union[bytes, memoryview]) -> None:
        """Answer one frame, as serve does."""
        call = self._decode_call(body)
        if call is None:
            self._handle_general(body)
        elif not self._interrupted_before(call[0], None):
            self._in_context(call[1], None, self._call, call[0], call[1], call[2], {})

    def _interrupted_before(self, call_id: int, context: Any) -> bool:
        """Whether the call call_id, whose frame carried context (None:
        none), was interrupted before it began (interrupt.py: an idle SIGINT
        that its frame does not count as late); if so it is answered as
        interrupted, without running. Only for a call frame read while
        interrupts.idle is above 0, or (a call made in a callback, read
        while the runtime works for the call that waits in call_go) while
        an interrupt is pending: Go sends one only once the call tree is
        cut off, after this frame, and the frame's call must not run. (The
        inline path tests idle itself, to spare the common call this one.)"""
        if not (self.interrupts.idle or self.interrupts.pending):
            return False
        if not self.interrupts.take_pending():
            late = _load_callctx().late_interrupts(context) if context is not None else 0
            if not self.interrupts.begins_interrupted(late):
                return False
        self.send_exception(call_id, Interrupted("interrupted before the call began"))
        return True

    def _in_context(self, name: str, context: Any, call: Callable[..., None], *args: Any) -> None:
        """call(*args), the call to name whose frame carried context (None:
        none): callctx.current_call() tells its context meanwhile. A call
        without one, when no call with one runs, only records its name."""
        if context is None and not self.contexts:
            outer, self.call_name = self.call_name, name
            try:
                call(*args)
            finally:
                self.call_name = outer
            return
        _load_callctx().run(self, name, context, call, *args)

    def call_contexts(self) -> Any:
        """The callctx module, imported at its first use (for aio's async
        mode, whose tasks enter their calls' contexts themselves)."""
        return _load_callctx()

    def _contexts_loaded(self, call_id: int) -> bool:
        """Import callctx for the first call with a context, call_id;
        whether it could be: an import that fails (out of memory or of
        descriptors under Config.Limits) fails that call, not the worker."""
        try:
            _load_callctx()
        except (ImportError, MemoryError, OSError) as exc:
            self.send_exception(call_id, exc)
            return False
        return True

    def _enter_context(self, name: str, context: Any) -> Any:
        """callctx.enter for the call to name whose frame carried context."""
        return _load_callctx().enter(self, name, context)

    def _handle_general(self, body: Union[bytes, memoryview]) -> None:
        try:
            message = self.unpackb(body)
        except Exception as exc:
            self._answer_undecodable(body, exc)
            return
        if type(message) is not list or not message or type(message[0]) is not int:
            raise ProtocolViolation("a frame is not an array that starts with an integer kind")
        if message[0] != CALL and message[0] != STREAM:
            self.control(message)
            return
        check_call_head(message[0], len(message), message[1:3])
        call_id, name, args, kwargs = message[1:5]
        context = message[-1] if len(message) == (6 if message[0] == CALL else 7) else None
        if context is not None and _callctx is None and not self._contexts_loaded(call_id):
            return
        if self._interrupted_before(call_id, context):
            return
        if type(args) is not list:
            self.send_error(call_id, "bad_arguments", "TypeError", "the arguments of %s() are not an array" % name)
        elif kwargs is not None and type(kwargs) is not dict:
            self.send_error(
                call_id, "bad_arguments", "TypeError", "the keyword arguments of %s() are not a map" % name
            )
        elif kwargs and not all(type(key) is str for key in kwargs):
            bad = next(key for key in kwargs if type(key) is not str)
            self.send_error(
                call_id,
                "bad_arguments",
                "TypeError",
                "keyword argument names of %s() must be strings, not %s" % (name, type(bad).__name__),
            )
        elif message[0] == STREAM:
            try:
                from . import stream  # only a worker that streams needs it
            except Exception as exc:  # out of descriptors or memory (Config.Limits): this call's error
                self.send_exception(call_id, exc)
                return
            self._in_context(name, context, stream.run, self, call_id, name, args, kwargs or {}, message[5])
        else:
            self._in_context(name, context, self._call, call_id, name, args, kwargs or {})

    def _answer_undecodable(self, body: Union[bytes, bytearray], exc: Exception) -> None:
        """The frame did not decode: answer bad_arguments if its head [kind,
        id, name] still does (invalid UTF-8 in an argument, say)."""
        found = self.frame_head(body, 3)
        if found is None:
            raise ProtocolViolation("undecodable frame (%s: %s)" % (type_name(exc), exception_message(exc)))
        length, head = found
        check_call_head(head[0], length, head[1:])
        call_id, name = head[1], head[2]
        if self.interrupts.idle:  # the call is answered now, interrupted or not
            self.interrupts.begins_interrupted(0)
        self.send_error(
            call_id,
            "bad_arguments",
            type_name(exc),
            "cannot decode the arguments of %s(): %s" % (name, exception_message(exc)),
            hint=address_space_hint(exc),  # the shared memory's MemoryError under Config.Limits
        )

    def _call(self, call_id: int, name: str, args: List[Any], kwargs: Dict[str, Any]) -> None:
        function = self._functions.get(name)
        if function is None:
            self.send_error(call_id, "function_not_found", "AttributeError", self.not_found(name))
            return
        try:
            result = self.interrupts.call_user(function, args, kwargs)
        except BaseException as exc:  # SystemExit too: the worker stays alive
            self.send_exception(call_id, exc)
            return
        self._send_result(call_id, name, result)

    def _send_result(self, call_id: int, name: str, result: Any) -> None:
        """Send what function name returned, as serve does inline."""
        shared = shm.ACTIVE
        cls = type(result)
        if shared is not None and (cls is bytes or cls is bytearray) and len(result) >= shared.threshold:
            self._send_shared_bytes(call_id, name, result)
            return
        try:
            frame = self._result_frame(call_id, result)
        except BaseException as exc:  # as in serve
            frame = exc  # sent below, outside the except block, as in serve
        if isinstance(frame, BaseException):
            self._send_refused(call_id, name, result, frame)
        else:
            self._send_frame(call_id, name, frame)

    def _send_shared_bytes(self, call_id: int, name: str, data: Union[bytes, bytearray]) -> None:
        """Send a large bytes result through the shared memory."""
        if len(data) > self.max_message:
            self._send_too_large(call_id, name, len(data))
            return
        assert shm.ACTIVE is not None
        try:
            frame = shm.bytes_result_frame(shm.ACTIVE, call_id, data)
        except shm.ReplyTooLarge as exc:
            self.send_error(call_id, "message_too_large", "ValueError", "the result of %s(): %s" % (name, exc), hint=TOO_LARGE_HINT)
            return
        # Go counts the message as its frame plus the shared bytes it
        # refers to (as _send_frame does): the bytes alone may fit and the
        # message not.
        size = len(frame) - HEADER.size + len(data)
        if size > self.max_message:
            self._send_too_large(call_id, name, size)
            return
        write_frame_bytes(self.out_fd, frame)

    def _send_too_large(self, call_id: int, name: str, size: int) -> None:
        self.send_error(
            call_id,
            "message_too_large",
            "ValueError",
            "the result of %s() encodes to %d bytes, the limit is %d (Config.MaxMessageSize)" % (name, size, self.max_message),
            hint=TOO_LARGE_HINT,
        )

    def send_exception(self, call_id: int, exc: BaseException) -> None:
        if isinstance(exc, Interrupted):  # Go drops the reply: no traceback to format
            self.send_error(call_id, "interrupted", "KeyboardInterrupt", exception_message(exc))
            return
        try:
            code = "interrupted" if isinstance(exc, KeyboardInterrupt) else "exception"
            described = describe_exception(exc)
        except BaseException:  # an exception whose __class__ raises, say: the worker stays alive
            code, described = "exception", (type_name(exc), "<exception could not be described>", "", "")
        self.send_error(call_id, code, *described)

    def _send_refused(self, call_id: int, name: str, result: Any, exc: BaseException) -> None:
        """Answer for a result the codec refused with exc. An awaitable (what
        an async function returns) is refused too: it is awaited here, off the
        hot path, which tries to encode every result first, and outside the
        except block, so that the coroutine does not see exc as the
        exception being handled. A runtime module that cannot be imported
        (out of descriptors or memory: Config.Limits) fails the call, not
        the worker."""
        try:
            from . import aio
        except Exception as error:
            self.send_exception(call_id, error)
            return
        if not aio.is_awaitable(result):
            self._send_not_encodable(call_id, name, result, exc)
            return
        del exc
        try:
            result = aio.run(result)
        except BaseException as error:  # the interrupt (cancellation) too, as in _call
            self.send_exception(call_id, error)
            return
        self._send_result(call_id, name, result)

    def _send_not_encodable(self, call_id: int, name: str, result: Any, exc: BaseException) -> None:
        if isinstance(exc, shm.ReplyTooLarge):  # arrays put in the shared memory did not fit
            self.send_error(call_id, "message_too_large", "ValueError", "the result of %s(): %s" % (name, exc), hint=TOO_LARGE_HINT)
            return
        detail, hint = not_encodable(result, exc)
        cls = type(result)
        if hasattr(cls, "__next__") or hasattr(cls, "__aiter__"):
            hint = "it returned an iterator: iterate it from Go with Pool.Stream"
        self.send_error(
            call_id,
            "result_not_encodable",
            type_name(exc),
            "cannot encode the result of %s() for Go: %s" % (name, detail),
            hint=hint,
        )

    def _send_frame(self, call_id: int, name: str, frame: Union[bytes, Tuple[bytes, Any]]) -> None:
        """Send a RESULT frame from the codec's result_frame, unless it is too
        large. A frame in two parts (a large one) is written with writev, so
        that its payload (a large bytes result, say) is not copied; the bytes
        on the wire are exactly those of packb's encoding behind the length."""
        if type(frame) is bytes:
            size = len(frame) - HEADER.size
            parts = [memoryview(frame)]
        else:
            head, payload = frame
            size = len(head) - HEADER.size + len(payload)
            parts = [memoryview(head), memoryview(payload)]
        if shm.ACTIVE is not None:
            size += shm.ACTIVE.reply_bytes()  # arrays the encoder put in shared memory
        if size > self.max_message:
            self._send_too_large(call_id, name, size)
            return
        write_all(self.out_fd, parts)

    def not_found(self, name: str) -> str:
        module, _, function = name.rpartition(".")
        if function.startswith("_"):
            return "%r is private: names starting with '_' cannot be called" % name
        if module and module not in self._modules:
            if len(self._modules) == 1:
                return "%r: dotted names are not allowed; only functions of module %r can be called" % (
                    name,
                    self._module_name,
                )
            return "%r: %r is not a configured module; only functions of modules %s can be called" % (
                name,
                module,
                ", ".join(repr(m) for m in self._modules),
            )
        module = module or self._module_name
        prefix = module + "."
        names = (n[len(prefix) :] for n in self._functions if n.startswith(prefix))
        available = ", ".join(sorted(n for n in names if "." not in n)) or "(none)"  # not a submodule's
        return "%s has no public function %r; available: %s" % (module, function, available)

    def send_error(self, call_id: int, code: str, type_: str, message: str, tb: str = "", hint: str = "") -> None:
        if code == "interrupted" and self.interrupts.raised:
            # Go's drain takes any reply "interrupted" (a nested call's
            # too: callback._refuse_unread_calls) for its SIGINT taken.
            self.interrupts.answered_interrupted()
        message, tb, hint = utf8_safe(message), utf8_safe(tb), utf8_safe(hint)
        tail = [hint] if hint else []  # the hint field only when there is one
        reply = self.packb([ERROR, call_id, code, type_, message, tb] + tail)
        if len(reply) > self.max_message:
            # Cut the reply to fit, keeping the start of the message and of
            # the hint and the end of the traceback; the 12 is for the three
            # str headers, which may grow by up to 4 bytes each.
            room = self.max_message - len(self.packb([ERROR, call_id, code, type_, "", ""] + [""] * len(tail))) - 12
            third = max(room // 3 if tail else room // 2, 0)
            message, tb = clip_utf8(message, third, False), clip_utf8(tb, third, True)
            tail = [clip_utf8(hint, third, False)] if tail else []
            reply = self.packb([ERROR, call_id, code, type_, message, tb] + tail)
        write_frame(self.out_fd, reply)


# callctx, once a call with a context came (_load_callctx).
_callctx: Any = None


def _load_callctx() -> Any:
    """callctx, imported by the first call that needs it: a worker that is
    never sent a context (nor a nested call) does not import it."""
    global _callctx
    if _callctx is None:
        from . import callctx

        _callctx = callctx
    return _callctx


def check_call_head(kind: int, length: int, rest: List[Any]) -> None:
    """Raise ProtocolViolation unless kind, length and [id, name] start a CALL
    or a STREAM."""
    if kind != CALL and kind != STREAM:
        raise ProtocolViolation(
            "unexpected message kind %d (a call starts with CALL, kind %d, or STREAM, kind %d)" % (kind, CALL, STREAM)
        )
    fields = 5 if kind == CALL else 6  # and one more: the call's context (callctx.py)
    if length != fields and length != fields + 1:
        raise ProtocolViolation("a %s frame has %d fields, not %d or %d" % ("CALL" if kind == CALL else "STREAM", length, fields, fields + 1))
    call_id, name = rest
    if type(call_id) is not int or call_id < 0 or type(name) is not str:
        raise ProtocolViolation("a CALL frame's id is not an unsigned integer or its function name is not a string")

