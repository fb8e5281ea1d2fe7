"""Functions for audit_modes_test.go: the documented promises attacked on
the non-default modes (the fork server, Config.AsyncCalls, shared memory,
Limits and Credential)."""

import asyncio
import os
import time


async def apid(seconds):
    """Sleep seconds on the loop, then return the worker's pid."""
    await asyncio.sleep(seconds)
    return os.getpid()


def pid():
    return os.getpid()


def size(value):
    """The length of a bytes value (one that may cross through shared memory)."""
    return len(value)


def echo(value):
    return value


def spin():
    """Burn CPU until killed (RLIMIT_CPU)."""
    n = 0
    while True:
        n += 1


def rlimits():
    """The soft limits of RLIMIT_AS, RLIMIT_CPU and RLIMIT_NOFILE."""
    import resource

    return [resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_CPU, resource.RLIMIT_NOFILE)]


def sleep(seconds):
    time.sleep(seconds)
    return "slept"


def swallow(seconds):
    """Ignore KeyboardInterrupt for seconds."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(max(end - time.monotonic(), 0))
        except KeyboardInterrupt:
            pass
    return "ignored"


async def block_loop(seconds):
    """Hold the event loop in synchronous code for seconds."""
    time.sleep(seconds)
    return "blocked"
