"""The call's context (pypool_runtime/callctx.py): what a worker reads of a
CALL or STREAM frame's context, and the test kit's fixed call context."""

import asyncio
import threading
import os
import sys
import time
import unittest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS_DIR)

import pypool_runtime  # noqa: E402
from pypool_runtime import callctx, purecodec, testing  # noqa: E402
from pypool_runtime.frames import ProtocolViolation  # noqa: E402
from test_worker import CALL, ERROR, RESULT, WorkerTestBase, frame  # noqa: E402

STREAM, ITEMS = 5, 6
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class WorkerCallContextTest(WorkerTestBase):
    """A worker started as Go starts it reads the context Go sends."""

    def call(self, worker, body):
        worker.send(frame(purecodec.packb(body)))
        return worker.read()

    def test_without_a_context(self):
        worker = self.start_ready("sample_callctx")
        reply = self.call(worker, [CALL, 1, "context", [], None])
        self.assertEqual(reply, [RESULT, 1, {"function": "context", "attempt": 1, "metadata": {}, "remaining": None, "trace_context": {}}])

    def test_with_a_context(self):
        worker = self.start_ready("sample_callctx")
        context = {"r": 30.0, "a": 2, "m": {"tenant": "acme"}, "tp": TRACEPARENT, "ts": "k=v"}
        reply = self.call(worker, [CALL, 2, "context", [], None, context])
        self.assertEqual(reply[:2], [RESULT, 2], reply)
        got = reply[2]
        self.assertEqual((got["function"], got["attempt"], got["metadata"]), ("context", 2, {"tenant": "acme"}))
        self.assertTrue(20 < got["remaining"] <= 30, got["remaining"])
        self.assertEqual(got["trace_context"], {"traceparent": TRACEPARENT, "tracestate": "k=v"})
        # The next call, without one, does not see it.
        self.assertEqual(self.call(worker, [CALL, 3, "context", [], None])[2]["metadata"], {})
        # Keyword arguments and a context: the general path.
        reply = self.call(worker, [CALL, 4, "context", [], {}, {"m": {"k": "v"}}])
        self.assertEqual(reply[2]["metadata"], {"k": "v"})

    def test_stream_with_a_context(self):
        worker = self.start_ready("sample_callctx")
        worker.send(frame(purecodec.packb([STREAM, 5, "stream", [1], None, 4, {"m": {"s": "1"}}])))
        items = worker.read()
        self.assertEqual(items[:2], [ITEMS, 5], items)
        self.assertEqual(items[2][0]["metadata"], {"s": "1"})
        self.assertEqual(items[2][0]["function"], "stream")
        self.assertEqual(worker.read(), [RESULT, 5, None])

    def test_a_frame_with_too_many_fields_is_a_violation(self):
        worker = self.start_ready("sample_callctx")
        worker.send(frame(purecodec.packb([CALL, 6, "context", [], None, {}, "extra"])))
        status, stderr, _ = worker.close()
        self.assertNotEqual(status, 0)
        self.assertIn("7 fields, not 5 or 6", stderr)


class WorkerCallContextPureTest(WorkerCallContextTest):
    codec_name = "pure"


class DecodeCallContextTest(unittest.TestCase):
    """Codec.decode_call_context, the serve loop's fast path for a CALL
    with a context, gives what the general path would decode."""

    def codecs(self):
        from pypool_runtime import codec

        out = [codec.load("pure")]
        try:
            out.append(codec.load("msgpack-c"))
        except ImportError:
            pass
        return out

    def test_same_as_unpackb(self):
        for c in self.codecs():
            for message in (
                [CALL, 7, "f", ["x", 1, b"b", [1, 2]], None, {"r": 1.5}],
                [CALL, 2**40, "module.f", [], None, {"r": 0.0, "a": 2, "m": {"k": "v"}, "tp": TRACEPARENT, "ts": "a=b"}],
                [CALL, 1, "f", [{"nested": [1.5, None]}], None, {}],
            ):
                body = purecodec.packb(message)
                with self.subTest(codec=c.name, message=message):
                    got = c.decode_call_context(body)
                    self.assertIsNotNone(got)
                    context = got[3]
                    if type(context) is bytes:
                        context = c.unpackb(context)
                    self.assertEqual(list(got[:3]) + [context], message[1:4] + [message[5]])

    def test_other_frames(self):
        for c in self.codecs():
            for message in (
                [CALL, 7, "f", ["x"], None],  # decode_call's
                [CALL, 7, "f", ["x"], {"k": 1}, {"r": 1.0}],  # keyword arguments: the general path
                [STREAM, 7, "f", ["x"], None, 4, {"r": 1.0}],
                [CALL, 7, "f", ["x"], None, [1]],  # not a map
                [CALL, 7, 5, ["x"], None, {}],
                [CALL, -1, "f", ["x"], None, {}],
            ):
                with self.subTest(codec=c.name, message=message):
                    self.assertIsNone(c.decode_call_context(purecodec.packb(message)))
            body = purecodec.packb([CALL, 7, "f", ["x"], None, {"r": 1.0}])
            got = c.decode_call_context(body[:-1])
            if got is not None:  # the pure codec leaves the map to callctx, which refuses it when asked
                self.assertIs(type(got[3]), bytes)
                with self.assertRaises(ProtocolViolation):
                    callctx.from_wire("f", got[3], 0.0)


class FromWireTest(unittest.TestCase):
    def test_fields(self):
        now = time.monotonic()
        cc = callctx.from_wire("f", {"r": 2.5, "a": 3, "m": {"a": "b"}, "tp": TRACEPARENT}, now)
        self.assertEqual((cc.function, cc.attempt, dict(cc.metadata), cc.deadline), ("f", 3, {"a": "b"}, now + 2.5))
        self.assertEqual(cc.trace_context(), {"traceparent": TRACEPARENT})
        with self.assertRaises(TypeError):
            cc.metadata["x"] = "y"  # read-only
        self.assertEqual(callctx.from_wire("f", {"r": -1.0}, now).remaining(), 0.0, "never below 0")

    def test_unknown_entries_are_ignored(self):
        self.assertEqual(callctx.from_wire("f", {"future": 1}, 0.0).attempt, 1)

    def test_encoded(self):
        cc = callctx.from_wire("f", purecodec.packb({"a": 4, "m": {"k": "v"}}), 0.0)
        self.assertEqual((cc.attempt, dict(cc.metadata)), (4, {"k": "v"}))
        with self.assertRaises(ProtocolViolation):
            callctx.from_wire("f", purecodec.packb([1]), 0.0)

    def test_bad_fields(self):
        for bad in ({"r": "soon"}, {"a": "2"}, {"m": [1]}, {"tp": 1}):
            with self.assertRaises(ProtocolViolation, msg=bad):
                callctx.from_wire("f", bad, 0.0)


class OutsideACallTest(unittest.TestCase):
    def test_none(self):
        self.assertIsNone(pypool_runtime.current_call())
        self.assertIsNone(pypool_runtime.remaining())
        self.assertEqual(pypool_runtime.trace_context(), {})

    def test_exported(self):
        for name in ("current_call", "remaining", "trace_context", "CallContext"):
            self.assertIn(name, pypool_runtime.__all__)
            self.assertIs(getattr(pypool_runtime, name), getattr(callctx, name))


class CallContextKitTest(unittest.TestCase):
    def test_fixed_context(self):
        with testing.call_context(remaining=2.0, metadata={"tenant": "acme"}, attempt=2, function="fetch", traceparent=TRACEPARENT) as cc:
            got = pypool_runtime.current_call()
            self.assertIs(got, cc)
            self.assertEqual((got.function, got.attempt, dict(got.metadata)), ("fetch", 2, {"tenant": "acme"}))
            left = pypool_runtime.remaining()
            self.assertTrue(1.5 < left <= 2.0, left)
            self.assertEqual(pypool_runtime.trace_context(), {"traceparent": TRACEPARENT})
        self.assertIsNone(pypool_runtime.current_call())

    def test_nested_and_decorator(self):
        @testing.call_context(metadata={"outer": "1"})
        def check():
            self.assertEqual(dict(pypool_runtime.current_call().metadata), {"outer": "1"})
            with testing.call_context(metadata={"inner": "2"}):
                self.assertEqual(dict(pypool_runtime.current_call().metadata), {"inner": "2"})
            self.assertEqual(dict(pypool_runtime.current_call().metadata), {"outer": "1"})
            self.assertIsNone(pypool_runtime.remaining(), "no deadline")

        check()

    def test_decorates_an_async_test(self):
        # The wrapper returned the coroutine before it ran, the context gone.
        @testing.call_context(metadata={"k": "v"}, function="aio")
        async def check():
            await asyncio.sleep(0)
            return pypool_runtime.current_call()

        cc = asyncio.run(check())
        self.assertIsNotNone(cc)
        self.assertEqual((cc.function, dict(cc.metadata)), ("aio", {"k": "v"}))
        self.assertIsNone(pypool_runtime.current_call())

    def test_one_instance_in_two_threads(self):
        # Its tokens were kept on the instance: the first thread in, leaving
        # first, reset the second one's token (ValueError: created in a
        # different Context) and left the call's context on in its own.
        fixed = testing.call_context(function="shared")
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        seen, errors = {}, []

        def use(name, entered, go_out, left):
            try:
                with fixed:
                    entered.set()
                    go_out.wait(timeout=30)
                    seen[name] = pypool_runtime.current_call().function
                seen[name + " after"] = pypool_runtime.current_call()
            except BaseException as exc:  # the thread's error, for the test
                errors.append(exc)
            finally:
                if left is not None:
                    left.set()

        first = threading.Thread(target=use, args=("first", first_in, second_in, first_out))
        second = threading.Thread(target=use, args=("second", second_in, first_out, None))
        first.start()
        first_in.wait(timeout=30)
        second.start()
        first.join()
        second.join()
        self.assertEqual(errors, [])
        self.assertEqual(seen, {"first": "shared", "first after": None, "second": "shared", "second after": None})

    def test_call_runs_in_a_context(self):
        def report():
            return pypool_runtime.current_call().function

        self.assertEqual(testing.call(report), "report", "as in a worker: the function's name")
        with testing.call_context(function="given", remaining=5.0):
            self.assertEqual(testing.call(report), "given", "the active one")
            self.assertTrue(testing.call(lambda: pypool_runtime.remaining()) > 4)

    def test_async_function(self):
        async def report():
            await asyncio.sleep(0)
            task = asyncio.ensure_future(_function_in_task())
            return [pypool_runtime.current_call().function, await task]

        with testing.call_context(function="aio"):
            self.assertEqual(testing.call(report), ["aio", "aio"])
        self.assertEqual(testing.call(report), ["report", "report"])

    def test_metadata_must_be_str(self):
        for bad in ({"k": 1}, {1: "v"}, {"": "v"}):
            with self.assertRaises(TypeError, msg=bad):
                testing.call_context(metadata=bad)
        with self.assertRaises(TypeError):
            testing.call_context(attempt=0)


async def _function_in_task():
    return pypool_runtime.current_call().function


if __name__ == "__main__":
    unittest.main()
