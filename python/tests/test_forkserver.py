"""Tests of the fork server's template (pypool_runtime.forkserver), driven as
Go drives it: a SOCK_SEQPACKET control socket on fd 3, pipes passed with
SCM_RIGHTS, pids, pidfds and exit statuses back."""

import importlib.util
import os
import select
import socket
import struct
import subprocess
import sys
import unittest
from typing import Any, List, Tuple

from pypool_runtime import forkserver, purecodec

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RUNTIME_DIR = os.path.dirname(TESTS_DIR)
BOOTSTRAP = "import sys;sys.path.insert(0,sys.argv[1]);from pypool_runtime.forkserver import main;main(sys.argv[2:])"
TIMEOUT = 20.0
HELLO, CALL, RESULT = 1, 2, 3
SUPPORTED = sys.platform.startswith("linux") and hasattr(os, "pidfd_open")


class ParseArgsTest(unittest.TestCase):
    def test_splits_its_flags_from_the_workers(self) -> None:
        server, rest = forkserver.parse_server_args(
            ["--host-pid", "12", "--preload", "json", "--preload", "csv", "--preload-setup", "--worker-fds", "6",
             "--module", "m"]
        )  # fmt: skip
        self.assertEqual(server.host_pid, 12)
        self.assertEqual(server.preload, ["json", "csv"])
        self.assertTrue(server.preload_setup)
        self.assertEqual(server.worker_fds, 6)
        self.assertEqual(rest, ["--module", "m"])

    def test_refuses_bad_flags(self) -> None:
        for argv in (["--module", "m"], ["--host-pid", "x", "--module", "m"], ["--host-pid"], ["--host-pid", "0"]):
            with self.assertRaises(ValueError, msg=argv):
                forkserver.parse_server_args(argv)


@unittest.skipUnless(SUPPORTED, "the fork server needs Linux and os.pidfd_open (Python 3.9+)")
class TemplateBase(unittest.TestCase):
    """A template started as Go starts it, with its control socket."""

    module = "sample_module"  # the template's
    codec_name = "pure"

    def setUp(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        args = [sys.executable, "-E", "-c", BOOTSTRAP, RUNTIME_DIR, "--host-pid", str(os.getpid()),
                "--worker-fds", "5", "--module", self.module, "--path", TESTS_DIR, "--codec", self.codec_name,
                "--dump-fd", "4"]  # fmt: skip
        fd = theirs.fileno()

        def control_on_fd3() -> None:
            os.dup2(fd, 3)

        self.template = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=False,
                                         preexec_fn=control_on_fd3)  # fmt: skip
        theirs.close()
        self.addCleanup(self._stop)

    def _stop(self) -> None:
        self.control.close()  # the end of its control socket ends the template
        try:
            self.template.wait(TIMEOUT)
        finally:
            if self.template.poll() is None:
                self.template.kill()
                self.template.wait()
            if self.template.stderr is not None:
                self.template.stderr.close()

    def _recv(self, warm: bool = False) -> Tuple[bytes, List[int]]:
        """The template's next message; its b"W" (warmed up) is skipped
        unless warm."""
        while True:
            ready, _, _ = select.select([self.control], [], [], TIMEOUT)
            self.assertTrue(ready, "no message from the template within %ss" % TIMEOUT)
            data, ancdata, _, _ = self.control.recvmsg(256, socket.CMSG_SPACE(4))
            if data != b"W" or warm:
                return data, forkserver._received_fds(ancdata)

    def _await_warm(self) -> None:
        """Wait for the template's b"W": it has warmed up (forkserver.warm_up)."""
        while self._recv(warm=True)[0] != b"W":
            pass

    def _fork(self) -> Tuple[int, int, int, int]:
        """Fork a worker: (pid, pidfd, its stdin's write end, its stdout's read end)."""
        pipes = [os.pipe() for _ in range(5)]
        child = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1], pipes[4][1]]
        self.control.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("5i", *child))])
        for fd in child:
            os.close(fd)
        for r, _ in pipes[2:]:
            self.addCleanup(os.close, r)
        data, fds = self._recv()
        kind, pid = data.split()
        self.assertEqual(kind, b"P", data)
        self.assertEqual(len(fds), 1, "one pidfd with the pid")
        self.addCleanup(os.close, fds[0])
        return int(pid), fds[0], pipes[0][1], pipes[1][0]

    def _read_frame(self, fd: int) -> Any:
        def exactly(n: int) -> bytes:
            data = b""
            while len(data) < n:
                ready, _, _ = select.select([fd], [], [], TIMEOUT)
                self.assertTrue(ready, "no frame from the worker within %ss" % TIMEOUT)
                chunk = os.read(fd, n - len(data))
                self.assertTrue(chunk, "the worker closed its output")
                data += chunk
            return data

        (size,) = struct.unpack(">I", exactly(4))
        return purecodec.unpackb(exactly(size))

    def _call(self, to_worker: int, from_worker: int, call_id: int, name: str, *args: Any) -> Any:
        body = purecodec.packb([CALL, call_id, name, list(args), None])
        os.write(to_worker, struct.pack(">I", len(body)) + body)
        return self._read_frame(from_worker)


@unittest.skipUnless(SUPPORTED, "the fork server needs Linux and os.pidfd_open (Python 3.9+)")
class TemplateTest(TemplateBase):
    def test_forks_workers_that_serve_and_reports_their_exit(self) -> None:
        hello = purecodec.unpackb(self._recv()[0])
        self.assertEqual(hello[0], HELLO)
        self.assertIsNone(hello[5], "the module imported")
        self.assertEqual(hello[2], self.template.pid)

        pid, pidfd, to_worker, from_worker = self._fork()
        worker_hello = self._read_frame(from_worker)
        self.assertEqual(worker_hello[0], HELLO)
        self.assertEqual(worker_hello[2], pid, "the child says its own pid")
        self.assertEqual(os.getpgid(pid), pid, "the child leads its own process group")
        body = purecodec.packb([CALL, 1, "duplicate_text", ["ab"], None])
        os.write(to_worker, struct.pack(">I", len(body)) + body)
        self.assertEqual(self._read_frame(from_worker), [RESULT, 1, "abab"])

        body = purecodec.packb([CALL, 2, "fail", ["boom"], None])
        os.write(to_worker, struct.pack(">I", len(body)) + body)
        reply = self._read_frame(from_worker)
        self.assertEqual(reply[:5], [4, 2, "exception", "ValueError", "boom"])
        self.assertNotIn("pypool_runtime", reply[5], "no frame of the runtime (nor of the fork) in the traceback")

        os.close(to_worker)  # end of input: the worker exits with 0
        os.close(from_worker)
        data, _ = self._recv()
        kind, exited, status = data.split()
        self.assertEqual((kind, int(exited)), (b"X", pid))
        self.assertTrue(os.WIFEXITED(int(status)) and os.WEXITSTATUS(int(status)) == 0, data)
        ready, _, _ = select.select([pidfd], [], [], TIMEOUT)
        self.assertTrue(ready, "the pidfd says the worker exited")

    def test_refuses_a_request_with_the_wrong_descriptors(self) -> None:
        self._recv()  # HELLO
        r, w = os.pipe()
        self.control.sendmsg([b"F"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", r))])
        os.close(r)
        os.close(w)
        data, _ = self._recv()
        self.assertTrue(data.startswith(b"E bad request"), data)


@unittest.skipUnless(SUPPORTED, "the fork server needs Linux and os.pidfd_open (Python 3.9+)")
class TemplateTracebackTest(TemplateBase):
    """Issue 21: workers import the traceback module at their first
    exception; the template imports it once idle after its first fork (its
    b"W"), so that the later children inherit it (and the first does not
    wait for it)."""

    module = "sample_security"

    def test_first_child_without_later_ones_with(self) -> None:
        self._recv()  # HELLO
        lazy = ["traceback", "ast"]
        _, _, to_first, from_first = self._fork()
        self._read_frame(from_first)  # HELLO
        self.assertEqual(self._call(to_first, from_first, 1, "modules_loaded", lazy), [RESULT, 1, []])
        self._await_warm()
        _, _, to_second, from_second = self._fork()
        self._read_frame(from_second)  # HELLO
        # The C codec, which the template's start found but did not load
        # (issue 21), is loaded by its warm-up too: later children inherit
        # it (the pure codec, the start loaded).
        codec_module = "pypool_runtime.purecodec"
        if self.codec_name == "auto" and importlib.util.find_spec("msgpack") is not None:
            codec_module = "msgpack"
        self.assertEqual(self._call(to_second, from_second, 1, "modules_loaded", lazy + [codec_module]), [RESULT, 1, lazy + [codec_module]])
        for to_worker, from_worker in ((to_first, from_first), (to_second, from_second)):
            reply = self._call(to_worker, from_worker, 2, "fail_subscript", {})
            self.assertEqual(reply[:5], [4, 2, "exception", "KeyError", "'missing'"])
            self.assertIn('    return table["missing"] + 1\n', reply[5])
            os.close(to_worker)
            os.close(from_worker)


class TemplateAutoCodecTest(TemplateTracebackTest):
    """TemplateTest's with the automatic codec: msgpack-c where msgpack is installed."""

    codec_name = "auto"


@unittest.skipUnless(SUPPORTED, "the fork server needs Linux and os.pidfd_open (Python 3.9+)")
class FirstWorkerTest(TemplateBase):
    """Issue 21: with --first-worker the template is given the first worker's
    descriptors at its start (fds 4..8) and forks that worker right after its
    HELLO, without a request; the template imports neither socket nor ctypes
    (nor resource) before that fork."""

    module = "sample_security"

    def setUp(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control = ours
        pipes = [os.pipe() for _ in range(5)]
        child = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1], pipes[4][1]]
        for r, _ in pipes[2:]:
            self.addCleanup(os.close, r)
        self.to_first, self.from_first = pipes[0][1], pipes[1][0]
        args = [sys.executable, "-E", "-c", BOOTSTRAP, RUNTIME_DIR, "--host-pid", str(os.getpid()),
                "--worker-fds", "5", "--first-worker", "--module", self.module, "--path", TESTS_DIR, "--codec", "pure",
                "--dump-fd", "4"]  # fmt: skip
        given = [theirs.fileno()] + child

        def arrange_fds() -> None:
            high = [os.dup(fd) for fd in given]  # out of the way of 3..8 first
            for target, fd in enumerate(high, start=3):
                os.dup2(fd, target)

        self.template = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, close_fds=False,
                                         preexec_fn=arrange_fds)  # fmt: skip
        theirs.close()
        for fd in child:
            os.close(fd)
        self.addCleanup(self._stop)

    def test_forks_the_first_worker_without_a_request(self) -> None:
        hello = purecodec.unpackb(self._recv()[0])
        self.assertEqual(hello[0], HELLO)
        self.assertIsNone(hello[5], "the module imported")
        data, fds = self._recv()  # no request was sent
        kind, pid = data.split()
        self.assertEqual(kind, b"P", data)
        self.assertEqual(len(fds), 1, "one pidfd with the pid")
        self.addCleanup(os.close, fds[0])
        first = int(pid)
        worker_hello = self._read_frame(self.from_first)
        self.assertEqual(worker_hello[0], HELLO)
        self.assertEqual(worker_hello[2], first, "the first worker says its own pid")
        self.assertEqual(os.getpgid(first), first, "it leads its own process group")
        with open("/proc/%d/status" % first) as status:
            ppid = [line.split()[1] for line in status if line.startswith("PPid:")]
        self.assertEqual(ppid, [str(self.template.pid)], "forked by the template")

        # socket, resource and the ctypes package are never imported; _ctypes
        # only for the prctl (by the first worker itself, after the
        # template's HELLO), traceback at a worker's first exception.
        lazy = ["socket", "resource", "ctypes", "_ctypes", "traceback"]
        self.assertEqual(self._call(self.to_first, self.from_first, 1, "modules_loaded", lazy), [RESULT, 1, ["_ctypes"]])
        # A later worker is forked on request, as before; forked once the
        # template has warmed up, it inherits _ctypes and traceback.
        self._await_warm()
        _, _, to_second, from_second = self._fork()
        self._read_frame(from_second)  # HELLO
        self.assertEqual(self._call(to_second, from_second, 1, "modules_loaded", lazy), [RESULT, 1, ["_ctypes", "traceback"]])
        for to_worker, from_worker in ((self.to_first, self.from_first), (to_second, from_second)):
            os.close(to_worker)
            os.close(from_worker)


if __name__ == "__main__":
    unittest.main()
