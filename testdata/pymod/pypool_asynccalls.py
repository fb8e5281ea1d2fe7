"""Functions for the tests of Config.AsyncCalls (async_calls_test.go and
python/tests/test_async_calls.py): async functions served many at once on
a loop that runs all the time, beside sync ones."""

import asyncio
import os
import time

ticks = 0
cancelled = 0
started = 0  # wait_cancel's tasks that began to run
_ticker = None
_gate = None


async def start_ticker():
    """Start a background task that counts while the loop runs."""
    global _ticker

    async def tick():
        global ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    if _ticker is None:
        _ticker = asyncio.get_running_loop().create_task(tick())
    return True


def get_ticks():
    return ticks


inflight = 0
most_inflight = 0


async def sleep_echo(seconds, value):
    """Sleep, then return value; counts the calls in flight."""
    global inflight, most_inflight
    inflight += 1
    most_inflight = max(most_inflight, inflight)
    try:
        await asyncio.sleep(seconds)
    finally:
        inflight -= 1
    return value


def sync_inflight():
    """The calls of sleep_echo in flight, and the most there were at once."""
    return [inflight, most_inflight]


_arrived = 0
_all_arrived = None


async def barrier(n, timeout):
    """Return once n calls of barrier are in flight at once (TimeoutError
    after timeout seconds)."""
    global _arrived, _all_arrived
    if _all_arrived is None:
        _all_arrived = asyncio.Event()
    _arrived += 1
    if _arrived >= n:
        _all_arrived.set()
    await asyncio.wait_for(_all_arrived.wait(), timeout)
    return _arrived


async def trivial():
    return None


async def wait_cancel(seconds):
    """Sleep; count a cancellation. A task cancelled before it began to
    run never enters this body: started tells the two apart."""
    global cancelled, started
    started += 1
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled += 1
        raise
    return "slept"


def cancelled_count():
    return cancelled


def started_count():
    return started


async def ignore_cancel(seconds):
    """Sleep seconds, swallowing every cancellation."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            await asyncio.sleep(end - time.monotonic())
        except asyncio.CancelledError:
            pass
    return "ignored"


async def fail(message):
    await asyncio.sleep(0)
    raise ValueError(message)


async def exits():
    await asyncio.sleep(0.05)
    os._exit(3)


async def greet(name, *, greeting="hello"):
    await asyncio.sleep(0)
    return "%s %s" % (greeting, name)


async def numbers(n):
    """An async generator, for Pool.Stream."""
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def returns_coroutine(value):
    """A sync function whose result is awaited (on the loop thread)."""
    return sleep_echo(0, value)


def sync_echo(value):
    return value


def sync_sleep(seconds):
    time.sleep(seconds)
    return "slept"


async def calls_go():
    from pypool_runtime import call_go

    return call_go("hello")


async def pid():
    await asyncio.sleep(0)
    return os.getpid()


async def call_context(n):
    """The call's context (pypool.current_call) as its task sees it once n
    calls of it are in flight at once (barrier; 0: at once), None outside a
    call."""
    import pypool

    if n:
        await barrier(n, 30)
    cc = pypool.current_call()
    if cc is None:
        return None
    return {
        "function": cc.function,
        "attempt": cc.attempt,
        "metadata": dict(cc.metadata),
        "remaining": cc.remaining(),
        "traceparent": cc.traceparent,
    }
