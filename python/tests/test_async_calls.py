"""Tests of the async mode (--async-calls, Config.AsyncCalls): aio.py's
AsyncServer in a worker process, with the automatic codec and the pure one."""

import os
import sys
import time
import unittest
from typing import Any, Dict, List

from pypool_runtime import aio, purecodec
from test_worker import CALL, ERROR, RESULT, TESTS_DIR, WorkerProcess, frame

MODULE_DIR = os.path.join(os.path.dirname(os.path.dirname(TESTS_DIR)), "testdata", "pymod")
CANCEL = 12


def cancel_frame(call_id: int) -> bytes:
    return frame(purecodec.packb([CANCEL, call_id]))


def call_frame(call_id: int, name: str, args: List[Any], kwargs: Any = None) -> bytes:
    return frame(purecodec.packb([CALL, call_id, name, args, kwargs]))


class AsyncFunctionsTest(unittest.TestCase):
    def test_only_async_def_functions(self) -> None:
        async def a() -> None:
            pass

        def b() -> None:
            pass

        async def gen():  # type: ignore[no-untyped-def]
            yield 1

        self.assertEqual(aio.async_functions({"b": b, "a": a, "gen": gen, "x": 1}), ["a"])


class LoopStartTest(unittest.TestCase):
    def test_a_loop_thread_beyond_the_address_space_is_a_start_error(self) -> None:
        """The loop's thread starts before HELLO: one whose stack does not
        fit in --limit-as (Config.Limits.AddressSpace) fails the start, in
        HELLO's error, which names the limit and what the stack needs."""
        os.environ["PYPOOL_ASLIMIT"] = "thread"  # its thread stacks as large as the limit
        self.addCleanup(os.environ.pop, "PYPOOL_ASLIMIT")
        worker = WorkerProcess("pypool_aslimit", "--async-calls", "4", "--limit-as", str(256 << 20), paths=[MODULE_DIR])
        hello = worker.read()
        status, stderr, _ = worker.close()
        self.assertEqual(status, 1, stderr)
        code, type_name, message, _, hint = hello[5]
        self.assertEqual((code, type_name), ("loop_failed", "RuntimeError"), hello)
        self.assertIn("can't start new thread", message)
        self.assertRegex(
            hint,
            r"^the worker ran out of address space: Config.Limits.AddressSpace is 268435456 bytes \(256 MiB\), of which it had \d+ MiB"
            r" mapped, and the thread's stack needs 256 MiB more: raise Config.Limits.AddressSpace above \d+ MiB$",
        )


class AsyncModeTest(unittest.TestCase):
    codec_name = "auto"

    def setUp(self) -> None:
        self.worker = WorkerProcess("pypool_asynccalls", "--async-calls", "100", codec_name=self.codec_name,
                                    paths=[MODULE_DIR])  # fmt: skip
        self.addCleanup(self.close)
        hello = self.worker.read()
        self.assertEqual(hello[0], 1)
        self.assertIsNone(hello[5], hello)

    def close(self) -> None:
        status, stderr, _ = self.worker.close()
        self.assertEqual(status, 0, stderr)
        self.assertNotIn("Traceback", stderr)

    def replies(self, n: int) -> Dict[int, List[Any]]:
        got = {}
        for _ in range(n):
            reply = self.worker.read()
            self.assertNotIn(reply[1], got)
            got[reply[1]] = reply
        return got

    def test_async_functions_listed(self) -> None:
        reply = self.worker.call("_pypool_async_functions")
        self.assertEqual(reply[0], RESULT, reply)
        self.assertIn("sleep_echo", reply[2])
        self.assertIn("wait_cancel", reply[2])
        self.assertNotIn("sync_echo", reply[2])
        self.assertNotIn("numbers", reply[2])  # an async generator is a stream's

    def test_many_calls_at_once(self) -> None:
        began = time.monotonic()
        for i in range(1, 101):
            self.worker.send(call_frame(i, "sleep_echo", [0.2, i]))
        got = self.replies(100)
        took = time.monotonic() - began
        for i in range(1, 101):
            self.assertEqual(got[i], [RESULT, i, i])
        self.assertLess(took, 5.0)  # one at a time would be 20 s

    def test_kwargs_and_errors(self) -> None:
        self.worker.send(call_frame(1, "greet", ["ada"], {"greeting": "hi"}))
        self.worker.send(call_frame(2, "fail", ["bad"]))
        got = self.replies(2)
        self.assertEqual(got[1], [RESULT, 1, "hi ada"])
        self.assertEqual(got[2][:4], [ERROR, 2, "exception", "ValueError"])
        self.assertIn("bad", got[2][4])

    def test_background_task_runs_between_calls(self) -> None:
        self.assertEqual(self.worker.call("start_ticker"), [RESULT, 1, True])
        first = self.worker.call("get_ticks", call_id=2)[2]
        time.sleep(0.3)  # no call in flight
        second = self.worker.call("get_ticks", call_id=3)[2]
        self.assertGreater(second - first, 5)

    def test_cancel_cancels_only_its_task(self) -> None:
        for i in range(1, 11):
            self.worker.send(call_frame(i, "wait_cancel", [0.5]))
        time.sleep(0.1)
        self.worker.send(cancel_frame(4))
        got = self.replies(10)
        self.assertEqual(got[4][:4], [ERROR, 4, "interrupted", "KeyboardInterrupt"])
        for i in range(1, 11):
            if i != 4:
                self.assertEqual(got[i], [RESULT, i, "slept"])
        # Task 4 got CancelledError, unless the CANCEL came before the
        # loop first ran it (a loaded machine): then its body never ran.
        started = self.worker.call("started_count", call_id=13)[2]
        self.assertIn(started, (9, 10))
        self.assertEqual(self.worker.call("cancelled_count", call_id=11), [RESULT, 11, started - 9])
        self.worker.send(cancel_frame(4))  # late: ignored
        self.assertEqual(self.worker.call("sync_echo", 5, call_id=12), [RESULT, 12, 5])

    def test_sync_functions_and_streams_on_the_main_thread(self) -> None:
        self.assertEqual(self.worker.call("sync_echo", "x"), [RESULT, 1, "x"])
        self.assertEqual(self.worker.call("returns_coroutine", "y", call_id=2), [RESULT, 2, "y"])
        self.worker.send(frame(purecodec.packb([5, 3, "numbers", [3], None, 16])))
        items = self.worker.read()
        while items[0] == 6 and len(items[2]) < 3:
            more = self.worker.read()
            items[2].extend(more[2] if more[0] == 6 else [])
            if more[0] != 6:
                break
        self.assertEqual(items[2], [0, 1, 2])

    def test_call_go_is_refused_in_a_task(self) -> None:
        reply = self.worker.call("calls_go")
        self.assertEqual(reply[:4], [ERROR, 1, "exception", "RuntimeError"], reply)
        self.assertIn("Config.AsyncCalls", reply[4])


class AsyncModePureCodecTest(AsyncModeTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()
