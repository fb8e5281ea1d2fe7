"""End-to-end tests of streams and callbacks (stream.py, callback.py): the
worker started as Go starts it, Go played by the test over the pipes. Every
test runs with the automatic codec and with the pure one."""

import os
import signal
import struct
import sys
import time
import unittest
from typing import Any, List

from pypool_runtime import purecodec, stream
from test_worker import ERROR, RESULT, WorkerTestBase, call_frame, frame

STREAM, ITEMS, CREDIT, CLOSE, CALLBACK, CB_RESULT, CB_ERROR = 5, 6, 7, 8, 9, 10, 11


def stream_frame(call_id: int, name: str, args: List[Any], window: int = 8) -> bytes:
    return frame(purecodec.packb([STREAM, call_id, name, args, None, window]))


def control(*fields: Any) -> bytes:
    return frame(purecodec.packb(list(fields)))


class StreamTest(WorkerTestBase):
    def read_stream(self, worker: Any, call_id: int, window: int = 8) -> "tuple[list, Any]":
        """Consume a stream as Go does (credit back every window/2 frames);
        return its items and its end."""
        items: List[Any] = []
        frames = 0
        while True:
            message = worker.read()
            if message[0] != ITEMS:
                return items, message
            self.assertEqual(message[1], call_id)
            items.extend(message[2])
            frames += 1
            if frames % (window // 2) == 0:
                worker.send(control(CREDIT, call_id, window // 2))

    def test_items_then_result(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "numbers", [1000]))
        items, end = self.read_stream(worker, 1)
        self.assertEqual(items, list(range(1000)))
        self.assertEqual(end, [RESULT, 1, None])
        self.assertEqual(worker.call("closed_log", call_id=2), [RESULT, 2, []])

    def test_batches_fast_items(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "numbers", [stream.BATCH_ITEMS * 4]))
        first = worker.read()
        self.assertEqual(first[0], ITEMS)
        self.assertGreater(len(first[2]), 1, "fast items share frames")

    def test_linger_sends_before_a_pause(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "slow_then_pause", [30]))
        started = time.monotonic()
        items: List[Any] = []
        while len(items) < 2:
            message = worker.read()
            self.assertEqual(message[0], ITEMS)
            items.extend(message[2])
        self.assertEqual(items, ["first", "second"])
        # Not a timing assertion on the linger itself: the pause is 30 s.
        self.assertLess(time.monotonic() - started, 20, "the items waited for the generator's pause")
        worker.proc.kill()

    def test_no_credit_no_items(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "numbers", [10**6], window=2))
        for _ in range(2):
            self.assertEqual(worker.read()[0], ITEMS)
        # Without credit the worker sends nothing more and waits: the CLOSE
        # is what it reads next, and its answer is the stream's end.
        worker.send(control(CLOSE, 1))
        self.assertEqual(worker.read(), [RESULT, 1, None])
        self.assertAlive(worker)

    def test_close_runs_finally(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "tracked", [10**6]))
        self.assertEqual(worker.read()[0], ITEMS)
        worker.send(control(CLOSE, 1))
        _, end = self.read_stream(worker, 1)
        self.assertEqual(end, [RESULT, 1, None])
        self.assertEqual(worker.call("closed_log", call_id=2), [RESULT, 2, [10**6]])
        # Late credit and a late close are dropped.
        worker.send(control(CREDIT, 1, 4) + control(CLOSE, 1) + control(CB_RESULT, 7, None))
        self.assertAlive(worker)

    def test_exception_after_items(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "fails_after", [3]))
        items, end = self.read_stream(worker, 1)
        self.assertEqual(items, [0, 1, 2])
        self.assertError(end, 1, "exception", "KeyError", "'gone'")

    def test_not_an_iterator(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "a_list", []))
        end = worker.read()
        self.assertError(end, 1, "not_an_iterator", "TypeError",
                         "a_list() returned a list, not an iterator: Stream iterates a generator or an iterator",
                         "call it with Call or CallAs to get its result in one piece, or make it a generator function "
                         "(one that uses yield, or async def with yield) to stream its items")  # fmt: skip
        self.assertEqual(end[5], "", "no traceback: the function returned; the frames would be the runtime's")
        worker.send(stream_frame(2, "missing", []))
        self.assertError(worker.read(), 2, "function_not_found", "AttributeError")

    def test_interrupt(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "sleeper", [0.05]))
        self.assertEqual(worker.read()[0], ITEMS)
        os.kill(worker.proc.pid, signal.SIGINT)
        _, end = self.read_stream(worker, 1)
        self.assertError(end, 1, "interrupted", "KeyboardInterrupt")
        self.assertAlive(worker)

    def test_async_generator(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "async_numbers", [3]))
        items, end = self.read_stream(worker, 1)
        self.assertEqual((items, end), ([0, 1, 2], [RESULT, 1, None]))

    def test_bad_window_is_a_protocol_violation(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "numbers", [3], window=0))
        status, stderr, _ = worker.close()
        self.assertEqual(status, 2)
        self.assertIn("window", stderr)


class CallbackTest(WorkerTestBase):
    def test_result(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "ask", ["lookup", 42, "x"]))
        self.assertEqual(worker.read(), [CALLBACK, 1, "lookup", [42, "x"]])
        worker.send(control(CB_RESULT, 1, {"name": "Ada"}))
        self.assertEqual(worker.read(), [RESULT, 1, {"name": "Ada"}])

    def test_error(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "ask_error", ["fails"]))
        self.assertEqual(worker.read()[:3], [CALLBACK, 1, "fails"])
        worker.send(control(CB_ERROR, 1, "error", "*errors.errorString", "no such user"))
        self.assertEqual(worker.read(), [RESULT, 1, ["error", "*errors.errorString", "no such user"]])
        # Uncaught, it is the call's exception.
        worker.send(call_frame(2, "ask", ["fails"]))
        seq = worker.read()[1]
        worker.send(control(CB_ERROR, seq, "panic", "string", "boom"))
        self.assertError(worker.read(), 2, "exception", "pypool.GoError", "boom (Go string)")

    def test_nested_call_while_waiting(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "nested", []))
        self.assertEqual(worker.read(), [CALLBACK, 1, "inner", []])
        worker.send(call_frame(2, "inner_value", []))
        self.assertEqual(worker.read(), [RESULT, 2, "from a nested call"])
        worker.send(control(CB_RESULT, 1, "answer"))
        self.assertEqual(worker.read(), [RESULT, 1, ["outer", "answer"]])

    def test_generator_calls_go(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "generator_asks", [3]))
        items: List[Any] = []
        while True:
            message = worker.read()
            if message[0] == CALLBACK:
                worker.send(control(CB_RESULT, message[1], message[3][0] * 2))
            elif message[0] == ITEMS:
                items.extend(message[2])
            else:
                break
        self.assertEqual(items, [0, 2, 4])
        self.assertEqual(message, [RESULT, 1, None])

    def test_items_before_a_callback_go_first(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(stream_frame(1, "item_then_callback", []))
        self.assertEqual(worker.read(), [ITEMS, 1, ["before"]])
        self.assertEqual(worker.read(), [CALLBACK, 1, "answer", []])
        worker.send(control(CB_RESULT, 1, "after"))
        self.assertEqual(worker.read(), [ITEMS, 1, ["after"]])
        self.assertEqual(worker.read(), [RESULT, 1, None])

    def test_interrupt_while_waiting(self) -> None:
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "ask", ["slow"]))
        self.assertEqual(worker.read()[0], CALLBACK)
        os.kill(worker.proc.pid, signal.SIGINT)
        self.assertError(worker.read(), 1, "interrupted", "KeyboardInterrupt")
        # The answer Go sends late is dropped.
        worker.send(control(CB_ERROR, 1, "not_answered", "", "late"))
        self.assertAlive(worker)

    def test_unread_nested_call_is_not_run_after_an_interrupt(self) -> None:
        """The interrupt reaches call_go before the worker has read a nested
        call Go sent: that call is answered "interrupted", not run. Before,
        the serve loop ran it after the outer call's reply, as a new call
        (RESULT 2 after ERROR 1), for a caller that had given up."""
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "nested", []))
        self.assertEqual(worker.read(), [CALLBACK, 1, "inner", []])
        # Stopped, the worker cannot read the nested call before the
        # interrupt reaches it: both are pending when it continues.
        os.kill(worker.proc.pid, signal.SIGSTOP)
        try:
            worker.send(call_frame(2, "inner_value", []))
            os.kill(worker.proc.pid, signal.SIGINT)
        finally:
            os.kill(worker.proc.pid, signal.SIGCONT)
        self.assertError(worker.read(), 2, "interrupted", "KeyboardInterrupt")
        self.assertError(worker.read(), 1, "interrupted", "KeyboardInterrupt")
        self.assertAlive(worker)

    def test_outside_a_call(self) -> None:
        worker = self.start_ready("sample_stream")
        reply = worker.call("at_import", call_id=1)
        self.assertIn("outside a call from Go", reply[2])

    def test_pypool_alias(self) -> None:
        import pypool_runtime

        self.assertEqual(pypool_runtime.call_go.__module__, "pypool_runtime.callback")
        self.assertTrue(issubclass(pypool_runtime.GoError, Exception))
        with self.assertRaises(AttributeError):
            pypool_runtime.no_such_name


class LingerAlarmRaceTest(unittest.TestCase):
    """The linger's SIGALRM handler (stream._on_alarm) sends the batch when it
    lands in the generator's code. call_go sends the batch too, first
    (send_pending): an alarm that lands in the middle of that send must not
    send the same items a second time. Go once saw a stream of callbacks'
    answers with an item twice ([0 0 2 4 ...]): the alarm had sent the batch
    again after call_go's send had written it but before it emptied it.

    In process, without a signal: a trace function runs the handler at
    each line of send_pending in turn, as a signal would between them."""

    class FakeWorker:
        """The part of a Channel that send_pending and the alarm use; its
        frames are kept in written."""

        def __init__(self) -> None:
            self.streams: List[Any] = []
            self.callbacks_waiting = 0
            self.max_message = 1 << 20
            self.packb = purecodec.packb
            self.written: List[Any] = []

        def send(self, body: bytes) -> None:
            self.written.append(purecodec.unpackb(body))

    def send_with_alarm_at(self, line: int) -> "tuple[list, bool]":
        """send_pending with the alarm's handler run at its line-th line
        event; the ITEMS frames written and whether the handler ran."""
        from pypool_runtime import channel
        from pypool_runtime.interrupt import STATE

        fake = self.FakeWorker()
        state = stream.StreamState(1, 8)
        state.worker, state.name = fake, "gen"
        state.batch, state.size, state.in_next = [0], 9, True
        fake.streams.append(state)
        saved = (channel.CURRENT, STATE.in_user_code, STATE.busy)
        outer: List[Any] = []
        seen = [0]
        fired = [False]

        def trace(frame: Any, event: str, arg: Any) -> Any:
            if frame.f_code is not stream.send_pending.__code__:
                return None
            if not outer:
                outer.append(frame)
            if frame is not outer[0]:
                return None
            if event == "line":
                seen[0] += 1
                if seen[0] == line and not fired[0]:
                    fired[0] = True
                    stream._on_alarm(signal.SIGALRM, None)
            return trace

        channel.CURRENT = fake  # type: ignore[assignment]
        STATE.in_user_code = True  # the generator's code called call_go
        STATE.busy = 1  # the stream's pump
        sys.settrace(trace)
        try:
            self.assertTrue(stream.send_pending(fake))
        finally:
            sys.settrace(None)
            channel.CURRENT, STATE.in_user_code, STATE.busy = saved
        self.assertEqual(state.batch, [])
        return fake.written, fired[0]

    def test_an_alarm_during_send_pending_sends_nothing_twice(self) -> None:
        line = 1
        while True:
            written, fired = self.send_with_alarm_at(line)
            if not fired:
                break  # past send_pending's last line
            with self.subTest(line=line):
                self.assertEqual(written, [[ITEMS, 1, [0]]], "each item once, in one frame")
            line += 1
        self.assertGreater(line, 5, "the handler ran at each of send_pending's lines")


class PureCodecStreamTest(StreamTest):
    codec_name = "pure"


class PureCodecCallbackTest(CallbackTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()
