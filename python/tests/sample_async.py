"""Async functions for the worker's tests (aio.py)."""

import asyncio
import sys

_state: dict = {}


def echo(value):
    return value


async def double(value):
    await asyncio.sleep(0)
    return value * 2


def returns_coroutine(value):
    """A plain function whose result is awaitable: awaited as well."""
    return double(value)


def returns_future(value):
    """A future of the thread's current loop, made in a sync function (the
    worker's loop, or one the worker adopts)."""
    future = asyncio.get_event_loop().create_future()
    future.get_loop().call_soon(future.set_result, value)
    return future


class Later:
    """An awaitable that is neither a coroutine nor a future."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return double(self.value).__await__()


def returns_awaitable(value):
    return Later(value)


async def fail(message):
    await asyncio.sleep(0)
    _raise_value_error(message)


def _raise_value_error(message):
    raise ValueError(message)


async def double_with(value, *, factor=2):
    await asyncio.sleep(0)
    return value * factor


async def big_bytes(size):
    await asyncio.sleep(0)
    return b"x" * size


async def unencodable():
    await asyncio.sleep(0)
    return {1, 2}


def _announce_at_the_next_await(line):
    """Write line on stderr once the running task waits at its next await
    (a callback runs only then): a SIGINT the line makes the test send
    finds the task awaiting, not in the synchronous code before."""
    asyncio.get_running_loop().call_soon(lambda: print(line, file=sys.stderr, flush=True))


async def sleep_until_cancelled(seconds):
    """Announce on stderr, then sleep; a cancellation is recorded."""
    try:
        _announce_at_the_next_await("awaiting")
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _state["cancelled"] = True
        raise
    finally:
        _state["finally"] = True
    return "slept"


async def swallow_cancellation(seconds):
    """Ignore the cancellation and sleep on: the worker must be killed."""
    try:
        _announce_at_the_next_await("awaiting")
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        print("swallowed", file=sys.stderr, flush=True)
        await asyncio.sleep(seconds)
    return "ignored"


async def cancel_itself():
    """A cancellation that no interrupt made: an exception like others."""
    task = asyncio.current_task()
    task.cancel()
    await asyncio.sleep(10)


def state():
    return dict(_state)


async def loop_id():
    return id(asyncio.get_running_loop())


async def start_ticker():
    """A background task that counts while the loop runs."""
    _state["ticks"] = 0

    async def tick():
        while True:
            _state["ticks"] += 1
            await asyncio.sleep(0)

    _state["ticker"] = asyncio.get_running_loop().create_task(tick())
    return "started"


def ticks():
    return _state["ticks"]


async def run_loop_briefly():
    for _ in range(10):
        await asyncio.sleep(0)


async def start_background_with_finally():
    async def wait_forever():
        try:
            await asyncio.sleep(3600)
        finally:
            print("background task finished", file=sys.stderr, flush=True)

    _state["background"] = asyncio.get_running_loop().create_task(wait_forever())
    await asyncio.sleep(0)  # let it start


def asyncio_imported():
    return "asyncio" in sys.modules


async def set_up(value="set up"):
    await asyncio.sleep(0)
    _state["setup"] = value
    _state["setup_loop"] = id(asyncio.get_running_loop())


def setup_state():
    return [_state.get("setup"), _state.get("setup_loop")]


async def async_set_up_fails():
    await asyncio.sleep(0)
    raise ValueError("no connection")


def sleep_sync(seconds):
    """A sync function of an async module: interrupted as any other."""
    import time

    print("sleeping", file=sys.stderr, flush=True)
    time.sleep(seconds)
    return "slept"


def install_str_default():
    """A default hook that turns any object into its str(): awaitables stay
    the worker's to await."""
    from pypool_runtime import set_default

    set_default(str)


async def serve_and_connect():
    """A server on the loop with one connection open, left so at the end of
    input: its handler task is cancelled then."""

    accepted = asyncio.Event()

    async def handle(reader, writer):
        accepted.set()
        await reader.readline()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    _state["server"] = server
    _state["client"] = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    await accepted.wait()


async def blocking_sleep(seconds):
    """Sync code in a coroutine: SIGINT interrupts it as a sync function."""
    import time

    await asyncio.sleep(0)
    try:
        print("blocking", file=sys.stderr, flush=True)
        time.sleep(seconds)
    finally:
        _state["finally"] = True
