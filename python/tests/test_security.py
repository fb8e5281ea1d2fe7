"""The worker's import path cannot be shadowed, and Config.Limits apply:
each test starts python3 as Go does (test_worker.WorkerProcess)."""

import datetime
import fcntl
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import unittest
from typing import Any, List

from pypool_runtime import errors, purecodec, stdlib, worker
from test_worker import ERROR, RESULT, TESTS_DIR, WorkerProcess, WorkerTestBase, call_frame, frame

# Standard modules the runtime uses, some lazily, and msgpack and
# sitecustomize: a file of that name must never be imported. From "asyncio"
# on (issue 18, finding 10): asyncio, imported at the first awaitable, and
# the top-level modules it imports.
SHADOWED = [
    "traceback", "linecache", "tokenize", "token", "ast", "struct", "datetime", "binascii", "threading",
    "resource", "faulthandler", "msgpack", "sitecustomize", "signal", "mmap",
    "asyncio", "selectors", "socket", "ssl", "subprocess", "concurrent", "logging", "inspect", "contextvars",
    "heapq", "base64", "dis", "opcode", "locale", "string", "textwrap", "array", "select", "weakref", "typing",
    # msgpack's own imports, now that the C codec is loaded after the user's paths are on sys.path (issue 21)
    "collections", "keyword", "operator", "reprlib",
]  # fmt: skip

SHADOW_SOURCE = (
    "import os\n"
    "open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imported-' + __name__), 'w').close()\n"
    "raise ImportError('the shadow ' + __name__ + ' was imported')\n"
)


def shadow_dir() -> str:
    """A directory holding a shadow of each of SHADOWED."""
    path = tempfile.mkdtemp(prefix="pypool-shadow-")
    for name in SHADOWED:
        with open(os.path.join(path, name + ".py"), "w") as f:
            f.write(SHADOW_SOURCE)
    return path


def imported(path: str) -> List[str]:
    return sorted(name[len("imported-") :] for name in os.listdir(path) if name.startswith("imported-"))


class ShadowingTest(WorkerTestBase):
    def setUp(self) -> None:
        self.shadows = shadow_dir()
        self.addCleanup(shutil.rmtree, self.shadows)

    def check_worker(self, **options: Any) -> None:
        w = self.start_ready("sample_security", "--limit-nofile", "1024", **options)
        reply = w.call("fail", "on purpose", call_id=1)
        self.assertError(reply, 1, "exception", "ValueError", "on purpose")
        self.assertIn("in fail\n", reply[5])
        self.assertAlive(w)
        self.assertEqual(w.call("async_echo", "awaited", call_id=3), [RESULT, 3, "awaited"])
        self.assertEqual(w.call("shadow_modules_loaded", call_id=2), [RESULT, 2, []])
        status, stderr, _ = w.close()
        self.assertEqual((status, stderr), (0, ""))
        self.assertEqual(imported(self.shadows), [])

    def test_working_directory(self) -> None:
        self.check_worker(cwd=self.shadows)

    def test_python_path(self) -> None:
        self.check_worker(paths=[self.shadows, TESTS_DIR])

    def test_without_home(self) -> None:
        home = os.environ.pop("HOME", None)
        try:
            self.check_worker(cwd=self.shadows, paths=[self.shadows, TESTS_DIR])
        finally:
            if home is not None:
                os.environ["HOME"] = home

    def test_working_directory_is_off_the_path(self) -> None:
        w = self.start_ready("sample_security", cwd=self.shadows)
        path = w.call("path")[2]
        self.assertEqual(path[0], TESTS_DIR)
        self.assertNotIn(self.shadows, path)
        self.assertNotIn("", path)


class ShadowedByUserCodeTest(WorkerTestBase):
    """Issue 18, finding 10: an asyncio.py that the user's code imported
    itself is not used by the runtime: the async call fails with an error
    that names the file."""

    def test_async_call_names_the_shadow(self) -> None:
        with tempfile.TemporaryDirectory() as shadows:
            with open(os.path.join(shadows, "asyncio.py"), "w") as f:
                f.write("# the user's own asyncio\n")
            w = self.start_ready("sample_security", paths=[shadows, TESTS_DIR])
            shadow = os.path.join(shadows, "asyncio.py")
            self.assertEqual(w.call("import_shadow", "asyncio", call_id=1), [RESULT, 1, shadow])
            reply = w.call("async_echo", "x", call_id=2)
            self.assertError(reply, 2, "exception", "ImportError")
            self.assertIn("needs the standard module 'asyncio', but %s was imported" % shadow, reply[4])
            self.assertIn("rename it", reply[4])
            self.assertAlive(w)


class LazyTracebackTest(WorkerTestBase):
    """Issue 21: the traceback module (and ast, linecache, tokenize) is not
    imported at a worker's start but at its first exception, and then from
    the interpreter's own entries only: the user's traceback.py and ast.py
    on the path are never imported by the runtime, and the traceback is
    still the real module's (source lines, and carets on 3.11+)."""

    LAZY = ["traceback", "ast", "linecache", "tokenize"]

    def setUp(self) -> None:
        self.user = tempfile.mkdtemp(prefix="pypool-user-")
        self.addCleanup(shutil.rmtree, self.user)
        for name in ("traceback", "ast"):
            with open(os.path.join(self.user, name + ".py"), "w") as f:
                f.write(
                    "import os\n"
                    "open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imported-' + __name__), 'w').close()\n"
                    "def format_exception(*args, **kwargs):\n"
                    "    return ['the user\\'s own ' + __name__ + '\\n']\n"
                    "def parse(*args, **kwargs):\n"
                    "    raise RuntimeError('the user\\'s own ast')\n"
                )

    def check_real_traceback(self, reply: Any, call_id: int) -> None:
        self.assertError(reply, call_id, "exception", "KeyError", "'missing'")
        text = reply[5]
        self.assertIn("in fail_subscript\n", text)
        self.assertIn('    return table["missing"] + 1\n', text, "the source line: linecache's work")
        if sys.version_info >= (3, 11):
            self.assertIn("^^^^", text, "the carets: ast's work")
        self.assertNotIn("the user's own", text)

    def test_not_imported_at_start(self) -> None:
        w = self.start_ready("sample_security", paths=[self.user, TESTS_DIR])
        self.assertEqual(w.call("modules_loaded", self.LAZY, call_id=1), [RESULT, 1, []])
        self.check_real_traceback(w.call("fail_subscript", {}, call_id=2), 2)
        self.assertEqual(w.call("modules_loaded", self.LAZY, call_id=3), [RESULT, 3, self.LAZY])
        origin = w.call("loaded_from", "traceback", call_id=4)[2]
        self.assertNotIn(self.user, origin)
        self.assertEqual(w.call("import_shadow", "ast", call_id=5)[2], w.call("loaded_from", "ast", call_id=6)[2])
        self.assertNotIn(self.user, w.call("loaded_from", "ast", call_id=7)[2])
        status, stderr, _ = w.close()
        self.assertEqual((status, stderr), (0, ""))
        self.assertEqual(imported(self.user), [])

    def test_the_users_own_traceback_imported_first(self) -> None:
        w = self.start_ready("sample_security", paths=[self.user, TESTS_DIR])
        for call_id, name in enumerate(("traceback", "ast"), 1):
            self.assertEqual(w.call("import_shadow", name, call_id=call_id), [RESULT, call_id, os.path.join(self.user, name + ".py")])
        self.assertEqual(imported(self.user), ["ast", "traceback"])
        reply = w.call("fail_subscript", {}, call_id=3)
        self.assertError(reply, 3, "exception", "KeyError", "'missing'")
        # The runtime's private copy of the real traceback module formats
        # it; the user's ast (in sys.modules) breaks its carets only.
        self.assertIn('    return table["missing"] + 1\n', reply[5])
        self.assertNotIn("the user's own", reply[5])
        self.assertEqual(w.call("loaded_from", "traceback", call_id=4)[2], os.path.join(self.user, "traceback.py"))
        self.assertAlive(w)


class LazyCodecImportsTest(WorkerTestBase):
    """Issue 21: a worker imports msgpack only after its first result: its
    HELLO names the codec it runs (msgpack-c when msgpack's C extension is
    among the interpreter's own entries, else pure), it starts on the pure
    codec, which puts the same bytes on the wire, and loads the C codec once
    idle, after a few frames, or at the first value the pure codec would
    decode to another class (an ext value of a code no extension decodes);
    and mmap only when Go gives it shared memory."""

    CODEC_MODULES = ["pypool_runtime.purecodec", "msgpack", "mmap", "datetime"]

    def expected_codec(self, codec_name: str) -> str:
        if codec_name == "pure":
            return "pure"
        try:
            from msgpack import _cmsgpack  # noqa: F401
        except ImportError:
            return "pure"
        return "msgpack-c"

    @staticmethod
    def loaded_modules(codec_name: str) -> List[str]:
        """The codecs' modules a worker of codec_name has loaded once its codec is."""
        return ["pypool_runtime.purecodec", "msgpack"] if codec_name == "msgpack-c" else ["pypool_runtime.purecodec"]

    def await_loaded(self, w: WorkerProcess, codec_name: str, call_id: int) -> None:
        """Call until the worker, idle between calls, has loaded its codec."""
        wanted = self.loaded_modules(codec_name)
        deadline = time.monotonic() + 20
        while True:
            reply = w.call("modules_loaded", ["pypool_runtime.purecodec", "msgpack"], call_id=call_id)
            if reply[2] == wanted or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.assertEqual(reply, [RESULT, call_id, wanted])

    def test_at_start(self) -> None:
        for codec_name in ("auto", "pure"):
            with self.subTest(codec=codec_name):
                w = WorkerProcess("sample_security", codec_name=codec_name)
                self.addCleanup(self._stop, w)
                # In the pipe before the worker serves: answered before it is idle.
                w.send(call_frame(1, "modules_loaded", [self.CODEC_MODULES]))
                hello = w.read()
                self.assertIsNone(hello[5], hello)
                self.assertEqual(hello[4], self.expected_codec(codec_name))
                self.assertEqual(w.read(), [RESULT, 1, ["pypool_runtime.purecodec"]], "the pure codec, without datetime, for the first call")
                self.await_loaded(w, hello[4], 2)
                self.assertEqual(w.close()[:2], (0, ""))

    def test_first_value_that_needs_it(self) -> None:
        # An ext value of a code no extension decodes is the C codec's
        # msgpack.ExtType, as it always was with msgpack installed: the
        # pure codec (whose ExtType is its own) loads the C codec for it.
        # Plain values and timestamps the pure codec decodes as the C codec.
        stamp = datetime.datetime(2026, 12, 6, 0, 30, 0, 1000, tzinfo=datetime.timezone.utc)
        modules = ["pypool_runtime.purecodec", "msgpack"]
        for codec_name in ("auto", "pure"):
            with self.subTest(codec=codec_name):
                w = WorkerProcess("sample_security", codec_name=codec_name)
                self.addCleanup(self._stop, w)
                # One write: all five in the pipe together, so that the worker is not idle in between.
                w.send(b"".join([call_frame(1, "echo", [["plain", 1, None]]), call_frame(2, "echo", [stamp]),
                                 call_frame(3, "modules_loaded", [modules]),
                                 call_frame(4, "class_of", [purecodec.ExtType(5, b"x")]),
                                 call_frame(5, "modules_loaded", [modules])]))  # fmt: skip
                hello = w.read()
                self.assertEqual(hello[4], self.expected_codec(codec_name))
                self.assertEqual(w.read(), [RESULT, 1, ["plain", 1, None]])
                self.assertEqual(w.read(), [RESULT, 2, stamp])
                self.assertEqual(w.read(), [RESULT, 3, ["pypool_runtime.purecodec"]], "the pure codec so far")
                ext_class = "msgpack.ext.ExtType" if hello[4] == "msgpack-c" else "pypool_runtime.purecodec.ExtType"
                self.assertEqual(w.read(), [RESULT, 4, ext_class])
                self.assertEqual(w.read(), [RESULT, 5, self.loaded_modules(hello[4])])
                self.assertEqual(w.close()[:2], (0, ""))

    @unittest.skipUnless(importlib.util.find_spec("msgpack") is not None, "msgpack is not installed")
    def test_a_users_own_msgpack_ext_type(self) -> None:
        # The user's code imports msgpack (site-packages) and returns its
        # ExtType before the C codec is loaded: the pure codec, which knows
        # msgpack's classes only once msgpack is loaded, would pack that
        # tuple as an array; the C codec is loaded first.
        for codec_name in ("auto", "pure"):
            with self.subTest(codec=codec_name):
                w = WorkerProcess("sample_security", codec_name=codec_name)
                self.addCleanup(self._stop, w)
                w.send(call_frame(1, "msgpack_ext", [5, b"x"]))
                hello = w.read()
                reply = w.read()
                if hello[4] == "msgpack-c":
                    self.assertEqual(reply, [RESULT, 1, purecodec.ExtType(5, b"x")])
                    self.assertIs(type(reply[2]), purecodec.ExtType, "an ext value, not an array")
                self.assertEqual(w.close()[:2], (0, ""))

    def test_the_users_own_datetime_imported_first(self) -> None:
        # The user's code imports a datetime.py of its own before the C
        # codec is loaded: msgpack (and the pure codec) still get the
        # standard one; the user's code keeps its own.
        user = tempfile.mkdtemp(prefix="pypool-user-")
        self.addCleanup(shutil.rmtree, user)
        with open(os.path.join(user, "datetime.py"), "w") as f:
            f.write("SHADOW = True\n")
        stamp = datetime.datetime(2026, 12, 6, 0, 30, 0, 1000, tzinfo=datetime.timezone.utc)
        own = os.path.join(user, "datetime.py")
        for codec_name in ("auto", "pure"):
            with self.subTest(codec=codec_name):
                w = WorkerProcess("sample_security", codec_name=codec_name, paths=[user, TESTS_DIR])
                self.addCleanup(self._stop, w)
                w.send(call_frame(1, "import_shadow", ["datetime"]))
                hello = w.read()
                self.assertIsNone(hello[5], hello)
                self.assertEqual(w.read(), [RESULT, 1, own])
                self.assertEqual(w.call("echo", stamp, call_id=2), [RESULT, 2, stamp])
                self.assertEqual(w.call("loaded_from", "datetime", call_id=3), [RESULT, 3, own], "the user's code keeps its own")
                self.await_loaded(w, hello[4], 4)
                self.assertEqual(w.call("echo", stamp, call_id=5), [RESULT, 5, stamp])
                self.assertEqual(w.call("loaded_from", "datetime", call_id=6), [RESULT, 6, own], "the user's code keeps its own")
                if hello[4] == "msgpack-c":
                    codec_datetime = w.call("imported_by", "msgpack.ext", "datetime", call_id=7)[2]
                    self.assertIsNotNone(codec_datetime)
                    self.assertNotEqual(codec_datetime, own)
                self.assertEqual(w.close()[:2], (0, ""))

    def test_datetime_at_first_use_is_the_standard_one(self) -> None:
        # The pure codec imports datetime at the first timestamp or datetime
        # (2-3 ms less at every start): from the interpreter's own entries,
        # never from a user's path that holds a datetime.py.
        shadows = shadow_dir()
        self.addCleanup(shutil.rmtree, shadows)
        stamp = datetime.datetime(2026, 12, 5, 22, 0, 1, 250000, tzinfo=datetime.timezone.utc)
        for codec_name in ("auto", "pure"):
            with self.subTest(codec=codec_name):
                w = WorkerProcess("sample_security", codec_name=codec_name, paths=[shadows, TESTS_DIR])
                self.addCleanup(self._stop, w)
                self.assertIsNone(w.read()[5])
                self.assertEqual(w.call("echo", stamp, call_id=1), [RESULT, 1, stamp])
                self.assertNotIn(shadows, w.call("loaded_from", "datetime", call_id=2)[2] or "")
                self.assertEqual(w.call("shadow_modules_loaded", call_id=3), [RESULT, 3, []])
                self.assertEqual(w.close()[:2], (0, ""))
                self.assertEqual(imported(shadows), [])


class StdlibImportTest(unittest.TestCase):
    """stdlib.import_module (issue 18, finding 10) finds a module, and what
    it imports, among the entries protect() was given only; other imports
    are untouched."""

    def setUp(self) -> None:
        self.shadows = tempfile.mkdtemp(prefix="pypool-shadow-")
        self.addCleanup(shutil.rmtree, self.shadows)
        for name in ("colorsys", "pypool_user_only"):
            with open(os.path.join(self.shadows, name + ".py"), "w") as f:
                f.write("SHADOW = True\n")
        saved_path, saved_own = list(sys.path), list(stdlib._OWN_PATH)
        stdlib.protect(sys.path)
        sys.path.insert(0, self.shadows)

        def restore() -> None:
            sys.path[:] = saved_path
            stdlib._OWN_PATH[:] = saved_own
            for name in ("colorsys", "pypool_user_only"):
                sys.modules.pop(name, None)

        self.addCleanup(restore)

    def test_user_paths_are_not_searched(self) -> None:
        sys.modules.pop("colorsys", None)
        module = stdlib.import_module("colorsys")
        self.assertFalse(hasattr(module, "SHADOW"), module.__file__)
        with self.assertRaises(ModuleNotFoundError):
            stdlib.import_module("pypool_user_only")
        import pypool_user_only  # type: ignore[import-not-found]  # outside import_module: sys.path as usual

        self.assertTrue(pypool_user_only.SHADOW)

    def test_a_shadow_imported_first_is_refused(self) -> None:
        sys.modules.pop("colorsys", None)
        import colorsys

        self.assertTrue(colorsys.SHADOW)  # type: ignore[attr-defined]
        with self.assertRaisesRegex(ImportError, "needs the standard module 'colorsys', but .*colorsys.py was imported"):
            stdlib.import_module("colorsys")


class OffPathHintTest(WorkerTestBase):
    """A module that is found only where workers no longer look (the working
    directory, the user's site-packages) fails to import with a hint."""

    def failed_hello_message(self, **options: Any) -> str:
        w = self.start("sample_missing_dependency", **options)
        hello = w.read()
        self.assertEqual(hello[5][1], "ModuleNotFoundError", hello)
        self.assertEqual(hello[5][2], "No module named 'pypool_no_such_dependency'", "str(exception)")
        return hello[5][4]  # the hint

    def test_in_the_working_directory(self) -> None:
        with tempfile.TemporaryDirectory() as cwd:
            open(os.path.join(cwd, "pypool_no_such_dependency.py"), "w").close()
            message = self.failed_hello_message(cwd=cwd)
        self.assertIn("'pypool_no_such_dependency' is in the working directory %s, which is not on" % cwd, message)
        self.assertIn("list it in Config.PythonPath", message)

    @unittest.skipUnless(sys.platform.startswith("linux"), "the user's site-packages is ~/.local/lib/pythonX.Y/site-packages on Linux only")
    def test_in_the_user_site_packages(self) -> None:
        with tempfile.TemporaryDirectory() as home:
            version = "python%d.%d" % sys.version_info[:2]
            user_site = os.path.join(home, ".local", "lib", version, "site-packages")
            os.makedirs(os.path.join(user_site, "pypool_no_such_dependency"))
            saved = os.environ.get("HOME")
            os.environ["HOME"] = home
            try:
                message = self.failed_hello_message()
            finally:
                if saved is None:
                    del os.environ["HOME"]
                else:
                    os.environ["HOME"] = saved
        self.assertIn("is in the user's site-packages %s, which is not on" % user_site, message)

    def test_nowhere(self) -> None:
        self.assertNotIn("which is not on the workers' sys.path", self.failed_hello_message())


@unittest.skipUnless(os.path.isdir("/proc/self/fd"), "needs /proc/self/fd to list a worker's descriptors")
class InheritedDescriptorsTest(WorkerTestBase):
    """Issue 18, finding 6: a descriptor the starting process holds without
    close-on-exec does not reach the worker; those Go gives it do."""

    def test_only_given_descriptors_stay(self) -> None:
        with tempfile.NamedTemporaryFile() as secret:
            secret.write(b"not for the worker")
            secret.flush()
            # Above the worker's own numbers, without close-on-exec (F_DUPFD):
            # inherited through exec, as a supervisor's descriptor would be.
            held = fcntl.fcntl(secret.fileno(), fcntl.F_DUPFD, 40)
            self.addCleanup(os.close, held)
            shm_r, shm_w = os.pipe()  # stands for the shared memory: only its number matters here
            self.addCleanup(os.close, shm_r)
            self.addCleanup(os.close, shm_w)
            os.set_inheritable(shm_r, True)
            w = self.start_ready("sample_security", "--dump-fd", str(shm_r))
            fds, read = w.call("descriptors", held)[2]
        self.assertNotEqual(read, b"not for the worker")
        self.assertNotIn(secret.name, fds.values())
        self.assertEqual(fds.get(shm_r), "pipe:[%d]" % os.fstat(shm_r).st_ino, "the --dump-fd Go gives is kept")
        self.assertEqual(fds[0], os.devnull)


class LimitsTest(WorkerTestBase):
    def test_limits_are_set_soft_and_hard(self) -> None:
        w = self.start_ready("sample_security", "--limit-as", str(4 << 30), "--limit-cpu", "600", "--limit-nofile", "64")
        limits = w.call("limits")[2]
        self.assertEqual(limits["RLIMIT_AS"], [4 << 30, 4 << 30])
        self.assertEqual(limits["RLIMIT_CPU"], [600, 601])  # SIGKILL a second after SIGXCPU
        self.assertEqual(limits["RLIMIT_NOFILE"], [64, 64])

    def test_open_files(self) -> None:
        w = self.start_ready("sample_security", "--limit-nofile", "64")
        reply = w.call("open_files", 100, call_id=3)
        self.assertError(reply, 3, "exception", "OSError")
        self.assertIn("Too many open files", reply[4])
        self.assertEqual(w.call("open_files", 10, call_id=4), [RESULT, 4, 10])

    def test_memory_error_names_the_address_space_limit(self) -> None:
        w = self.start_ready("sample_security", "--limit-as", str(1 << 30))
        reply = w.call("allocate", 2 << 30, call_id=3)
        self.assertError(reply, 3, "exception", "MemoryError")
        self.assertRegex(
            reply[6],
            r"^the worker ran out of address space: Config.Limits.AddressSpace is 1073741824 bytes \(1024 MiB\),"
            r" of which it had \d+ MiB mapped: raise Config.Limits.AddressSpace$",
        )
        self.assertEqual(w.call("allocate", 1 << 20, call_id=4), [RESULT, 4, 1 << 20])

    def test_parse_args(self) -> None:
        options = worker.parse_args(["--module", "m", "--limit-as", "100", "--limit-cpu", "2", "--limit-nofile", "9"])
        self.assertEqual(options.limits, {"RLIMIT_AS": 100, "RLIMIT_CPU": 2, "RLIMIT_NOFILE": 9})
        self.assertEqual(worker.parse_args(["--module", "m"]).limits, {})
        with self.assertRaisesRegex(ValueError, "--limit-as '-1' is not a non-negative integer"):
            worker.parse_args(["--module", "m", "--limit-as", "-1"])


class AddressSpaceHintTest(unittest.TestCase):
    """errors.address_space_hint, in this process: which exceptions it
    explains under Config.Limits.AddressSpace, and what it says."""

    def setUp(self) -> None:
        saved = errors._address_space, errors._address_space_text
        self.addCleanup(lambda: setattr(errors, "_address_space", saved[0]))
        self.addCleanup(lambda: setattr(errors, "_address_space_text", saved[1]))

    def test_without_the_limit(self) -> None:
        errors._address_space, errors._address_space_text = (0, 0), ""
        self.assertEqual(errors.address_space_hint(MemoryError()), "")

    def test_what_it_explains(self) -> None:
        errors.limit_address_space(8 << 20, 8 << 20)
        start = "the worker ran out of address space: Config.Limits.AddressSpace is 8388608 bytes (8 MiB), of which it had "
        for exc in (
            MemoryError(),
            ImportError("/usr/lib/python3.11/lib-dynload/_decimal.so: failed to map segment from shared object"),
            OSError(12, "Cannot allocate memory"),
        ):
            hint = errors.address_space_hint(exc)
            self.assertTrue(hint.startswith(start), (exc, hint))
            self.assertTrue(hint.endswith(" MiB mapped: raise Config.Limits.AddressSpace"), (exc, hint))
        for exc in (
            ImportError("libfoo.so: cannot allocate memory in static TLS block"),
            ImportError("No module named 'numpy'"),
            ValueError("failed to map segment"),
            RuntimeError("can't start new thread"),
        ):
            self.assertEqual(errors.address_space_hint(exc), "", exc)

    def test_a_thread_whose_stack_does_not_fit(self) -> None:
        import _thread

        errors.limit_address_space(8 << 20, 8 << 20)
        before = _thread.stack_size(64 << 20)
        self.addCleanup(_thread.stack_size, before)
        hint = errors.address_space_hint(RuntimeError("can't start new thread"), thread=True)
        self.assertRegex(hint, r", of which it had (\d+) MiB mapped, and the thread's stack needs 64 MiB more: raise Config.Limits.AddressSpace above \d+ MiB$")
        self.assertEqual(_thread.stack_size(), 64 << 20, "the stack size read is set back")
        _thread.stack_size(64 << 20)
        # Asyncio's import or the loop's making: as any MemoryError.
        self.assertTrue(errors.address_space_hint(MemoryError(), thread=True).endswith("mapped: raise Config.Limits.AddressSpace"))

    def test_a_thread_refused_with_room_for_its_stack(self) -> None:
        import _thread

        errors.limit_address_space(1 << 50, 1 << 50)  # a limit on processes refused it: weather, not the limit
        self.addCleanup(_thread.stack_size, _thread.stack_size(8 << 20))
        self.assertEqual(errors.address_space_hint(RuntimeError("can't start new thread"), thread=True), "")

    def test_a_hard_limit_passed_on(self) -> None:
        errors.limit_address_space(1 << 30, 512 << 20)
        self.assertIn(
            "is 1073741824 bytes (1024 MiB), lowered to 536870912 bytes by the RLIMIT_AS hard limit the Go process passes on (ulimit -v)",
            errors.address_space_hint(MemoryError()),
        )


class TracebackFallbackTest(unittest.TestCase):
    def test_a_broken_traceback_module_gives_a_plain_traceback(self) -> None:
        class Broken:
            @staticmethod
            def format_exception(*args: Any) -> List[str]:
                raise AttributeError("no format_exception")

        saved = errors._traceback
        errors._traceback = Broken
        try:
            try:
                raise KeyError("k")
            except KeyError as exc:
                text = worker.format_traceback(exc)
        finally:
            errors._traceback = saved
        self.assertTrue(text.startswith("Traceback (most recent call last):\n"), text)
        self.assertIn("in test_a_broken_traceback_module_gives_a_plain_traceback\n", text)
        self.assertTrue(text.endswith("KeyError: 'k'\n"), text)


if __name__ == "__main__":
    unittest.main()


class RuntimeStartOutOfMemoryTest(WorkerTestBase):
    """The runtime's own start (its shared memory, its stack dumps, its read
    buffer), after the import, runs out of memory: the HELLO says so
    ("start_failed"), with the hint that names Config.Limits.AddressSpace,
    and the worker exits. Before, the MemoryError went uncaught before the
    HELLO (the worker exited with status 1 and only its stderr said why),
    or, for the read buffer, made after the HELLO, at the first call."""

    def test_hello_names_the_limit(self) -> None:
        worker = self.start("sample_start_memory", "--limit-as", str(1 << 40))
        hello = worker.read()
        error = hello[5]
        self.assertEqual(error[:2], ["start_failed", "MemoryError"], error)
        self.assertIn("Config.Limits.AddressSpace is 1099511627776 bytes", error[4])
        status, _, _ = worker.close()
        self.assertEqual(status, 1)


class LazyRuntimeImportTest(WorkerTestBase):
    """The runtime imports its call context module at the first call with
    a context (a deadline, metadata); when that import fails, as it does
    out of memory under Config.Limits.AddressSpace, the call fails with
    the ImportError and the worker serves on. Before, the ImportError left
    the serve loop and the worker exited."""

    def test_a_call_with_a_context(self) -> None:
        worker = self.start_ready("sample_no_callctx")
        for call_id, message in ((1, [2, 1, "echo", ["x"], None, {"r": 30.0}]),
                                 (2, [2, 2, "echo", ["x"], {}, {"r": 30.0}])):  # fmt: skip
            worker.send(frame(purecodec.packb(message)))
            reply = worker.read()
            self.assertEqual(reply[:3], [ERROR, call_id, "exception"], reply)
            self.assertIn(reply[3], ("ImportError", "ModuleNotFoundError"), reply)
        self.assertEqual(worker.call("echo", "still here", call_id=3), [RESULT, 3, "still here"])
