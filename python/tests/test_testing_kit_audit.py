"""Hostile cases of the test kit (pypool_runtime/testing.py): what a real
worker or Go does, and what the kit must do alike (docs/testing-python.md)."""

import asyncio
import threading
import unittest

import pypool_runtime
from pypool_runtime import callback, testing

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class CrossingTest(unittest.TestCase):
    def test_tuple_key_says_what_go_says(self):
        # Before: a bare TypeError "unhashable type: 'list'" from the decoder.
        # Go's Call: "result not decodable: result: a Python dict key [1 2]
        # (list) can not be a key of a Go map (Call gives map[any]any) ...".
        with self.assertRaises(TypeError) as caught:
            testing.call(lambda: {(1, 2): "pair"})
        self.assertNotIsInstance(caught.exception, testing.NotEncodable)  # it encodes: CallAs can decode it
        self.assertIn("can not be a key of a Go map (Call gives map[any]any)", str(caught.exception))
        with self.assertRaisesRegex(TypeError, r"call\(<lambda>\): an argument cannot cross .* a dict key that is a tuple"):
            testing.call(lambda m: m, {(1,): 1})


class TooLargeTest(unittest.TestCase):
    def tearDown(self):
        testing.MAX_MESSAGE_SIZE = 64 << 20

    def test_result_beyond_the_limit(self):
        # A worker: message_too_large. Before: the kit returned the value.
        testing.MAX_MESSAGE_SIZE = 1000

        def big():
            return ["y" * 2000]

        with self.assertRaises(testing.MessageTooLarge) as caught:
            testing.call(big)
        exc = caught.exception
        self.assertIsInstance(exc, ValueError)
        self.assertEqual((exc.code, exc.type), ("message_too_large", "ValueError"))
        self.assertEqual(exc.message, "the result of big() encodes to 2007 bytes, the limit is 1000 (Config.MaxMessageSize)")
        self.assertTrue(exc.hint.startswith("raise Config.MaxMessageSize"), exc.hint)
        testing.MAX_MESSAGE_SIZE = 0
        self.assertEqual(len(testing.call(big)[0]), 2000)

    def test_callback_arguments_beyond_the_limit(self):
        testing.MAX_MESSAGE_SIZE = 1000
        with testing.fake_callbacks({"f": len}) as go:
            with self.assertRaisesRegex(ValueError, r"call_go\('f'\): the arguments encode to 2009 bytes, the limit is 1000 \(Config.MaxMessageSize"):
                pypool_runtime.call_go("f", "y" * 2000)
        self.assertEqual(go.calls, [])


class ImportClashTest(unittest.TestCase):
    def test_another_pypool_imported_first(self):
        # Before: the kit imported, and the module under test's
        # "from pypool import call_go" failed later, or pypool.call_go was
        # someone else's.
        import os
        import subprocess
        import sys
        import tempfile

        python_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with tempfile.TemporaryDirectory() as other:
            with open(os.path.join(other, "pypool.py"), "w") as f:
                f.write("NAME = 'another'\n")
            env = dict(os.environ, PYTHONPATH=other + os.pathsep + python_dir)
            code = "import pypool\nfrom pypool_runtime import testing"
            out = subprocess.run([sys.executable, "-c", code], env=env, cwd=other, capture_output=True, text=True)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("ImportError: pypool.testing: the module named pypool is " + repr(os.path.join(other, "pypool.py")), out.stderr)


class KeywordTest(unittest.TestCase):
    def test_keyword_named_function(self):
        # Before: "call() got multiple values for argument 'function'".
        self.assertEqual(testing.call(lambda function: function, function=1), 1)
        self.assertEqual(testing.check_crosses({"name": 1}), {"name": 1})


class DecodeHookTest(unittest.TestCase):
    def test_decode_hook_type_error_is_not_a_tuple_key(self):
        # A register_ext decode that raises TypeError was reported as a
        # tuple dict key. It propagates as it is.
        class Point:
            pass

        def decode(data):
            raise TypeError("decode bug")

        pypool_runtime.register_ext(Point, 101, encode=lambda p: b"p", decode=decode)
        try:
            with self.assertRaisesRegex(TypeError, "^decode bug$"):
                testing.check_crosses({"p": Point()})
        finally:
            pypool_runtime.ext.unregister_ext(101)


class NestedCallTest(unittest.TestCase):
    def test_nested_call_has_its_own_name(self):
        # Before: ['outer', 'outer']: the inner call saw the outer call's context.
        def inner():
            return pypool_runtime.current_call().function

        def outer():
            return [pypool_runtime.current_call().function, testing.call(inner), pypool_runtime.current_call().function]

        self.assertEqual(testing.call(outer), ["outer", "inner", "outer"])

    def test_call_in_a_fake_callback(self):
        def inner():
            return pypool_runtime.current_call().function

        def outer():
            return pypool_runtime.call_go("cb")

        with testing.fake_callbacks({"cb": lambda: testing.call(inner)}):
            self.assertEqual(testing.call(outer), "inner")

    def test_call_context_values_still_win(self):
        with testing.call_context(function="set", metadata={"k": "v"}):
            self.assertEqual(testing.call(lambda: testing.call(lambda: pypool_runtime.current_call().function)), "set")


class FakeManagerTest(unittest.TestCase):
    def tearDown(self):
        callback._fake = None

    def test_same_instance_entered_twice(self):
        # Before: the inner exit restored the instance's own fakes, which stayed after both exits.
        fakes = testing.fake_callbacks({"a": lambda: 1})
        with fakes:
            with fakes:
                self.assertEqual(pypool_runtime.call_go("a"), 1)
            self.assertEqual(pypool_runtime.call_go("a"), 1)
        self.assertIsNone(callback._fake)
        with self.assertRaisesRegex(RuntimeError, "outside a call from Go"):
            pypool_runtime.call_go("a")

    def test_two_threads_each_their_fakes(self):
        # Before: one global: a thread saw the other's fakes, and exits out
        # of order left a manager's fakes active after it exited.
        entered = threading.Barrier(2)
        first_left = threading.Event()
        seen = {}

        def run(value):
            with testing.fake_callbacks({"v": lambda: value}):
                entered.wait()
                seen[value] = pypool_runtime.call_go("v")
                entered.wait()  # both asked before either leaves
                if value == 2:
                    first_left.wait()
                    seen["after"] = pypool_runtime.call_go("v")
            if value == 1:
                first_left.set()

        threads = [threading.Thread(target=run, args=(value,)) for value in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(seen, {1: 1, 2: 2, "after": 2})
        self.assertIsNone(callback._fake)

    def test_thread_of_the_call_is_refused(self):
        # A worker refuses call_go from a thread the call started:
        # "call_go('a') from a thread other than the worker's main thread".
        # Before: the kit's fake answered it, and the test passed.
        errors = []

        def work():
            def in_thread():
                try:
                    pypool_runtime.call_go("a")
                except RuntimeError as exc:
                    errors.append(str(exc))

            thread = threading.Thread(target=in_thread)
            thread.start()
            thread.join()
            return len(errors)

        with testing.fake_callbacks({"a": lambda: 1}):
            self.assertEqual(testing.call(work), 1)
        self.assertIn("call_go('a') from a thread other than the worker's main thread", errors[0])

    def test_call_in_a_thread_of_the_test_sees_the_fakes(self):
        # A test that runs calls in threads (as several workers would run
        # them): each call is one Go made, and may call back.
        out = []
        with testing.fake_callbacks({"a": lambda: 5}):
            thread = threading.Thread(target=lambda: out.append(testing.call(lambda: pypool_runtime.call_go("a"))))
            thread.start()
            thread.join()
        self.assertEqual(out, [5])

    def test_async_function_of_call_sees_the_fakes(self):
        async def work():
            await asyncio.sleep(0)
            return pypool_runtime.call_go("a")

        with testing.fake_callbacks({"a": lambda: 7}):
            self.assertEqual(testing.call(work), 7)

    def test_unknown_name_quoted_as_go(self):
        # Go's %q; before, bare quotes: 'no Go callback named "a"b\n"'.
        with testing.fake_callbacks({}):
            with self.assertRaises(pypool_runtime.GoError) as caught:
                pypool_runtime.call_go('a"b\n\u200b')
        self.assertEqual(caught.exception.message, 'no Go callback named "a\\"b\\n\\u200b"; registered (Config.Callbacks): (none)')

    def test_call_go_in_a_call_without_fakes(self):
        # Before: "call_go('x') outside a call from Go", in a call.
        with self.assertRaisesRegex(RuntimeError, r"call_go\('x'\) in testing.call with no testing.fake_callbacks active"):
            testing.call(lambda: pypool_runtime.call_go("x"))
        self.assertIsNone(callback._fake)
        with self.assertRaisesRegex(RuntimeError, "outside a call from Go"):
            pypool_runtime.call_go("x")

    def test_async_fake(self):
        # A Go function returns its value: an async def fake is a mistake of
        # the test. Before: the worker's hint (set_default, register_ext of
        # "coroutine") and a RuntimeWarning "coroutine 'fake' was never awaited".
        async def fake():
            return 1

        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with testing.fake_callbacks({"f": fake}):
                with self.assertRaises(TypeError) as caught:
                    pypool_runtime.call_go("f")
        self.assertEqual(
            str(caught.exception),
            "the fake callback 'f' returned a coroutine: a fake stands for a Go function, which returns its value; make it a plain def",
        )

    def test_fake_result_hint_is_not_the_workers(self):
        # set_default and register_ext encode Python's values for Go, not
        # what Go sends: a fake must return what a Go function could.
        with testing.fake_callbacks({"f": lambda: {1}}):
            with self.assertRaises(TypeError) as caught:
                pypool_runtime.call_go("f")
        self.assertEqual(
            str(caught.exception),
            "the fake callback 'f' returned a value Go could not send: result: set (can not serialize 'set' object);"
            " return what the Go function would: None, a bool, number, str, bytes, list, dict, an aware datetime"
            " or a value of a registered extension",
        )

    def test_names_are_str(self):
        # Config.Callbacks is a map[string]...: before, a non-str name was
        # taken, and an unknown name's GoError failed to be made
        # ("'<' not supported between instances of 'str' and 'int'").
        with self.assertRaisesRegex(TypeError, r"fake_callbacks: the names are str, as Config.Callbacks' keys; got 1"):
            testing.fake_callbacks({1: len, "a": len})

    def test_decorates_a_test_class(self):
        # Before: the class became a function (unittest found no tests in it).
        @testing.fake_callbacks({"a": lambda: 3})
        class Case:
            def test_one(self):
                return pypool_runtime.call_go("a")

            def helper(self):
                return callback._fake

        self.assertIsInstance(Case, type)
        self.assertEqual(Case().test_one(), 3)
        self.assertIsNone(Case().helper())

    def test_decorates_inherited_test_methods(self):
        # As unittest.mock.patch: a mixin's tests run under the manager too.
        class Mixin:
            def test_inherited(self):
                return pypool_runtime.call_go("a")

        @testing.fake_callbacks({"a": lambda: 4})
        class Case(Mixin):
            pass

        self.assertEqual(Case().test_inherited(), 4)
        with self.assertRaises(RuntimeError):
            Mixin().test_inherited()  # the base class is left as it was


class CallContextLimitsTest(unittest.TestCase):
    def test_invalid_traceparent_is_dropped_as_go_does(self):
        # Go's WithTraceContext ignores a traceparent not of the W3C form
        # (and its tracestate): Python gets "". Before: the kit passed it on.
        with testing.call_context(traceparent="hello", tracestate="a=b") as cc:
            self.assertEqual((cc.traceparent, cc.tracestate, pypool_runtime.trace_context()), ("", "", {}))
        with testing.call_context(traceparent=TRACEPARENT.upper()) as cc:
            self.assertEqual(cc.traceparent, "")
        with testing.call_context(traceparent=TRACEPARENT, tracestate="bad\x01") as cc:
            self.assertEqual((cc.traceparent, cc.tracestate), (TRACEPARENT, ""))
        with testing.call_context(traceparent=TRACEPARENT, tracestate="a=b") as cc:
            self.assertEqual(pypool_runtime.trace_context(), {"traceparent": TRACEPARENT, "tracestate": "a=b"})

    def test_metadata_limits_as_go(self):
        # Go: a *MetadataError, the call is not made. Before: accepted.
        for metadata, limit in (
            ({str(i): "" for i in range(65)}, "MaxMetadataEntries"),
            ({"k" * 129: "v"}, "MaxMetadataKeySize"),
            ({"k": "v" * (8 << 10)}, "MaxMetadataSize"),
            ({"k": "\udc80"}, "UTF-8"),
        ):
            with self.assertRaisesRegex(ValueError, limit):
                testing.call_context(metadata=metadata)
        testing.call_context(metadata={str(i): "" for i in range(64)})
        testing.call_context(metadata={"k" * 128: "v" * (8192 - 128)})

    def test_metadata_in_go_order(self):
        # Go sends the metadata sorted by key: a worker's
        # current_call().metadata iterates in that order. Before: the
        # test's order.
        with testing.call_context(metadata={"b": "1", "a": "2", "é": "3", "Z": "4"}) as cc:
            self.assertEqual(list(cc.metadata), ["Z", "a", "b", "é"])
            self.assertEqual(list(pypool_runtime.current_call().metadata.items())[0], ("Z", "4"))

    def test_function_is_a_str(self):
        with self.assertRaisesRegex(TypeError, "function"):
            testing.call_context(function=5)

    def test_remaining_must_be_a_number(self):
        with self.assertRaisesRegex(TypeError, "remaining"):
            testing.call_context(remaining="2")


class RunningLoopTest(unittest.TestCase):
    def test_call_of_an_async_function_in_a_running_loop(self):
        # Before: asyncio.run's "cannot be called from a running event loop"
        # and RuntimeWarnings of two coroutines never awaited.
        async def work():
            return 1

        async def test():
            with self.assertRaisesRegex(RuntimeError, r"call\(work\).*running event loop.*await"):
                testing.call(work)

        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            asyncio.run(test())


async def _fetch(x):
    await asyncio.sleep(0)
    return [pypool_runtime.call_go("get", x), pypool_runtime.current_call().metadata.get("t")]


@testing.fake_callbacks({"get": lambda x: x * 2})
class IsolatedAsyncTest(unittest.IsolatedAsyncioTestCase):
    """An async test framework: the fakes (a class decorator) and a
    call_context entered in asyncSetUp reach the async tests."""

    async def asyncSetUp(self):
        context = testing.call_context(metadata={"t": "acme"})
        context.__enter__()
        self.addCleanup(context.__exit__, None, None, None)

    async def test_await_and_check(self):
        self.assertEqual(testing.check_crosses(await _fetch(2)), [4, "acme"])

    async def test_call_says_to_await(self):
        with self.assertRaisesRegex(RuntimeError, r"call\(_fetch\).*await _fetch"):
            testing.call(_fetch, 1)


if __name__ == "__main__":
    unittest.main()
