"""introspect.py: the modules' public functions described for Go
(Pool.Functions), on its own and through a worker (the runtime's call
_pypool_functions): imported at the first call only, with inspect and
typing from the interpreter's own entries, never a user's path."""

import os
import shutil
import sys
import tempfile
import unittest
from typing import Any, Dict, List

from pypool_runtime import introspect
from test_worker import RESULT, TESTS_DIR, WorkerTestBase

HINTED_DIR = os.path.join(os.path.dirname(os.path.dirname(TESTS_DIR)), "testdata", "pypoolgen")


def hinted() -> Any:
    sys.path.insert(0, HINTED_DIR)
    try:
        import pypool_hinted
    finally:
        sys.path.remove(HINTED_DIR)
    return pypool_hinted


def by_name(functions: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {f["name"]: f for f in functions}


class DescribeTest(unittest.TestCase):
    """describe() over testdata/pypoolgen/pypool_hinted.py, the module that
    uses every hint pypoolgen supports."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.functions = by_name(introspect.describe([hinted()]))

    def param(self, function: str, name: str) -> Dict[str, Any]:
        return next(p for p in self.functions[function]["params"] if p["name"] == name)

    def test_plain(self) -> None:
        f = self.functions["duplicate_text"]
        self.assertEqual(f["params"], [{"name": "text", "kind": "positional_or_keyword", "has_default": False, "hint": {"kind": "str"}}])
        self.assertEqual(f["result"], {"kind": "str"})
        self.assertEqual(f["doc"], "Return text twice.")
        self.assertFalse(f["async"] or f["generator"] or f["class"])
        self.assertNotIn("_private", self.functions)

    def test_kinds_and_defaults(self) -> None:
        self.assertEqual(self.param("scale", "factor")["default"], "2.0")
        self.assertEqual(self.param("scale", "offset")["kind"], "keyword_only")
        self.assertEqual(self.param("variadic", "rest")["kind"], "var_positional")
        self.assertEqual(self.param("variadic", "options")["kind"], "var_keyword")
        self.assertEqual(self.param("positional", "b")["kind"], "positional_only")
        self.assertIsNone(self.param("untyped", "x")["hint"])
        self.assertIsNone(self.functions["untyped"]["result"])

    def test_generics(self) -> None:
        self.assertEqual(self.functions["counts"]["result"], {"kind": "dict", "args": [{"kind": "str"}, {"kind": "int"}]})
        self.assertEqual(self.functions["many"]["result"], {"kind": "tuple", "args": [{"kind": "int"}, {"kind": "ellipsis"}]})
        self.assertEqual(self.functions["maybe"]["result"], {"kind": "optional", "args": [{"kind": "str"}]})
        self.assertEqual(self.functions["new_style"]["result"]["kind"], "optional", "X | None")
        self.assertEqual(self.functions["either"]["result"]["kind"], "union")
        self.assertEqual(self.functions["mode"]["result"], {"kind": "literal", "values": [1, 2]})
        self.assertEqual(self.functions["when"]["result"], {"kind": "datetime"})
        self.assertEqual(self.functions["checksum"]["result"], {"kind": "bytes"})

    def test_streams_and_async(self) -> None:
        self.assertEqual(self.functions["count_up"]["result"], {"kind": "iterator", "args": [{"kind": "int"}]})
        self.assertTrue(self.functions["words"]["generator"])
        self.assertTrue(self.functions["slow_double"]["async"])
        self.assertFalse(self.functions["slow_double"]["generator"])
        ticks = self.functions["ticks"]
        self.assertTrue(ticks["async"] and ticks["generator"])
        self.assertEqual(ticks["result"], {"kind": "iterator", "args": [{"kind": "int"}]})

    def test_classes(self) -> None:
        item = self.functions["make_item"]["result"]
        self.assertEqual((item["kind"], item["name"], item["module"]), ("typeddict", "Item", "pypool_hinted"))
        self.assertEqual([f["name"] for f in item["fields"]], ["sku", "count", "tags"])
        self.assertEqual(item["fields"][2]["hint"], {"kind": "list", "args": [{"kind": "str"}]})
        self.assertEqual(self.functions["origin"]["result"]["kind"], "namedtuple")
        box = self.param("box_weight", "box")["hint"]
        self.assertEqual(box["kind"], "dataclass")
        self.assertEqual(box["fields"][2]["hint"]["kind"], "namedtuple")
        opts = self.functions["configure"]["result"]
        self.assertEqual([f["required"] for f in opts["fields"]], [False, False], "total=False")
        self.assertTrue(self.functions["Item"]["class"])

    def test_recursive_class(self) -> None:
        node = self.functions["tree"]["result"]
        child = node["fields"][1]["hint"]["args"][0]
        self.assertEqual(child, {"kind": "typeddict", "name": "Node", "module": "pypool_hinted"}, "by name only")

    def test_unknown_and_unresolved(self) -> None:
        self.assertEqual(self.param("odd", "s")["hint"], {"kind": "unknown", "repr": "set[int]"})
        unresolved = self.functions["unresolved"]
        self.assertEqual(self.param("unresolved", "x")["hint"], {"kind": "unknown", "repr": "NoSuchType"})
        self.assertEqual(unresolved["result"], {"kind": "int"}, "the others still resolve")
        self.assertIn("NoSuchType", unresolved["error"])
        self.assertEqual(self.param("matrix", "m")["hint"], {"kind": "ndarray"}, "with or without numpy")

    def test_several_modules(self) -> None:
        import sample_security

        functions = by_name(introspect.describe([hinted(), sample_security]))
        self.assertIn("add", functions)
        self.assertEqual(functions["sample_security.echo"]["module"], "sample_security")
        self.assertNotIn("echo", functions)

    def test_everything_crosses(self) -> None:
        from pypool_runtime import purecodec

        functions = introspect.describe([hinted()])
        self.assertEqual(purecodec.unpackb(purecodec.packb(functions)), functions)


def imported(path: str) -> List[str]:
    return sorted(name[len("imported-") :] for name in os.listdir(path) if name.startswith("imported-"))


class WorkerFunctionsTest(WorkerTestBase):
    """Through a worker: inspect, typing and introspect are not imported at
    its start; the first _pypool_functions call imports them from the
    interpreter's own entries, not from the user's path, where an
    inspect.py and a typing.py wait."""

    # typing is not listed: some interpreters' start imports it already
    # (pyenv's 3.11.7 does, Debian's 3.11.2 does not).
    LAZY = ["inspect", "pypool_runtime.introspect"]

    def setUp(self) -> None:
        self.user = tempfile.mkdtemp(prefix="pypool-user-")
        self.addCleanup(shutil.rmtree, self.user)
        for name in ("inspect", "typing"):
            with open(os.path.join(self.user, name + ".py"), "w") as f:
                f.write("import os\nopen(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'imported-' + __name__), 'w').close()\n")

    def test_functions(self) -> None:
        w = self.start_ready("sample_security", paths=[self.user, TESTS_DIR])
        self.assertEqual(w.call("modules_loaded", self.LAZY, call_id=1), [RESULT, 1, []])
        reply = w.call("_pypool_functions", call_id=2)
        self.assertEqual(reply[:2], [RESULT, 2], reply)
        echo = by_name(reply[2])["echo"]
        self.assertEqual(echo["params"], [{"name": "value", "kind": "positional_or_keyword", "has_default": False, "hint": None}])
        self.assertTrue(by_name(reply[2])["async_echo"]["async"])
        self.assertEqual(w.call("modules_loaded", self.LAZY + ["typing"], call_id=3), [RESULT, 3, self.LAZY + ["typing"]])
        for name in ("inspect", "typing"):
            self.assertNotIn(self.user, w.call("loaded_from", name, call_id=4)[2])
        status, stderr, _ = w.close()
        self.assertEqual((status, stderr), (0, ""))
        self.assertEqual(imported(self.user), [])


if __name__ == "__main__":
    unittest.main()
