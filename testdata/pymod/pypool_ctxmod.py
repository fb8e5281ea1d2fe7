"""Functions that report the call's context (callctx_test.go, example_callctx_test.go)."""

import asyncio
import os

import pypool
from pypool import call_go


def _describe(cc):
    if cc is None:
        return None
    left = cc.remaining()
    return {
        "function": cc.function,
        "attempt": cc.attempt,
        "metadata": dict(cc.metadata),
        "remaining": left,
        "has_deadline": cc.deadline is not None,
        "traceparent": cc.traceparent,
        "tracestate": cc.tracestate,
        "trace_context": pypool.trace_context(),
        "readonly": _readonly(cc.metadata),
    }


def _readonly(mapping):
    try:
        mapping["x"] = "y"
    except TypeError:
        return True
    return False


def context(*args, **kwargs):
    """The call's context as a map."""
    return _describe(pypool.current_call())


def remaining():
    """pypool.remaining(): seconds left, or None."""
    return pypool.remaining()


def tenant_timeout():
    """What a function of a service does with it: the tenant of the
    request, and a timeout for its own I/O that ends before Go's deadline."""
    cc = pypool.current_call()
    left = pypool.remaining()
    return {"tenant": cc.metadata.get("tenant"), "timeout_ok": left is not None and 0 < left <= 10}


def stream_context(n):
    """A stream whose items each report the call's context."""
    for _ in range(n):
        yield _describe(pypool.current_call())


async def async_context():
    await asyncio.sleep(0)
    inner = await asyncio.ensure_future(_in_task())
    outer = _describe(pypool.current_call())
    outer["task_function"] = inner
    return outer


async def _in_task():
    await asyncio.sleep(0)
    return pypool.current_call().function


def nested(callback):
    """Calls the Go callback, which calls context(); returns what the Go
    side saw and this call's context after it, to show that the nested
    call's context does not leak into the outer call."""
    inner = call_go(callback)
    return {"inner": inner, "outer": _describe(pypool.current_call())}


def crash_once(flag_path):
    """Exits the worker on the first attempt (while flag_path exists); the
    retry reports its context."""
    if os.path.exists(flag_path):
        os.remove(flag_path)
        os._exit(3)
    return _describe(pypool.current_call())


def outside():
    """current_call() and remaining() at import time, as recorded then."""
    return _AT_IMPORT


_AT_IMPORT = {"current_call": pypool.current_call(), "remaining": pypool.remaining(), "trace_context": pypool.trace_context()}


def metadata_bytes(key):
    """The metadata's value under key, as bytes (CallBytes)."""
    return pypool.current_call().metadata.get(key, "").encode()
