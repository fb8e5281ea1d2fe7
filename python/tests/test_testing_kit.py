"""The test kit (pypool_runtime/testing.py): pypool importable outside a
worker, fake callbacks for call_go, and the encoding checks of a real call."""

import asyncio
import os
import subprocess
import sys
import unittest

import pypool_runtime
from pypool_runtime import callback, testing

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ImportTest(unittest.TestCase):
    def test_pypool_imports_outside_a_worker(self):
        # Before the kit: ModuleNotFoundError: No module named 'pypool'.
        code = "import pypool, pypool_runtime, pypool.testing as t; from pypool import call_go, testing; print(pypool is pypool_runtime, t is testing)"
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd="/", capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "True True", out.stderr)

    def test_kit_registers_pypool(self):
        self.assertIs(sys.modules["pypool"], pypool_runtime)
        self.assertIs(sys.modules["pypool.testing"], testing)

    def test_call_go_without_fakes_still_refuses(self):
        with self.assertRaisesRegex(RuntimeError, "outside a call from Go"):
            pypool_runtime.call_go("anything")


class FakeCallbacksTest(unittest.TestCase):
    def test_routes_and_records(self):
        with testing.fake_callbacks({"pair": lambda a, b: (b, a)}) as go:
            self.assertEqual(pypool_runtime.call_go("pair", 1, "x"), ["x", 1])  # a tuple crosses as a list
        self.assertEqual(go.calls, [("pair", [1, "x"])])
        self.assertIsNone(callback._fake)

    def test_unknown_name_is_not_found(self):
        with testing.fake_callbacks({"b": len, "a": len}):
            with self.assertRaises(pypool_runtime.GoError) as caught:
                pypool_runtime.call_go("c")
        self.assertEqual(caught.exception.code, "not_found")
        self.assertEqual(str(caught.exception), 'no Go callback named "c"; registered (Config.Callbacks): a, b')
        with testing.fake_callbacks({}):
            with self.assertRaisesRegex(pypool_runtime.GoError, r"registered \(Config.Callbacks\): \(none\)$"):
                pypool_runtime.call_go("c")

    def test_go_error_from_fake(self):
        def fails():
            raise pypool_runtime.GoError("boom", go_type="*errors.errorString")

        with testing.fake_callbacks({"fails": fails}):
            with self.assertRaises(pypool_runtime.GoError) as caught:
                pypool_runtime.call_go("fails")
        self.assertEqual((caught.exception.code, str(caught.exception)), ("error", "boom (Go *errors.errorString)"))

    def test_argument_that_cannot_cross(self):
        with testing.fake_callbacks({"f": len}) as go:
            with self.assertRaisesRegex(TypeError, r"call_go\('f'\): an argument cannot be encoded for Go: args\[0\]: set"):
                pypool_runtime.call_go("f", {1})
        self.assertEqual(go.calls, [])

    def test_fake_result_that_cannot_cross(self):
        with testing.fake_callbacks({"f": lambda: {1}}):
            with self.assertRaisesRegex(TypeError, "the fake callback 'f' returned a value Go could not send: result: set"):
                pypool_runtime.call_go("f")

    def test_decorates_an_async_test(self):
        # The wrapper returned the coroutine before it ran, the fakes gone.
        @testing.fake_callbacks({"double": lambda x: 2 * x})
        async def check():
            await asyncio.sleep(0)
            return pypool_runtime.call_go("double", 21)

        self.assertEqual(asyncio.run(check()), 42)
        self.assertIsNone(callback._fake)

    def test_nested_and_decorator(self):
        outer = testing.fake_callbacks({"n": lambda: "outer"})

        @outer
        def run():
            with testing.fake_callbacks({"n": lambda: "inner"}):
                self.assertEqual(pypool_runtime.call_go("n"), "inner")
            return pypool_runtime.call_go("n")

        self.assertEqual(run(), "outer")
        self.assertIsNone(callback._fake)


class CallTest(unittest.TestCase):
    def tearDown(self):
        pypool_runtime.set_default(None)

    def test_result_round_trip(self):
        self.assertEqual(testing.call(lambda x, y=0: (x, y), 1, y=2), [1, 2])
        self.assertEqual(testing.check_crosses({"a": (b"x",)}), {"a": [b"x"]})

    def test_set_cannot_cross(self):
        def make():
            return {"items": [{"score": {1}}]}

        with self.assertRaises(testing.NotEncodable) as caught:
            testing.call(make)
        exc = caught.exception
        self.assertIsInstance(exc, TypeError)
        self.assertEqual(exc.code, "result_not_encodable")
        self.assertEqual(exc.type, "TypeError")
        self.assertEqual(exc.message, "cannot encode the result of make() for Go: result['items'][0]['score']: set (can not serialize 'set' object)")
        self.assertTrue(exc.hint.startswith("convert it to sorted(value) or list(value) before returning it"), exc.hint)
        self.assertEqual(str(exc), exc.message + "; " + exc.hint)

    def test_generator_hint(self):
        def gen():
            yield 1

        with self.assertRaises(testing.NotEncodable) as caught:
            testing.call(gen)
        self.assertEqual(caught.exception.hint, "it returned an iterator: iterate it from Go with Pool.Stream")

    def test_async_function_is_awaited(self):
        async def double(x):
            return x * 2

        self.assertEqual(testing.call(double, 21), 42)

    def test_extension_and_default_hooks(self):
        class Point:
            def __init__(self, x):
                self.x = x

        with self.assertRaises(testing.NotEncodable):
            testing.check_crosses(Point(1))
        pypool_runtime.register_ext(Point, 100, encode=lambda p: bytes([p.x]), decode=lambda b: Point(b[0]))
        try:
            self.assertEqual(testing.check_crosses([Point(3)])[0].x, 3)
        finally:
            pypool_runtime.ext.unregister_ext(100)
        pypool_runtime.set_default(lambda obj: obj.x)
        self.assertEqual(testing.check_crosses(Point(4)), 4)

    def test_argument_that_cannot_cross(self):
        with self.assertRaisesRegex(TypeError, r"call\(len\): an argument cannot cross between Go and Python: arguments\[0\]\[0\]: set"):
            testing.call(len, {1})


if __name__ == "__main__":
    unittest.main()
