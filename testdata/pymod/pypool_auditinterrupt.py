"""For audit_interrupt_test.go: calls whose interrupt comes where the
runtime counts it as between calls (interrupt.Interrupts.idle), or where
no SIGINT is sent at all."""

import asyncio
import sys
import time

import pypool_runtime
from pypool_runtime.interrupt import STATE


class LateReply:
    """A value whose encoding (set_default's hook, the runtime's code, not
    the user's) announces itself as what, then waits for the SIGINT of its
    call: the interrupt lands after the user's code returned (a result) or
    yielded (a stream's item), before the runtime wrote it."""

    def __init__(self, what):
        self.what = what


def _default(value):
    if isinstance(value, LateReply):
        print("encoding the late " + value.what, file=sys.stderr, flush=True)
        deadline = time.monotonic() + 30
        while not (STATE.idle or STATE.pending) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "late " + value.what
    raise TypeError("not encodable: %r" % (value,))


pypool_runtime.set_default(_default)


def late_reply():
    return LateReply("reply")


def late_items():
    """A stream whose last item's encoding waits for its SIGINT, which the
    runtime keeps pending: the stream then ends, not interrupted."""
    yield 1
    yield LateReply("item")


def echo(value):
    return value


async def aecho(value):
    await asyncio.sleep(0)
    return value


async def slow_items():
    """An async def function whose value is an async generator (Pool.Stream
    awaits it, then iterates it): its second item never comes."""

    async def items():
        yield 1
        print("awaiting the second item", file=sys.stderr, flush=True)
        await asyncio.sleep(60)
        yield 2

    return items()


def ask(name, *args):
    """call_go(name, *args): the callback's result."""
    from pypool_runtime import call_go

    return call_go(name, *args)


def nested_sleep(seconds):
    """A nested call that announces itself, then sleeps: its caller's
    context ends meanwhile."""
    print("nested call sleeping", file=sys.stderr, flush=True)
    time.sleep(seconds)
    return "slept"


def sleep(seconds):
    time.sleep(seconds)
    return "slept"


def swallow():
    """Swallow the interrupt (a bare except, say) and return at once."""
    try:
        print("swallowing the interrupt", file=sys.stderr, flush=True)
        time.sleep(30)
    except KeyboardInterrupt:
        pass
    return "swallowed"


def two_items():
    yield 1
    yield 2


def ask_swallowing(name):
    """call_go(name), its interrupt swallowed."""
    from pypool_runtime import call_go

    try:
        return call_go(name)
    except KeyboardInterrupt:
        return "swallowed"


def swallow_quick():
    """A short sleep that swallows its interrupt."""
    try:
        time.sleep(0.001)
    except KeyboardInterrupt:
        pass
    return "swallowed"
