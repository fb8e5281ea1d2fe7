"""Functions of the observability audit (audit_obs_test.go): output written
at awkward moments, by the worker or by a process it started."""

import os
import sys
import time

import pypool

print("auditobs imported on stdout", flush=True)
print("auditobs import's second line", flush=True)
print("auditobs imported on stderr", file=sys.stderr, flush=True)


def partial_then_crash(fd, text, status):
    """Write text without a newline to fd, then die at once."""
    os.write(fd, text.encode())
    os._exit(status)


def child_prints(text):
    """A process the worker starts writes to the worker's stdout and stderr."""
    import subprocess

    subprocess.run(["/bin/sh", "-c", 'echo "$0"; echo "$0-err" >&2', text], check=True)
    return "ok"


def at_exit_prints(text):
    """Print text to stderr when the worker exits (Close)."""
    import atexit

    atexit.register(lambda: print(text, file=sys.stderr, flush=True))
    return "ok"


def prints_then_ignores_interrupt(text, seconds):
    """Print text, then ignore KeyboardInterrupt: the pool kills the
    worker. The line is written inside the try block: once it is seen,
    the interrupt can come."""
    deadline = time.monotonic() + seconds
    announced = False
    while time.monotonic() < deadline:
        try:
            if not announced:
                announced = True
                print(text, flush=True)
            time.sleep(max(deadline - time.monotonic(), 0))
        except KeyboardInterrupt:
            pass
    return "ignored"


def items(n, fail_at):
    """Yield n items; raise ValueError before item fail_at (-1: never)."""
    for i in range(n):
        if i == fail_at:
            raise ValueError("stream broke at %d" % i)
        yield i


def items_then_crash(n):
    for i in range(n):
        yield i
    os._exit(9)


def echo(value):
    return value


def fail(message):
    raise ValueError(message)


def crash(status):
    os._exit(status)


def call_go_echo(value):
    return pypool.call_go("echo", value)


def call_go_named(name):
    return pypool.call_go(name)


def print_nested(text):
    """A nested call, made from a callback: prints text."""
    print(text, flush=True)
    return text


async def async_print(text, seconds):
    import asyncio

    print(text, flush=True)
    await asyncio.sleep(seconds)
    return text


async def async_fail(message):
    raise ValueError(message)


async def async_crash(status):
    os._exit(status)


def prints_around_a_callback(name):
    """Print a line, call Go (whose callback calls print_nested on this
    worker), print another: three lines of two calls."""
    print("held-line", flush=True)
    print("outer-before", flush=True)
    pypool.call_go(name)
    print("outer-after", flush=True)
    return "ok"


async def async_prints(*lines):
    for line in lines:
        print(line, flush=True)
    return len(lines)


def kill_self(signum):
    """Die of signal signum, sent by the worker to itself."""
    print("dying of %d" % signum, file=sys.stderr, flush=True)
    import signal
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    time.sleep(10)


async def async_ignore_cancel(text, seconds):
    """Print text, then ignore the task's cancellation: the pool kills
    the worker."""
    import asyncio

    print(text, flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await asyncio.sleep(max(deadline - time.monotonic(), 0))
        except asyncio.CancelledError:
            pass
    return "ignored"


def print_a(i):
    print("a-%d" % i, flush=True)


def print_b(i):
    print("b-%d" % i, flush=True)
