"""The audit of the early interrupt (interrupt.py, serve.py): the SIGINTs
the worker counts between calls (Interrupts.idle) must match the late ones
Go counts (a SIGINT sent to a call whose replies were not "interrupted"),
which it sends with the next call frame (protocol.go's "i").
audit_interrupt_test.go is the Go side."""

import signal
import unittest
from typing import Any

from pypool_runtime import purecodec
from pypool_runtime.interrupt import Interrupted, Interrupts
from test_worker import ERROR, RESULT, WorkerTestBase, call_frame, frame

STREAM, CALLBACK, CB_ERROR = 5, 9, 11


def control(*fields: Any) -> bytes:
    return frame(purecodec.packb(list(fields)))


class PendingInterruptTest(unittest.TestCase):
    def test_a_pending_interrupt_dropped_at_the_calls_end_is_counted(self) -> None:
        """A SIGINT that came while the runtime worked for the call (it sent
        a stream's last items) and that the call ended without acting on:
        the call's reply is not "interrupted", so Go counts it as late. The
        worker counts it between calls too, or the next call's early SIGINT
        would be matched against it (before the fix: idle stayed 0)."""
        state = Interrupts()
        was_user = state.enter_runtime()
        state.on_sigint(2, None)
        self.assertTrue(state.pending)
        state.leave_runtime(was_user)
        self.assertFalse(state.pending)
        self.assertEqual(state.idle, 1)
        self.assertFalse(state.begins_interrupted(1), "the next frame counts it as late")
        self.assertEqual(state.idle, 0)

    def test_a_second_interrupt_while_one_is_pending_is_counted(self) -> None:
        """The call's reply is written, and the worker, not scheduled, is
        still in the runtime's tail of the call (a stream's, busy) when its
        late SIGINT and the next call's early one both come: pending holds
        one of them, the other is counted between calls. Together with the
        late one that the next frame counts ("i" 1), the next call finds
        more SIGINTs than late ones: it begins interrupted. Before the fix
        both made one pending interrupt, and the early one was lost (its
        worker killed after Config.InterruptGrace)."""
        state = Interrupts()
        was_user = state.enter_runtime()
        state.on_sigint(2, None)
        state.on_sigint(2, None)
        state.leave_runtime(was_user)
        self.assertEqual(state.idle, 2)
        self.assertTrue(state.begins_interrupted(1))

    def test_a_pending_interrupt_kept_for_the_loop_is_not_counted(self) -> None:
        """keep_pending (a stream's batch sent from the generator's code):
        the call goes on and acts on it; nothing is counted."""
        state = Interrupts()
        was_user = state.enter_runtime()
        state.on_sigint(2, None)
        state.leave_runtime(was_user, keep_pending=True)
        self.assertTrue(state.take_pending())
        self.assertEqual(state.idle, 0)

    def test_a_pending_interrupt_taken_is_not_counted(self) -> None:
        """call_go's wait takes it (take_pending): the call is interrupted."""
        state = Interrupts()
        was_user = state.enter_runtime()
        state.on_sigint(2, None)
        self.assertTrue(state.take_pending())
        state.leave_runtime(was_user)
        self.assertEqual(state.idle, 0)

    def test_an_interrupt_of_user_code_answered_interrupted_is_not_counted(self) -> None:
        state = Interrupts()

        def interrupted() -> None:
            state.on_sigint(2, None)

        with self.assertRaises(Interrupted):
            state.call_user(interrupted)
        state.answered_interrupted()  # serve.send_exception, for its reply
        self.assertEqual(state.idle, 0)
        state.answered_interrupted()  # another reply "interrupted" (its nested calls'): nothing more
        self.assertEqual((state.idle, state.raised), (0, 0))

    def test_an_interrupt_the_users_code_swallowed_is_counted(self) -> None:
        """The call's code caught KeyboardInterrupt and returned: its reply
        is not "interrupted", and Go counts the SIGINT as late. The worker
        counts it too, so that the next call's early SIGINT is still one
        more than the late ones (before the fix: idle 0, and that early
        one was taken for the late one)."""
        state = Interrupts()

        def swallowing() -> str:
            try:
                state.on_sigint(2, None)
            except KeyboardInterrupt:
                pass
            return "swallowed"

        self.assertEqual(state.call_user(swallowing), "swallowed")
        self.assertEqual(state.idle, 1)
        state.on_sigint(2, None)  # the next call's early one
        self.assertTrue(state.begins_interrupted(1))
        self.assertEqual((state.idle, state.raised), (0, 0))

    def test_an_interrupt_raised_from_call_gos_wait_and_swallowed_is_counted(self) -> None:
        """One kept pending while the runtime worked for call_go, raised by
        its wait (wait_readable), then swallowed: counted as on_sigint's."""
        state = Interrupts()
        was_user = state.enter_runtime()
        state.on_sigint(2, None)
        with self.assertRaises(Interrupted):
            state.wait_readable(0)
        state.leave_runtime(was_user)
        self.assertEqual((state.idle, state.raised), (1, 1))


class NestedCallInterruptedAsItIsReadTest(WorkerTestBase):
    def test_a_nested_call_whose_interrupt_came_as_its_frame_was_read(self) -> None:
        """Go made a call in a callback and cut it off before the worker
        read it: its SIGINT came while the runtime read the frame (busy:
        kept pending). The nested call is answered as interrupted without
        running, the outer one gets its callback's answer. Before the fix
        the nested call ran (its 5 s here; a real one, until the pool
        killed the worker after Config.InterruptGrace) and the pending
        interrupt went to the outer call_go afterwards."""
        worker = self.start_ready("sample_audit_interrupt")
        worker.send(call_frame(1, "ask_interrupted_at_the_read", ["nest"]))
        self.assertEqual(worker.read(), [CALLBACK, 1, "nest", []])
        worker.send(call_frame(2, "sleep", [5]))
        self.assertError(worker.read(), 2, "interrupted", "KeyboardInterrupt", "interrupted before the call began")
        worker.send(control(CB_ERROR, 1, "not_answered", "", "cut off"))
        reply = worker.read()
        self.assertEqual(reply[:4], [ERROR, 1, "exception", "pypool.GoError"], reply)
        self.assertEqual(worker.call("sleep", 0, call_id=3), [RESULT, 3, "slept"])
        self.assertAlive(worker)

    def test_a_swallowed_interrupt_of_call_gos_wait_that_refused_a_nested_call(self) -> None:
        """Go made a call in a callback, then cut the outer call off before
        the worker read it: the SIGINT interrupts call_go's wait, the
        unread nested call is answered "interrupted" (which tells Go the
        SIGINT was taken: no late interrupt), and the outer call's code
        swallows the KeyboardInterrupt and returns. The next frame, which
        counts no late interrupt, must run. Before the fix the worker
        counted the swallowed SIGINT as late, and that call was answered
        "interrupted before the call began"."""
        worker = self.start_ready("sample_audit_interrupt")
        worker.send(call_frame(1, "ask_swallowing", ["nest"]))
        self.assertEqual(worker.read(), [CALLBACK, 1, "nest", []])
        worker.proc.send_signal(signal.SIGSTOP)  # the frame and the SIGINT come before the worker runs again
        try:
            worker.send(call_frame(2, "sleep", [5]))
            worker.proc.send_signal(signal.SIGINT)
        finally:
            worker.proc.send_signal(signal.SIGCONT)
        self.assertError(worker.read(), 2, "interrupted", "KeyboardInterrupt")
        self.assertEqual(worker.read(), [RESULT, 1, "swallowed"])
        worker.send(control(CB_ERROR, 1, "not_answered", "", "cut off"))  # the drain's answer, late: dropped
        self.assertEqual(worker.call("echo", "next", call_id=3), [RESULT, 3, "next"])
        self.assertAlive(worker)

    def test_an_interrupt_after_the_calls_begin_before_its_code(self) -> None:
        """The SIGINT comes once the worker has begun the call (its frame
        read, no interrupt counted then) but before the call's function
        runs (the runtime's code: importing stream.py, say): counted
        between calls, it is the call's, which is answered interrupted as
        its code starts. Before the fix the stream ran (its 5 s here; a
        real one, until the pool killed the worker after
        Config.InterruptGrace)."""
        worker = self.start_ready("sample_audit_interrupt")
        self.assertEqual(worker.call("arm_stream", call_id=1), [RESULT, 1, None])
        worker.send(frame(purecodec.packb([STREAM, 2, "slow_numbers", [1, 5], None, 10])))
        self.assertError(worker.read(), 2, "interrupted", "KeyboardInterrupt")
        self.assertEqual(worker.call("echo", "next", call_id=3), [RESULT, 3, "next"])
        self.assertAlive(worker)

    def test_an_interrupt_as_call_go_reads_its_answer_reaches_the_code_after(self) -> None:
        """The SIGINT comes as call_go's wait has read Go's answer (the
        runtime's code: kept pending) and the call goes on in the user's
        code: call_go raises KeyboardInterrupt there. Before the fix the
        pending interrupt was dropped as call_go returned, the call ran
        on (its 5 s here; a real one, until the pool killed the worker
        after Config.InterruptGrace)."""
        CB_RESULT = 10
        worker = self.start_ready("sample_audit_interrupt")
        worker.send(call_frame(1, "ask_then_sleep", ["cb", 5]))
        self.assertEqual(worker.read(), [CALLBACK, 1, "cb", []])
        worker.send(control(CB_RESULT, 1, "answer"))
        self.assertError(worker.read(), 1, "interrupted", "KeyboardInterrupt")
        self.assertEqual(worker.call("echo", "next", call_id=2), [RESULT, 2, "next"])
        self.assertAlive(worker)


class NestedCallInterruptedAsItIsReadPureTest(NestedCallInterruptedAsItIsReadTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()


class AwaitedCoroutineInterruptTest(WorkerTestBase):
    """An async function called without Config.AsyncCalls: aio.run awaits
    its coroutine with a SIGINT handler of its own, which cancels the task.
    A coroutine that swallows the cancellation answers with its result, so
    Go counts that SIGINT as late; the worker must count it too, or the
    next call's early SIGINT is matched against it and lost (before the
    fix: the next call ran its 5 s, and Go would have killed the worker)."""

    def test_a_swallowed_cancellation_counts_as_late(self) -> None:
        from test_worker import read_stderr_until, sigint_between_calls

        worker = self.start_ready("sample_async")
        worker.send(call_frame(1, "swallow_cancellation", [0.5]))
        read_stderr_until(worker, "awaiting")
        worker.proc.send_signal(signal.SIGINT)
        read_stderr_until(worker, "swallowed")
        self.assertEqual(worker.read(), [RESULT, 1, "ignored"])
        # Go's drain read "ignored": one late interrupt, sent with the next
        # frame; and before it, that call's own early SIGINT.
        sigint_between_calls(worker)
        worker.send(frame(purecodec.packb([2, 2, "sleep_sync", [5], None, {"i": 1}])))
        reply = worker.read()
        self.assertEqual(reply[:4], [ERROR, 2, "interrupted", "KeyboardInterrupt"], reply)
        self.assertEqual(worker.call("echo", "next", call_id=3), [RESULT, 3, "next"])


class AwaitedCoroutineInterruptPureTest(AwaitedCoroutineInterruptTest):
    codec_name = "pure"
