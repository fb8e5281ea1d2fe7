"""The worker's stack dumps: with --dump-fd, SIGUSR1 writes the stacks of
all threads to that descriptor (faulthandler), as Go asks before it
interrupts or kills a worker."""

import fcntl
import os
import select
import signal
import time
import unittest

from pypool_runtime import worker as runtime
from test_worker import RESULT, TESTS_DIR, WorkerTestBase, call_frame, read_stderr_until


def read_dump(fd: int, timeout: float = 10.0, quiet: float = 0.2) -> str:
    """What arrives on fd until it has been quiet for `quiet` seconds."""
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = quiet if chunks else max(deadline - time.monotonic(), 0)
        if not select.select([fd], [], [], wait)[0]:
            if chunks:
                break
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def line_of(text: str) -> int:
    """The line of sample_module.py that holds text."""
    with open(os.path.join(TESTS_DIR, "sample_module.py")) as source:
        for number, line in enumerate(source, 1):
            if text in line:
                return number
    raise AssertionError("no line %r in sample_module.py" % text)


class StackDumpTest(WorkerTestBase):
    def start_dumping(self):
        read_end, write_end = os.pipe()
        # Above the fds WorkerProcess places (3), and inheritable (F_DUPFD
        # clears close-on-exec), as Go's ExtraFiles are.
        dump_fd = fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
        os.close(write_end)
        self.addCleanup(os.close, read_end)
        try:
            worker = self.start_ready("sample_module", "--dump-fd", str(dump_fd))
        finally:
            os.close(dump_fd)
        return worker, read_end

    def test_dump_names_the_function_and_line_and_the_call_goes_on(self) -> None:
        worker, dumps = self.start_dumping()
        worker.send(call_frame(7, "sleep_announced", [0.6]))
        read_stderr_until(worker, "sleeping")
        worker.proc.send_signal(runtime.DUMP_SIGNAL)
        dump = read_dump(dumps)
        self.assertIn("(most recent call first):", dump)
        # In its sleep, or a step before it: just past the write a test
        # waited for.
        lines = [line_of(text) for text in ("sleep_announced's sleep", 'b"sleeping')]
        self.assertTrue(any('sample_module.py", line %d in sleep_announced' % n in dump for n in lines), dump)
        self.assertIn("in serve", dump)
        # The dump does not disturb the call: it sleeps on and returns.
        self.assertEqual(worker.read(), [RESULT, 7, "slept"])
        self.assertAlive(worker)

    def test_dump_before_an_interrupt(self) -> None:
        worker, dumps = self.start_dumping()
        worker.send(call_frame(8, "sleep_announced", [30]))
        read_stderr_until(worker, "sleeping")
        worker.proc.send_signal(runtime.DUMP_SIGNAL)
        worker.proc.send_signal(signal.SIGINT)  # at once, as Go does
        self.assertIn("in sleep", read_dump(dumps))
        reply = worker.read()
        self.assertEqual(reply[:4], [4, 8, "interrupted", "KeyboardInterrupt"])
        self.assertAlive(worker)

    def test_idle_worker_dumps_the_runtime_loop(self) -> None:
        worker, dumps = self.start_dumping()
        self.assertAlive(worker)  # past its set-up, waiting for the next call
        time.sleep(0.1)
        worker.proc.send_signal(runtime.DUMP_SIGNAL)
        dump = read_dump(dumps)
        self.assertIn("in read", dump)
        self.assertIn("in serve", dump)
        self.assertAlive(worker)

    def test_dump_descriptor_is_not_inherited(self) -> None:
        # Registered: no exception, and a child process (which would keep
        # Go's end of the pipe from seeing the end) does not get it.
        worker, dumps = self.start_dumping()
        worker.close()
        self.assertEqual(os.read(dumps, 1), b"", "the worker held the only write end")

    def test_bad_dump_fd(self) -> None:
        with self.assertRaisesRegex(ValueError, "--dump-fd 'x' is not a non-negative integer"):
            runtime.parse_args(["--module", "m", "--dump-fd", "x"])
        self.assertEqual(runtime.parse_args(["--module", "m", "--dump-fd", "5"]).dump_fd, 5)
        self.assertEqual(runtime.parse_args(["--module", "m"]).dump_fd, -1)

    def test_closed_dump_fd_is_refused(self) -> None:
        worker = self.start("sample_module", "--dump-fd", "97")
        status, stderr, _ = worker.close()
        self.assertEqual(status, runtime.EXIT_PROTOCOL)
        self.assertIn("--dump-fd 97", stderr)

    def test_registering_costs_no_measurable_time(self) -> None:
        import faulthandler

        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, write_end)
        previous = signal.getsignal(runtime.DUMP_SIGNAL)
        self.addCleanup(signal.signal, runtime.DUMP_SIGNAL, previous)
        fastest = 1.0
        for _ in range(5):  # the fastest of a few: a busy machine may pause any one
            begin = time.perf_counter()
            runtime.enable_stack_dumps(write_end)
            fastest = min(fastest, time.perf_counter() - begin)
            faulthandler.unregister(runtime.DUMP_SIGNAL)
        self.assertLess(fastest, 0.002, "faulthandler is built in: registering takes microseconds")


class PureCodecStackDumpTest(StackDumpTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()
