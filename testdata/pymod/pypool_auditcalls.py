"""The calls audit's module (audit_calls_test.go): functions that tell Go,
through a callback, that they run, so that a test can strike at a known
point of a call."""

import os
import time

from pypool import GoError, call_go


def echo(value):
    return value


def pid():
    return os.getpid()


def signal_then_sleep(name, seconds):
    """Tells Go (the callback name) that it runs, then sleeps."""
    call_go(name)
    time.sleep(seconds)
    return seconds


def ask(name, *args):
    """Returns what the Go callback name answers."""
    return call_go(name, *args)


def ask_code(name, *args):
    """The GoError's code of call_go(name, *args), or "answered"."""
    try:
        call_go(name, *args)
    except GoError as exc:
        return exc.code
    return "answered"


def numbers(n):
    for i in range(n):
        yield i


def ask_each(name, n):
    """Yields what the Go callback name answers for each of 0..n-1."""
    for i in range(n):
        yield call_go(name, i)


async def async_echo(value):
    return value


async def async_sleep(seconds, value):
    import asyncio

    await asyncio.sleep(seconds)
    return value


async def slow_to_cancel(seconds):
    """Answers its cancellation only after seconds (its clean-up awaits)."""
    import asyncio

    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
        raise


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def fail(message):
    raise ValueError(message)


def crash():
    os._exit(3)


def unencodable():
    return {1, 2, 3}


async def async_unencodable():
    return {1, 2, 3}


async def async_fail(message):
    raise ValueError(message)


def _private():
    return "never"


async def async_ticks(n, seconds):
    """An async generator that awaits between its items."""
    import asyncio

    for i in range(n):
        await asyncio.sleep(seconds)
        yield i
