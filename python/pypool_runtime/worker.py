"""The worker process: runs the public functions of one module for Go.

Go starts it as::

    python3 -I -c "import sys;sys.path[:]=[p for p in sys.path if p];sys.path.insert(0,sys.argv[1]);
                        from pypool_runtime.worker import main;main(sys.argv[2:])" \\
        RUNTIME_DIR --module MODULE [--module MODULE]... [--path DIR]... [--max-message BYTES] [--codec auto|pure] \\
        [--shm-fd FD --shm-threshold BYTES --shm-limit BYTES] [--dump-fd FD] \\
        [--limit-as BYTES] [--limit-cpu SECONDS] [--limit-nofile COUNT]

and talks to it over the original stdin/stdout with frames: a 4-byte
big-endian length, then a msgpack array whose first element is the kind:

    HELLO  (to Go, first)  [1, protocol_version, pid, python_version, codec, error|nil, executable, setup_seconds]
    CALL   (from Go)       [2, id, function, args, kwargs|nil]
    RESULT (to Go)         [3, id, value]
    ERROR  (to Go)         [4, id, code, type, message, traceback]

where the HELLO error is nil or [code, type, message, traceback]. While a
call runs (stream.py, callback.py):

    STREAM    (from Go)    [5, id, function, args, kwargs|nil, window]
    ITEMS     (to Go)      [6, id, [item, ...]]
    CREDIT    (from Go)    [7, id, n]
    CLOSE     (from Go)    [8, id]
    CALLBACK  (to Go)      [9, seq, name, args]
    CB_RESULT (from Go)    [10, seq, value]
    CB_ERROR  (from Go)    [11, seq, code, go_type, message]

A STREAM is a call whose result is iterated: its items go in ITEMS frames,
at most `window` of them ahead of Go's CREDIT, and RESULT nil (or ERROR)
ends it; CLOSE asks for its end (generator.close()). While Python waits in
call_go for CB_RESULT or CB_ERROR, Go may send a CALL or STREAM (a nested
call), answered first. CREDIT, CLOSE, CB_RESULT and CB_ERROR for a stream
or callback that is over are late and ignored. Kinds 12..15 are reserved.
Anything else Go sends is a protocol violation: the worker explains it in
one line on stderr and exits with status 2.

With --dump-fd, SIGUSR1 makes the worker write the stacks of all its threads
to that descriptor (faulthandler: C code in the signal handler, so that it
works while the main thread is stuck in C code too); Go sends it before it
interrupts or kills a worker and logs the stacks.

The import path cannot be shadowed: -I (isolated mode) keeps the working
directory ('') off sys.path (the bootstrap would drop it before it imports
anything that is not built in), and every module the runtime uses is
imported before fix_sys_path puts the --path entries ahead of the standard
library (the lazy ones by preload_stdlib), or, when that would slow every
start down (asyncio), later by stdlib.import_module, from the
interpreter's own entries only. sys.path is then the --path
entries, then the interpreter's own entries; the working directory only if
it is a --path. --limit-* are Config.Limits (apply_limits).

The worker holds only the descriptors Go gives it (0-3, --shm-fd,
--dump-fd): startup closes any other it inherited (close_inherited_fds).
"""

from __future__ import annotations

import _thread  # built in: _exit_soon's timer and call_go's thread check, without importing threading
import binascii  # for --setup-args: imported here, before the user's paths
import io
import os
import select  # streams and callbacks wait for input: imported before the user's paths
import struct
import sys
import time

try:  # _signal is signal without its enum wrappers, a few ms cheaper to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal  # type: ignore[no-redef]

from . import CALL, CB_ERROR, CB_RESULT, CLOSE, CREDIT, ERROR, HELLO, PROTOCOL_VERSION, RESULT, STREAM
from . import codec as codecs
from . import shm, stdlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Callable, Dict, List, NoReturn, Optional, Tuple, Union

DEFAULT_MAX_MESSAGE = 64 << 20

# Exit statuses besides 0 (end of input).
EXIT_IMPORT_FAILED = 1
EXIT_PROTOCOL = 2

_HEADER = struct.Struct(">I")
_unpack_header = _HEADER.unpack_from
# Frames up to this size are read through one buffer, normally with one read
# per frame; larger bodies are read straight into a buffer of their own.
_READ_BUFFER_SIZE = 64 << 10
# Replies up to this size are joined to their header and written with one
# write(); larger ones are written with writev() to avoid copying them.
_JOIN_LIMIT = codecs.JOIN_LIMIT
# After the end of input, how long the interpreter's normal exit may wait for
# the user's non-daemon threads and atexit handlers.
_EXIT_GRACE_SECONDS = 10.0

_USAGE = (
    "usage: main(['--module', NAME, ('--module', NAME)..., ('--path', DIR)..., ('--max-message', BYTES), ('--codec', 'auto'|'pure'),"
    " ('--shm-fd', FD, '--shm-threshold', BYTES, '--shm-limit', BYTES), ('--dump-fd', FD),"
    " ('--setup', FUNCTION, ('--setup-args', BASE64)), ('--limit-as'|'--limit-cpu'|'--limit-nofile', N)...])"
)


class ProtocolViolation(Exception):
    """Go sent something this protocol does not allow."""


class Options:
    """The command line. A plain class: collections.namedtuple would cost
    a few ms of import at every worker start."""

    __slots__ = (
        "module", "modules", "paths", "max_message", "codec", "shm_fd", "shm_threshold", "shm_limit", "dump_fd", "setup", "setup_args",
        "limits",
    )  # fmt: skip

    def __init__(self, module: str, paths: List[str], max_message: int, codec: str) -> None:
        self.module = module  # the first --module: plain names and --setup resolve in it
        self.modules = [module]
        self.paths = paths
        self.max_message = max_message
        self.codec = codec
        # The shared memory's descriptor (-1: none), the size from which a
        # reply's values go through it, and the most it may grow to.
        self.shm_fd = -1
        self.shm_threshold = 0
        self.shm_limit = 0
        # Where SIGUSR1 dumps the threads' stacks (-1: it does not).
        self.dump_fd = -1
        # The module's set-up function, run once before serving calls, and
        # its arguments: base64 of msgpack [args, kwargs|nil] ("" for none).
        self.setup = ""
        self.setup_args = ""
        # Resource limits to apply (apply_limits): resource's RLIMIT_* name -> value.
        self.limits: Dict[str, int] = {}


def parse_args(argv: List[str]) -> Options:
    """Parse the worker's command line; ValueError explains a bad one."""
    modules: List[str] = []
    paths: List[str] = []
    max_message = DEFAULT_MAX_MESSAGE
    codec_name = "auto"
    shm_options: Dict[str, int] = {}
    dump_fd = -1
    setup = {"--setup": "", "--setup-args": ""}
    limits: Dict[str, int] = {}
    args = iter(argv)
    for flag in args:
        value = next(args, None)
        if value is None or flag not in ("--module", "--path", "--max-message", "--codec", "--dump-fd") + _SHM_FLAGS + tuple(
            setup
        ) + tuple(_LIMIT_FLAGS):
            raise ValueError("bad argument %r; %s" % (flag, _USAGE))
        if flag in _LIMIT_FLAGS:
            limits[_LIMIT_FLAGS[flag]] = _non_negative(flag, value)
        elif flag == "--dump-fd":
            dump_fd = _non_negative(flag, value)
        elif flag in setup:
            setup[flag] = value
        elif flag in _SHM_FLAGS:
            shm_options[flag] = _non_negative(flag, value)
        elif flag == "--module":
            modules.append(value)
        elif flag == "--path":
            paths.append(value)
        elif flag == "--max-message":
            try:
                max_message = int(value)
            except ValueError:
                raise ValueError("--max-message %r is not an integer" % value) from None
            if max_message <= 0:
                raise ValueError("--max-message must be positive, not %d" % max_message)
        elif value in ("auto", codecs.PURE_NAME):
            codec_name = value
        else:
            raise ValueError("--codec must be auto or %s, not %r" % (codecs.PURE_NAME, value))
    if not modules or not all(modules):
        raise ValueError("--module is required; " + _USAGE)
    options = Options(modules[0], paths, max_message, codec_name)
    options.modules = modules
    options.dump_fd = dump_fd
    options.limits = limits
    options.setup, options.setup_args = setup["--setup"], setup["--setup-args"]
    if options.setup_args and not options.setup:
        raise ValueError("--setup-args needs --setup")
    if shm_options:
        if len(shm_options) != len(_SHM_FLAGS):
            raise ValueError("%s go together" % ", ".join(_SHM_FLAGS))
        options.shm_fd = shm_options["--shm-fd"]
        options.shm_threshold = shm_options["--shm-threshold"]
        options.shm_limit = shm_options["--shm-limit"]
    return options


_SHM_FLAGS = ("--shm-fd", "--shm-threshold", "--shm-limit")

# Config.Limits: the flag of each limit and the resource module's name for it.
_LIMIT_FLAGS = {"--limit-as": "RLIMIT_AS", "--limit-cpu": "RLIMIT_CPU", "--limit-nofile": "RLIMIT_NOFILE"}


def _non_negative(flag: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError("%s %r is not a non-negative integer" % (flag, value))
    return number


# -- Process set-up -----------------------------------------------------------


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _text_stream(fd: int, write: bool) -> io.TextIOWrapper:
    # UTF-8 and, for output, line-buffered, whatever the locale and the
    # (ignored, -I) PYTHON* variables say. closefd=False keeps fds 0-2 open
    # for C code even if user code closes sys.stdout.
    if write:
        return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    return open(fd, "r", encoding="utf-8", errors="backslashreplace", closefd=False)


def isolate_stdio(new_streams: bool = True) -> Tuple[int, int]:
    """Move the protocol pipes away from fds 0 and 1, so that user code (print,
    os.write(1, ...) in Python or C, input()) cannot touch them. Returns the
    protocol's (input fd, output fd), which child processes do not inherit.
    With new_streams False, sys.stdin, sys.stdout and sys.stderr are kept:
    they already are _text_stream()s of fds 0, 1 and 2 (a fork server's
    child inherits its template's)."""
    log_fd_open = _fd_is_open(3)  # tested first: the dups below may take fd 3
    proto_in = os.dup(0)  # os.dup makes non-inheritable descriptors
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if log_fd_open:  # Go's pipe for the worker's stdout log stream
        os.dup2(3, 1)
        os.close(3)
    else:
        os.dup2(2, 1)
    if new_streams:
        sys.stdin = sys.__stdin__ = _text_stream(0, write=False)
        sys.stdout = sys.__stdout__ = _text_stream(1, write=True)
        sys.stderr = sys.__stderr__ = _text_stream(2, write=True)
    return proto_in, proto_out


def fix_sys_path(paths: List[str]) -> None:
    """sys.path = the --path entries, then the interpreter's own entries
    (standard library, site-packages), without the runtime's directory and
    without '' (the working directory, which -c puts first): the working
    directory is on it only if it is one of the --path entries. Every module
    the runtime uses must be imported before this (preload_stdlib), or
    later through stdlib.import_module: otherwise a module of the same name
    in a --path directory would win."""
    runtime_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = [p for p in sys.path if p != "" and os.path.abspath(p) != runtime_dir]
    stdlib.protect(rest)
    sys.path[:] = [os.path.abspath(p) for p in paths] + rest


def apply_limits(limits: Dict[str, int]) -> None:
    """Set the resource limits of Config.Limits (RLIMIT_* name -> value),
    before the user's module is imported. The hard limit is set too, so that
    code in the worker cannot raise the limit again; for CPU time it is one
    second above, so that a process that ignores SIGXCPU is killed then. A
    hard limit already lower is kept."""
    if not limits:
        return
    import resource  # not built in everywhere: imported before the user's paths

    for name, value in sorted(limits.items()):
        which = getattr(resource, name)
        soft, hard = value, value + 1 if name == "RLIMIT_CPU" else value
        _, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        try:
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as exc:
            _exit(EXIT_PROTOCOL, "cannot set %s to %d (Config.Limits): %s" % (name, value, exc))


# The traceback module, imported by preload_stdlib before the user's paths
# are on sys.path.
_traceback: Any = None


def preload_stdlib() -> None:
    """Import the standard modules that the runtime would otherwise import
    lazily, while sys.path holds only the interpreter's own entries: the
    traceback module and, by formatting one exception, what it imports on
    its first use (linecache, tokenize, ast for the carets of 3.11+). A module
    of the same name in a --path directory can then neither replace them for
    the runtime nor break its error replies."""
    global _traceback
    import traceback

    _traceback = traceback
    try:
        _warm_up_traceback()
    except Exception as exc:  # formatted whole: format_traceback would skip the runtime's frames
        traceback.format_exception(type(exc), exc, exc.__traceback__)


def _warm_up_traceback() -> None:
    table: Dict[str, int] = {}
    try:
        table["key"] + 1  # a subscript and an operator: the carets' code runs
    except KeyError:
        table.no_such_name  # type: ignore[attr-defined]  # chained, with a suggestion (3.10+)


# True while a user function runs: only then does SIGINT interrupt it.
_in_user_code = False
# Above 0 while the runtime works for a call in progress (streams its items,
# waits in call_go): a SIGINT that arrives in its own code is kept in
# _interrupt_pending, for it to act on at the next safe point.
_runtime_busy = 0
_interrupt_pending = False
# The main thread, the only one that may call_go.
_MAIN_THREAD = _thread.get_ident()
# How long wait_input blocks in select() before it looks again: the bound on
# how late an interrupt that raced the call to select() is handled.
_WAIT_SLICE_SECONDS = 0.05
# The Worker that serves calls, for call_go and the streams.
_WORKER: Optional["Worker"] = None


def _on_sigint(signum: int, frame: Any) -> None:
    global _interrupt_pending
    if _in_user_code:
        raise KeyboardInterrupt
    if _runtime_busy:
        _interrupt_pending = True
    # Otherwise ignored: between calls there is nothing to interrupt.


def _invoke(function: Callable[..., Any], args: List[Any], kwargs: Dict[str, Any]) -> Any:
    global _in_user_code
    try:
        _in_user_code = True
        return function(*args, **kwargs)
    finally:
        _in_user_code = False


# -- Errors as Go sees them ---------------------------------------------------


def type_name(exc: BaseException) -> str:
    """'ValueError' for builtins, 'module.QualName' otherwise."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return "%s.%s" % (cls.__module__, cls.__qualname__)


def exception_message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def format_traceback(exc: BaseException) -> str:
    """The traceback as Python prints it, starting below the runtime's frames.
    Should the traceback module fail (a user replaced what it imports), a
    plain one, so that the error still reaches Go."""
    tb = exc.__traceback__
    while tb is not None and (tb.tb_frame.f_globals is _GLOBALS or _awaiting_frame(tb.tb_frame)):
        tb = tb.tb_next
    # An interrupt's traceback ends in the SIGINT handler: cut it off.
    node = tb
    while node is not None and node.tb_next is not None:
        following = node.tb_next.tb_frame
        if following.f_code is _on_sigint.__code__ or following.f_globals.get("__name__") == "pypool_runtime.aio":
            node.tb_next = None
        else:
            node = node.tb_next
    try:
        traceback = _traceback
        if traceback is None:  # the runtime's functions used on their own, as in its tests
            import traceback
        return "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:
        return _plain_traceback(exc, tb)


def _plain_traceback(exc: BaseException, tb: Any) -> str:
    lines = ["Traceback (most recent call last):\n"]
    while tb is not None:
        code = tb.tb_frame.f_code
        lines.append('  File "%s", line %d, in %s\n' % (code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    lines.append("%s: %s\n" % (type_name(exc), exception_message(exc)))
    return "".join(lines)


_GLOBALS = globals()


def _awaiting_frame(frame: Any) -> bool:
    """Whether frame is of the machinery that awaits an async function: aio.py
    or asyncio's own (above the user's coroutine in a traceback)."""
    module = frame.f_globals.get("__name__", "")
    return module == "pypool_runtime.aio" or module.startswith("asyncio.")


def _utf8_safe(text: str) -> str:
    # Exception messages may hold lone surrogates (from os.fsdecode, say),
    # which msgpack cannot encode.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# -- Frames -------------------------------------------------------------------


class FrameReader:
    """Reads frames from a pipe without losing their boundaries."""

    def __init__(self, fd: int, max_message: int) -> None:
        # FileIO.readinto is one read(2), retried on EINTR (PEP 475).
        self._file = io.FileIO(fd, "rb", closefd=False)
        self._readinto = self._file.readinto
        self._buf = bytearray(_READ_BUFFER_SIZE)
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
        if not self._fill(_HEADER.size):
            if self._start == self._end:
                return None
            raise ProtocolViolation("the input ended inside a frame header")
        (size,) = _HEADER.unpack_from(self._buf, self._start)
        if size > self._max_message:
            raise ProtocolViolation("a %d-byte frame exceeds --max-message %d" % (size, self._max_message))
        self._start += _HEADER.size
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
    """Write one frame, looping over partial writes (a signal may cut a long one)."""
    header = _HEADER.pack(len(body))
    if len(body) <= _JOIN_LIMIT:
        data = header + body
        written = os.write(fd, data)
        if written < len(data):
            _write_all(fd, [memoryview(data)[written:]])
    else:
        _write_all(fd, [memoryview(header), memoryview(body)])


def write_frame_bytes(fd: int, frame: bytes) -> None:
    """Write a whole frame, length included."""
    written = os.write(fd, frame)
    if written < len(frame):  # a signal cut the write short
        _write_all(fd, [memoryview(frame)[written:]])


def _write_all(fd: int, parts: List[memoryview]) -> None:
    while parts:
        written = os.writev(fd, parts)
        while parts and written >= len(parts[0]):
            written -= len(parts[0])
            parts.pop(0)
        if parts:
            parts[0] = parts[0][written:]


# -- The worker ---------------------------------------------------------------


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


# PING_FUNCTION is the runtime's own no-op, which Go's Pool.Ping calls. Its
# name is private, so no function of the user's module can take it.
PING_FUNCTION = "_pypool_ping"


def _ping() -> None:
    return None


class Worker:
    def __init__(
        self,
        module_name: str,
        functions: Dict[str, Callable[..., Any]],
        codec: codecs.Codec,
        reader: FrameReader,
        out_fd: int,
        max_message: int,
        modules: Optional[List[str]] = None,
    ) -> None:
        self._module_name = module_name
        self._modules = modules or [module_name]
        self._functions = functions
        self._packb = codec.packb
        self._unpackb = codec.unpackb
        self._unpacker = codec.Unpacker
        self._decode_call = codec.decode_call
        self._result_frame = codec.result_frame
        self._reader = reader
        self._out_fd = out_fd
        self._max_message = max_message
        self.streams: List[Any] = []  # the streams in progress, innermost last (stream.py)
        self.callback_seq = 0  # the last call_go's sequence number (callback.py)
        self.callbacks_waiting = 0  # call_go calls waiting for Go's answer

    def serve(self) -> None:
        """Answer calls until the end of input.

        The common call (no keyword arguments, a function that exists and
        returns an encodable value of ordinary size) is handled inline with
        local names; everything else goes through the methods below."""
        global _in_user_code, _WORKER
        _WORKER = self
        read = self._reader.read
        decode_call = self._decode_call
        result_frame = self._result_frame
        functions = self._functions
        out_fd = self._out_fd
        max_frame = self._max_message + _HEADER.size
        write = os.write
        shared = shm.ACTIVE
        shared_from = shared.threshold if shared is not None else 1 << 64
        while True:
            # Let go of the last call's values before the next call's arrive:
            # large ones could otherwise not reuse their memory.
            body = call = args = result = frame = None
            body = read()
            if body is None:
                return
            if shared is not None:
                shared.begin_call()
            call = decode_call(body)
            if call is None:
                self._handle_general(body)
                continue
            call_id, name, args = call
            function = functions.get(name)
            if function is None:
                self._call(call_id, name, args, {})
                continue
            # As _invoke does.
            try:
                try:
                    _in_user_code = True
                    result = function(*args)
                finally:
                    _in_user_code = False
            except BaseException as exc:  # SystemExit too: the worker stays alive
                self._send_exception(call_id, exc)
                continue
            cls = type(result)
            if (cls is bytes or cls is bytearray) and len(result) >= shared_from:
                self._send_shared_bytes(call_id, name, result)
                continue
            try:
                frame = result_frame(call_id, result)
            except Exception as exc:
                frame = exc  # sent below, outside the except block: it may be an awaitable's
            if type(frame) is not bytes or len(frame) > max_frame or (shared is not None and shared.used):
                if isinstance(frame, Exception):
                    self._send_refused(call_id, name, result, frame)
                else:
                    self._send_frame(call_id, name, frame)
                continue
            written = write(out_fd, frame)
            if written < len(frame):  # a signal cut the write short
                _write_all(out_fd, [memoryview(frame)[written:]])

    def _handle(self, body: Union[bytes, memoryview]) -> None:
        """Answer one frame, as serve does."""
        call = self._decode_call(body)
        if call is None:
            self._handle_general(body)
        else:
            self._call(call[0], call[1], call[2], {})

    def _handle_general(self, body: Union[bytes, memoryview]) -> None:
        try:
            message = self._unpackb(body)
        except Exception as exc:
            self._answer_undecodable(body, exc)
            return
        if type(message) is not list or not message or type(message[0]) is not int:
            raise ProtocolViolation("a frame is not an array that starts with an integer kind")
        if message[0] != CALL and message[0] != STREAM:
            self.control(message)
            return
        _check_call_head(message[0], len(message), message[1:3])
        call_id, name, args, kwargs = message[1:5]
        if type(args) is not list:
            self._send_error(call_id, "bad_arguments", "TypeError", "the arguments of %s() are not an array" % name)
        elif kwargs is not None and type(kwargs) is not dict:
            self._send_error(
                call_id, "bad_arguments", "TypeError", "the keyword arguments of %s() are not a map" % name
            )
        elif kwargs and not all(type(key) is str for key in kwargs):
            bad = next(key for key in kwargs if type(key) is not str)
            self._send_error(
                call_id,
                "bad_arguments",
                "TypeError",
                "keyword argument names of %s() must be strings, not %s" % (name, type(bad).__name__),
            )
        elif message[0] == STREAM:
            from . import stream  # only a worker that streams needs it

            stream.run(self, call_id, name, args, kwargs or {}, message[5])
        else:
            self._call(call_id, name, args, kwargs or {})

    def control(self, message: List[Any]) -> None:
        """Take a message that flows while a call runs, outside of the wait
        that expects it: credit or a close for a stream in progress, else a
        late answer (its stream or callback is over), which is dropped."""
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
            return
        raise ProtocolViolation("unexpected message kind %d" % kind)

    def send_message(self, message: List[Any]) -> None:
        """Send one message of the runtime's own (no user values in it)."""
        write_frame(self._out_fd, self._packb(message))

    def wait_input(self) -> None:
        """Wait until a frame can be read; SIGINT interrupts the wait
        (KeyboardInterrupt), also one that came while the runtime was busy."""
        global _in_user_code, _interrupt_pending
        if self._reader.buffered():
            return
        fd = self._reader.fileno()
        try:
            _in_user_code = True
            if _interrupt_pending:
                _interrupt_pending = False
                raise KeyboardInterrupt
            # In slices: a SIGINT that lands after the check above but before
            # select() enters the kernel does not interrupt select(); its
            # handler runs (and raises) when the slice ends.
            while not select.select([fd], [], [], _WAIT_SLICE_SECONDS)[0]:
                pass
        finally:
            _in_user_code = False

    def input_waiting(self) -> bool:
        """Whether a frame from Go waits to be read, without blocking."""
        if self._reader.buffered():
            return True
        return bool(select.select([self._reader.fileno()], [], [], 0)[0])

    def read_message(self) -> Union[bytes, memoryview]:
        """The next frame's body; BrokenPipeError at the end of input."""
        body = self._reader.read()
        if body is None:
            raise BrokenPipeError("Go closed the worker's input during a call")
        return body

    def _answer_undecodable(self, body: Union[bytes, bytearray], exc: Exception) -> None:
        """The frame did not decode: answer bad_arguments if its head [kind,
        id, name] still does (invalid UTF-8 in an argument, say)."""
        unpacker = self._unpacker()
        unpacker.feed(body)
        try:
            length = unpacker.read_array_header()
            head = [unpacker.unpack() for _ in range(min(length, 3))]
        except Exception:
            raise ProtocolViolation("undecodable frame (%s: %s)" % (type_name(exc), exception_message(exc))) from None
        if not head or type(head[0]) is not int:
            raise ProtocolViolation("a frame is not an array that starts with an integer kind")
        _check_call_head(head[0], length, head[1:])
        call_id, name = head[1], head[2]
        self._send_error(
            call_id,
            "bad_arguments",
            type_name(exc),
            "cannot decode the arguments of %s(): %s" % (name, exception_message(exc)),
        )

    def _call(self, call_id: int, name: str, args: List[Any], kwargs: Dict[str, Any]) -> None:
        function = self._functions.get(name)
        if function is None:
            self._send_error(call_id, "function_not_found", "AttributeError", self._not_found(name))
            return
        try:
            result = _invoke(function, args, kwargs)
        except BaseException as exc:  # SystemExit too: the worker stays alive
            self._send_exception(call_id, exc)
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
        except Exception as exc:
            frame = exc  # sent below, outside the except block, as in serve
        if isinstance(frame, Exception):
            self._send_refused(call_id, name, result, frame)
        else:
            self._send_frame(call_id, name, frame)

    def _send_shared_bytes(self, call_id: int, name: str, data: Union[bytes, bytearray]) -> None:
        """Send a large bytes result through the shared memory."""
        if len(data) > self._max_message:
            self._send_too_large(call_id, name, len(data))
            return
        assert shm.ACTIVE is not None
        try:
            frame = shm.bytes_result_frame(shm.ACTIVE, call_id, data)
        except shm.ReplyTooLarge as exc:
            self._send_error(call_id, "message_too_large", "ValueError", "the result of %s(): %s" % (name, exc))
            return
        write_frame_bytes(self._out_fd, frame)

    def _send_too_large(self, call_id: int, name: str, size: int) -> None:
        self._send_error(
            call_id,
            "message_too_large",
            "ValueError",
            "the result of %s() encodes to %d bytes, more than --max-message %d" % (name, size, self._max_message),
        )

    def _send_exception(self, call_id: int, exc: BaseException) -> None:
        code = "interrupted" if isinstance(exc, KeyboardInterrupt) else "exception"
        self._send_error(call_id, code, type_name(exc), exception_message(exc), format_traceback(exc))

    def _send_refused(self, call_id: int, name: str, result: Any, exc: Exception) -> None:
        """Answer for a result the codec refused with exc. An awaitable (what
        an async function returns) is refused too: it is awaited here, off the
        hot path, which tries to encode every result first, and outside the
        except block, so that the coroutine does not see exc as the
        exception being handled."""
        from . import aio

        if not aio.is_awaitable(result):
            self._send_not_encodable(call_id, name, result, exc)
            return
        del exc
        try:
            result = aio.run(result)
        except BaseException as error:  # the interrupt (cancellation) too, as in _call
            self._send_exception(call_id, error)
            return
        self._send_result(call_id, name, result)

    def _send_not_encodable(self, call_id: int, name: str, result: Any, exc: Exception) -> None:
        if isinstance(exc, shm.ReplyTooLarge):  # arrays put in the shared memory did not fit
            self._send_error(call_id, "message_too_large", "ValueError", "the result of %s(): %s" % (name, exc))
            return
        hint = ""
        cls = type(result)
        if hasattr(cls, "__next__") or hasattr(cls, "__aiter__"):
            hint = "; %s() returned an iterator: iterate it from Go with Pool.Stream" % name
        self._send_error(
            call_id,
            "result_not_encodable",
            type_name(exc),
            "cannot encode the result of %s() for Go: %s%s" % (name, not_encodable_detail(result, exc), hint),
        )

    def _send_frame(self, call_id: int, name: str, frame: Union[bytes, Tuple[bytes, Any]]) -> None:
        """Send a RESULT frame from the codec's result_frame, unless it is too
        large. A frame in two parts (a large one) is written with writev, so
        that its payload (a large bytes result, say) is not copied; the bytes
        on the wire are exactly those of packb's encoding behind the length."""
        if type(frame) is bytes:
            size = len(frame) - _HEADER.size
            parts = [memoryview(frame)]
        else:
            head, payload = frame
            size = len(head) - _HEADER.size + len(payload)
            parts = [memoryview(head), memoryview(payload)]
        if shm.ACTIVE is not None:
            size += shm.ACTIVE.reply_bytes()  # arrays the encoder put in shared memory
        if size > self._max_message:
            self._send_too_large(call_id, name, size)
            return
        _write_all(self._out_fd, parts)

    def _not_found(self, name: str) -> str:
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

    def _send_error(self, call_id: int, code: str, type_: str, message: str, tb: str = "") -> None:
        message, tb = _utf8_safe(message), _utf8_safe(tb)
        reply = self._packb([ERROR, call_id, code, type_, message, tb])
        if len(reply) > self._max_message:
            # Cut the reply to fit, keeping the start of the message and the
            # end of the traceback; the 8 is for the two str headers, which
            # may grow by up to 4 bytes each.
            room = self._max_message - len(self._packb([ERROR, call_id, code, type_, "", ""])) - 8
            half = max(room // 2, 0)
            message, tb = _clip_utf8(message, half, False), _clip_utf8(tb, half, True)
            reply = self._packb([ERROR, call_id, code, type_, message, tb])
        write_frame(self._out_fd, reply)


def not_encodable_detail(result: Any, exc: Exception) -> str:
    """What the encoder's exc says about result, led by where in result the
    value it refused is and that value's type: "result['items'][1]['score']:
    set (can not serialize 'set' object)". Just exc's message when the place
    cannot be told: the value is too deep or cyclic, or the first element
    refused on its own is not what the encoder raised for."""
    message = exception_message(exc)
    try:
        found = codecs.find_unencodable(result)
    except Exception:  # a container whose items() or repr() of a key raise
        return message
    if found is None:
        return message
    path, item, item_exc = found
    if type(item_exc) is not type(exc) or exception_message(item_exc) != message:
        return message
    cls = type(item)
    module = getattr(cls, "__module__", None)
    label = cls.__name__ if module in (None, "builtins") else "%s.%s" % (module, cls.__name__)
    return "%s: %s (%s)" % (path, label, message)


def _clip_utf8(text: str, size: int, keep_end: bool) -> str:
    """At most size bytes of text's UTF-8, from its start or its end."""
    data = text.encode("utf-8")
    if len(data) <= size:
        return text
    data = data[len(data) - size :] if keep_end else data[:size]
    return data.decode("utf-8", "ignore")  # drops a character cut in two


def _check_call_head(kind: int, length: int, rest: List[Any]) -> None:
    """Raise ProtocolViolation unless kind, length and [id, name] start a CALL
    or a STREAM."""
    if kind != CALL and kind != STREAM:
        raise ProtocolViolation(
            "unexpected message kind %d (a call starts with CALL, kind %d, or STREAM, kind %d)" % (kind, CALL, STREAM)
        )
    if length != (5 if kind == CALL else 6):
        raise ProtocolViolation("a %s frame has %d fields, not %d" % ("CALL" if kind == CALL else "STREAM", length, 5 if kind == CALL else 6))
    call_id, name = rest
    if type(call_id) is not int or call_id < 0 or type(name) is not str:
        raise ProtocolViolation("a CALL frame's id is not an unsigned integer or its function name is not a string")


# -- Entry point --------------------------------------------------------------


def _exit(status: int, line: str = "") -> NoReturn:
    """Leave at once (without waiting for user threads), after flushing output."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if line:
        os.write(2, ("pypool worker: %s\n" % line).encode("utf-8", "backslashreplace"))
    os._exit(status)


def _exit_soon() -> None:
    """Arrange for the process to end even if the interpreter's normal exit
    waits on the user's non-daemon threads: the pool is gone."""

    def force() -> None:
        time.sleep(_EXIT_GRACE_SECONDS)
        os._exit(0)

    # A bare thread, which the interpreter's exit does not wait for (as a
    # daemon thread); threading would be imported from the user's paths.
    _thread.start_new_thread(force, ())


def _run_setup(module: Any, options: Options, codec: codecs.Codec) -> None:
    """Call the module's set-up function with its arguments from Go."""
    function = getattr(module, options.setup, None)
    if not callable(function):
        raise AttributeError("%s has no function %r to run as its set-up (Config.SetUp)" % (options.module, options.setup))
    args: List[Any] = []
    kwargs: Dict[str, Any] = {}
    if options.setup_args:
        args, given = codec.unpackb(binascii.a2b_base64(options.setup_args))
        kwargs = given or {}
    result = function(*args, **kwargs)
    if result is not None:
        from . import aio

        if aio.is_awaitable(result):  # an async set-up runs on the loop the calls will use
            aio.run(result)


def _setup_error(module_name: str, setup: str, exc: BaseException) -> List[str]:
    message = "%s.%s(): %s" % (module_name, setup, exception_message(exc))
    return ["setup_failed", type_name(exc), _utf8_safe(message), _utf8_safe(format_traceback(exc))]


def _import_error(module_name: str, exc: BaseException, several: bool = False) -> List[str]:
    message = exception_message(exc)
    if several:  # say which of the configured modules failed
        message = "module %r: %s" % (module_name, message)
    missing = getattr(exc, "name", None)
    if (
        isinstance(exc, ModuleNotFoundError)
        and missing
        and (module_name == missing or module_name.startswith(missing + "."))
    ):
        message += "; looked in sys.path: " + ", ".join(repr(p) for p in sys.path)
    if isinstance(exc, ModuleNotFoundError) and missing:
        message += _off_path_hint(missing)
    return ["import_failed", type_name(exc), _utf8_safe(message), _utf8_safe(format_traceback(exc))]


def _off_path_hint(missing: str) -> str:
    """Where a module that did not import is, if it is in one of the places
    that are not on sys.path any more: the working directory, the user's
    site-packages (python -I)."""
    top = missing.partition(".")[0]
    site = sys.modules.get("site")  # imported at the interpreter's start, unless -S
    try:  # a hint only: the working directory may be gone, HOME unknown
        places = [("the working directory", os.getcwd(), "list it in Config.PythonPath (\".\" is Config.Dir)")]
        if site is not None:
            places.append(("the user's site-packages", site.getusersitepackages(), "add it to Config.PythonPath"))
    except Exception:
        return ""
    for label, place, fix in places:
        if place in sys.path:
            continue
        for name in (top, top + ".py"):
            if os.path.exists(os.path.join(place, name)):
                return "; %r is in %s %s, which is not on the workers' sys.path: %s" % (top, label, place, fix)
    return ""


def _open_shared_memory(options: Options) -> None:
    """Take the shared memory Go passed: child processes must not inherit it."""
    try:
        os.set_inheritable(options.shm_fd, False)
    except OSError as exc:
        _exit(EXIT_PROTOCOL, "--shm-fd %d: %s" % (options.shm_fd, exc))
    shm.ACTIVE = shm.SharedMemory(options.shm_fd, options.shm_threshold, options.shm_limit, options.max_message)


# The signal that makes the worker dump its threads' stacks to --dump-fd.
DUMP_SIGNAL = signal.SIGUSR1


def enable_stack_dumps(fd: int) -> None:
    """Dump the stacks of all threads to fd at DUMP_SIGNAL. faulthandler is
    built into CPython: importing it and registering cost microseconds."""
    try:
        import faulthandler
    except ImportError:  # pragma: no cover - an interpreter without it
        signal.signal(DUMP_SIGNAL, signal.SIG_IGN)  # no dump, but no death either
        return
    try:
        os.set_inheritable(fd, False)  # child processes must not hold it open
        faulthandler.register(DUMP_SIGNAL, file=fd, all_threads=True, chain=False)
    except (OSError, ValueError, RuntimeError) as exc:
        _exit(EXIT_PROTOCOL, "--dump-fd %d: %s" % (fd, exc))


def given_fds(options: Options) -> List[int]:
    """The descriptors Go gives a worker: stdin, stdout, stderr, the log
    stream (3), and --shm-fd and --dump-fd when set."""
    return [0, 1, 2, 3] + [fd for fd in (options.shm_fd, options.dump_fd) if fd >= 0]


def close_inherited_fds(keep: List[int]) -> None:
    """Close every descriptor this process inherited but was not given (not
    in keep): those the Go process, or whatever started it, held without
    close-on-exec, which user code must not reach (a root-only file, a
    listening socket), as subprocess's close_fds=True would. The
    interpreter's own descriptors are close-on-exec (PEP 446), so none of
    them was inherited: they stay."""
    for fd in _open_fds():
        if fd in keep:
            continue
        try:
            if os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            pass  # the listing's own descriptor, closed since


def _open_fds() -> List[int]:
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            return [int(name) for name in os.listdir(listing)]
        except (OSError, ValueError):
            pass
    try:  # no listing: every possible descriptor
        return list(range(os.sysconf("SC_OPEN_MAX")))
    except (OSError, ValueError):
        return list(range(1 << 16))


def startup(argv: List[str], keep: Optional[List[int]] = None) -> Options:
    """Phase 1 of a worker (and of the fork server's template): the command
    line, the descriptors (those not in keep, by default given_fds, are
    closed), sys.path and sys.argv. Exits with status 2 on a bad command
    line."""
    try:
        options = parse_args(argv)
    except ValueError as exc:
        _exit(EXIT_PROTOCOL, str(exc))
    close_inherited_fds(given_fds(options) if keep is None else keep)  # before any code that is not the runtime's
    apply_limits(options.limits)  # before the user's module (a fork server's children inherit them)
    preload_stdlib()
    global _CODEC
    _CODEC = codecs.load(options.codec)  # msgpack from site-packages, not from a --path
    fix_sys_path(options.paths)
    del sys.argv[1:]  # the runtime's arguments are not the user module's
    # User code imports the runtime's public API as "pypool" (from pypool
    # import call_go): the package itself under a second name, no import;
    # not when one of the user's own modules is a "pypool".
    if all(name.partition(".")[0] != "pypool" for name in options.modules):
        sys.modules.setdefault("pypool", sys.modules[__package__])
    return options


# The codec startup loaded, before the user's paths were on sys.path.
_CODEC: Any = None


def startup_codec(options: Options) -> codecs.Codec:
    """The codec of --codec, as startup loaded it."""
    return _CODEC if _CODEC is not None else codecs.load(options.codec)


def hello_frame(codec: codecs.Codec, error: Optional[List[str]], setup_seconds: float = 0.0) -> bytes:
    """The HELLO message's body (without its length), for this process."""
    python_version = sys.version.split()[0]
    hello_fields = [
        HELLO, PROTOCOL_VERSION, os.getpid(), python_version, codec.name, error, sys.executable or "", setup_seconds,
    ]  # fmt: skip
    return codec.packb(hello_fields)


def load_module(name: str, several: bool = False) -> Tuple[Any, Optional[List[str]]]:
    """Phase 2: import one module; (module, None), or (None, the HELLO
    error that says why it failed, naming it when several are configured)."""
    try:
        __import__(name)  # the import statement's machinery trims importlib's frames
        return sys.modules[name], None
    except BaseException as exc:
        return None, _import_error(name, exc, several)


def load_modules(options: Options) -> Tuple[List[Any], Optional[List[str]]]:
    """Phase 2: import the configured modules (--module, in order); (the
    modules, None), or ([], the HELLO error of the first that failed)."""
    modules = []
    for name in options.modules:
        module, error = load_module(name, len(options.modules) > 1)
        if error is not None:
            return [], error
        modules.append(module)
    return modules, None


def run_setup(module: Any, options: Options, codec: codecs.Codec) -> Tuple[float, Optional[List[str]]]:
    """Run the module's set-up function (Config.SetUp), if any: (its
    duration in seconds, None), or (0, the HELLO error that says why it failed)."""
    if not options.setup:
        return 0.0, None
    started = time.monotonic()
    try:
        _run_setup(module, options, codec)
    except BaseException as exc:
        return 0.0, _setup_error(options.module, options.setup, exc)
    return time.monotonic() - started, None


def serve_process(
    options: Options, codec: codecs.Codec, modules: List[Any], proto: Tuple[int, int], setup: bool = True
) -> None:
    """Phase 3, what each worker process does for itself once its modules
    are imported (and its stdio isolated, proto being the protocol's fds):
    its shared memory, its stack dumps, its SIGINT handler, the set-up
    (unless setup is False: a fork server ran it once for all), HELLO, then
    calls until the end of input."""
    proto_in, proto_out = proto
    if options.shm_fd >= 0:
        _open_shared_memory(options)
    if options.dump_fd >= 0:
        enable_stack_dumps(options.dump_fd)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        setup_seconds, error = run_setup(modules[0], options, codec) if setup else (0.0, None)
        if error is not None:
            try:
                write_frame(proto_out, hello_frame(codec, error))
            finally:
                _exit(EXIT_IMPORT_FAILED)
        write_frame(proto_out, hello_frame(codec, None, setup_seconds))
        reader = FrameReader(proto_in, options.max_message)
        functions = callable_functions(modules)
        functions[PING_FUNCTION] = _ping
        Worker(options.module, functions, codec, reader, proto_out, options.max_message, options.modules).serve()
    except ProtocolViolation as exc:
        _exit(EXIT_PROTOCOL, "protocol violation: %s" % exc)
    except BrokenPipeError:
        pass  # Go closed its end: as good as the end of input
    _exit_soon()


def main(argv: List[str]) -> None:
    """Run the worker; returns (exit status 0) at the end of input."""
    options = startup(argv)
    # Before the import: what the module prints while it imports must not
    # reach the protocol.
    proto = isolate_stdio()
    codec = startup_codec(options)
    modules, error = load_modules(options)
    if error is not None:
        try:
            write_frame(proto[1], hello_frame(codec, error))
        finally:
            _exit(EXIT_IMPORT_FAILED)
    serve_process(options, codec, modules, proto)
