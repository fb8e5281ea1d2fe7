"""The async scenario's module (bench/async.go): async functions that wait,
or do nothing, for Config.AsyncCalls against one call per worker."""

import asyncio
import os


async def sleep(seconds):
    await asyncio.sleep(seconds)


async def trivial(data):
    return data


def pid():
    return os.getpid()
