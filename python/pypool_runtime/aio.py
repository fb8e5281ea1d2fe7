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

from . import CALL, stdlib
from .interrupt import STATE, Interrupted

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds.
    import asyncio
    from typing import Any, AsyncIterable, Awaitable, Dict, Iterator, List, Optional

# co_flags of a generator decorated with types.coroutine (inspect.CO_ITERABLE_COROUTINE).
_CO_ITERABLE_COROUTINE = 0x100
# The class of generators (types.GeneratorType, without importing types).
_GENERATOR = type((lambda: (yield))())

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
    # Only a generator's gi_code: another value's __getattr__ may raise
    # anything (a proxy, a lazy object), which would end the worker.
    return cls is _GENERATOR and bool(value.gi_code.co_flags & _CO_ITERABLE_COROUTINE)


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
    if _server is not None:  # async mode: the loop runs in its thread
        return _server.run(awaitable)
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
        raise Interrupted("cancelled by an interrupt").with_traceback(exc.__traceback__) from None
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
    task, loop = _task, _loop
    if task is not None and task.done():
        _to_outer_handler(_outer_handler, signum, frame)
        return
    _interrupted = True
    if task is None or loop is None:
        STATE.count_raised()
        return
    import asyncio

    if asyncio.current_task(loop) is task and _runtime_busy():
        # The coroutine called into the runtime (call_go waits for Go): the
        # worker's handler knows where in its code an interrupt is safe, and
        # the cancellation (a flag while the task runs) takes effect at the
        # coroutine's next await if that handler only defers the interrupt.
        task.cancel()
        _to_outer_handler(_outer_handler, signum, frame)
        return
    STATE.count_raised()  # the worker's handler, which counts it, is not called
    if asyncio.current_task(loop) is task:
        # The coroutine runs synchronous code (time.sleep, a blocking
        # client): a cancellation would wait for its next await. Interrupt it
        # as a sync function is; asyncio lets KeyboardInterrupt through.
        raise Interrupted
    # As asyncio.Runner does on Ctrl-C: cancel the task, and wake the loop
    # in case it sleeps in its selector.
    task.cancel()
    loop.call_soon_threadsafe(_wake)


def _to_outer_handler(outer: Any, signum: int, frame: Any) -> None:
    """Hand a SIGINT to the handler run() replaced (the worker's). For one
    that came after the awaited task ended, before that handler was put
    back, it decides as if the signal had come a moment later: no
    cancellation can reach a task that has ended."""
    if callable(outer):
        outer(signum, frame)


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


# -- Config.AsyncCalls: a loop that runs all the time ------------------------
#
# With --async-calls N (Config.AsyncCalls), the worker's loop runs all the
# time, in a thread of its own (the loop thread), from the end of the
# set-up to the end of input: the module's background tasks run between
# calls and during them. The loop thread reads Go's frames (add_reader on
# the protocol's input, AsyncServer._readable): each CALL of an ``async def``
# function (async_functions) starts a task there, with no thread between
# the frame and the task; Go may send up to N of them before the first
# reply, and each task's RESULT or ERROR goes out, tagged with its call id,
# when the task ends. CANCEL [12, id] cancels the task of call id
# (CancelledError in it; its reply is then ERROR "interrupted"). Any other
# frame (a sync function's CALL, a STREAM, a runtime function) is handed to
# the main thread with the input itself: the main thread serves it as
# without the mode (a stream's CREDIT, a callback's answer are its to
# read), with SIGINT as its interrupt, then gives the input back. Go sends
# such a frame only when no task of a call is in flight, so that the two
# threads never write at once. An awaitable that the main thread awaits (a
# sync function's result, an async generator's items) runs on the loop
# thread too (AsyncServer.run), SIGINT cancelling it. The runtime does not
# bound the tasks: Go does.

# The server of an async-mode worker, while it serves (None otherwise).
_server: Any = None
# The thread that runs the worker's loop in async mode (start_loop_thread),
# from before HELLO to the end of serve; and whether it is to stop.
_loop_thread: Any = None
_loop_stopping = False

# co_flags of an ``async def`` function's code (inspect.CO_COROUTINE).
_CO_COROUTINE = 0x80

# The kind of Go's CANCEL message.
CANCEL = 12


def start_loop_thread() -> None:
    """Make the worker's loop and start the thread that runs it, before the
    worker's HELLO (startup.start_event_loop), so that a worker whose
    address space has no room for them (Config.Limits.AddressSpace) fails
    its start saying so, rather than its first exchange. The loop runs
    nothing until AsyncServer.serve gives it Go's input."""
    global _loop_thread, _loop_stopping
    import threading

    loop = get_loop()
    thread = threading.Thread(target=_run_loop, args=(loop,), name="pypool-loop", daemon=True)
    _loop_stopping = False
    thread.start()
    _loop_thread = thread


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """The loop thread: the loop runs until AsyncServer._stop. A task that
    raises KeyboardInterrupt or SystemExit makes run_forever raise it
    (asyncio lets them through): its call is answered as any exception, and
    the loop goes on."""
    import asyncio

    asyncio.set_event_loop(loop)
    while not _loop_stopping:
        try:
            loop.run_forever()
        except BaseException:  # pragma: no cover - a task's KeyboardInterrupt or SystemExit
            pass


def async_functions(functions: Dict[str, Any]) -> List[str]:
    """The names among functions whose function is an ``async def``
    function: the calls Go sends in async mode without waiting for the
    calls in flight on the worker."""
    names = []
    for name, function in functions.items():
        code = getattr(function, "__code__", None)
        if code is not None and code.co_flags & _CO_COROUTINE:
            names.append(name)
    return sorted(names)


class AsyncServer:
    """An async-mode worker's serve loop (see above): worker is the
    serve.Worker, names the functions whose calls run as tasks."""

    def __init__(self, worker: Any, names: List[str]) -> None:
        self.worker = worker
        self.names = frozenset(names)
        self.loop = get_loop()
        self.tasks: Dict[int, Any] = {}  # the tasks of the calls in flight, by call id
        self.cancelled: set = set()  # the ids of the calls Go cancelled
        self.thread: Any = None
        # How many run()s of the main thread are in progress: while one is,
        # the loop thread runs a coroutine of the main thread's call
        # (callctx.current_call tells that call there).
        self.awaiting = 0

    def serve(self) -> None:
        """Have the loop thread (started before HELLO, or now) read Go's
        frames (_readable), then serve on this thread the frames it hands
        over (those that are not calls of async functions), until the end
        of input; stop the loop thread at the end."""
        import queue

        global _server, _loop_thread
        self.handed = queue.SimpleQueue()  # frames for this thread; None: the end; an exception: raise it
        if _loop_thread is None or not _loop_thread.is_alive():
            start_loop_thread()
        self.thread = _loop_thread
        _server = self
        self.loop.call_soon_threadsafe(self._resume)
        try:
            self._serve_handed()
        finally:
            _server = None
            self.loop.call_soon_threadsafe(self._stop)
            self.thread.join()
            _loop_thread = None

    def _serve_handed(self) -> None:
        """The main thread: serve each frame the loop thread hands over as
        without the mode (worker.handle: a sync function's call, a stream,
        a runtime function, a refusal), then give the input back."""
        get = self.handed.get
        handle = self.worker.handle
        resume = self._resume
        call_soon = self.loop.call_soon_threadsafe
        while True:
            body = None
            body = get()
            if body is None:
                return
            if isinstance(body, BaseException):
                raise body
            handle(body)
            call_soon(resume)

    def _resume(self) -> None:
        """On the loop thread: read Go's frames again, starting with those
        read already."""
        self.loop.add_reader(self.worker.reader.fileno(), self._readable)
        if self.worker.reader.buffered():
            self._readable()

    def _readable(self) -> None:
        """On the loop thread, when the input is readable: take the frames
        that have come. A call of an async function starts its task here,
        a CANCEL cancels one; any other frame goes to the main thread with
        the input, which this thread stops reading until it is given back
        (a stream's or a callback's frames are the main thread's to read)."""
        worker = self.worker
        reader = worker.reader
        try:
            while True:
                body = None
                body = reader.read()
                if body is None:  # the end of input
                    self.loop.remove_reader(reader.fileno())
                    self.handed.put(None)
                    return
                if not self._take(body):
                    self.loop.remove_reader(reader.fileno())
                    self.handed.put(body)
                    return
                if not reader.buffered():
                    return
        except BaseException as exc:  # a protocol violation: the main thread raises it
            self.loop.remove_reader(reader.fileno())
            self.handed.put(exc)

    def _take(self, body: Any) -> bool:
        """Start the task of a call of an async function, or act on a
        CANCEL; False for any other frame."""
        worker = self.worker
        call = worker._decode_call(body)
        if call is not None:
            if call[1] not in self.names:
                return False
            self._start(call[0], call[1], call[2], None, None)
            return True
        try:
            message = worker.unpackb(body)
        except Exception:
            return False  # the main thread answers, or explains the violation
        if type(message) is list and len(message) == 2 and message[0] == CANCEL and type(message[1]) is int:
            self._cancel(message[1])
            return True
        if _is_task_call(message, self.names):
            self._start(message[1], message[2], message[3], message[4], message[5] if len(message) == 6 else None)
            return True
        return False

    def _stop(self) -> None:
        global _loop_stopping
        _loop_stopping = True
        self.loop.stop()

    def _start(self, call_id: int, name: str, args: List[Any], kwargs: Optional[Dict[str, Any]], context: Any) -> None:
        """On the loop thread: call name and run what it returns as the task
        of call call_id, in the call's context (callctx: the frame's
        context, None when Go sent none), which the task inherits."""
        callctx = self.worker.call_contexts()
        entered = callctx.enter_task(name, context)
        try:
            task = self._create(call_id, name, args, kwargs)
        finally:
            callctx.detach_task(entered)
        if task is None:
            callctx.end_task(entered)
            return
        self.tasks[call_id] = task
        task.add_done_callback(lambda task: self._finished(call_id, name, task, entered))

    def _create(self, call_id: int, name: str, args: List[Any], kwargs: Optional[Dict[str, Any]]) -> Any:
        """Call name and return the task of what it returns; None when the
        call has been answered already (no such function, an exception, a
        value that is not awaitable)."""
        worker = self.worker
        function = worker.function(name)
        if function is None:
            worker.send_error(call_id, "function_not_found", "AttributeError", worker.not_found(name))
            return None
        try:
            awaitable = function(*args, **kwargs) if kwargs else function(*args)
        except BaseException as exc:
            worker.send_exception(call_id, exc)
            return None
        if not is_awaitable(awaitable):
            worker._send_result(call_id, name, awaitable)
            return None
        import asyncio

        try:
            return asyncio.ensure_future(awaitable, loop=self.loop)
        except BaseException as exc:
            _close(awaitable)
            worker.send_exception(call_id, exc)
            return None

    def _finished(self, call_id: int, name: str, task: Any, entered: Any) -> None:
        """On the loop thread: answer the call whose task ended."""
        self.worker.call_contexts().end_task(entered)
        self.tasks.pop(call_id, None)
        by_go = call_id in self.cancelled
        self.cancelled.discard(call_id)
        worker = self.worker
        try:
            if task.cancelled():
                if by_go:
                    exc: BaseException = Interrupted("cancelled: the call's context ended (CANCEL)")
                else:
                    import asyncio

                    exc = asyncio.CancelledError("the task was cancelled by the module's own code")
                worker.send_exception(call_id, exc)
                return
            error = task.exception()
            if error is not None:
                worker.send_exception(call_id, error)
                return
            worker._send_result(call_id, name, task.result())
        except OSError:
            pass  # Go closed its end: nobody waits for the answer

    def _cancel(self, call_id: int) -> None:
        """On the loop thread: Go's CANCEL of call call_id; late (the task
        has ended and its reply gone) it is ignored."""
        task = self.tasks.get(call_id)
        if task is not None and not task.done():
            self.cancelled.add(call_id)
            task.cancel()

    def on_loop_thread(self) -> bool:
        import threading

        return threading.current_thread() is self.thread

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """run() in async mode, from the main thread: await awaitable as a
        task on the loop thread, SIGINT cancelling it (KeyboardInterrupt
        once it ended, as run does)."""
        if self.on_loop_thread():
            _close(awaitable)
            raise RuntimeError(
                "cannot await %r synchronously on the worker's event loop (Config.AsyncCalls): await it instead"
                % (awaitable,)
            )
        import asyncio
        import threading

        loop = self.loop
        done = threading.Event()
        box: List[Any] = []
        interrupted = [False]

        def start() -> None:
            try:
                task = asyncio.ensure_future(awaitable, loop=loop)
            except BaseException as exc:
                _close(awaitable)
                box.append(exc)
                done.set()
                return
            box.append(task)
            if interrupted[0]:
                task.cancel()
            task.add_done_callback(lambda _: done.set())

        def cancel() -> None:
            if box and not isinstance(box[0], BaseException):
                box[0].cancel()

        def on_sigint(signum: int, frame: Any) -> None:
            if box and not isinstance(box[0], BaseException) and box[0].done():
                _to_outer_handler(outer[0], signum, frame)  # as _on_sigint's
                return
            interrupted[0] = True
            STATE.count_raised()  # as _on_sigint's
            loop.call_soon_threadsafe(cancel)

        outer: List[Any] = [None]
        try:
            previous = outer[0] = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:
            previous = None
        self.awaiting += 1
        try:
            loop.call_soon_threadsafe(start)
            done.wait()
        finally:
            self.awaiting -= 1
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        item = box[0]
        if isinstance(item, BaseException):
            raise item
        try:
            return item.result()
        except asyncio.CancelledError as exc:
            if not interrupted[0]:
                raise
            raise Interrupted("cancelled by an interrupt").with_traceback(exc.__traceback__) from None


def _is_task_call(message: List[Any], names: Any) -> bool:
    """Whether message is a well-formed CALL of one of names (kwargs a map
    of str keys, or nil; the call's context, when there is one, a map), for
    the loop thread."""
    if type(message) is not list or len(message) not in (5, 6) or message[0] != CALL:
        return False
    call_id, name, args, kwargs = message[1:5]
    if len(message) == 6 and type(message[5]) is not dict:
        return False
    if type(call_id) is not int or call_id < 0 or type(name) is not str or name not in names or type(args) is not list:
        return False
    return kwargs is None or (type(kwargs) is dict and all(type(key) is str for key in kwargs))


def serve_async(worker: Any, names: List[str]) -> None:
    """Serve in async mode (--async-calls) until the end of input; names are
    the async functions (async_functions), whose calls run as tasks."""
    AsyncServer(worker, names).serve()
