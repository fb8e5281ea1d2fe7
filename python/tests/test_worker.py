"""End-to-end tests of the worker: each starts python3 exactly as Go does and
speaks the protocol over its pipes. Every test runs with the automatic codec
and with the pure one."""

import datetime
import os
import select
import signal
import struct
import subprocess
import base64
import sys
import tempfile
import threading
import time
import unittest
from typing import Any, List, Optional

from pypool_runtime import codec, purecodec

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RUNTIME_DIR = os.path.dirname(TESTS_DIR)
# As runtime.go's bootstrap: it drops the working directory ('') from sys.path first.
BOOTSTRAP = ("import sys;sys.path[:]=[p for p in sys.path if p];sys.path.insert(0,sys.argv[1]);"
             "from pypool_runtime.worker import main;main(sys.argv[2:])")  # fmt: skip
TIMEOUT = 20.0

HELLO, CALL, RESULT, ERROR = 1, 2, 3, 4


def ndarray_ext(dtype: str, shape: List[int], values: Any) -> purecodec.ExtType:
    """The NDARRAY Go would send for these values, built without numpy."""
    chars = {"b1": "?", "i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "i8": "q", "u8": "Q",
             "f4": "f", "f8": "d"}  # fmt: skip
    values = list(values)
    data = struct.pack("%s%d%s" % ("<" if dtype[0] == "|" else dtype[0], len(values), chars[dtype[1:]]), *values)
    return purecodec.ExtType(127, purecodec.packb([dtype, shape]) + data)


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def call_frame(call_id: int, name: str, args: List[Any], kwargs: Optional[dict] = None) -> bytes:
    return frame(purecodec.packb([CALL, call_id, name, args, kwargs]))


class WorkerProcess:
    """A worker started as Go starts it, with fd 3 as its stdout log pipe."""

    def __init__(self, module: str, *extra: str, codec_name: str = "auto", log_fd: bool = True,
                 paths: Optional[List[str]] = None, cwd: Optional[str] = None,
                 exit_grace: Optional[float] = None) -> None:  # fmt: skip
        bootstrap = BOOTSTRAP
        if exit_grace is not None:  # startup.EXIT_GRACE_SECONDS, set before main runs
            bootstrap = BOOTSTRAP.replace("from pypool_runtime.worker import main;",
                                          "import pypool_runtime.startup as s;s.EXIT_GRACE_SECONDS=%r;"
                                          "from pypool_runtime.worker import main;" % exit_grace)  # fmt: skip
            assert bootstrap != BOOTSTRAP
        args = [sys.executable, "-I", "-c", bootstrap, RUNTIME_DIR, "--module", module]
        for path in [TESTS_DIR] if paths is None else paths:
            args += ["--path", path]
        args += ["--codec", codec_name, *extra]
        self.log_r: Optional[int] = None
        log_w: Optional[int] = None
        if log_fd:
            self.log_r, log_w = os.pipe()

        def put_log_on_fd3() -> None:
            if log_w is not None:
                os.dup2(log_w, 3)  # dup2 makes fd 3 inheritable

        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     bufsize=0, close_fds=False, preexec_fn=put_log_on_fd3, cwd=cwd)  # fmt: skip
        if log_w is not None:
            os.close(log_w)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)

    def _read_exactly(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks, have = [], 0
        deadline = time.monotonic() + TIMEOUT
        while have < n:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError("no reply from the worker within %ss" % TIMEOUT)
            chunk = os.read(fd, n - have)
            if not chunk:
                raise EOFError("the worker closed its output; stderr: %r" % self.stderr_now())
            chunks.append(chunk)
            have += len(chunk)
        return b"".join(chunks)

    def read_body(self) -> bytes:
        """The next frame's body, undecoded."""
        (size,) = struct.unpack(">I", self._read_exactly(4))
        return self._read_exactly(size)

    def read(self) -> Any:
        return purecodec.unpackb(self.read_body())

    def call(self, name: str, *args: Any, call_id: int = 1, **kwargs: Any) -> Any:
        self.send(call_frame(call_id, name, list(args), kwargs or None))
        return self.read()

    def stderr_now(self) -> bytes:
        assert self.proc.stderr is not None
        return _read_available(self.proc.stderr.fileno())

    def close(self) -> "tuple[int, str, str]":
        """Close stdin; return (exit status, stderr, log)."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            status = self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        stderr = self.proc.stderr.read().decode()
        log = ""
        if self.log_r is not None:
            log = _read_available(self.log_r).decode()
            os.close(self.log_r)
            self.log_r = None
        self.proc.stdout.close()
        self.proc.stderr.close()
        return status, stderr, log


def read_stderr_until(worker: WorkerProcess, text: str) -> str:
    """What the worker wrote to stderr, up to and including text."""
    assert worker.proc.stderr is not None
    fd = worker.proc.stderr.fileno()
    seen = b""
    while text.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], TIMEOUT)
        if not ready:
            raise AssertionError("no %r on the worker's stderr within %ss; got %r" % (text, TIMEOUT, seen))
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError("the worker closed stderr before %r; got %r" % (text, seen))
        seen += chunk
    return seen.decode()


def sigint_between_calls(worker: WorkerProcess) -> None:
    """SIGINT to the worker between calls, returned once its Python-level
    handler ran: the signal is no longer pending, and the worker waits for
    input again (PEP 475: the read the signal interrupted runs the handler
    before it is retried). Without a frame that counts it as late, the next
    call is answered interrupted (interrupt.py). Returning once the signal
    is no longer pending was not enough for two in a row: the C-level
    handler only sets a flag, and a second SIGINT that came before the
    Python-level handler ran was the same one (test_more_interrupts_than_late_ones,
    once under load)."""
    worker.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + TIMEOUT
    while _sigint_pending(worker.proc.pid) or not _waiting_for_input(worker.proc.pid):
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not take its SIGINT within %ss" % TIMEOUT)
        time.sleep(0.001)  # polled: a signal's handling has no event to wait on


# The system calls a worker waits for its input in (read, readv, select,
# poll and their p-forms), by machine; elsewhere the wait is not checked.
_INPUT_WAITS = {
    "x86_64": {0, 7, 19, 23, 270, 271},
    "aarch64": {63, 65, 72, 73},
}.get(os.uname().machine)


def _waiting_for_input(pid: int) -> bool:
    """Whether process pid's main thread sleeps in a system call that waits
    for input (/proc/<pid>/task/<pid>/syscall and stat)."""
    if _INPUT_WAITS is None:
        return True
    task = "/proc/%d/task/%d/" % (pid, pid)
    with open(task + "syscall") as f:
        number = f.read().split()[0]
    with open(task + "stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    return state == "S" and number.isdigit() and int(number) in _INPUT_WAITS


def _sigint_pending(pid: int) -> bool:
    """Whether SIGINT is pending for process pid (its shared or its main
    thread's pending set, /proc/<pid>/status)."""
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)):
                return True
    return False


def _read_available(fd: int) -> bytes:
    chunks = []
    while select.select([fd], [], [], 0.05)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class WorkerTestBase(unittest.TestCase):
    codec_name = "auto"

    def start(self, module: str = "sample_module", *extra: str, **options: Any) -> WorkerProcess:
        worker = WorkerProcess(module, *extra, codec_name=self.codec_name, **options)
        self.addCleanup(self._stop, worker)
        return worker

    def start_ready(self, module: str = "sample_module", *extra: str, **options: Any) -> WorkerProcess:
        worker = self.start(module, *extra, **options)
        hello = worker.read()
        self.assertIsNone(hello[5], hello)
        return worker

    @staticmethod
    def _stop(worker: WorkerProcess) -> None:
        if worker.proc.returncode is None:
            worker.close()

    def assertError(self, reply: Any, call_id: int, code: str, type_: str, message: Optional[str] = None,
                    hint: Optional[str] = None) -> None:  # fmt: skip
        """reply is the ERROR of call_id, with message (and hint) if given:
        [ERROR, id, code, type, message, traceback] and, when the runtime
        has a hint, the hint, never empty."""
        self.assertEqual(reply[:4], [ERROR, call_id, code, type_], reply)
        self.assertIn(len(reply), (6, 7))
        self.assertIsInstance(reply[5], str)
        if len(reply) == 7:
            self.assertIsInstance(reply[6], str)
            self.assertNotEqual(reply[6], "", "an empty hint is not sent")
        if message is not None:
            self.assertEqual(reply[4], message)
        if hint is not None:
            self.assertEqual(reply[6] if len(reply) == 7 else "", hint)

    def assertAlive(self, worker: WorkerProcess) -> None:
        self.assertEqual(worker.call("echo", "still here", call_id=99), [RESULT, 99, "still here"])


class WorkerTest(WorkerTestBase):
    def expected_codec(self) -> str:
        return codec.NAME if self.codec_name == "auto" else self.codec_name

    def test_hello(self) -> None:
        worker = self.start()
        hello = worker.read()
        self.assertEqual(
            hello, [HELLO, 1, worker.proc.pid, sys.version.split()[0], self.expected_codec(), None, sys.executable, 0.0]
        )
        self.assertEqual(worker.close(), (0, "", ""))

    def test_setup_runs_before_the_hello(self) -> None:
        args = base64.b64encode(purecodec.packb([["greeting"], {"value": "hello"}])).decode()
        worker = self.start("sample_setup", "--setup", "set_up", "--setup-args", args)
        hello = worker.read()
        self.assertIsNone(hello[5], hello)
        self.assertGreaterEqual(hello[7], 0.0, "the set-up's duration in seconds")
        self.assertEqual(worker.call("set_up_value", "greeting", call_id=1), [RESULT, 1, "hello"])

    def test_setup_without_arguments(self) -> None:
        worker = self.start("sample_setup", "--setup", "set_up")
        self.assertIsNone(worker.read()[5])
        self.assertEqual(worker.call("set_up_value", "default", call_id=1), [RESULT, 1, True])

    def test_a_failing_setup_is_a_start_failure(self) -> None:
        worker = self.start("sample_setup", "--setup", "set_up_fails")
        hello = worker.read()
        code, type_, message, tb = hello[5]  # no hint
        self.assertEqual((code, type_), ("setup_failed", "ValueError"))
        self.assertEqual(message, "no model file", "str(exception): Go names the set-up")
        self.assertIn('raise ValueError("no model file")', tb)
        self.assertEqual(worker.close()[0], 1)

    def test_a_missing_setup_function_is_a_start_failure(self) -> None:
        worker = self.start("sample_setup", "--setup", "no_such_function")
        code, type_, message, _ = worker.read()[5]
        self.assertEqual((code, type_), ("setup_failed", "AttributeError"))
        self.assertEqual(message, "module 'sample_setup' has no function 'no_such_function'")

    def test_call(self) -> None:
        worker = self.start_ready()
        self.assertEqual(worker.call("duplicate_text", "testing", call_id=7), [RESULT, 7, "testingtesting"])
        self.assertEqual(worker.call("describe", 1, 2, 3, call_id=8, flag=True),
                         [RESULT, 8, {"a": 1, "b": 2, "rest": [3], "options": {"flag": True}}])  # fmt: skip
        worker.send(frame(purecodec.packb([CALL, 2**64 - 1, "describe", [], {"a": "kw"}])))
        self.assertEqual(worker.read(), [RESULT, 2**64 - 1, {"a": "kw", "b": 2, "rest": [], "options": {}}])

    def test_values_cross_unchanged(self) -> None:
        worker = self.start_ready()
        when = datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc)
        value = [None, True, -(2**63), 2**64 - 1, 1.5, "héllo", b"\x00\xff", [1, [2]], {1: "one", "k": {}}, when]
        self.assertEqual(worker.call("echo", value), [RESULT, 1, value])

    def test_pipelined_and_split_frames(self) -> None:
        worker = self.start_ready()
        worker.send(b"".join(call_frame(i, "echo", [i]) for i in range(50)))
        self.assertEqual([worker.read() for _ in range(50)], [[RESULT, i, i] for i in range(50)])
        # Frames that straddle the end of the worker's 64 KiB read buffer.
        calls = [call_frame(i, "echo", ["%05d" % i * 5000]) for i in range(20)]
        sender = threading.Thread(target=worker.send, args=(b"".join(calls),))
        sender.start()
        self.assertEqual([worker.read() for _ in range(20)], [[RESULT, i, "%05d" % i * 5000] for i in range(20)])
        sender.join()
        for byte in call_frame(1000, "echo", ["split"]):
            worker.send(bytes([byte]))
            time.sleep(0.001)
        self.assertEqual(worker.read(), [RESULT, 1000, "split"])

    def test_large_messages(self) -> None:
        worker = self.start_ready()
        for size in (65531, 65532, 65536, 3 << 20):
            payload = os.urandom(size)
            self.assertEqual(worker.call("echo", payload), [RESULT, 1, payload])
        text = "ü" * (1 << 20)
        small = call_frame(2, "echo", [1])
        worker.send(small + call_frame(3, "echo", [text]) + small)  # a large frame between small ones
        self.assertEqual([worker.read() for _ in range(3)], [[RESULT, 2, 1], [RESULT, 3, text], [RESULT, 2, 1]])
        self.assertEqual(len(worker.call("big", 10 << 20)[2]), 10 << 20)

    def test_exception(self) -> None:
        worker = self.start_ready()
        reply = worker.call("fail", "boom", call_id=3)
        self.assertError(reply, 3, "exception", "ValueError", "boom")
        traceback = reply[5]
        self.assertTrue(traceback.startswith("Traceback (most recent call last):\n"), traceback)
        self.assertIn("sample_module.py", traceback)
        self.assertIn("in fail\n", traceback)
        self.assertTrue(traceback.endswith("ValueError: boom\n"), traceback)
        self.assertNotIn("pypool_runtime", traceback)
        reply = worker.call("fail_custom", call_id=4)
        self.assertError(reply, 4, "exception", "sample_module.CustomError", "wrapped")
        self.assertIn("KeyError: 'missing'", reply[5])
        self.assertIn("direct cause", reply[5])
        self.assertNotIn("pypool_runtime", reply[5])
        reply = worker.call("describe", call_id=5)  # missing argument: raised by the call itself
        self.assertError(reply, 5, "exception", "TypeError")
        self.assertIn("missing 1 required positional argument", reply[4])
        self.assertAlive(worker)

    def test_system_exit_does_not_end_the_worker(self) -> None:
        worker = self.start_ready()
        self.assertError(worker.call("exit_call", 3), 1, "exception", "SystemExit", "3")
        self.assertAlive(worker)

    def test_ping(self) -> None:
        """The runtime's own no-op answers without the module: Pool.Ping calls it."""
        worker = self.start_ready()
        self.assertEqual(worker.call("_pypool_ping", call_id=5), [RESULT, 5, None])
        self.assertAlive(worker)

    def test_function_not_found(self) -> None:
        worker = self.start_ready()
        public = ["CustomError", "argv", "big", "chatty", "deep", "describe", "describe_array", "duplicate_text", "echo",
                  "exit_call", "fail", "fail_custom", "keyboard_interrupt", "loaded", "naive_time", "nested_unencodable", "numpy_array", "numpy_loaded",
                  "numpy_scalars", "numpy_unsupported", "path", "sleep", "sleep_announced", "start_lingering_thread", "surrogate_error",
                  "unencodable"]  # fmt: skip
        available = "; available: " + ", ".join(public)
        cases = {
            "_private": "'_private' is private: names starting with '_' cannot be called",
            "__import__": "'__import__' is private: names starting with '_' cannot be called",
            "os.system": "'os.system': dotted names are not allowed; only functions of module 'sample_module' can be called",
            "nope": "sample_module has no public function 'nope'" + available,
            "getpid": "sample_module has no public function 'getpid'" + available,  # imported, not defined here
            "time": "sample_module has no public function 'time'" + available,  # a module, not a function
            "": "sample_module has no public function ''" + available,
        }  # fmt: skip
        for i, (name, message) in enumerate(cases.items()):
            with self.subTest(name=name):
                self.assertError(worker.call(name, call_id=i), i, "function_not_found", "AttributeError", message)
        self.assertAlive(worker)

    def test_dunder_all(self) -> None:
        worker = self.start_ready("sample_all")
        self.assertEqual(worker.call("listed"), [RESULT, 1, "listed"])
        self.assertEqual(worker.call("basename", "/a/b.txt"), [RESULT, 1, "b.txt"])  # re-exported through __all__
        self.assertError(worker.call("not_listed"), 1, "function_not_found", "AttributeError",
                         "sample_all has no public function 'not_listed'; available: basename, listed")  # fmt: skip
        self.assertError(worker.call("CONSTANT"), 1, "function_not_found", "AttributeError")
        self.assertError(worker.call("_hidden_but_listed"), 1, "function_not_found", "AttributeError")

    def test_several_modules(self) -> None:
        """With --module given twice, "module.function" reaches either module's
        public functions, a plain name the first module's, and nothing else."""
        worker = self.start_ready("sample_module", "--module", "sample_all")
        self.assertEqual(worker.call("echo", 1), [RESULT, 1, 1])
        self.assertEqual(worker.call("sample_module.echo", 2), [RESULT, 1, 2])
        self.assertEqual(worker.call("sample_all.listed"), [RESULT, 1, "listed"])
        self.assertEqual(worker.call("sample_all.basename", "/a/b.txt"), [RESULT, 1, "b.txt"])
        cases = {
            "listed": "sample_module has no public function 'listed'",  # plain names: the first module's
            "sample_all.not_listed": "sample_all has no public function 'not_listed'; available: basename, listed",
            "sample_all._hidden_but_listed": "'sample_all._hidden_but_listed' is private: names starting with '_' cannot be called",
            "sample_module._private": "'sample_module._private' is private: names starting with '_' cannot be called",
            "os.system": "'os.system': 'os' is not a configured module; only functions of modules 'sample_module', 'sample_all' can be called",
            "sample_all.basename.__globals__": "'sample_all.basename.__globals__' is private: names starting with '_' cannot be called",
            "sample_module.os.system": "'sample_module.os.system': 'sample_module.os' is not a configured module; only functions of modules 'sample_module', 'sample_all' can be called",
            "sample_all.CONSTANT": "sample_all has no public function 'CONSTANT'",
        }  # fmt: skip
        for i, (name, message) in enumerate(cases.items()):
            with self.subTest(name=name):
                reply = worker.call(name, call_id=i)
                self.assertError(reply, i, "function_not_found", "AttributeError")
                self.assertTrue(reply[4].startswith(message), reply[4])
        self.assertAlive(worker)

    def test_import_failure_of_a_second_module_names_it(self) -> None:
        worker = self.start("sample_module", "--module", "sample_broken")
        hello = worker.read()
        worker.close()
        self.assertEqual(hello[5][:2], ["import_failed", "RuntimeError"])
        self.assertEqual(hello[5][2], "sample_broken is broken on purpose", "str(exception)")
        self.assertEqual(hello[5][4], "it is module 'sample_broken' that failed", "the hint names the module")

    def test_bad_arguments(self) -> None:
        worker = self.start_ready()
        # A call whose argument is not valid UTF-8: the head still decodes.
        body = purecodec.packb([CALL, 41, "echo", ["PLACEHOLDER"], None]).replace(b"\xabPLACEHOLDER", b"\xa2\xff\xfe")
        worker.send(frame(body))
        reply = worker.read()
        self.assertError(reply, 41, "bad_arguments", "UnicodeDecodeError")
        self.assertTrue(reply[4].startswith("cannot decode the arguments of echo(): 'utf-8' codec can't decode"), reply)
        worker.send(frame(purecodec.packb([CALL, 42, "describe", [1], {1: "x"}])))
        self.assertError(worker.read(), 42, "bad_arguments", "TypeError",
                         "keyword argument names of describe() must be strings, not int")  # fmt: skip
        worker.send(frame(purecodec.packb([CALL, 43, "echo", "not a list", None])))
        self.assertError(worker.read(), 43, "bad_arguments", "TypeError", "the arguments of echo() are not an array")
        worker.send(frame(purecodec.packb([CALL, 44, "echo", [], [1]])))
        self.assertError(
            worker.read(), 44, "bad_arguments", "TypeError", "the keyword arguments of echo() are not a map"
        )
        # A timestamp beyond year 9999.
        worker.send(
            frame(
                purecodec.packb([CALL, 45, "echo", ["X"], None]).replace(
                    b"\xa1X", b"\xc7\x0c\xff" + struct.pack(">Iq", 0, 2**40)
                )
            )
        )
        self.assertError(worker.read(), 45, "bad_arguments", "OverflowError")
        self.assertAlive(worker)

    def test_result_not_encodable(self) -> None:
        worker = self.start_ready()
        self.assertError(worker.call("unencodable", call_id=5), 5, "result_not_encodable", "TypeError",
                         "cannot encode the result of unencodable() for Go: result: set (can not serialize 'set' object)",
                         "convert it to sorted(value) or list(value) before returning it; or have the worker encode it: "
                         "pypool_runtime.set_default(function) converts every value nothing else encodes, "
                         "pypool_runtime.register_ext(set, code, encode=..., decode=...) sends it as a msgpack extension "
                         "that Go decodes with a pypool.Ext in Config.Extensions (docs/types.md)")  # fmt: skip
        self.assertError(worker.call("naive_time", call_id=6), 6, "result_not_encodable", "ValueError",
                         "cannot encode the result of naive_time() for Go: result: datetime.datetime "
                         "(can not serialize 'datetime.datetime' object where tzinfo=None)")  # fmt: skip
        self.assertError(worker.call("nested_unencodable", call_id=7), 7, "result_not_encodable", "TypeError",
                         "cannot encode the result of nested_unencodable() for Go: "
                         "result['items'][1]['score']: set (can not serialize 'set' object)")  # fmt: skip
        # Too deep: the codecs' own message, without a place or a hint.
        self.assertError(worker.call("deep", 1024, call_id=9), 9, "result_not_encodable", "ValueError",
                         "cannot encode the result of deep() for Go: recursion limit exceeded.", "")  # fmt: skip
        self.assertAlive(worker)

    def test_nesting_limit(self) -> None:
        """The reply [RESULT, id, value] may nest 1024 levels below its own
        array, as msgpack >= 1.2 allows, whatever msgpack is installed: the
        value itself 1023; arguments as deep as the decoder takes (1024
        containers open, the CALL's two included) cross back unchanged."""
        worker = self.start_ready()
        worker.send(call_frame(4, "deep", [1023]))
        self.assertEqual(worker.read_body(), b"\x93\x03\x04" + b"\x91" * 1023 + b"\xc0")
        self.assertEqual(worker.call("deep", 1024, call_id=5)[:3], [ERROR, 5, "result_not_encodable"])
        worker.send(frame(purecodec.packb([CALL, 6, "echo", ["X"], None]).replace(b"\xa1X", b"\x91" * 1022 + b"\xc0")))
        self.assertEqual(worker.read_body(), b"\x93\x03\x06" + b"\x91" * 1022 + b"\xc0")
        self.assertAlive(worker)

    def test_numpy_scalars(self) -> None:
        worker = self.start_ready()
        self.assertEqual(worker.call("numpy_loaded"), [RESULT, 1, False])  # not at start
        try:
            import numpy  # noqa: F401
        except ImportError:
            self.skipTest("numpy not importable in %s (Debian: apt-get install python3-numpy)" % sys.executable)
        self.assertEqual(worker.call("numpy_scalars", call_id=2), [RESULT, 2, {
            "int8": -8, "uint64": 2**64 - 1, "float32": 0.5, "bool": True, "list": [3, [1.5]]}])  # fmt: skip
        self.assertError(worker.call("numpy_unsupported", call_id=3), 3, "result_not_encodable", "TypeError",
                         "cannot encode the result of numpy_unsupported() for Go: result['a'][0]: numpy.ndarray "
                         "(can not serialize numpy array of dtype complex128 (supported: bool, int8, int16, int32, "
                         "int64, uint8, uint16, uint32, uint64, float32, float64))")  # fmt: skip
        self.assertAlive(worker)

    def test_numpy_arrays(self) -> None:
        """NDARRAYs cross both ways, as positional and keyword arguments;
        numpy is imported at the first one, not before."""
        worker = self.start_ready()
        self.assertEqual(worker.call("numpy_loaded"), [RESULT, 1, False])
        try:
            import numpy  # noqa: F401
        except ImportError:
            self.skipTest("numpy not importable in %s (Debian: apt-get install python3-numpy)" % sys.executable)
        worker.send(call_frame(2, "numpy_array", []))
        self.assertEqual(worker.read_body(), purecodec.packb([RESULT, 2, {"a": [ndarray_ext("<i4", [2, 3], range(6))]}]))
        array = ndarray_ext(">f8", [3], [1.5, -2.0, 0.25])
        worker.send(call_frame(3, "describe_array", [array], {"scale": 2}))
        self.assertEqual(worker.read_body(), purecodec.packb([RESULT, 3, {
            "type": "ndarray", "dtype": ">f8", "shape": [3], "owns": True, "writeable": True, "array": array,
            "scaled": ndarray_ext("<f8", [3], [3.0, -4.0, 0.5])}]))  # numpy computes in the host's order  # fmt: skip
        worker.send(call_frame(4, "describe_array", [], {"array": ndarray_ext("|u1", [2, 0, 2], []), "scale": 3}))
        reply = purecodec.unpackb(worker.read_body())
        self.assertEqual(reply[2]["shape"], [2, 0, 2])
        self.assertEqual(worker.call("numpy_loaded", call_id=5), [RESULT, 5, True])
        # A bad NDARRAY is a bad argument, named.
        worker.send(call_frame(6, "echo", [purecodec.ExtType(127, purecodec.packb(["<c16", [1]]) + bytes(16))]))
        self.assertError(worker.read(), 6, "bad_arguments", "ValueError")
        self.assertAlive(worker)

    def test_unencodable_error_message(self) -> None:
        worker = self.start_ready()
        reply = worker.call("surrogate_error")
        self.assertError(reply, 1, "exception", "OSError", "bad name \\udcff")
        self.assertAlive(worker)

    def test_message_too_large(self) -> None:
        worker = self.start_ready("sample_module", "--max-message", "1000")
        self.assertEqual(len(worker.call("big", 900)[2]), 900)
        reply = worker.call("big", 2000, call_id=9)
        self.assertError(reply, 9, "message_too_large", "ValueError")
        self.assertIn("big()", reply[4])
        self.assertIn("1000", reply[4])
        reply = worker.call("fail", "x", 5000, call_id=10)  # an error reply is cut to fit
        self.assertError(reply, 10, "exception", "ValueError")
        self.assertTrue(reply[4].startswith("xxx"))
        self.assertLessEqual(len(purecodec.packb(reply)), 1000)
        self.assertAlive(worker)
        worker.send(call_frame(11, "echo", ["y" * 1000]))  # Go must never send this
        status, stderr, _ = worker.close()
        self.assertEqual(status, 2)
        self.assertIn("exceeds --max-message 1000", stderr)

    def test_output_is_kept_off_the_protocol(self) -> None:
        worker = self.start_ready()
        self.assertEqual(worker.call("chatty"), [RESULT, 1, {"eof": True}])
        self.assertAlive(worker)
        status, stderr, log = worker.close()
        self.assertEqual(status, 0)
        self.assertEqual(log, "line from print\nline from os.write\n")
        self.assertEqual(stderr, "line to stderr\n")

    def test_without_fd3_output_goes_to_stderr(self) -> None:
        worker = self.start_ready(log_fd=False)
        self.assertEqual(worker.call("chatty"), [RESULT, 1, {"eof": True}])
        status, stderr, _ = worker.close()
        self.assertEqual(status, 0)
        self.assertEqual(sorted(stderr.splitlines()), ["line from os.write", "line from print", "line to stderr"])

    def test_sigint_interrupts_only_calls(self) -> None:
        worker = self.start_ready()
        # Between calls, with no frame that counts it as late (Go's, after
        # a call's reply): the next call's, come before it began.
        sigint_between_calls(worker)
        self.assertError(worker.call("echo", "x", call_id=11), 11, "interrupted", "KeyboardInterrupt", "interrupted before the call began")
        self.assertAlive(worker)
        worker.send(call_frame(12, "sleep_announced", [30]))
        read_stderr_until(worker, "sleeping")
        worker.proc.send_signal(signal.SIGINT)
        reply = worker.read()
        self.assertError(reply, 12, "interrupted", "KeyboardInterrupt")
        # Go's drain drops the reply: no traceback is formatted for it, so
        # that the first interrupt does not import traceback (which took
        # longer than Config.InterruptGrace on a busy host).
        self.assertEqual(reply[5], "")
        self.assertEqual(worker.call("loaded", "traceback", call_id=13), [RESULT, 13, False])
        self.assertAlive(worker)

    def test_own_keyboard_interrupt_has_its_traceback(self) -> None:
        """A KeyboardInterrupt the function raises itself is its error, with
        its traceback, as any exception's."""
        worker = self.start_ready()
        reply = worker.call("keyboard_interrupt", call_id=3)
        self.assertError(reply, 3, "interrupted", "KeyboardInterrupt")
        self.assertIn("in keyboard_interrupt\n", reply[5])
        self.assertNotIn("pypool_runtime", reply[5])
        self.assertAlive(worker)

    def test_sys_path_and_argv(self) -> None:
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as cwd:
            worker = self.start_ready(paths=[first, TESTS_DIR], cwd=cwd)
            path = worker.call("path")[2]
            self.assertEqual(path[:2], [first, TESTS_DIR])
            self.assertNotIn(cwd, path)  # the working directory only when it is a --path
            self.assertNotIn("", path)
            self.assertNotIn(RUNTIME_DIR, path)
            self.assertEqual(worker.call("argv")[2], ["-c"])

    def test_end_of_input(self) -> None:
        worker = self.start_ready()
        self.assertEqual(worker.close(), (0, "", ""))

    def test_user_threads_do_not_outlive_the_input(self) -> None:
        if self.codec_name != "auto":
            self.skipTest("codec-independent; run once")
        # The grace the interpreter's exit may wait for the thread is
        # startup.EXIT_GRACE_SECONDS (10 s); shortened here, so that the
        # test does not wait 10 s for what it proves: the thread (an hour
        # of sleep) does not keep the process.
        worker = self.start_ready(exit_grace=0.5)
        self.assertEqual(worker.call("start_lingering_thread"), [RESULT, 1, None])
        started = time.monotonic()
        self.assertEqual(worker.close(), (0, "", ""))
        self.assertLess(time.monotonic() - started, 15)

    def test_protocol_violations(self) -> None:
        bodies = {
            "unexpected message kind 9": purecodec.packb([9, 1]),
            "unexpected message kind 3": purecodec.packb([RESULT, 1, "x"]),
            "not an array": purecodec.packb({"kind": 2}),
            "starts with an integer kind": purecodec.packb(["2", 1, "echo", [], None]),
            "has 4 fields": purecodec.packb([CALL, 1, "echo", []]),
            "not an unsigned integer": purecodec.packb([CALL, -1, "echo", [], None]),
            "undecodable frame": b"\xc1",
            "inside a frame header": None,
        }
        for explanation, body in bodies.items():
            with self.subTest(explanation=explanation):
                worker = self.start_ready()
                worker.send(b"\x00\x00" if body is None else frame(body))
                status, stderr, _ = worker.close()
                self.assertEqual(status, 2)
                self.assertIn(explanation, stderr)
                self.assertTrue(stderr.startswith("pypool worker: protocol violation: "), stderr)
                self.assertEqual(stderr.count("\n"), 1, stderr)


class ExtensionsWorkerTest(WorkerTestBase):
    """A user module that registers ext types and a default hook (sample_ext)."""

    def test_registered_types_cross_both_ways(self) -> None:
        worker = self.start_ready("sample_ext")
        Ext = purecodec.ExtType
        worker.send(call_frame(1, "total", [[Ext(5, b"1.25"), Ext(5, b"2.75")]]))
        self.assertEqual(worker.read_body(), purecodec.packb([RESULT, 1, {"types": ["Decimal"], "total": Ext(5, b"4.00")}]))
        # Keyword arguments too; a code nobody registered stays an ExtType, and crosses back as it came.
        value = {"d": Ext(5, b"-0.5"), "other": Ext(7, b"x")}
        worker.send(call_frame(2, "echo", [], {"value": value}))
        self.assertEqual(worker.read_body(), purecodec.packb([RESULT, 2, value]))
        # The decorator's class: a Fraction subclass, so not a native type.
        self.assertEqual(worker.call("half", purecodec.ExtType(6, b"3/4"), call_id=3),
                         [RESULT, 3, {"type": "Ratio", "half": purecodec.ExtType(6, b"3/8")}])  # fmt: skip
        # A payload the decoder refuses: the decoder's own error.
        worker.send(call_frame(4, "echo", [purecodec.ExtType(5, b"not a number")]))
        self.assertError(worker.read(), 4, "bad_arguments", "decimal.InvalidOperation")

    def test_default_hook(self) -> None:
        worker = self.start_ready("sample_ext")
        item = {"name": "tea", "price": purecodec.ExtType(5, b"2.50"), "when": "2024-05-06"}
        self.assertEqual(worker.call("items", call_id=1), [RESULT, 1, [item, {"on": "2024-01-02"}]])
        self.assertError(worker.call("refused", call_id=2), 2, "result_not_encodable", "TypeError",
                         "cannot encode the result of refused() for Go: "
                         "result['bad'][0]: object (sample_ext cannot encode object)")  # fmt: skip
        self.assertIn("pypool_runtime.register_ext(object, code", worker.call("refused", call_id=3)[6])
        self.assertAlive(worker)


class ArrayWithoutNumpyWorkerTest(WorkerTestBase):
    """NDARRAYs reach a worker without numpy (sample_no_numpy hides it) as
    pypool_runtime.Array, which goes back to Go as the same NDARRAY."""

    def test_array_arguments(self) -> None:
        worker = self.start_ready("sample_no_numpy")
        cases = [
            (ndarray_ext("<f8", [2, 2], [1.5, 2.5, -3.0, 0.0]), "float64", [[1.5, 2.5], [-3.0, 0.0]]),
            (ndarray_ext(">i4", [3], [1, -2, 3]), "int32", [1, -2, 3]),
            (ndarray_ext("|b1", [], [True]), "bool", True),
            (ndarray_ext("<u2", [0, 4], []), "uint16", []),
        ]
        for i, (array, dtype, values) in enumerate(cases):
            with self.subTest(dtype=dtype):
                worker.send(call_frame(i, "describe", [], {"array": array}))
                body = worker.read_body()
                self.assertEqual(body, purecodec.packb([RESULT, i, {
                    "type": "Array", "is_array": True, "dtype": dtype, "shape": _shape_of(array), "values": values,
                    "array": array}]))  # fmt: skip
        worker.send(call_frame(9, "make", ["int16", [2], b"\x01\x00\x02\x00"]))
        self.assertEqual(worker.read_body(), purecodec.packb([RESULT, 9, ndarray_ext("<i2", [2], [1, 2])]))


def _shape_of(array: purecodec.ExtType) -> List[int]:
    return purecodec.unpack_head(array.data)[0][1]


class ImportFailureTest(WorkerTestBase):
    def failed_hello(self, module: str) -> "tuple[list, str]":
        worker = self.start(module)
        hello = worker.read()
        self.assertEqual(hello[:5], [HELLO, 1, worker.proc.pid, sys.version.split()[0], hello[4]])
        status, stderr, _ = worker.close()
        self.assertEqual(status, 1, stderr)
        self.assertEqual(hello[5][0], "import_failed")
        return hello[5], stderr

    def test_missing_module(self) -> None:
        error, _ = self.failed_hello("no_such_module_here")
        self.assertEqual(error[1], "ModuleNotFoundError")
        self.assertEqual(error[2], "No module named 'no_such_module_here'", "str(exception)")
        self.assertTrue(error[4].startswith("looked in sys.path: " + repr(TESTS_DIR)), error[4])  # where it looked
        self.assertNotIn("pypool_runtime", error[3])

    def test_missing_dependency(self) -> None:
        """A module the user's module imports, not installed: the hint names
        the interpreter that did not find it and the fix."""
        error, _ = self.failed_hello("sample_missing_dependency")
        self.assertEqual(error[1], "ModuleNotFoundError")
        self.assertEqual(error[2], "No module named 'pypool_no_such_dependency'")
        self.assertIn("sample_missing_dependency.py", error[3])
        self.assertEqual(error[4], "install pypool_no_such_dependency for %s (%s), or set Config.Python to an interpreter that "
                         "has it" % (sys.executable, sys.version.split()[0]))  # fmt: skip

    def test_missing_dependency_names_its_package(self) -> None:
        """A module whose package has another name (sklearn, PIL): the hint
        names the package to install, not the module."""
        from pypool_runtime import errors

        for module, package in (("sklearn.linear_model", "scikit-learn"), ("PIL", "Pillow"), ("yaml", "PyYAML")):
            hint = errors.missing_module_hint(ModuleNotFoundError("No module named %r" % module, name=module))
            top = module.partition(".")[0]
            self.assertTrue(hint.startswith("install %s (the package that provides %s) for " % (package, top)), hint)
        hint = errors.missing_module_hint(ModuleNotFoundError("No module named 'numpy'", name="numpy"))
        self.assertTrue(hint.startswith("install numpy for "), hint)

    def test_namespace_package(self) -> None:
        """A directory without __init__.py (//go:embed without all: makes
        one) has no functions: the worker refuses it at start."""
        with tempfile.TemporaryDirectory() as top:
            os.makedirs(os.path.join(top, "pypool_initless", "sub"))
            worker = self.start("pypool_initless", paths=[top])
            hello = worker.read()
            worker.close()
        self.assertEqual(hello[5][:2], ["import_failed", "ImportError"])
        self.assertEqual(hello[5][2], "module 'pypool_initless' is a directory without __init__.py (a namespace package: "
                         "%r), which has no functions to call" % os.path.join(top, "pypool_initless"))  # fmt: skip

    def test_module_raising(self) -> None:
        error, _ = self.failed_hello("sample_broken")
        self.assertEqual(error[1:3], ["RuntimeError", "sample_broken is broken on purpose"])
        self.assertIn("sample_broken.py", error[3])
        self.assertIn("in _helper", error[3])
        self.assertNotIn("pypool_runtime", error[3])
        self.assertNotIn("importlib", error[3])


class NotEncodableDetailTest(unittest.TestCase):
    """worker.not_encodable_detail, with each codec's own error."""

    def test_detail(self) -> None:
        from pypool_runtime import worker

        class Point:
            pass

        cyclic: List[Any] = []
        cyclic.append(cyclic)
        cases = [
            ([1, {"a": 2**64}], "result[1]['a']: int (Integer value out of range)"),
            ({"p": [Point()]}, "result['p'][0]: test_worker.Point (can not serialize 'Point' object)"),
            ({frozenset(): 1}, "a key of result: frozenset (can not serialize 'frozenset' object)"),
            ([cyclic, {2}], "recursion limit exceeded."),  # the codecs fail on the cycle first
        ]
        codecs = [codec.PURE] + ([codec.load(codec.C_NAME)] if codec.NAME == codec.C_NAME else [])
        for c in codecs:
            for value, detail in cases:
                with self.subTest(codec=c.name, detail=detail):
                    with self.assertRaises(Exception) as caught:
                        c.result_frame(1, value)
                    self.assertEqual(worker.not_encodable_detail(value, caught.exception), detail)


class UnsupportedHintTest(unittest.TestCase):
    """errors.not_encodable's hint: what to convert the value to, then the
    runtime's hooks; none for a value too deep or cyclic."""

    def test_hints(self) -> None:
        import dataclasses

        from pypool_runtime import errors

        @dataclasses.dataclass
        class Pair:
            left: int

        class Plain:
            pass

        hooks = "; or have the worker encode it: pypool_runtime.set_default(function)"
        cases = [
            ({"s": {1}}, "convert it to sorted(value) or list(value) before returning it" + hooks),
            ([Pair(1)], "convert it to dataclasses.asdict(value) before returning it" + hooks),
            ([Plain()], "convert it to a dict (vars(value)) or a tuple of its fields before returning it" + hooks),
            ([2**64], "convert it: str(value), or float(value) if precision may be lost"),
            ([datetime.datetime(2024, 1, 2)], "give it a time zone: value.replace(tzinfo=datetime.timezone.utc), "
                                              "or value.astimezone() for local time"),  # fmt: skip
        ]
        for value, hint in cases:
            with self.subTest(hint=hint):
                with self.assertRaises(Exception) as caught:
                    codec.PURE.result_frame(1, value)
                self.assertTrue(errors.not_encodable(value, caught.exception)[1].startswith(hint))
        deep: List[Any] = []
        deep.append(deep)
        with self.assertRaises(Exception) as caught:
            codec.PURE.result_frame(1, deep)
        self.assertEqual(errors.not_encodable(deep, caught.exception)[1], "")


class BadCommandLineTest(unittest.TestCase):
    def test_bad_command_lines_exit_2(self) -> None:
        for args in ([], ["--module"], ["--module", "m", "--codec", "fast"], ["--module", "m", "--max-message", "x"],
                     ["--module", "m", "--bogus", "1"]):  # fmt: skip
            with self.subTest(args=args):
                result = subprocess.run([sys.executable, "-I", "-c", BOOTSTRAP, RUNTIME_DIR, *args],
                                        stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)  # fmt: skip
                self.assertEqual(result.returncode, 2)
                self.assertEqual(result.stdout, b"")
                self.assertTrue(result.stderr.startswith(b"pypool worker: "), result.stderr)


class PureCodecWorkerTest(WorkerTest):
    codec_name = "pure"


class PureCodecImportFailureTest(ImportFailureTest):
    codec_name = "pure"


class PureCodecExtensionsWorkerTest(ExtensionsWorkerTest):
    codec_name = "pure"


class PureCodecArrayWithoutNumpyWorkerTest(ArrayWithoutNumpyWorkerTest):
    codec_name = "pure"


if __name__ == "__main__":
    unittest.main()
