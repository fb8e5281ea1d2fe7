"""A module that makes an event loop current at import, as older asyncio
code does (and binds an object to it): the worker adopts that loop."""

import asyncio

_loop = asyncio.new_event_loop()
asyncio.set_event_loop(_loop)
_future = _loop.create_future()  # bound to _loop


async def uses_the_import_loop():
    _loop.call_soon(_future.set_result, "resolved")
    return [asyncio.get_running_loop() is _loop, await _future]
