"""Async functions: the worker's event loop, and awaiting on it.

A function that Go calls may be ``async def``, or a plain function that
returns an awaitable; so may the set-up function. The worker awaits the
awaitable on its event loop and answers with its result or its exception.

The loop is one per worker, created at the first awaitable (a worker that
never runs async code never imports asyncio, whose import costs milliseconds
at every start, and a process forked from a worker that has run no async code
holds no loop) and kept for the worker's life, so that what the module opens
on it (connections, clients, locks) stays usable from one call to the next.

The loop runs only while an async call (or the set-up, or sync_iter's next
item) is awaited: tasks the module starts in the background (create_task, a
server's connection handlers, a client's keep-alive) make progress during
async calls only, and are frozen in between and during sync calls. When the
worker's input ends they are cancelled and given the chance to finish (their
``finally`` blocks run) before the interpreter exits.

Interrupts: while the loop runs, SIGINT (which Go sends when a call's
deadline passes or its context is cancelled) cancels the awaited task: the
coroutine gets CancelledError where it awaits, its ``except CancelledError``
and ``finally`` blocks run, and run() raises KeyboardInterrupt, which the
worker answers as an interrupted call, as for a sync function. A task that
swallows the cancellation and goes on is, like a sync function that ignores
KeyboardInterrupt, killed by Go after Config.InterruptGrace. A coroutine
that runs synchronous code when SIGINT comes (time.sleep, a blocking client)
gets KeyboardInterrupt there instead, as a sync function would, since a
cancellation would wait for its next await. SIGINT during the
making of the loop (asyncio's import, at the first awaitable) cancels the
task before its coroutine starts. One that comes in the microseconds
between the function's return and run() is ignored, as between calls: the
call then runs on until Go kills the worker after the grace.

Nothing here imports asyncio until an awaitable is run; importing this module
costs no more than its own code. get_loop imports it through
stdlib.import_module, so that neither it nor the modules it imports come
from the user's paths; the other functions run after it and find it loaded.
"""

from __future__ import annotations

import os
import sys

try:  # as in startup.py
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal  # type: ignore[no-redef]

from . import stdlib
from .interrupt import STATE

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds.
    import asyncio
    from typing import Any, AsyncIterable, Awaitable, Dict, Iterator, Optional

# co_flags of a generator decorated with types.coroutine (inspect.CO_ITERABLE_COROUTINE).
_CO_ITERABLE_COROUTINE = 0x100

# The worker's loop (None until the first awaitable), the task run() awaits
# (None between runs), and whether SIGINT came during the current run.
_loop: Optional[asyncio.AbstractEventLoop] = None
_task: Optional[asyncio.Future[Any]] = None
_interrupted = False
# The SIGINT handler run() replaced (the worker's), while it runs.
_outer_handler: Any = None
# The process that made _loop: a process forked from it (by a fork server
# whose template ran an async set-up) makes its own, and leaves the
# inherited one and its tasks alone (their descriptors and selector are
# shared with the parent).
_loop_pid = 0


def is_awaitable(value: Any) -> bool:
    """What inspect.isawaitable says, without importing inspect: a coroutine,
    a generator-based coroutine, or an object whose class has __await__
    (asyncio futures and tasks among them)."""
    cls = type(value)
    if hasattr(cls, "__await__"):
        return True
    code = getattr(value, "gi_code", None)
    return code is not None and cls.__name__ == "generator" and bool(code.co_flags & _CO_ITERABLE_COROUTINE)


def get_loop() -> asyncio.AbstractEventLoop:
    """The worker's event loop, made (and made the thread's current loop) at
    the first call, and again in a process forked from one that had made
    it. Always a new one, even if the module made a loop current at import:
    a loop made in another process, one the worker was forked from, shares
    its selector with that process."""
    global _loop, _loop_pid
    loop = _loop
    if loop is None or loop.is_closed() or _loop_pid != os.getpid():
        # Never from the user's paths, nor what it imports (stdlib.py).
        asyncio = stdlib.import_module("asyncio")

        if _loop_pid == 0:
            import atexit

            atexit.register(_shutdown)  # inherited by forks too: _shutdown checks the pid
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        _loop, _loop_pid = loop, os.getpid()
    return loop


def run(awaitable: Awaitable[Any]) -> Any:
    """Await awaitable on the worker's loop and return its result, or raise
    its exception. SIGINT meanwhile cancels it, or raises KeyboardInterrupt
    in it if it runs synchronous code then; run raises KeyboardInterrupt once
    it has ended. A coroutine that cannot be started (a loop is already
    running: an async call nested in another) is closed, so that Python does
    not warn that it was never awaited."""
    global _task, _interrupted
    loaded = stdlib.import_module("asyncio") if "asyncio" in sys.modules else None  # the standard one, if any
    if loaded is not None and loaded._get_running_loop() is not None:
        # Checked before the state of the run in progress is touched.
        _close(awaitable)
        raise RuntimeError(
            "cannot await %r: an event loop is already running in this thread (an async function called"
            " from Go while another call on the same worker awaits)" % (awaitable,)
        )
    global _outer_handler
    _interrupted = False
    previous = _outer_handler = _catch_sigint()
    try:
        try:
            task = _start(awaitable)
        except BaseException:
            _close(awaitable)
            raise
        del awaitable  # the task holds it
        return _await(task)
    finally:
        _task = _outer_handler = None
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _start(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    global _task
    loop = get_loop()
    import asyncio

    task = asyncio.ensure_future(awaitable, loop=loop)
    _task = task
    if _interrupted:  # SIGINT came while the loop was being made
        task.cancel()
    return task


def _await(task: asyncio.Future[Any]) -> Any:
    import asyncio

    try:
        return get_loop().run_until_complete(task)
    except asyncio.CancelledError as exc:
        if not _interrupted:
            raise  # cancelled by the module's own code: an exception like another
        raise KeyboardInterrupt("cancelled by an interrupt").with_traceback(exc.__traceback__) from None
    finally:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: asyncio must not log it as "never retrieved"


def _catch_sigint() -> Any:
    """Make SIGINT cancel the awaited task; return the handler to restore
    (None outside the main thread, where signals cannot be handled)."""
    try:
        return signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:
        return None


def _on_sigint(signum: int, frame: Any) -> None:
    global _interrupted
    _interrupted = True
    task, loop = _task, _loop
    if task is None or task.done() or loop is None:
        return
    import asyncio

    if asyncio.current_task(loop) is task and _runtime_busy():
        # The coroutine called into the runtime (call_go waits for Go): the
        # worker's handler knows where in its code an interrupt is safe, and
        # the cancellation (a flag while the task runs) takes effect at the
        # coroutine's next await if that handler only defers the interrupt.
        task.cancel()
        outer = _outer_handler
        if callable(outer):
            outer(signum, frame)
        return
    if asyncio.current_task(loop) is task:
        # The coroutine runs synchronous code (time.sleep, a blocking
        # client): a cancellation would wait for its next await. Interrupt it
        # as a sync function is; asyncio lets KeyboardInterrupt through.
        raise KeyboardInterrupt
    # As asyncio.Runner does on Ctrl-C: cancel the task, and wake the loop
    # in case it sleeps in its selector.
    task.cancel()
    loop.call_soon_threadsafe(_wake)


def _wake() -> None:
    pass


def _runtime_busy() -> bool:
    """Whether the runtime's own code runs for the call in progress, as the
    interrupt state's busy counter says."""
    return bool(STATE.busy)


def _close(awaitable: Any) -> None:
    """Close a coroutine that will never run (a no-op for other awaitables)."""
    close = getattr(awaitable, "close", None)
    if close is not None and (type(awaitable).__name__ == "coroutine" or getattr(awaitable, "gi_code", None)):
        try:
            close()
        except Exception:
            pass


def sync_iter(iterable: AsyncIterable[Any]) -> Iterator[Any]:
    """A plain generator over an async iterable: each item's __anext__() runs
    on the worker's loop through run() (so SIGINT cancels it and raises
    KeyboardInterrupt, as for a call), and closing the generator (or its end,
    or an exception) runs the async iterator's aclose() on the loop, so that
    an async generator's finally blocks run. Close it explicitly, outside a
    run (a generator left to the garbage collector closes whenever that
    happens, perhaps while the loop runs, where aclose() cannot run)."""
    iterator = iterable.__aiter__()
    try:
        while True:
            try:
                item = run(iterator.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            run(aclose())


def _shutdown() -> None:
    """At the interpreter's exit: cancel the module's background tasks, let
    them finish, and close the loop, as asyncio.run does."""
    loop = _loop
    if loop is None or loop.is_closed() or loop.is_running() or _loop_pid != os.getpid():
        return  # no loop of this process's own
    import asyncio

    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
        # A callback that asks a task it watches for its exception gets
        # CancelledError here (asyncio.start_server's before 3.12): a
        # consequence of this shutdown, not an error of the module.
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return
        if previous is None:
            loop.default_exception_handler(context)
        else:
            previous(loop, context)

    loop.set_exception_handler(handle)
    try:
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        if sys.version_info >= (3, 9):
            loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
