"""Start-up: what a worker process does before it serves calls.

In order (worker.startup, worker.main, worker.serve_process call these):
close the descriptors it inherited but was not given (close_inherited_fds),
apply Config.Limits (apply_limits), find the codec (the C codec loaded later,
once the worker is idle: codec.deferred), put the --path entries
ahead of the interpreter's own on sys.path (fix_sys_path, with stdlib.py
guarding the standard modules imported later: asyncio, traceback), move the protocol's pipes
away from fds 0 and 1 (isolate_stdio), import the configured modules
(load_modules), open the shared memory and the stack dumps, run the
set-up (run_setup), start the event loop's thread in async mode
(start_event_loop) and send HELLO (hello_frame). A fork server's template
does the first part once, each child the rest.

exit_now and exit_soon end the process: at once, or after a grace that
lets the user's threads and atexit handlers finish.
"""

from __future__ import annotations

import _thread  # built in: exit_soon's timer, without importing threading
import binascii  # for --setup-args: imported here, before the user's paths
import io
import os
import sys
import time

# Bound at import, before the user's module runs (as frames.py's os_write):
# the worker's last line and exit must not depend on what the module left
# in os.
from os import _exit as os_exit
from os import write as os_write

try:  # _signal is signal without its enum wrappers, a few ms cheaper to import
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal  # type: ignore[no-redef]

from . import HELLO, PROTOCOL_VERSION, freshcode, shm, stdlib
from . import codec as codecs
from .errors import (
    address_space_hint,
    exception_message,
    format_traceback,
    limit_address_space,
    missing_module_hint,
    type_name,
    utf8_safe,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Dict, List, NoReturn, Optional, Tuple

    from .worker import Options  # never at run time: worker imports this module

# Exit statuses besides 0 (end of input).
EXIT_IMPORT_FAILED = 1
EXIT_PROTOCOL = 2

# After the end of input, how long the interpreter's normal exit may wait for
# the user's non-daemon threads and atexit handlers.
EXIT_GRACE_SECONDS = 10.0


def exit_now(status: int, line: str = "") -> NoReturn:
    """Leave at once (without waiting for user threads), after flushing
    output; line, if any, goes to stderr first."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if line:
        os_write(2, ("pypool worker: %s\n" % line).encode("utf-8", "backslashreplace"))
    os_exit(status)


def exit_soon() -> None:
    """Arrange for the process to end even if the interpreter's normal exit
    waits on the user's non-daemon threads: the pool is gone."""

    def force() -> None:
        time.sleep(EXIT_GRACE_SECONDS)
        os_exit(0)

    # A bare thread, which the interpreter's exit does not wait for (as a
    # daemon thread); threading would be imported from the user's paths.
    _thread.start_new_thread(force, ())


# -- Descriptors, limits, sys.path --------------------------------------------


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def text_stream(fd: int, write: bool) -> io.TextIOWrapper:
    """A text stream of fd: UTF-8 and, for output, line-buffered, whatever
    the locale and the (ignored, -I) PYTHON* variables say. closefd=False
    keeps fds 0-2 open for C code even if user code closes sys.stdout."""
    if write:
        return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    return open(fd, "r", encoding="utf-8", errors="backslashreplace", closefd=False)


def isolate_stdio(new_streams: bool = True) -> Tuple[int, int]:
    """Move the protocol pipes away from fds 0 and 1, so that user code (print,
    os.write(1, ...) in Python or C, input()) cannot touch them. Returns the
    protocol's (input fd, output fd), which child processes do not inherit.
    With new_streams False, sys.stdin, sys.stdout and sys.stderr are kept:
    they already are text_stream()s of fds 0, 1 and 2 (a fork server's
    child inherits its template's). The children that user code forks
    leave the protocol (leave_protocol_in_children)."""
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
        sys.stdin = sys.__stdin__ = text_stream(0, write=False)
        sys.stdout = sys.__stdout__ = text_stream(1, write=True)
        sys.stderr = sys.__stderr__ = text_stream(2, write=True)
    leave_protocol_in_children((proto_in, proto_out))
    return proto_in, proto_out


def leave_protocol_in_children(proto: Tuple[int, int]) -> None:
    """Make every child that this worker's Python code forks without exec
    (os.fork, multiprocessing's fork) leave the worker's channel: in the
    child, the protocol's descriptors become /dev/null and the shared
    memory is not used. A child that returns into the serve loop (one that
    forgot os._exit) then answers nobody, reads the end of input and exits,
    instead of replying on the worker's pipes, reading the next calls'
    requests and writing into the worker's shared memory. exec'd children
    (subprocess) never held them: they are close-on-exec."""

    def after_in_child() -> None:
        shm.ACTIVE = None
        try:
            devnull = os.open(os.devnull, os.O_RDWR)
        except OSError:  # no descriptor left: closed is as good as /dev/null
            for fd in proto:
                os.close(fd)
            return
        for fd in proto:
            os.dup2(devnull, fd, inheritable=False)
        os.close(devnull)

    os.register_at_fork(after_in_child=after_in_child)


def fix_sys_path(paths: List[str]) -> None:
    """sys.path = the --path entries, then the interpreter's own entries
    (standard library, site-packages), without the runtime's directory and
    without '' (the working directory, which -c puts first): the working
    directory is on it only if it is one of the --path entries. Every module
    the runtime uses must be imported before this, or later through
    stdlib.import_module (or own_module): otherwise a module of the same
    name in a --path directory would win."""
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
            exit_now(EXIT_PROTOCOL, "cannot set %s to %d (Config.Limits): %s" % (name, value, exc))
        if name == "RLIMIT_AS":
            limit_address_space(value, soft)  # for the errors of what does not fit in it


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


def unblock_signals() -> None:
    """Unblock every signal: the signal mask passes through fork and exec,
    so a Go process started with signals blocked would hand them on
    blocked, and Go's interrupt of a call (SIGINT) and its stack dumps
    (SIGUSR1) would never arrive. The worker starts with no signal blocked,
    as a process started afresh does."""
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        signal.pthread_sigmask(signal.SIG_SETMASK, ())


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


def prepare(options: Options, keep: Optional[List[int]] = None) -> None:
    """Phase 1 of a worker (and of the fork server's template), once its
    command line is parsed: the descriptors (those not in keep, by default
    given_fds, are closed), the limits, the codec, sys.path and sys.argv."""
    close_inherited_fds(given_fds(options) if keep is None else keep)  # before any code that is not the runtime's
    unblock_signals()
    global _CODEC
    # Found before the user's paths are on sys.path; the C codec (msgpack)
    # is loaded once the worker is idle or after a few frames (the pure
    # codec stands in meanwhile), through stdlib's guarded import: msgpack
    # from site-packages, not from a --path.
    _CODEC = codecs.load(options.codec, defer=True)
    # After the codec (the HELLO that reports a limit too low needs it),
    # before the user's paths (resource) and module (a fork server's
    # children inherit them).
    apply_limits(options.limits)
    fix_sys_path(options.paths)
    freshcode.install(options.paths)  # a module rewritten in the same second is read again (freshcode.py)
    del sys.argv[1:]  # the runtime's arguments are not the user module's
    # User code imports the runtime's public API as "pypool" (from pypool
    # import call_go): the package itself under a second name, no import;
    # not when one of the user's own modules is a "pypool".
    if all(name.partition(".")[0] != "pypool" for name in options.modules):
        sys.modules.setdefault("pypool", sys.modules[__package__])


# The codec prepare loaded, before the user's paths were on sys.path.
_CODEC: Any = None


def startup_codec(options: Options) -> codecs.Codec:
    """The codec of --codec, as prepare loaded it."""
    return _CODEC if _CODEC is not None else codecs.load(options.codec)


def hello_frame(codec: codecs.Codec, error: Optional[List[str]], setup_seconds: float = 0.0) -> bytes:
    """The HELLO message's body (without its length), for this process."""
    python_version = sys.version.split()[0]
    hello_fields = [
        HELLO, PROTOCOL_VERSION, os.getpid(), python_version, codec.name, error, sys.executable or "", setup_seconds,
    ]  # fmt: skip
    return codec.packb(hello_fields)


def load_module(name: str, several: bool = False, configured: bool = False) -> Tuple[Any, Optional[List[str]]]:
    """Phase 2: import one module; (module, None), or (None, the HELLO
    error that says why it failed, naming it when several are configured).
    A configured module (one whose functions Go calls, not a fork server's
    preload) that is a namespace package is refused: it has no functions."""
    try:
        __import__(name)  # the import statement's machinery trims importlib's frames
        module = sys.modules[name]
        if configured and getattr(module, "__file__", None) is None and hasattr(module, "__path__"):
            raise _namespace_error(name, module)
        return module, None
    except BaseException as exc:
        return None, _import_error(name, exc, several)


def load_modules(options: Options) -> Tuple[List[Any], Optional[List[str]]]:
    """Phase 2: import the configured modules (--module, in order); (the
    modules, None), or ([], the HELLO error of the first that failed)."""
    modules = []
    for name in options.modules:
        module, error = load_module(name, len(options.modules) > 1, configured=True)
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


def _run_setup(module: Any, options: Options, codec: codecs.Codec) -> None:
    """Call the module's set-up function with its arguments from Go."""
    function = getattr(module, options.setup, None)
    if not callable(function):
        raise AttributeError("module %r has no function %r" % (options.module, options.setup))
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
    """The HELLO error of a set-up that raised: its message is str(exc) (Go
    names the set-up)."""
    return _hello_error("setup_failed", exc, [missing_module_hint(exc), address_space_hint(exc)])


def _import_error(module_name: str, exc: BaseException, several: bool = False) -> List[str]:
    """The HELLO error of a module that did not import: its message is
    str(exc); the hint names the module when several are configured, where
    the import looked for a module not found and, for a dependency not
    found, the interpreter that ran."""
    hints = []
    if several:  # say which of the configured modules failed
        hints.append("it is module %r that failed" % module_name)
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing and module_name == missing and module_name.endswith(".py"):  # "my_module.py"
        hints.append("Config.Module names a module, not its file: write %r" % module_name[:-3])
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
        hints.append("looked in sys.path: " + ", ".join(repr(p) for p in sys.path))
        files = [p for p in sys.path if p.endswith(".py") and os.path.isfile(p)]
        if files:  # PythonPath: ["my_module.py"]
            hints.append(
                "Config.PythonPath lists directories, not files: %s; list %s"
                % (", ".join(repr(p) for p in files), ", ".join(repr(os.path.dirname(p)) for p in files))
            )
    elif missing:  # a module the user's module imports: not installed for this interpreter
        hints.append(missing_module_hint(exc))
    if missing:
        hints.append(_off_path_hint(missing))
    hints.append(address_space_hint(exc))
    return _hello_error("import_failed", exc, hints)


def start_error(exc: MemoryError) -> List[str]:
    """The HELLO error of a worker whose own start (its shared memory, its
    stack dumps, its read buffer) did not fit in memory: under
    Config.Limits.AddressSpace, the hint names the limit."""
    return _hello_error("start_failed", exc, [address_space_hint(exc)])


def start_event_loop() -> Optional[List[str]]:
    """Async mode (--async-calls), after the set-up and before HELLO: make
    the worker's event loop and start the thread it runs on
    (aio.start_loop_thread); None, or the HELLO error of a worker whose
    address space has no room for them (Config.Limits.AddressSpace:
    asyncio's import, the thread's stack), which names the limit. Any other
    failure (no thread for the moment: a limit on processes) is raised: the
    worker ends, and Go starts another after its backoff."""
    try:
        from . import aio

        aio.start_loop_thread()
    except BaseException as exc:
        hint = address_space_hint(exc, thread=True)
        if not hint:
            raise
        return _hello_error("loop_failed", exc, [hint])
    return None


def no_descriptors_error(exc: OSError) -> List[str]:
    """The HELLO error of a worker that ran out of descriptors (RLIMIT_NOFILE)
    before it could import its module, naming the limit to raise."""
    return _hello_error("import_failed", exc, [
        "the worker ran out of descriptors before it imported its module: raise Config.Limits.OpenFiles"
        " (or the RLIMIT_NOFILE the Go process passes on, ulimit -n)"
    ])


def _hello_error(code: str, exc: BaseException, hints: List[str]) -> List[str]:
    """[code, type, str(exc), traceback] and the hints joined, if any."""
    error = [code, type_name(exc), utf8_safe(exception_message(exc)), utf8_safe(format_traceback(exc))]
    hint = "; ".join(h for h in hints if h)
    if hint:
        error.append(utf8_safe(hint))
    return error


def _namespace_error(name: str, module: Any) -> ImportError:
    """The error of a configured module that is a namespace package (a
    directory without __init__.py, such as //go:embed without all: makes):
    it has no functions to call, so the worker refuses it at start."""
    places = ", ".join(repr(p) for p in getattr(module, "__path__", []))
    return ImportError(
        "module %r is a directory without __init__.py (a namespace package: %s), which has no functions to call"
        % (name, places),
        name=name,
    )


def _off_path_hint(missing: str) -> str:
    """Where a module that did not import is, if it is in one of the places
    that are not on sys.path any more: PYTHONPATH's directories, the
    working directory, the user's site-packages (python -I)."""
    top = missing.partition(".")[0]
    site = sys.modules.get("site")  # imported at the interpreter's start, unless -S
    try:  # a hint only: the working directory may be gone, HOME unknown
        ignored = "the workers ignore PYTHONPATH (python -I): list it in Config.PythonPath"
        places = [(p, "%s, on PYTHONPATH" % p, ignored) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        cwd = os.getcwd()
        places.append((cwd, "the working directory " + cwd, "list it in Config.PythonPath (\".\" is Config.Dir)"))
        if site is not None:
            user_site = site.getusersitepackages()
            places.append((user_site, "the user's site-packages " + user_site, "add it to Config.PythonPath"))
    except Exception:
        return ""
    for place, where, fix in places:
        if place in sys.path:
            continue
        for name in (top, top + ".py"):
            if os.path.exists(os.path.join(place, name)):
                return "%r is in %s, which is not on the workers' sys.path: %s" % (top, where, fix)
    return ""


def open_shared_memory(options: Options) -> None:
    """Take the shared memory Go passed: child processes must not inherit it."""
    try:
        os.set_inheritable(options.shm_fd, False)
    except OSError as exc:
        exit_now(EXIT_PROTOCOL, "--shm-fd %d: %s" % (options.shm_fd, exc))
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
        exit_now(EXIT_PROTOCOL, "--dump-fd %d: %s" % (fd, exc))
