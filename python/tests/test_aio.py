"""Tests of async functions: aio.py on its own, and the worker awaiting what
the module's functions return (with the automatic codec and the pure one)."""

import asyncio
import base64
import gc
import os
import select
import signal
import subprocess
import sys
import threading
import time
import unittest
import warnings
from unittest import mock
from typing import Any, List

from pypool_runtime import aio, purecodec
from pypool_runtime.interrupt import STATE
from test_worker import (BOOTSTRAP, ERROR, RESULT, RUNTIME_DIR, TIMEOUT, WorkerProcess, WorkerTestBase, call_frame,
                         read_stderr_until, sigint_between_calls)


def interrupt_soon() -> None:
    """SIGINT to this process once the loop runs, as Go sends it."""
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGINT)


class NoUnawaitedWarnings(unittest.TestCase):
    """Fails a test if Python warned that a coroutine was never awaited.
    Its tests run aio.run in this process, whose SIGINTs count in the
    process's interrupt state (interrupt.STATE) as a worker's would, until
    its next call: the state is reset after each, for the tests that serve
    calls in this process next (test_hotpath.py)."""

    def setUp(self) -> None:
        catcher = warnings.catch_warnings(record=True)
        self.caught = catcher.__enter__()
        warnings.simplefilter("always")
        self.addCleanup(self._check_warnings, catcher)
        self.addCleanup(_reset_interrupt_state)

    def _check_warnings(self, catcher: Any) -> None:
        gc.collect()  # a coroutine dropped unawaited warns when it is freed
        catcher.__exit__(None, None, None)
        messages = [str(w.message) for w in self.caught if issubclass(w.category, RuntimeWarning)]
        self.assertEqual(messages, [])


def _reset_interrupt_state() -> None:
    STATE.idle = STATE.raised = 0
    STATE.pending = False


class IsAwaitableTest(unittest.TestCase):
    def test_is_awaitable(self) -> None:
        async def coroutine() -> None:
            pass

        def generator_based():  # type: ignore[no-untyped-def]
            yield

        def generator():  # type: ignore[no-untyped-def]
            yield

        class Awaitable:
            def __await__(self):  # type: ignore[no-untyped-def]
                return iter(())

        created = coroutine()
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        for value in (created, loop.create_future(), Awaitable()):
            self.assertTrue(aio.is_awaitable(value), value)
        created.close()
        for value in (None, 1, "x", b"x", [], {}, generator(), Awaitable, coroutine):
            self.assertFalse(aio.is_awaitable(value), value)
        import types

        self.assertTrue(aio.is_awaitable(types.coroutine(generator_based)()))


class RunTest(NoUnawaitedWarnings):
    def test_result_and_exception(self) -> None:
        async def double(value: int) -> int:
            await asyncio.sleep(0)
            return value * 2

        async def fail() -> None:
            await asyncio.sleep(0)
            raise ValueError("bad")

        self.assertEqual(aio.run(double(21)), 42)
        with self.assertRaisesRegex(ValueError, "bad"):
            aio.run(fail())

    def test_one_loop_kept_across_runs(self) -> None:
        async def running_loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        first = aio.run(running_loop())
        self.assertIs(aio.run(running_loop()), first)
        self.assertIs(aio.get_loop(), first)
        # An object bound to the loop in one run works in the next.
        queue = aio.run(self._make_queue())
        aio.run(queue.put("item"))
        self.assertEqual(aio.run(queue.get()), "item")

    @staticmethod
    async def _make_queue() -> "asyncio.Queue[str]":
        queue: "asyncio.Queue[str]" = asyncio.Queue()
        await queue.put("bound")
        await queue.get()
        return queue

    def test_background_tasks_run_only_during_runs(self) -> None:
        ticks: List[int] = []

        async def tick() -> None:
            while True:
                ticks.append(1)
                await asyncio.sleep(0)

        async def start() -> "asyncio.Task[None]":
            return asyncio.get_running_loop().create_task(tick())

        async def spin() -> None:
            for _ in range(5):
                await asyncio.sleep(0)

        task = aio.run(start())
        frozen = len(ticks)
        self.assertEqual(len(ticks), frozen, "no progress between runs")
        aio.run(spin())
        self.assertGreater(len(ticks), frozen)
        task.cancel()
        aio.run(spin())
        self.assertTrue(task.cancelled())

    def test_sigint_cancels_the_task(self) -> None:
        seen: List[str] = []

        async def sleeper() -> str:
            interrupt_soon()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            finally:
                seen.append("finally")
            return "slept"

        handler = signal.getsignal(signal.SIGINT)
        with self.assertRaises(KeyboardInterrupt):
            aio.run(sleeper())
        self.assertEqual(seen, ["cancelled", "finally"])
        self.assertIs(signal.getsignal(signal.SIGINT), handler, "the handler is restored")

    def test_sigint_interrupts_sync_code_in_a_coroutine(self) -> None:
        """A coroutine blocked in time.sleep gets KeyboardInterrupt there, as
        a sync function would: a cancellation would wait for its next await."""
        seen: List[str] = []

        async def blocks() -> None:
            await asyncio.sleep(0)
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            try:
                time.sleep(5)
                seen.append("slept through")
                await asyncio.sleep(0)
            finally:
                seen.append("finally")
                timer.join()

        with self.assertRaises(KeyboardInterrupt):
            aio.run(blocks())
        self.assertEqual(seen, ["finally"])
        self.assertEqual(aio.run(asyncio.sleep(0, "the loop still works")), "the loop still works")

    def test_sigint_while_the_runtime_is_busy_goes_to_its_handler(self) -> None:
        """While the coroutine waits in the runtime's own code (call_go), the
        handler run() replaced decides (here it defers the interrupt), and the
        task is cancelled at its next await."""
        from pypool_runtime.interrupt import STATE

        seen: List[str] = []

        def runtime_handler(signum: int, frame: Any) -> None:
            seen.append("runtime's handler")

        async def in_runtime_code() -> None:
            STATE.busy = 1
            try:
                os.kill(os.getpid(), signal.SIGINT)
            finally:
                STATE.busy = 0
            seen.append("back in the coroutine")
            await asyncio.sleep(30)

        previous = signal.signal(signal.SIGINT, runtime_handler)
        self.addCleanup(signal.signal, signal.SIGINT, previous)
        with self.assertRaises(KeyboardInterrupt):
            aio.run(in_runtime_code())
        self.assertEqual(seen, ["runtime's handler", "back in the coroutine"])

    def test_sigint_before_the_first_await(self) -> None:
        """A custom awaitable interrupted while it starts: the task's first step."""
        seen: List[str] = []

        class Interrupting:
            def __await__(self):  # type: ignore[no-untyped-def]
                try:
                    os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt here: the task runs
                    yield from asyncio.sleep(30).__await__()
                finally:
                    seen.append("finally")

        with self.assertRaises(KeyboardInterrupt):
            aio.run(Interrupting())
        self.assertEqual(seen, ["finally"])

    def test_sigint_before_the_task_exists(self) -> None:
        """SIGINT while the loop is being made (asyncio's import, at the first
        call): the task is cancelled before its coroutine starts, and Python
        does not warn that the coroutine was never awaited."""
        seen: List[str] = []

        async def never_started() -> None:
            seen.append("started")

        real = aio.get_loop

        def get_loop_interrupted() -> asyncio.AbstractEventLoop:
            os.kill(os.getpid(), signal.SIGINT)
            return real()

        with mock.patch.object(aio, "get_loop", get_loop_interrupted):
            with self.assertRaises(KeyboardInterrupt):
                aio.run(never_started())
        self.assertEqual(seen, [])

    def test_an_interrupt_in_the_last_step_cancels(self) -> None:
        """asyncio's rule: a task cancelled while it runs ends cancelled, even
        if its coroutine then returns."""

        async def answer() -> str:
            os.kill(os.getpid(), signal.SIGINT)  # while the task runs: no await follows
            return "answer"

        with self.assertRaises(KeyboardInterrupt):
            aio.run(answer())

    def test_an_interrupt_after_the_task_ended_goes_to_the_workers_handler(self) -> None:
        """SIGINT after the awaited task ended, before run() put the worker's
        handler back: that handler decides, as if the signal had come a
        moment later (in a Stream's loop of items, it interrupts the
        stream). Before, run's handler dropped it: no cancellation could
        reach a task that had ended, and a stream of an async generator cut
        off in that window ran on until its worker was killed."""
        seen: List[str] = []

        def workers_handler(signum: int, frame: Any) -> None:
            seen.append("worker's handler")

        async def answer() -> str:
            asyncio.current_task().add_done_callback(lambda _: os.kill(os.getpid(), signal.SIGINT))  # type: ignore[union-attr]
            return "answer"

        previous = signal.signal(signal.SIGINT, workers_handler)
        self.addCleanup(signal.signal, signal.SIGINT, previous)
        self.assertEqual(aio.run(answer()), "answer")
        self.assertEqual(seen, ["worker's handler"])

    def test_own_cancellation_is_not_an_interrupt(self) -> None:
        async def cancel_itself() -> None:
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(10)

        with self.assertRaises(asyncio.CancelledError):
            aio.run(cancel_itself())

    def test_nested_run_is_refused_and_closes_the_coroutine(self) -> None:
        async def inner() -> None:
            raise AssertionError("must not run")

        async def outer() -> str:
            try:
                aio.run(inner())
            except RuntimeError as exc:
                return str(exc)
            return "ran"

        self.assertIn("an event loop is already running", aio.run(outer()))

    def test_a_refused_nested_run_leaves_the_outer_one_interruptible(self) -> None:
        seen: List[str] = []

        async def inner() -> None:
            raise AssertionError("must not run")

        async def outer() -> None:
            with self.assertRaises(RuntimeError):
                aio.run(inner())
            interrupt_soon()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        with self.assertRaises(KeyboardInterrupt):
            aio.run(outer())
        self.assertEqual(seen, ["cancelled"])

    def test_no_never_retrieved_log(self) -> None:
        """A task that ended with SystemExit (which asyncio re-raises rather
        than keeping) is marked retrieved: asyncio logs nothing."""

        async def exits() -> None:
            raise SystemExit(3)

        with self.assertLogs("asyncio", "DEBUG") as logs:
            with self.assertRaises(SystemExit):
                aio.run(exits())
            gc.collect()
            import logging

            logging.getLogger("asyncio").debug("end")  # assertLogs needs one record
        self.assertEqual([r.getMessage() for r in logs.records], ["end"])


class ForkTest(unittest.TestCase):
    def test_a_forked_child_makes_its_own_loop_and_leaves_the_parents(self) -> None:
        """A fork server's template that ran async code: its children make
        their own loops, and their exit leaves the template's working (its
        selector is shared with them)."""
        parent_loop = aio.get_loop()
        background = aio.run(self._start_background())
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then end as a worker does (atexit runs _shutdown)
            try:
                os.close(read_end)
                aio._shutdown()  # a child that ran no async code: the inherited loop is not its own
                untouched = not background.done() and not parent_loop.is_closed()
                fresh = aio.get_loop() is not parent_loop and aio.run(asyncio.sleep(0, "ran")) == "ran"
                aio._shutdown()
                untouched = untouched and not background.done()
                os.write(write_end, b"ok" if fresh and untouched else b"bad")
            finally:
                os._exit(0)
        os.close(write_end)
        try:
            self.assertEqual(os.read(read_end, 10), b"ok")
        finally:
            os.close(read_end)
            os.waitpid(pid, 0)
        self.assertIs(aio.get_loop(), parent_loop)

        async def woken_from_a_thread() -> str:
            event = asyncio.Event()
            threading.Timer(0.01, parent_loop.call_soon_threadsafe, (event.set,)).start()
            await asyncio.wait_for(event.wait(), TIMEOUT)  # needs the loop's self-pipe in its selector
            return "woken"

        self.assertEqual(aio.run(woken_from_a_thread()), "woken")
        background.cancel()
        aio.run(asyncio.sleep(0))

    @staticmethod
    async def _start_background() -> "asyncio.Task[None]":
        return asyncio.get_running_loop().create_task(asyncio.Event().wait())


class SyncIterTest(NoUnawaitedWarnings):
    def test_items_then_the_end(self) -> None:
        async def numbers(n: int):  # type: ignore[no-untyped-def]
            for i in range(n):
                await asyncio.sleep(0)
                yield i

        self.assertEqual(list(aio.sync_iter(numbers(4))), [0, 1, 2, 3])

    def test_close_runs_the_finally_on_the_loop(self) -> None:
        seen: List[Any] = []

        async def numbers():  # type: ignore[no-untyped-def]
            try:
                for i in range(100):
                    yield i
            finally:
                await asyncio.sleep(0)  # awaiting in finally needs the loop
                seen.append(asyncio.get_running_loop())

        items = aio.sync_iter(numbers())
        self.assertEqual([next(items), next(items)], [0, 1])
        items.close()
        self.assertEqual(seen, [aio.get_loop()])

    def test_an_exception_after_items(self) -> None:
        async def numbers():  # type: ignore[no-untyped-def]
            yield 1
            raise ValueError("half-way")

        items = aio.sync_iter(numbers())
        self.assertEqual(next(items), 1)
        with self.assertRaisesRegex(ValueError, "half-way"):
            next(items)
        self.assertEqual(list(items), [])

    def test_sigint_cancels_the_item_being_awaited(self) -> None:
        seen: List[str] = []

        async def numbers():  # type: ignore[no-untyped-def]
            try:
                yield 1
                interrupt_soon()
                await asyncio.sleep(30)
                yield 2
            finally:
                seen.append("finally")

        items = aio.sync_iter(numbers())
        self.assertEqual(next(items), 1)
        with self.assertRaises(KeyboardInterrupt):
            next(items)
        self.assertEqual(seen, ["finally"])

    def test_an_async_iterator_without_aclose(self) -> None:
        class Countdown:
            def __init__(self, n: int) -> None:
                self.n = n

            def __aiter__(self) -> "Countdown":
                return self

            async def __anext__(self) -> int:
                if self.n == 0:
                    raise StopAsyncIteration
                self.n -= 1
                return self.n

        self.assertEqual(list(aio.sync_iter(Countdown(3))), [2, 1, 0])


class ImportCostTest(unittest.TestCase):
    def test_importing_aio_does_not_import_asyncio(self) -> None:
        code = "import sys; sys.path.insert(0, sys.argv[1]); import pypool_runtime.aio; print('asyncio' in sys.modules)"
        out = subprocess.run([sys.executable, "-E", "-c", code, RUNTIME_DIR], capture_output=True, timeout=TIMEOUT)
        self.assertEqual(out.stdout.strip(), b"False", out.stderr)


class AsyncWorkerTest(WorkerTestBase):
    def start_async(self, *extra: str) -> WorkerProcess:
        return self.start_ready("sample_async", *extra)

    def test_awaitables_are_awaited(self) -> None:
        worker = self.start_async()
        cases = [
            ("double", [21], None, 42),
            ("returns_coroutine", [4], None, 8),
            ("returns_awaitable", [5], None, 10),
            ("returns_future", ["future"], None, "future"),
            ("double_with", [3], {"factor": 5}, 15),  # the general path of calls with keyword arguments
            ("big_bytes", [100000], None, b"x" * 100000),
        ]
        for i, (name, args, kwargs, want) in enumerate(cases):
            with self.subTest(name=name):
                worker.send(call_frame(i, name, args, kwargs))
                self.assertEqual(worker.read(), [RESULT, i, want])
        status, stderr, log = worker.close()
        self.assertEqual((status, stderr, log), (0, "", ""), "no warning, no log")

    def test_exception_traceback_shows_the_users_frames(self) -> None:
        worker = self.start_async()
        reply = worker.call("fail", "broken", call_id=3)
        self.assertError(reply, 3, "exception", "ValueError", "broken")
        tb = reply[5]
        self.assertTrue(tb.startswith("Traceback (most recent call last):\n  File "), tb)
        self.assertIn("in fail\n", tb)
        self.assertIn("in _raise_value_error\n", tb)
        self.assertNotIn("pypool_runtime", tb)
        self.assertNotIn("asyncio", tb)
        self.assertNotIn("run_until_complete", tb)

    def test_an_awaited_result_is_encoded_as_others(self) -> None:
        worker = self.start_async()
        reply = worker.call("unencodable", call_id=4)
        self.assertError(reply, 4, "result_not_encodable", "TypeError")
        self.assertIn("result: set", reply[4])
        self.assertAlive(worker)

    def test_sigint_cancels_the_awaited_task(self) -> None:
        worker = self.start_async()
        self.assertEqual(worker.call("loop_id", call_id=1)[0], RESULT)  # the loop exists
        worker.send(call_frame(5, "sleep_until_cancelled", [30]))
        read_stderr_until(worker, "awaiting")
        worker.proc.send_signal(signal.SIGINT)
        reply = worker.read()
        self.assertError(reply, 5, "interrupted", "KeyboardInterrupt")
        self.assertEqual(reply[5], "")  # Go's drain drops the reply: no traceback formatted
        self.assertEqual(worker.call("state", call_id=6), [RESULT, 6, {"cancelled": True, "finally": True}])
        # The handler is the worker's again: a SIGINT between calls is the
        # next call's (interrupt.py), sync calls are interrupted.
        sigint_between_calls(worker)
        self.assertError(worker.call("double", 1, call_id=7), 7, "interrupted", "KeyboardInterrupt", "interrupted before the call began")
        worker.send(call_frame(8, "sleep_sync", [30]))
        read_stderr_until(worker, "sleeping")
        worker.proc.send_signal(signal.SIGINT)
        self.assertError(worker.read(), 8, "interrupted", "KeyboardInterrupt")
        self.assertEqual(worker.call("double", 2, call_id=9), [RESULT, 9, 4])
        status, stderr, log = worker.close()
        self.assertEqual((status, stderr, log), (0, "", ""))

    def test_sigint_interrupts_sync_code_of_a_coroutine(self) -> None:
        worker = self.start_async()
        worker.send(call_frame(5, "blocking_sleep", [30]))
        read_stderr_until(worker, "blocking")
        worker.proc.send_signal(signal.SIGINT)
        reply = worker.read()
        self.assertError(reply, 5, "interrupted", "KeyboardInterrupt")
        self.assertEqual(reply[5], "")  # Go's drain drops the reply: no traceback formatted
        self.assertEqual(worker.call("state", call_id=6), [RESULT, 6, {"finally": True}])
        self.assertEqual(worker.call("double", 1, call_id=7), [RESULT, 7, 2])

    def test_a_task_cancelling_itself_is_an_exception(self) -> None:
        worker = self.start_async()
        reply = worker.call("cancel_itself", call_id=2)
        self.assertError(reply, 2, "exception", "asyncio.exceptions.CancelledError")
        self.assertAlive(worker)

    def test_the_loop_is_kept_and_frozen_between_calls(self) -> None:
        worker = self.start_async()
        first = worker.call("loop_id", call_id=1)[2]
        self.assertEqual(worker.call("loop_id", call_id=2), [RESULT, 2, first])
        self.assertEqual(worker.call("start_ticker", call_id=3), [RESULT, 3, "started"])
        ticks = worker.call("ticks", call_id=4)[2]
        self.assertEqual(worker.call("ticks", call_id=5), [RESULT, 5, ticks], "no progress in or between sync calls")
        worker.call("run_loop_briefly", call_id=6)
        self.assertGreater(worker.call("ticks", call_id=7)[2], ticks)

    def test_background_tasks_finish_at_the_end_of_input(self) -> None:
        worker = self.start_async()
        self.assertEqual(worker.call("start_background_with_finally", call_id=1), [RESULT, 1, None])
        status, stderr, log = worker.close()
        self.assertEqual((status, stderr, log), (0, "background task finished\n", ""))

    def test_a_server_left_open_ends_quietly(self) -> None:
        worker = self.start_async()
        self.assertEqual(worker.call("serve_and_connect", call_id=1), [RESULT, 1, None])
        self.assertEqual(worker.close(), (0, "", ""))

    def test_the_default_hook_does_not_take_awaitables(self) -> None:
        worker = self.start_async()
        self.assertEqual(worker.call("install_str_default", call_id=1), [RESULT, 1, None])
        self.assertEqual(worker.call("double", 4, call_id=2), [RESULT, 2, 8])
        self.assertEqual(worker.call("unencodable", call_id=3), [RESULT, 3, "{1, 2}"])

    def test_async_setup(self) -> None:
        args = base64.b64encode(purecodec.packb([["from Go"], None])).decode()
        worker = self.start_async("--setup", "set_up", "--setup-args", args)
        value, setup_loop = worker.call("setup_state", call_id=1)[2]
        self.assertEqual(value, "from Go")
        self.assertEqual(worker.call("loop_id", call_id=2), [RESULT, 2, setup_loop], "the calls' loop")

    def test_a_failing_async_setup_is_a_start_failure(self) -> None:
        worker = self.start("sample_async", "--setup", "async_set_up_fails")
        code, type_, message, tb = worker.read()[5]
        self.assertEqual((code, type_, message), ("setup_failed", "ValueError", "no connection"))  # fmt: skip
        self.assertIn('raise ValueError("no connection")', tb)
        self.assertNotIn("pypool_runtime", tb)
        self.assertNotIn("asyncio", tb)
        status, stderr, _ = worker.close()
        self.assertEqual((status, stderr), (1, ""))

    def test_a_loop_the_module_made_current_is_not_the_workers(self) -> None:
        worker = self.start_ready("sample_async_import_loop")
        self.assertEqual(worker.call("runs_on_the_import_loop", call_id=1), [RESULT, 1, False])
        reply = worker.call("awaits_a_future_of_the_import_loop", call_id=2)
        self.assertError(reply, 2, "exception", "RuntimeError")
        self.assertIn("attached to a different loop", reply[4])
        self.assertEqual(worker.close(), (0, "", ""))

    def test_a_sync_module_never_imports_asyncio(self) -> None:
        worker = self.start_ready("sample_no_asyncio")
        self.assertEqual(worker.call("echo", "x", call_id=1), [RESULT, 1, "x"])
        worker.send(call_frame(2, "echo", [], {"value": "kw"}))
        self.assertEqual(worker.read(), [RESULT, 2, "kw"])
        for i, name in enumerate(("asyncio", "pypool_runtime.aio"), 3):
            self.assertEqual(worker.call("imported", name, call_id=i), [RESULT, i, False], name)


class PureCodecAsyncWorkerTest(AsyncWorkerTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()
