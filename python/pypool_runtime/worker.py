"""The worker process: runs the public functions of one module for Go.

Go starts it as::

    python3 -I -c "import sys;sys.path[:]=[p for p in sys.path if p];<read RUNTIME_DIR from stdin>;
                        sys.path.insert(0,RUNTIME_DIR);from pypool_runtime.worker import main;main(sys.argv[1:])" \\
        --module MODULE [--module MODULE]... [--path DIR]... [--max-message BYTES] [--codec auto|pure] \\
        [--shm-fd FD --shm-threshold BYTES --shm-limit BYTES] [--dump-fd FD] \\
        [--limit-as BYTES] [--limit-cpu SECONDS] [--limit-nofile COUNT] [--async-calls N]

(the bootstrap, runtime.go's, waits for RUNTIME_DIR on its stdin, a 4-byte
big-endian length and the path: Go writes it once the directory is
verified, so that the interpreter starts meanwhile), and talks to it over the original stdin/stdout with frames: a 4-byte
big-endian length, then a msgpack array whose first element is the kind:

    HELLO  (to Go, first)  [1, protocol_version, pid, python_version, codec, error|nil, executable, setup_seconds]
    CALL   (from Go)       [2, id, function, args, kwargs|nil]
    RESULT (to Go)         [3, id, value]
    ERROR  (to Go)         [4, id, code, type, message, traceback(, hint)]

where the HELLO error is nil or [code, type, message, traceback(, hint)];
hint, sent when the runtime has one, says how to fix the error. While a
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
or callback that is over are late and ignored. Kinds 13..15 are reserved.
With --async-calls N (Config.AsyncCalls, aio.py's AsyncServer), Go may send
the CALLs of async functions without waiting for the replies of the calls
in flight, and:

    CANCEL    (from Go)    [12, id]   cancel the task of call id
Anything else Go sends is a protocol violation: the worker explains it in
one line on stderr and exits with status 2.

With --dump-fd, SIGUSR1 makes the worker write the stacks of all its threads
to that descriptor (faulthandler: C code in the signal handler, so that it
works while the main thread is stuck in C code too); Go sends it before it
interrupts or kills a worker and logs the stacks.

The import path cannot be shadowed: -I (isolated mode) keeps the working
directory ('') off sys.path (the bootstrap would drop it before it imports
anything that is not built in), and every module the runtime uses is
imported before startup.fix_sys_path puts the --path entries ahead of the
standard library, or, when that would slow every start down (asyncio,
traceback, the C codec), later by stdlib.import_module
(errors.traceback_module; stdlib.import_set_aside for msgpack), from the
interpreter's own entries only. sys.path is then the --path
entries, then the interpreter's own entries; the working directory only if
it is a --path. --limit-* are Config.Limits (startup.apply_limits).

The worker holds only the descriptors Go gives it (0-3, --shm-fd,
--dump-fd): startup closes any other it inherited (startup.close_inherited_fds).

This module is the entry point and the command line (Options, parse_args),
and runs the phases: startup, then main's import of the modules, then
serve_process. The work is done by one module per job: startup.py (start-up
and sys.path, with stdlib.py for the standard modules imported later),
frames.py (frames on the protocol's descriptors), interrupt.py (SIGINT),
errors.py (errors as Go sees them), serve.py (the serve loop), and, for
what flows while a call runs, channel.py (the interface that stream.py and
callback.py use), stream.py, callback.py and aio.py.
"""

from __future__ import annotations


try:  # _signal is signal without its enum wrappers, a few ms cheaper to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal  # type: ignore[no-redef]

from . import codec as codecs
from . import startup as _startup
from .frames import FrameReader, ProtocolViolation, write_frame
from .interrupt import STATE
from .serve import ASYNC_FUNCTIONS_FUNCTION, FUNCTIONS_FUNCTION, PING_FUNCTION, Worker, callable_functions, functions_of, ping
from .startup import (
    DUMP_SIGNAL,  # noqa: F401  # as worker's too: the tests send it
    EXIT_IMPORT_FAILED,
    EXIT_PROTOCOL,
    enable_stack_dumps,
    hello_frame,
    isolate_stdio,
    load_modules,
    run_setup,
    startup_codec,
)

# As worker's too, where they were before the runtime was split in modules:
# the tests use them under these names.
from .errors import format_traceback, not_encodable_detail  # noqa: F401, E402

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Dict, List, NoReturn, Optional, Tuple

DEFAULT_MAX_MESSAGE = 64 << 20

_USAGE = (
    "usage: main(['--module', NAME, ('--module', NAME)..., ('--path', DIR)..., ('--max-message', BYTES), ('--codec', 'auto'|'pure'),"
    " ('--shm-fd', FD, '--shm-threshold', BYTES, '--shm-limit', BYTES), ('--dump-fd', FD),"
    " ('--setup', FUNCTION, ('--setup-args', BASE64)), ('--limit-as'|'--limit-cpu'|'--limit-nofile', N)..., ('--async-calls', N)])"
)


class Options:
    """The command line. A plain class: collections.namedtuple would cost
    a few ms of import at every worker start."""

    __slots__ = (
        "module", "modules", "paths", "max_message", "codec", "shm_fd", "shm_threshold", "shm_limit", "dump_fd", "setup", "setup_args",
        "limits", "async_calls",
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
        # Config.AsyncCalls: above 0, the loop runs all the time and the
        # calls of async functions run as tasks (aio.AsyncServer).
        self.async_calls = 0


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
    async_calls = 0
    args = iter(argv)
    for flag in args:
        value = next(args, None)
        if value is None or flag not in ("--module", "--path", "--max-message", "--codec", "--dump-fd", "--async-calls") + _SHM_FLAGS + tuple(
            setup
        ) + tuple(_LIMIT_FLAGS):
            raise ValueError("bad argument %r; %s" % (flag, _USAGE))
        if flag in _LIMIT_FLAGS:
            limits[_LIMIT_FLAGS[flag]] = _non_negative(flag, value)
        elif flag == "--dump-fd":
            dump_fd = _non_negative(flag, value)
        elif flag == "--async-calls":
            async_calls = _non_negative(flag, value)
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
    options.async_calls = async_calls
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


def startup(argv: List[str], keep: Optional[List[int]] = None) -> Options:
    """Phase 1 of a worker (and of the fork server's template): the command
    line, then startup.prepare: the descriptors (those not in keep, by
    default startup.given_fds, are closed), sys.path and sys.argv. Exits
    with status 2 on a bad command line."""
    try:
        options = parse_args(argv)
    except ValueError as exc:
        _startup.exit_now(EXIT_PROTOCOL, str(exc))
    _startup.prepare(options, keep)
    return options


def refuse_start(fd: int, codec: codecs.Codec, error: List[str]) -> NoReturn:
    """End a start that failed: the HELLO that carries error, written on the
    protocol's output fd, then exit with EXIT_IMPORT_FAILED, also when that
    write fails (Go then reports the exit and the stderr tail instead)."""
    try:
        write_frame(fd, hello_frame(codec, error))
    finally:
        _startup.exit_now(EXIT_IMPORT_FAILED)


def serve_process(
    options: Options, codec: codecs.Codec, modules: List[Any], proto: Tuple[int, int], setup: bool = True
) -> None:
    """Phase 3, what each worker process does for itself once its modules
    are imported (and its stdio isolated, proto being the protocol's fds):
    its shared memory, its stack dumps, its SIGINT handler, the set-up
    (unless setup is False: a fork server ran it once for all), in async
    mode its event loop's thread, HELLO, then calls until the end of input."""
    proto_in, proto_out = proto
    try:
        # The runtime's own needs, before HELLO: a worker whose address space
        # has no room for them (Config.Limits.AddressSpace) says so at its
        # start, rather than dying at its first call.
        if options.shm_fd >= 0:
            _startup.open_shared_memory(options)
        if options.dump_fd >= 0:
            enable_stack_dumps(options.dump_fd)
        reader = FrameReader(proto_in, options.max_message)
    except MemoryError as exc:
        refuse_start(proto_out, codec, _startup.start_error(exc))
    signal.signal(signal.SIGINT, STATE.on_sigint)
    try:
        setup_seconds, error = run_setup(modules[0], options, codec) if setup else (0.0, None)
        if error is None and options.async_calls > 0:
            error = _startup.start_event_loop()  # its failure, too, is the start's
        if error is not None:
            refuse_start(proto_out, codec, error)
        write_frame(proto_out, hello_frame(codec, None, setup_seconds))
        functions = callable_functions(modules)
        functions[PING_FUNCTION] = ping
        functions[FUNCTIONS_FUNCTION] = functions_of(modules)
        worker = Worker(options.module, functions, codec, reader, proto_out, options.max_message, options.modules)
        if options.async_calls > 0:
            from . import aio

            names = aio.async_functions(functions)
            functions[ASYNC_FUNCTIONS_FUNCTION] = lambda: names
            worker.serve_async(names)
        else:
            worker.serve()
    except ProtocolViolation as exc:
        _startup.exit_now(EXIT_PROTOCOL, "protocol violation: %s" % exc)
    except BrokenPipeError:
        pass  # Go closed its end: as good as the end of input
    _startup.exit_soon()


def main(argv: List[str]) -> None:
    """Run the worker; returns (exit status 0) at the end of input."""
    options = startup(argv)
    # Before the import: what the module prints while it imports must not
    # reach the protocol.
    try:
        proto = isolate_stdio()
    except OSError as exc:  # out of descriptors: fd 1 is still the protocol's output
        refuse_start(1, startup_codec(options), _startup.no_descriptors_error(exc))
    codec = startup_codec(options)
    modules, error = load_modules(options)
    if error is not None:
        refuse_start(proto[1], codec, error)
    serve_process(options, codec, modules, proto)
