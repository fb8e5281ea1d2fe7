"""Hostile uses of the call's context inside Python (pypool_runtime/callctx.py),
in process: threads, copies of the context that outlive their call, and
changes a call makes to its CallContext."""

import contextvars
import os
import sys
import threading
import unittest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import pypool_runtime  # noqa: E402
from pypool_runtime import callctx, purecodec  # noqa: E402


class _Worker:
    """What callctx.enter and leave need of serve.Worker."""

    contexts = 0


def _in_thread(function, run=None):
    out = []
    thread = threading.Thread(target=lambda: out.append((run or (lambda f: f()))(function)))
    thread.start()
    thread.join()
    return out[0]


class ThreadsTest(unittest.TestCase):
    def setUp(self):
        self.worker = _Worker()

    def test_a_plain_thread_sees_no_call(self):
        entered = callctx.enter(self.worker, "f", {"m": {"k": "v"}})
        try:
            self.assertIsNone(_in_thread(callctx.current_call))
            self.assertIsNone(_in_thread(callctx.remaining))
            self.assertEqual(_in_thread(callctx.trace_context), {})
        finally:
            callctx.leave(self.worker, entered)

    def test_a_copy_sees_the_call_until_it_ends(self):
        entered = callctx.enter(self.worker, "f", purecodec.packb({"m": {"k": "v"}, "r": 5.0}))
        copy = contextvars.copy_context()
        try:
            cc = _in_thread(callctx.current_call, copy.run)
            self.assertEqual((cc.function, dict(cc.metadata)), ("f", {"k": "v"}))
            self.assertIs(callctx.current_call(), cc, "one CallContext a call")
        finally:
            callctx.leave(self.worker, entered)
        self.assertIsNone(_in_thread(callctx.current_call, copy.run), "the call is over")
        self.assertIsNone(copy.run(callctx.remaining))
        self.assertEqual(self.worker.contexts, 0)

    def test_an_undecodable_context_of_an_ended_call_is_not_read(self):
        entered = callctx.enter(self.worker, "f", b"\xc1")  # never decoded while the call ran
        copy = contextvars.copy_context()
        callctx.leave(self.worker, entered)
        self.assertIsNone(copy.run(callctx.current_call))


class ChangesTest(unittest.TestCase):
    def test_a_change_stays_in_its_call(self):
        worker = _Worker()
        entered = callctx.enter(worker, "f", {"m": {"k": "v"}, "a": 2})
        cc = callctx.current_call()
        with self.assertRaises(TypeError):
            cc.metadata["k"] = "changed"
        cc.metadata = {"leak": "yes"}
        cc.attempt = 99
        callctx.leave(worker, entered)
        entered = callctx.enter(worker, "g", None)
        try:
            cc = callctx.current_call()
            self.assertEqual((cc.function, cc.attempt, dict(cc.metadata)), ("g", 1, {}))
            with self.assertRaises(TypeError):
                cc.metadata["k"] = "v"  # the shared empty mapping is read-only too
        finally:
            callctx.leave(worker, entered)
        self.assertIsNone(pypool_runtime.current_call())

    def test_hostile_strings_arrive_as_they_are(self):
        cc = callctx.from_wire("f", {"m": {"a\x00b": "\x00", "\u2028": "\U0010ffff", "": ""}}, 0.0)
        self.assertEqual(dict(cc.metadata), {"a\x00b": "\x00", "\u2028": "\U0010ffff", "": ""})

    def test_years_left(self):
        cc = callctx.from_wire("f", {"r": 9.2e9}, 0.0)
        self.assertGreater(cc.remaining(), 0.0)


if __name__ == "__main__":
    unittest.main()
