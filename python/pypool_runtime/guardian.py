"""The pool's guardian: it kills the process groups of a pool's workers when
the Go process that runs the pool is gone (guardian.go).

Go starts it, once per pool and before the first worker, as
``python3 -I -S RUNTIME_DIR/pypool_runtime/guardian.py`` in a process group of
its own and without a parent-death signal. Its stdin is a pipe whose write
end only the Go process holds (close-on-exec). Go writes one line per
process group: ``+PGID`` when a worker (or the fork server's template)
started, ``-PGID`` once it exited and its group was killed. When stdin
reaches its end (the Go process died, or Close is done with the workers),
the guardian sends SIGKILL to every group it still knows, then exits.

It never waits for a worker: a worker stuck in C code, whose Python-level
signal handlers cannot run, is killed all the same. Standard library only,
and as little of it as possible: it is imported by nothing else. It starts
beside a pool's first worker and competes with it for a CPU, so it imports
only modules built into the interpreter: ``posix`` and ``_signal``, the
modules under ``os`` and ``signal`` (``signal`` alone imports ``enum``,
``functools`` and ``collections``: it took 10 ms of the guardian's start on
Debian's Python 3.11, two thirds of what its own code costs).
"""

import _signal
import posix
import sys


def _close_inherited():
    """Close every descriptor but 0, 1 and 2: the guardian holds nothing
    of the Go process's (a descriptor it inherited without close-on-exec)."""
    try:
        fds = [int(name) for name in posix.listdir("/proc/self/fd")]
    except OSError:
        posix.closerange(3, 256)
        return
    for fd in fds:
        if fd > 2:
            try:
                posix.close(fd)
            except OSError:
                pass  # the listing's own descriptor, closed already


def apply(groups, line):
    """Apply one line of the host (b"+PGID" or b"-PGID") to groups."""
    line = line.strip()
    if len(line) < 2 or line[:1] not in (b"+", b"-"):
        return
    try:
        pgid = int(line[1:])
    except ValueError:
        return
    if pgid <= 1:
        return  # never the guardian's own caller's groups by accident
    if line[:1] == b"+":
        groups.add(pgid)
    else:
        groups.discard(pgid)


def kill_all(groups):
    """SIGKILL every group; one already gone, or not ours to kill, is
    skipped."""
    for pgid in sorted(groups):
        try:
            posix.killpg(pgid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def serve(fd=0):
    """Read the host's lines until the end of fd; return the groups still
    owned then."""
    groups = set()
    pending = b""
    while True:
        try:
            chunk = posix.read(fd, 65536)
        except InterruptedError:  # pragma: no cover - retried by Python
            continue
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            apply(groups, line)
    return groups


def main():
    # A Ctrl-C is for the Go program to handle: the guardian ends at the
    # end of its input (or by a signal that ends the Go program too).
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _close_inherited()
    kill_all(serve())
    sys.exit(0)


if __name__ == "__main__":
    main()
