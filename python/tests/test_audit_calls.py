"""The calls audit's tests of the runtime (audit_calls_test.go is the Go
side): Go played by the test over the pipes. Every test runs with the
automatic codec and with the pure one."""

import unittest
from typing import Any

from pypool_runtime import purecodec
from test_worker import ERROR, RESULT, WorkerTestBase, call_frame, frame

CALLBACK, CB_RESULT, CB_ERROR = 9, 10, 11


def control(*fields: Any) -> bytes:
    return frame(purecodec.packb(list(fields)))


class NestedAnswersTest(WorkerTestBase):
    def test_an_outer_answer_read_by_a_nested_wait_is_kept(self) -> None:
        """Go cut a call off while Python waited in call_go (seq 1) and a
        nested call Go made was unread: the drain answers callback 1 while
        the nested call, now running, waits in a call_go of its own (seq
        2), which reads that answer first. Before, the nested wait dropped
        it as a late answer, and the outer call_go waited for it forever:
        the pool killed the worker after Config.InterruptGrace."""
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "ask", ["outer"]))
        self.assertEqual(worker.read(), [CALLBACK, 1, "outer", []])
        worker.send(call_frame(2, "ask", ["inner"]) + control(CB_ERROR, 1, "not_answered", "", "cut off"))
        self.assertEqual(worker.read(), [CALLBACK, 2, "inner", []])
        worker.send(control(CB_ERROR, 2, "call_ended", "", "refused"))
        reply = worker.read()
        self.assertEqual(reply[:4], [ERROR, 2, "exception", "pypool.GoError"], reply)
        reply = worker.read()
        self.assertEqual(reply[:4], [ERROR, 1, "exception", "pypool.GoError"], reply)
        self.assertIn("cut off", reply[4])
        self.assertAlive(worker)

    def test_answers_in_the_order_of_the_waits_stack(self) -> None:
        """The drain answers the pending callbacks outermost first: the
        nested wait (seq 2) reads callback 1's answer before its own."""
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "ask", ["outer"]))
        self.assertEqual(worker.read(), [CALLBACK, 1, "outer", []])
        worker.send(call_frame(2, "ask", ["inner"]))
        self.assertEqual(worker.read(), [CALLBACK, 2, "inner", []])
        worker.send(control(CB_RESULT, 1, "for the outer") + control(CB_RESULT, 2, "for the inner"))
        self.assertEqual(worker.read()[:3], [RESULT, 2, "for the inner"])
        self.assertEqual(worker.read()[:3], [RESULT, 1, "for the outer"])
        self.assertAlive(worker)

    def test_an_abandoned_wait_drops_its_late_answer(self) -> None:
        """An answer for a call_go that no longer waits is still dropped."""
        worker = self.start_ready("sample_stream")
        worker.send(call_frame(1, "ask", ["cb"]))
        self.assertEqual(worker.read(), [CALLBACK, 1, "cb", []])
        worker.send(control(CB_RESULT, 1, "answer") + control(CB_RESULT, 1, "again"))
        self.assertEqual(worker.read()[:3], [RESULT, 1, "answer"])
        self.assertAlive(worker)


class PureCodecNestedAnswersTest(NestedAnswersTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()
