"""A module that makes an event loop current at import, as older asyncio
code does: the worker's loop is another one (the import's may have been made
in a process the worker was forked from)."""

import asyncio

_loop = asyncio.new_event_loop()
asyncio.set_event_loop(_loop)
_future = _loop.create_future()  # bound to _loop


async def runs_on_the_import_loop():
    return asyncio.get_running_loop() is _loop


async def awaits_a_future_of_the_import_loop():
    await _future
