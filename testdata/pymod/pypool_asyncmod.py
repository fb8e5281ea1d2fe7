"""Async functions the Go tests call (async_test.go)."""

import asyncio
import os
import sys
import time

_state = {}


async def double(value):
    await asyncio.sleep(0)
    return value * 2


def returns_coroutine(value):
    """A plain function whose result is awaitable: awaited as well."""
    return double(value)


async def fail(message):
    await asyncio.sleep(0)
    _raise_value_error(message)


def _raise_value_error(message):
    raise ValueError(message)


async def sleep_until_cancelled(seconds):
    """Sleep; a cancellation is recorded, for state() to tell."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _state["cancelled"] = True
        raise
    finally:
        _state["finally ran"] = True
    return "slept"


async def swallow_cancellation(seconds):
    """Announce on stderr, then ignore the cancellation and sleep on: the
    pool must kill this worker."""
    try:
        # Written once the task awaits: the test's cancellation must find it
        # there, not in the print (where it would get KeyboardInterrupt).
        asyncio.get_running_loop().call_soon(lambda: print("awaiting", file=sys.stderr, flush=True))
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
    return "ignored"


async def blocking_sleep(seconds):
    """Synchronous code in a coroutine: interrupted as a sync function is."""
    try:
        await asyncio.sleep(0)
        time.sleep(seconds)
    finally:
        _state["blocking finally ran"] = True


def state():
    return dict(_state)


def pid():
    return os.getpid()


async def connect():
    """Start a line-echo server on the worker's loop and open a connection
    to it: both stay bound to the loop for the next calls."""

    async def echo_lines(reader, writer):
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo_lines, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _state["server"] = server
    _state["connection"] = await asyncio.open_connection("127.0.0.1", port)
    _state["connections"] = _state.get("connections", 0) + 1


async def send_line(text):
    """Send text over connect()'s connection; the server (a task in the
    background) answers during this call."""
    reader, writer = _state["connection"]
    writer.write(text.encode() + b"\n")
    await writer.drain()
    return (await reader.readline()).decode().rstrip("\n")


def connections():
    return _state.get("connections", 0)


async def echo(value):
    """Awaits nothing: what awaiting on the loop costs (BenchmarkCallAsync)."""
    return value


async def big_bytes(size):
    """A result large enough for the shared memory (Config.SharedMemoryThreshold)."""
    await asyncio.sleep(0)
    return b"x" * size


async def remember_setup_loop():
    """A set-up (Config.SetUp) that makes the loop: in the fork server's
    template with Config.PreloadSetUp."""
    await asyncio.sleep(0)
    _state["setup loop"] = asyncio.get_running_loop()
    _state["setup pid"] = os.getpid()


async def own_loop():
    """[whether another process ran the set-up, whether this call's loop is
    another than the set-up's]."""
    return [_state["setup pid"] != os.getpid(), asyncio.get_running_loop() is not _state["setup loop"]]
