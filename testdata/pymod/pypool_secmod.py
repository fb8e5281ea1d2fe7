"""Functions the security tests call: what a worker sees of its process."""

import os
import sys

_set_up = []


def set_up(value):
    _set_up.append(value)


def setup_value():
    return _set_up


def fail(message):
    raise ValueError(message)


def echo(value):
    return value


def path():
    return list(sys.path)


def initial_env():
    """The environment the process was started with (before Python's own
    changes, such as the C locale coercion's LC_CTYPE)."""
    with open("/proc/self/environ", "rb") as f:
        entries = f.read().split(b"\0")
    return sorted(e.decode("utf-8", "backslashreplace") for e in entries if e)


def allocate(size):
    """Allocate size bytes (a MemoryError under RLIMIT_AS) and touch them."""
    block = bytearray(size)
    return len(block)


def spin():
    """Burn CPU until killed (RLIMIT_CPU)."""
    n = 0
    while True:
        n += 1


def open_files(count):
    """Open count descriptors of /dev/null, closing them all again."""
    files = []
    try:
        for _ in range(count):
            files.append(os.open(os.devnull, os.O_RDONLY))
    finally:
        for fd in files:
            os.close(fd)
    return count


def ids():
    return [os.getuid(), os.getgid(), sorted(os.getgroups())]


def descriptors(probe):
    """The worker's descriptors, number -> what /proc/self/fd says it refers
    to, and what reading descriptor probe gives: its first bytes, or the
    error's text."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass  # the listing's own descriptor, closed since
    try:
        read = os.pread(probe, 100, 0)
    except OSError as exc:
        read = str(exc)
    return [fds, read]


# What the shadowing test runs of each runtime feature. The module imports
# no asyncio itself: the runtime imports it at the first awaitable.


async def async_echo(value):
    return value


def numbers(n):
    yield from range(n)


async def async_numbers(n):
    for i in range(n):
        yield i


def ask_go(value):
    from pypool import call_go

    return call_go("double", value)


def size_of(data):
    """The length of data (a large one comes through the shared memory),
    and as much back."""
    return [len(data), bytes(len(data))]
