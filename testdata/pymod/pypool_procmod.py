"""Functions the process audit calls (audit_proc_linux_test.go): the
children, threads, signals and descriptors of a worker's Python code."""

import os
import subprocess
import sys
import time

_kept = []


def echo(value):
    return value


def fork_returns(size):
    """os.fork() whose child forgets os._exit: it returns too, into the
    runtime's serve loop, as the worker does, with size bytes (a large
    value goes through the shared memory). The worker's result is the
    child's pid and the bytes."""
    child = os.fork()
    return [child, bytes([child & 0xFF]) * size]


def daemon_child(how):
    """A child in a session of its own that sleeps, holding the worker's
    stdout and stderr ("spawn": subprocess), or every descriptor of the
    worker, the protocol's included ("fork"). Returns its pid."""
    if how == "spawn":
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        _kept.append(child)
        return child.pid
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            os.write(w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    return child


def exit_now(status):
    os._exit(status)


def hold_all_fds():
    """Open descriptors until the limit (EMFILE), keep them, and raise."""
    while True:
        _kept.append(os.open(os.devnull, os.O_RDONLY))


def release_fds():
    n = 0
    while _kept:
        fd = _kept.pop()
        if isinstance(fd, int):
            os.close(fd)
            n += 1
    return n


def mp_map(method, n):
    import multiprocessing

    with multiprocessing.get_context(method).Pool(2) as p:
        return p.map(abs, range(-n, 0))


def signal_pid(target, sig):
    try:
        os.kill(target, sig)
    except OSError as exc:
        return exc.errno
    return 0


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except OSError as exc:
        return exc.errno


def hold_fds_quietly():
    """hold_all_fds, without raising: returns how many it took."""
    try:
        hold_all_fds()
    except OSError:
        return len(_kept)


async def async_echo(value):
    return value


def numbers(n):
    yield from range(n)


def unencodable():
    return {1, 2}


def raise_limit():
    """Try to raise RLIMIT_NOFILE's hard limit: the error's errno, or 0."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard + 1, hard + 1))
    except (OSError, ValueError) as exc:
        return [hard, str(exc)]
    return [hard, ""]


def slow_echo(value, seconds):
    time.sleep(seconds)
    return value
