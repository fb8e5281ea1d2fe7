"""Functions for the deadline invariant test (deadline_test.go): each runs
past its deadline in one of the ways Python code can (kind), in every call
form."""

import asyncio
import time

from pypool import call_go


def _ignore_interrupt(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(max(end - time.monotonic(), 0))
        except KeyboardInterrupt:
            pass


def _python_loop(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1


def _behave(kind, seconds):
    """Takes seconds in the way kind says, and returns kind."""
    if kind == "python_loop":
        _python_loop(seconds)
    elif kind == "c_sleep":
        time.sleep(seconds)  # C code, interrupted by SIGINT
    elif kind == "c_busy":
        sum(range(10**9))  # C code that looks at no signal for seconds: always past the deadline
    elif kind == "ignore_interrupt":
        _ignore_interrupt(seconds)
    elif kind != "quick":
        raise ValueError("unknown kind %r" % kind)
    return kind


def behave(kind, seconds):
    return _behave(kind, seconds)


def behave_bytes(kind, seconds):
    return _behave(kind, seconds).encode()


def behave_gen(kind, seconds):
    yield 0
    _behave(kind, seconds)
    yield 1


async def behave_async(kind, seconds):
    if kind == "c_sleep":
        await asyncio.sleep(seconds)  # the coroutine's own way to wait
        return kind
    return _behave(kind, seconds)


def behave_after_go(go_seconds, kind, seconds):
    """Calls the Go callback go_sleep, which ignores its context for
    go_seconds, then behaves."""
    call_go("go_sleep", go_seconds)
    return _behave(kind, seconds)


def behave_nested(kind, seconds):
    """Go's callback "nested" calls behave(kind, seconds) back on this worker."""
    return call_go("nested", kind, seconds)
