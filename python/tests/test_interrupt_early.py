"""An interrupt that reaches the worker between calls (interrupt.py): early,
for the call whose frame Go sent and Python had not begun (a worker not
scheduled in time on a busy host), or late, for the call just answered.
Go counts the late ones and sends their number with the next call frame
(the context's "i", protocol.go); the call begins interrupted when more
SIGINTs came between calls than that. interrupt_early_test.go is the Go
side, with a worker that cannot run when its interrupt is sent."""

import signal
import unittest
from typing import Any, Dict, List, Optional

from pypool_runtime import purecodec
from test_worker import CALL, RESULT, WorkerTestBase, call_frame, frame, read_stderr_until, sigint_between_calls

STREAM = 5


def context_frame(call_id: int, name: str, args: List[Any], context: Dict[str, Any], kwargs: Optional[dict] = None) -> bytes:
    return frame(purecodec.packb([CALL, call_id, name, args, kwargs, context]))


class EarlyInterruptTest(WorkerTestBase):
    def interrupt_idle(self, worker: Any) -> None:
        sigint_between_calls(worker)

    def assertInterrupted(self, reply: Any, call_id: int) -> None:
        self.assertError(reply, call_id, "interrupted", "KeyboardInterrupt", "interrupted before the call began")

    def test_early_interrupt_answers_the_call_without_running_it(self) -> None:
        worker = self.start_ready()
        self.interrupt_idle(worker)
        self.assertInterrupted(worker.call("sleep", 30, call_id=1), 1)
        self.assertEqual(worker.call("echo", "next", call_id=2), [RESULT, 2, "next"])
        self.assertAlive(worker)

    def test_early_interrupt_with_the_calls_context(self) -> None:
        """A call with a deadline (its context, decoded lazily by the pure
        codec), with no late interrupt counted ("i" 0 or absent)."""
        for call_id, context in ((1, {"r": 30.0}), (3, {"r": 30.0, "i": 0})):
            worker = self.start_ready()
            self.interrupt_idle(worker)
            worker.send(context_frame(call_id, "sleep", [30], context))
            self.assertInterrupted(worker.read(), call_id)
            self.assertEqual(worker.call("echo", "next", call_id=call_id + 1), [RESULT, call_id + 1, "next"])

    def test_late_interrupt_counted_by_go_is_not_the_calls(self) -> None:
        """Go's drain read the reply of the call it interrupted (the SIGINT
        came after it): the next frame says one came late, and that call
        runs; so does the next, whose frame says nothing."""
        worker = self.start_ready()
        self.interrupt_idle(worker)
        worker.send(context_frame(1, "echo", ["ran"], {"i": 1}))
        self.assertEqual(worker.read(), [RESULT, 1, "ran"])
        self.assertEqual(worker.call("echo", "next", call_id=2), [RESULT, 2, "next"])

    def test_more_interrupts_than_late_ones(self) -> None:
        """Two SIGINTs between calls, one of them late: the call is
        interrupted once, and the next runs."""
        worker = self.start_ready()
        self.interrupt_idle(worker)
        self.interrupt_idle(worker)
        worker.send(context_frame(1, "sleep", [30], {"i": 1}))
        self.assertInterrupted(worker.read(), 1)
        self.assertEqual(worker.call("echo", "next", call_id=2), [RESULT, 2, "next"])

    def test_every_call_form(self) -> None:
        """Keyword arguments and a stream go through the general path."""
        worker = self.start_ready()
        self.interrupt_idle(worker)
        self.assertInterrupted(worker.call("sleep", seconds=30, call_id=1), 1)
        self.interrupt_idle(worker)
        worker.send(frame(purecodec.packb([STREAM, 2, "sleep", [30], None, 10])))
        self.assertInterrupted(worker.read(), 2)
        self.interrupt_idle(worker)
        worker.send(frame(purecodec.packb([STREAM, 3, "sleep", [30], None, 10, {"r": 30.0}])))
        self.assertInterrupted(worker.read(), 3)
        self.assertEqual(worker.call("echo", "next", call_id=4), [RESULT, 4, "next"])

    def test_a_call_answered_at_once_takes_the_interrupt(self) -> None:
        """A call whose arguments do not decode is answered bad_arguments;
        the SIGINT before it is accounted for, not left for the next call."""
        worker = self.start_ready()
        self.interrupt_idle(worker)
        body = purecodec.packb([CALL, 1, "echo", ["x"], None])
        worker.send(frame(body.replace(b"\xa1x", b"\xa1\xff")))  # invalid UTF-8
        self.assertError(worker.read(), 1, "bad_arguments", "UnicodeDecodeError")
        self.assertEqual(worker.call("echo", "next", call_id=2), [RESULT, 2, "next"])

    def test_an_interrupt_of_a_running_call_is_not_counted(self) -> None:
        """A SIGINT that interrupts the user's code is that call's: the next
        call, whose frame counts no late interrupt, runs."""
        worker = self.start_ready()
        worker.send(call_frame(1, "sleep_announced", [30]))
        read_stderr_until(worker, "sleeping")
        worker.proc.send_signal(signal.SIGINT)
        self.assertError(worker.read(), 1, "interrupted", "KeyboardInterrupt")
        self.assertEqual(worker.call("echo", "next", call_id=2), [RESULT, 2, "next"])


class EarlyInterruptPureTest(EarlyInterruptTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()
