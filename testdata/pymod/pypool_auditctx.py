"""Functions for audit_callctx_test.go: hostile uses of the call's context."""

import asyncio
import contextvars
import threading

import pypool
from pypool import call_go


def _describe(cc):
    if cc is None:
        return None
    return {
        "function": cc.function,
        "attempt": cc.attempt,
        "metadata": dict(cc.metadata),
        "has_deadline": cc.deadline is not None,
        "remaining": cc.remaining(),
        "traceparent": cc.traceparent,
        "tracestate": cc.tracestate,
    }


def context(*args, **kwargs):
    return _describe(pypool.current_call())


def mutate():
    """Tries to change its own context; returns what it could change."""
    cc = pypool.current_call()
    changed = []
    try:
        cc.metadata["leak"] = "yes"
        changed.append("metadata[]")
    except TypeError:
        pass
    for name, value in (("metadata", {"leak": "yes"}), ("attempt", 99), ("deadline", 1.0), ("function", "leak"), ("traceparent", "leak")):
        try:
            setattr(cc, name, value)
            changed.append(name)
        except (AttributeError, TypeError):
            pass
    return changed


def in_thread(copy):
    """current_call() in a thread the call starts, in a copy of the
    context or not."""
    out = {}

    def read():
        out["cc"] = _describe(pypool.current_call())

    target = contextvars.copy_context().run if copy else (lambda f: f())
    t = threading.Thread(target=target, args=(read,))
    t.start()
    t.join()
    return out["cc"]


_LATER = {}
_STARTED = threading.Event()
_GO = threading.Event()
_DONE = threading.Event()


def start_late_thread(copy):
    """Starts a thread (in a copy of the context, or not) that reads the
    context once this call is over (when read_late_thread lets it)."""
    _STARTED.clear(), _GO.clear(), _DONE.clear()

    def read():
        _GO.wait(60)
        _LATER["cc"] = _describe(pypool.current_call())
        _LATER["remaining"] = pypool.remaining()
        _LATER["trace_context"] = pypool.trace_context()
        _DONE.set()

    target = contextvars.copy_context().run if copy else (lambda f: f())
    threading.Thread(target=target, args=(read,), daemon=True).start()
    return _describe(pypool.current_call())


def read_late_thread():
    """Lets the thread start_late_thread started read, from within this
    (another) call, and returns what it read."""
    _GO.set()
    _DONE.wait(60)
    return {"late": _LATER, "now": _describe(pypool.current_call())}


def stream_closed(n):
    """A stream whose clean-up records the context it runs in."""
    try:
        for i in range(n):
            yield _describe(pypool.current_call())
    finally:
        _LATER["closed"] = _describe(pypool.current_call())


def last_closed():
    return _LATER.get("closed", "missing")


def nested(callback):
    inner = call_go(callback)
    return {"inner": inner, "outer": _describe(pypool.current_call())}


_BG = {}


async def start_task():
    """Starts a background task that outlives the call, and returns."""
    ev = asyncio.Event()
    _BG["event"] = ev

    async def later():
        await ev.wait()
        _BG["cc"] = _describe(pypool.current_call())
        _BG["done"].set()

    _BG["done"] = asyncio.Event()
    _BG["task"] = asyncio.ensure_future(later())
    await asyncio.sleep(0)
    return _describe(pypool.current_call())


async def read_task():
    """Releases start_task's background task and returns what it read,
    and this call's own context."""
    _BG["event"].set()
    await _BG["done"].wait()
    return {"late": _BG["cc"], "now": _describe(pypool.current_call())}


_ARRIVED = {}


async def wait_all(n, key):
    """Async mode: waits until n calls are in (each with its own key), then
    returns its own context, read after the others started."""
    loop = asyncio.get_running_loop()
    gate = _ARRIVED.setdefault(n, {"count": 0, "event": asyncio.Event()})
    gate["count"] += 1
    if gate["count"] >= n:
        gate["event"].set()
    before = _describe(pypool.current_call())
    await asyncio.wait_for(gate["event"].wait(), 60)
    await asyncio.sleep(0)
    after = _describe(pypool.current_call())
    if gate["count"] >= n:
        pass
    return {"before": before, "after": after}


def reset_gates():
    _ARRIVED.clear()


def crash_once(flag_path):
    """Exits the worker on the first attempt (while flag_path exists)."""
    import os

    if os.path.exists(flag_path):
        os.remove(flag_path)
        os._exit(3)
    return _describe(pypool.current_call())


def with_kwargs(**kwargs):
    return _describe(pypool.current_call())


def nest2(callback):
    """The context before, during (what the Go callback returns) and after
    a call_go."""
    before = _describe(pypool.current_call())
    try:
        inner = call_go(callback)
    except Exception as exc:
        inner = {"error": str(exc)}
    return {"before": before, "inner": inner, "after": _describe(pypool.current_call())}


def stream_nest(callback, n):
    """A stream that calls the Go callback between its items."""
    for _ in range(n):
        yield {"item": _describe(pypool.current_call()), "inner": call_go(callback)}
    yield {"item": _describe(pypool.current_call()), "inner": None}


async def async_nest(callback):
    """An async function (not Config.AsyncCalls) that calls Go."""
    await asyncio.sleep(0)
    before = _describe(pypool.current_call())
    inner = call_go(callback)
    await asyncio.sleep(0)
    return {"before": before, "inner": inner, "after": _describe(pypool.current_call())}


def hold(callback):
    """Tells Go its pid (the callback), then waits until it is killed or
    interrupted."""
    import os

    call_go(callback, os.getpid())
    threading.Event().wait()


async def async_stream(n):
    """An async generator stream whose items report the context."""
    for _ in range(n):
        await asyncio.sleep(0)
        yield _describe(pypool.current_call())


async def _describe_later():
    await asyncio.sleep(0)
    return _describe(pypool.current_call())


def returns_coroutine():
    """A sync function that returns a coroutine (the runtime awaits it)."""
    return _describe_later()


async def async_items(n):
    """An async function whose value (a list) streams."""
    await asyncio.sleep(0)
    return iter([_describe(pypool.current_call()) for _ in range(n)])


_SETUP = {}


def setup():
    """Config.SetUp: records what it sees of the call context, from its
    own code and from an async task it runs."""
    _SETUP["sync"] = _describe(pypool.current_call())
    _SETUP["remaining"] = pypool.remaining()

    async def in_task():
        return _describe(pypool.current_call())

    _SETUP["async"] = asyncio.run(in_task())


def setup_saw():
    return _SETUP


def pid():
    import os

    return os.getpid()


_CANCELLED = {}


_WAITING = set()


async def wait_cancel(key):
    """Waits until Go cancels it; records its context in its clean-up."""
    try:
        _WAITING.add(key)
        await asyncio.Event().wait()
    finally:
        _CANCELLED[key] = _describe(pypool.current_call())


async def waiting(key):
    """Returns once wait_cancel(key) waits in its try block."""
    while key not in _WAITING:
        await asyncio.sleep(0)


async def cancelled(key):
    """What wait_cancel(key) saw in its clean-up, once it ran (Go's CANCEL
    came before this call's frame)."""
    while key not in _CANCELLED:
        await asyncio.sleep(0)
    return _CANCELLED[key]


async def to_thread():
    """asyncio.to_thread runs in a copy of the task's context."""
    return await asyncio.to_thread(lambda: _describe(pypool.current_call()))


def recurse(depth):
    """Calls Go's "down" callback (which calls recurse(depth - 1) with one
    more metadata key) until depth is 0; returns each level's context,
    read after its nested call returned."""
    below = call_go("down", depth) if depth > 0 else []
    return below + [_describe(pypool.current_call())]


async def async_crash_once(flag_path):
    """crash_once, as an async function (a task with Config.AsyncCalls)."""
    await asyncio.sleep(0)
    return crash_once(flag_path)


def reset_closed():
    _LATER.pop("closed", None)


def own_metadata():
    """Returns the metadata mapping itself."""
    return pypool.current_call().metadata


async def async_context():
    await asyncio.sleep(0)
    return _describe(pypool.current_call())
