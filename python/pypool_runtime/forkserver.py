"""The fork server: a template process that imports the user's module once,
then forks a new worker whenever Go asks (Config.StartMethod = StartForkServer).

Go starts it as a worker is started (worker.py's command line), with this
module's main instead of the worker's and these arguments first::

    --host-pid PID [--preload MODULE]... [--preload-setup] [--worker-fds N] [--first-worker]

Its descriptors: 0 /dev/null, 1 and 2 pipes that Go logs (what the module
prints while it imports), 3 the control socket (AF_UNIX, SOCK_SEQPACKET:
one message per datagram), and with --first-worker 4..3+N: the
descriptors of the pool's first worker, which the template forks as soon
as it has sent its HELLO, without waiting for a request (its b"P" comes
as if Go had sent b"F" with them right after the HELLO): the first worker
then waits for one interpreter start, not for the template's and a fork
request's round trip. On the control socket:

    to Go, first   the body of a HELLO frame (worker.py), its error field
                   set when the module (or a preloaded one, or a preloaded
                   set-up) failed; the template then exits with status 1
    from Go        b"F" with N descriptors (SCM_RIGHTS): the new worker's
                   fds 0, 1, 2, 3, [4 the shared memory], then its dump fd
    to Go          b"P <pid>" with the child's pidfd (SCM_RIGHTS), or
                   b"E <message>" when the fork failed; one per b"F", in order
    to Go          b"X <pid> <wait status>" when a child exited (the
                   template kills the child's process group, then reaps it)
    to Go          b"W" once, when the template has warmed up: after its
                   first fork, once no request came for _WARM_IDLE
                   seconds, it imports what its children would otherwise
                   import themselves (warm_up); children forked later
                   inherit it

The end of the control socket ends the template; its children live on.

Each child is a worker in every way Go can see: the same descriptors, its
own process group, the same HELLO and protocol. Its parent-death signal is
SIGUSR2 (the template is its parent): if the template died because the Go
process did, the child exits; otherwise it keeps serving (Go restarts the
template and replaces the orphans).

Fork safety: the template runs no thread of its own and forks from its one
thread; the random module is reseeded in each child (numpy's global
generator too, when numpy was imported). User modules must not start
threads, open sockets or files that the workers would then share, at
import time: do that in Config.SetUp, which runs in each child.
"""

from __future__ import annotations

# Imported here, before worker.startup() puts the user's paths ahead of the
# standard library, so that no module on those paths can stand in for them.
# _socket, not socket (6-7 ms: selectors, enum, array...): the template needs
# one socket's recvmsg and sendmsg. _ctypes (not the ctypes package: 2 ms
# instead of 4), for one prctl in each child, and resource, for an error
# message, are imported at their first use from the interpreter's own
# entries (stdlib.own_module), after the first worker was forked.
import _socket
import fcntl
import os
from os import _exit as os_exit  # bound before the user's module runs (as frames.py's os_write)
from os import read as os_read
from select import select  # bound before the user's module runs (as frames.py's os_write)
import struct
import sys

try:
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal  # type: ignore[no-redef]

from . import codec as codecs
from . import errors, startup, stdlib, worker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, NoReturn, Optional, Tuple

# The control socket's descriptor in the template.
CONTROL_FD = 3
# The child's parent-death signal: catchable, so that a template that dies
# alone does not take its workers with it; its default action (terminate) is
# what happens if a user module replaces the handler.
TEMPLATE_DEATH_SIGNAL = signal.SIGUSR2
# How long a child whose template died waits for the Go process's exit to
# show before deciding that Go lives on.
_HOST_DEATH_WAIT = 0.2
# How long the template waits, after its first fork, for no request to come
# before it warms up (warm_up): New's other first workers are forked
# without waiting for it, and the first worker's start has the CPU to
# itself meanwhile.
_WARM_IDLE = 0.1
_PR_SET_PDEATHSIG = 1

_USAGE = "usage: main(['--host-pid', PID, ('--preload', MODULE)..., ('--preload-setup'), ('--worker-fds', N), ('--first-worker'), WORKER ARGS...])"


class ServerOptions:
    __slots__ = ("host_pid", "preload", "preload_setup", "worker_fds", "first_worker")

    def __init__(self) -> None:
        self.host_pid = 0
        self.preload: List[str] = []
        self.preload_setup = False
        self.worker_fds = 5
        self.first_worker = False


def parse_server_args(argv: List[str]) -> Tuple[ServerOptions, List[str]]:
    """Split the template's own leading flags from the worker's command line."""
    options = ServerOptions()
    i = 0
    while i < len(argv) and argv[i] in ("--host-pid", "--preload", "--preload-setup", "--worker-fds", "--first-worker"):
        flag = argv[i]
        if flag in ("--preload-setup", "--first-worker"):
            if flag == "--preload-setup":
                options.preload_setup = True
            else:
                options.first_worker = True
            i += 1
            continue
        if i + 1 >= len(argv):
            raise ValueError("%s needs a value; %s" % (flag, _USAGE))
        value = argv[i + 1]
        if flag == "--preload":
            options.preload.append(value)
        else:
            try:
                number = int(value)
            except ValueError:
                number = -1
            if number <= 0:
                raise ValueError("%s %r is not a positive integer" % (flag, value))
            if flag == "--host-pid":
                options.host_pid = number
            else:
                options.worker_fds = number
        i += 2
    if not options.host_pid:
        raise ValueError("--host-pid is required; " + _USAGE)
    return options, argv[i:]


class _BecomeWorker(BaseException):
    """Raised in a new child to leave the fork loop's frames for good."""

    def __init__(self, fds: List[int]) -> None:
        super().__init__()
        self.fds = fds


def _noop(signum: int, frame: Any) -> None:
    pass  # SIGCHLD: set_wakeup_fd does the work


def _high(fd: int, floor: int) -> int:
    """fd moved to the lowest free descriptor from floor up (the original is
    closed): floor is the worker's descriptor count, so that the moved fd is
    out of the way of the worker's 0..floor-1, under any RLIMIT_NOFILE that
    leaves room for the worker's descriptors and these."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    os.close(fd)
    return moved


def _nofile_message(exc: OSError) -> str:
    """Why the descriptors could not be arranged, naming the limit."""
    soft = "unknown"
    try:
        resource = stdlib.own_module("resource")
        soft = str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except Exception:  # not on this platform: the message goes without the number
        pass
    return ("the fork server cannot arrange its descriptors under RLIMIT_NOFILE %s: %s; "
            "raise the limit (ulimit -n, Config.Limits.OpenFiles) or use StartExec" % (soft, exc))


class Template:
    """The fork loop: no threads, one select over the control socket and the
    SIGCHLD wake-up pipe."""

    def __init__(self, control: _socket.socket, host_fd: int, worker_fds: int) -> None:
        self.control = control
        self.host_fd = host_fd
        self.worker_fds = worker_fds
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.forked = False
        self.warm = False
        # Before any fork: a child that exits at once is reaped too, and the
        # template is told from its children by its SIGCHLD handler (as the
        # Go tests do) from its first fork on.
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, _noop)

    def serve(self) -> None:
        """Fork on request until the control socket ends. In a child it
        raises _BecomeWorker instead of returning."""
        self._reap()  # children that exited before the select
        while True:
            idle = _WARM_IDLE if self.forked and not self.warm else None
            ready, _, _ = select([self.control, self.wake_r], [], [], idle)
            if not ready:
                self.warm = True
                warm_up()
                self._send(b"W")
                continue
            if self.wake_r in ready:
                try:
                    while os_read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self._reap()
            if self.control in ready and not self._request():
                return

    def _request(self) -> bool:
        """Serve one request; False at the end of the control socket."""
        space = _socket.CMSG_SPACE(self.worker_fds * struct.calcsize("i"))
        try:
            data, ancdata, flags, _ = self.control.recvmsg(16, space)
        except ConnectionResetError:
            return False
        fds = _received_fds(ancdata)
        if not data:
            _close_all(fds)
            return False
        if flags & _socket.MSG_CTRUNC:  # the kernel could not give it every descriptor
            _close_all(fds)
            self._send(b"E " + _nofile_message(OSError("%d of %d descriptors received" % (len(fds), self.worker_fds))).encode())
            return True
        if data != b"F" or len(fds) != self.worker_fds:
            _close_all(fds)
            self._send(b"E bad request: %d bytes, %d descriptors (want b'F' and %d)" % (len(data), len(fds), self.worker_fds))
            return True
        self._fork(fds)
        return True

    def _fork(self, fds: List[int]) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # or the child would write the template's buffered text again
            except Exception:
                pass
        try:
            pid = os.fork()
        except OSError as exc:
            _close_all(fds)
            self._send(("E fork: %s" % exc).encode("utf-8", "backslashreplace"))
            return
        if pid == 0:
            raise _BecomeWorker(fds)
        _close_all(fds)
        try:  # as the child does: it is out of the template's group before Go hears of it
            os.setpgid(pid, pid)
        except OSError:
            pass  # it exited already
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            os.kill(pid, signal.SIGKILL)
            self._send(("E pidfd_open: %s" % exc).encode("utf-8", "backslashreplace"))
            return
        try:
            self.control.sendmsg([b"P %d" % pid], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", pidfd))])
        finally:
            os.close(pidfd)
        self.forked = True

    def _reap(self) -> None:
        """Reap the children that exited, each after killing what is left
        of its process group (its own children): the zombie keeps the
        group's number from naming another group until it is reaped."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or not info.si_pid:
                return
            pid = info.si_pid
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # no group of its own yet, or nothing left in it
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:  # pragma: no cover - reaped already
                continue
            self._send(b"X %d %d" % (pid, status))

    def _send(self, message: bytes) -> None:
        try:
            self.control.send(message)
        except OSError:
            pass  # Go is gone: the next recvmsg ends the loop

    def become_worker(self, fds: List[int]) -> None:
        """In a new child: drop the template's state, put the worker's
        descriptors at 0..N-1, take its own process group and parent-death
        signal, reseed the random generators."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.control.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        template = os.getppid()
        high = [_high(fd, self.worker_fds) for fd in fds]  # out of the way of the targets
        for target, fd in enumerate(high):
            os.dup2(fd, target)  # inheritable, as a started worker's are
            os.close(fd)
        os.setpgid(0, 0)
        _set_parent_death_signal(self.host_fd)
        if os.getppid() != template:  # it died before the signal was set
            _on_template_death(self.host_fd)
        _reseed()


def warm_up() -> None:
    """Import in the template, once it is idle after its first fork, what
    its children need but the first worker (and New's others, forked
    meanwhile) must not wait for: libc's prctl through _ctypes (each child
    sets its parent-death signal; a child forked before loads it itself)
    and the traceback module (errors.traceback_module; a worker imports it
    at its first exception), and the C codec, which the start found but did
    not load (codec.deferred; a child forked before loads it once idle).
    Every later child inherits them."""
    try:
        _libc_prctl()
    except Exception:  # each child then tries again, and fails its start
        pass
    try:
        errors.traceback_module()
    except Exception:  # the children then import it themselves, if they can
        pass
    codec = startup._CODEC
    if codec is not None and codec.finish is not None:  # msgpack, deferred by the start
        codec.finish()


_PRCTL: Any = None
# The template's sys.stdin, sys.stdout and sys.stderr.
_STREAMS: List[Any] = [None, None, None]


def _libc_prctl() -> Any:
    """libc's prctl, through _ctypes alone (the ctypes package would import
    types, struct and build dozens of classes: twice the time), loaded at
    the first call from the interpreter's own entries (stdlib.own_module:
    no _ctypes of a PythonPath directory). Its arguments are C ints, its
    result too, errno kept (as ctypes.CDLL(None, use_errno=True) gives)."""
    global _PRCTL
    if _PRCTL is None:
        _ctypes = stdlib.own_module("_ctypes")

        class CInt(_ctypes._SimpleCData):  # ctypes.c_int
            _type_ = "i"

        class Function(_ctypes.CFuncPtr):  # a function of ctypes.CDLL(None, use_errno=True)
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = CInt

        class Libc:  # what CFuncPtr((name, library)) reads of a library
            _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)

        _PRCTL = Function(("prctl", Libc))
    return _PRCTL


def _warn_tasks_left() -> None:
    """Say so, on stderr (logged tagged forkserver=PID), when the set-up run
    in the template (Config.PreloadSetUp) left asyncio tasks pending: they
    belong to the template's event loop, which never runs again, and a
    forked worker runs a loop of its own (aio.get_loop), so no worker runs
    them. Without it a background task an async set-up started (a client's
    keep-alive) silently never ran with the fork server."""
    aio = sys.modules.get(__package__ + ".aio")
    loop = getattr(aio, "_loop", None)
    if loop is None or loop.is_closed():
        return  # the set-up ran no async code
    left = sum(1 for task in sys.modules["asyncio"].all_tasks(loop) if not task.done())
    if left:
        print(
            "pypool: the set-up run once in the fork server's template (Config.PreloadSetUp) left %d asyncio task(s) "
            "that no worker runs: each forked worker runs an event loop of its own; start background tasks in a "
            "set-up that each worker runs (PreloadSetUp false)" % left,
            file=sys.stderr,
            flush=True,
        )


def _has_ctypes() -> bool:
    """Whether _ctypes can be loaded, without loading it: it is built in or
    found on sys.path (the interpreter's own entries, at the start)."""
    if "_ctypes" in sys.builtin_module_names:
        return True
    try:
        return stdlib._path_finder().find_spec("_ctypes") is not None
    except ImportError:
        return False


def _set_parent_death_signal(host_fd: int) -> None:
    signal.signal(TEMPLATE_DEATH_SIGNAL, lambda signum, frame: _on_template_death(host_fd))
    _libc_prctl()(_PR_SET_PDEATHSIG, int(TEMPLATE_DEATH_SIGNAL), 0, 0, 0)


def _on_template_death(host_fd: int) -> None:
    """The template died. If the Go process died too (it takes the template
    with it), end this worker now; otherwise keep serving."""
    try:
        ready, _, _ = select([host_fd], [], [], _HOST_DEATH_WAIT)
    except OSError:
        ready = [host_fd]
    if ready:
        os_exit(1)


def _reseed() -> None:
    # random reseeds itself after fork (os.register_at_fork), but only the
    # module-level generator: do it here too, whatever Python does.
    rnd = sys.modules.get("random")
    if rnd is not None:
        rnd.seed()
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        try:
            np_random.seed()
        except Exception:
            pass


def _received_fds(ancdata: List[Tuple[int, int, bytes]]) -> List[int]:
    fds: List[int] = []
    size = struct.calcsize("i")
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            count = len(data) // size
            fds.extend(struct.unpack("%di" % count, data[: count * size]))
    return fds


def _close_all(fds: List[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _fail(control: _socket.socket, codec: codecs.Codec, error: List[str]) -> NoReturn:
    try:
        control.send(startup.hello_frame(codec, error))
    finally:
        startup.exit_now(startup.EXIT_IMPORT_FAILED)


def _unsupported(message: str) -> List[str]:
    return ["fork_server_unsupported", "OSError", message, ""]


def main(argv: List[str]) -> None:
    """Run the template; in each child, run the worker until its end of input."""
    # First: the template is told from a worker by its SIGCHLD handler (as
    # the Go tests do) while it starts too, beside the pool's first worker
    # started by exec. No child exists yet for it to reap (Template reaps).
    signal.signal(signal.SIGCHLD, _noop)
    try:
        server, worker_argv = parse_server_args(argv)
    except ValueError as exc:
        startup.exit_now(startup.EXIT_PROTOCOL, str(exc))
    # The worker's --shm-fd and --dump-fd are its children's, not the
    # template's: it keeps only what it was given.
    first = list(range(CONTROL_FD + 1, CONTROL_FD + 1 + server.worker_fds)) if server.first_worker else []
    options = worker.startup(worker_argv, keep=[0, 1, 2, CONTROL_FD] + first)
    try:
        control = _socket.socket(fileno=_high(CONTROL_FD, server.worker_fds))
    except OSError as exc:
        _fail(_socket.socket(fileno=CONTROL_FD), startup.startup_codec(options), _unsupported(_nofile_message(exc)))
    sys.stdin = sys.__stdin__ = startup.text_stream(0, write=False)
    sys.stdout = sys.__stdout__ = startup.text_stream(1, write=True)
    sys.stderr = sys.__stderr__ = startup.text_stream(2, write=True)
    _STREAMS[:] = [sys.stdin, sys.stdout, sys.stderr]
    codec = startup.startup_codec(options)
    if not hasattr(os, "pidfd_open") or not sys.platform.startswith("linux"):
        _fail(control, codec, _unsupported("the fork server needs Linux 5.3+ and Python 3.9+ (os.pidfd_open); this is Python %s on %s" % (sys.version.split()[0], sys.platform)))
    try:
        host_fd = os.pidfd_open(server.host_pid)
    except OSError as exc:
        _fail(control, codec, _unsupported("the fork server cannot watch the Go process: %s" % exc))
    try:
        host_fd = _high(host_fd, server.worker_fds)
    except OSError as exc:
        _fail(control, codec, _unsupported(_nofile_message(exc)))
    if not _has_ctypes():
        _fail(control, codec, _unsupported("the fork server cannot watch the Go process: _ctypes is not available (its children need prctl)"))
    modules, error = startup.load_modules(options)
    for name in server.preload:
        if error is None:
            _, error = startup.load_module(name, True)
    setup_seconds = 0.0
    if error is None and server.preload_setup:
        setup_seconds, error = startup.run_setup(modules[0], options, codec)
        if error is None:
            _warn_tasks_left()
    if error is not None:
        _fail(control, codec, error)
    # What the import built goes to the collector's permanent generation:
    # a child's collections then never walk (and so never copy) the
    # template's objects, which stay shared. Without a full collection
    # first (Python's own recipe for a fork without exec): it took 0.7-1.6
    # ms of the first worker's start with a small module, more with a large
    # one, and the garbage it would free (what the import left in cycles
    # that the collections during the import did not reach) stays shared.
    import gc

    try:  # each child registers its stack dumps: import it once, here
        import faulthandler  # noqa: F401
    except ImportError:  # pragma: no cover - an interpreter without it
        pass
    gc.freeze()
    template = Template(control, host_fd, server.worker_fds)
    control.send(startup.hello_frame(codec, None, setup_seconds))
    try:
        if first:
            template._fork(first)  # the pool's first worker: no request comes for it
        template.serve()
    except _BecomeWorker as child:
        fds = child.fds  # outside this block, so that no exception of the
        # worker's has the fork as its context
    else:
        startup.exit_now(0)
    template.become_worker(fds)
    # The template's sys.std* are text streams of fds 0-2 already, and
    # were flushed before the fork: keeping them saves their opening.
    kept = all(s is t for s, t in zip(_STREAMS, (sys.stdin, sys.stdout, sys.stderr)))
    proto = startup.isolate_stdio(new_streams=not kept)
    worker.serve_process(options, codec, modules, proto, setup=not server.preload_setup)
