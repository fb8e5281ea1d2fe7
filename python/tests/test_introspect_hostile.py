"""introspect.py on hostile modules (cmd/pypoolgen's audit): whatever a
module's functions hold, the description crosses to Go (one function that
cannot be described does not take Pool.Functions down for the others), and
it is the same from one run of the interpreter to the next (-check compares
the bindings written on two machines)."""

import os
import subprocess
import sys
import tempfile
import types
import unittest
from typing import Any, Dict, List, Literal

from pypool_runtime import introspect, purecodec

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_of(**functions: Any) -> types.ModuleType:
    module = types.ModuleType("hostile_mod")
    for name, function in functions.items():
        setattr(module, name, function)
    module.__all__ = list(functions)
    return module


def by_name(functions: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {f["name"]: f for f in functions}


class CrossesTest(unittest.TestCase):
    def test_values_msgpack_cannot_carry(self) -> None:
        def big(x: Literal[2**70]) -> Literal[2**63]:  # beyond Go's int64
            return 0

        def surrogate(x: Literal["\ud800"]) -> int:
            return 0

        def doc(x: int) -> int:
            return 0

        doc.__doc__ = "a lone \ud800 surrogate"

        def fine(x: Literal[-(2**63), 2**63 - 1]) -> int:
            return 0

        functions = introspect.describe([module_of(big=big, surrogate=surrogate, doc=doc, fine=fine)])
        purecodec.packb(functions)  # raised: Pool.Functions failed for every function
        described = by_name(functions)
        self.assertEqual(described["big"]["params"][0]["hint"]["kind"], "unknown")
        self.assertEqual(described["big"]["result"]["kind"], "unknown")
        self.assertEqual(described["surrogate"]["params"][0]["hint"]["kind"], "unknown")
        self.assertIn("\\ud800", described["doc"]["doc"])
        self.assertEqual(described["fine"]["params"][0]["hint"], {"kind": "literal", "values": [-(2**63), 2**63 - 1]})

    def test_name_go_cannot_call(self) -> None:
        def f(x: int) -> int:
            return x

        functions = introspect.describe([module_of(**{"\ud800": f, "ok": f})])
        purecodec.packb(functions)
        self.assertEqual([d["name"] for d in functions], ["ok"])


DETERMINISM_MODULE = """
_MISSING = object()
class _Sentinel:
    pass
def get(key, default=_MISSING, s=_Sentinel(), tags=frozenset({"alpha", "beta", "gamma", "delta"}),
        nested=[{"x", "y", "z"}, set()], cb=lambda x: x, t=("one",), d={"k": frozenset()}):
    return key
"""

NAMES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]

DESCRIBE = "import sys; sys.path[:0] = sys.argv[1:3]; import det_mod; from pypool_runtime import introspect; print(introspect.describe([det_mod]))"


class DeterminismTest(unittest.TestCase):
    def test_all_a_set(self) -> None:
        """An __all__ that is a set lists the functions in an order of
        PYTHONHASHSEED's: they are described in the order of their names."""
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "det_mod.py"), "w") as f:
                f.write("__all__ = {%s}\n" % ", ".join(repr(n) for n in NAMES))
                for name in NAMES:
                    f.write("def %s(): pass\n" % name)
            orders = set()
            for seed in ("1", "2", "3", "4"):
                env = dict(os.environ, PYTHONHASHSEED=seed)
                run = subprocess.run([sys.executable, "-c", DESCRIBE, tmp, PYTHON_DIR], env=env, capture_output=True, text=True, check=True)
                orders.add(tuple(d["name"] for d in eval(run.stdout)))
        self.assertEqual(orders, {tuple(sorted(NAMES))})

    def test_defaults_same_in_every_run(self) -> None:
        """A default's repr holds no address (a sentinel object(), a lambda)
        and no set order (which PYTHONHASHSEED changes): -check would fail
        on every run."""
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "det_mod.py"), "w") as f:
                f.write(DETERMINISM_MODULE)
            outputs = set()
            for seed in ("1", "2", "3"):
                env = dict(os.environ, PYTHONHASHSEED=seed)
                run = subprocess.run([sys.executable, "-c", DESCRIBE, tmp, PYTHON_DIR], env=env, capture_output=True, text=True, check=True)
                outputs.add(run.stdout)
        self.assertEqual(len(outputs), 1, "\n".join(sorted(outputs)))
        defaults = {p["name"]: p["default"] for p in eval(outputs.pop())[0]["params"] if p["has_default"]}
        self.assertEqual(defaults["default"], "<object object>")
        self.assertEqual(defaults["tags"], "frozenset({'alpha', 'beta', 'delta', 'gamma'})")
        self.assertEqual(defaults["nested"], "[{'x', 'y', 'z'}, set()]")
        self.assertEqual(defaults["t"], "('one',)")
        self.assertEqual(defaults["d"], "{'k': frozenset()}")


class _Weird:
    """An annotation that raises at every look: its attributes, repr, ==."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no attribute for you: " + name)

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")

    def __eq__(self, other: Any) -> bool:
        raise RuntimeError("no eq")

    __hash__ = None  # type: ignore[assignment]


class HintRaisesTest(unittest.TestCase):
    def test_hint_that_raises(self) -> None:
        """A hint that raises when looked at is that parameter's unknown
        hint, not the whole function's failure (pypoolgen refuses a
        function it cannot know the parameters of)."""

        def f(x: _Weird(), y: int) -> _Weird():  # type: ignore[valid-type]
            return y

        described = introspect.describe([module_of(f=f)])
        purecodec.packb(described)
        f_ = described[0]
        self.assertEqual([p["name"] for p in f_["params"]], ["x", "y"])
        self.assertEqual(f_["params"][0]["hint"]["kind"], "unknown")
        self.assertEqual(f_["params"][1]["hint"], {"kind": "int"})
        self.assertEqual(f_["result"]["kind"], "unknown")
        self.assertIn("no attribute for you", f_["error"])
        self.assertFalse(f_["error"].startswith(("no signature", "not described")), f_["error"])


STRING_HINTS_MODULE = """
from __future__ import annotations
import functools
from typing import Optional

def _base(a: int, b: Optional[str], c: float = 1.0) -> list[int]:
    return [a]

partial = functools.partial(_base, 1)
__all__ = ["partial", "instance"]

class _Callable:
    def __call__(self, x: float) -> dict[str, int]:
        return {}

instance = _Callable()
"""


class StringHintsTest(unittest.TestCase):
    def test_partial_and_callable_instance(self) -> None:
        """Under `from __future__ import annotations` every hint is a string:
        those of a functools.partial and of a callable object resolve in
        their function's module, as a def's do (they read "int: no Go
        form")."""
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "strhints_mod.py"), "w") as f:
                f.write(STRING_HINTS_MODULE)
            sys.path.insert(0, tmp)
            try:
                import strhints_mod
            finally:
                sys.path.remove(tmp)
        described = by_name(introspect.describe([strhints_mod]))
        partial = described["partial"]
        self.assertEqual([p["hint"] for p in partial["params"]], [{"kind": "optional", "args": [{"kind": "str"}]}, {"kind": "float"}])
        self.assertEqual(partial["result"], {"kind": "list", "args": [{"kind": "int"}]})
        instance = described["instance"]
        self.assertEqual(instance["params"][0]["hint"], {"kind": "float"})
        self.assertEqual(instance["result"], {"kind": "dict", "args": [{"kind": "str"}, {"kind": "int"}]})


class ManyHintsTest(unittest.TestCase):
    def test_every_kind_of_hint_crosses(self) -> None:
        """Hints of every sort Python allows as annotations (ParamSpecs,
        enums, generics of a user's class, NewTypes, Unpack, forward
        references that do not resolve, plain values): each function is
        described with its parameters, and the whole crosses."""
        import array
        import collections.abc
        import decimal
        import enum
        import typing

        T = typing.TypeVar("T")
        P = typing.ParamSpec("P")

        class Color(enum.Enum):
            RED = 1

        class Gen(typing.Generic[T]):
            pass

        class TD(typing.TypedDict):
            a: "NotDefinedAnywhere"  # type: ignore[name-defined]  # noqa: F821

        hints = [
            typing.Callable[P, int], typing.Type[int], type[int], typing.Annotated[List[int], "meta"], Color, Gen[int],
            typing.NewType("NT", List[int]), typing.Literal[Color.RED], typing.Literal[b"\xff"], decimal.Decimal,
            array.array, typing.Tuple[()], typing.Union[int, typing.Union[str, None]], "list[", "1+", 42, ..., [int, str],
            {"a": int}, typing.Iterator, collections.abc.Iterator[int], typing.Dict[str, typing.Dict[str, Any]], TD,
            memoryview, complex, object, type, typing.ForwardRef("X"), typing.Optional["Undefined"], List["Undefined"],
        ]  # fmt: skip
        if hasattr(typing, "Unpack"):
            hints.append(typing.Unpack[TD])
        functions = {}
        for i, hint in enumerate(hints):
            def f(x=None, *a, **k):  # type: ignore[no-untyped-def]
                return x

            f.__annotations__ = {"x": hint, "return": hint, "a": hint, "k": hint}
            functions["f%d" % i] = f
        described = introspect.describe([module_of(**functions)])
        purecodec.packb(described)
        for d in described:
            self.assertEqual([p["name"] for p in d["params"]], ["x", "a", "k"], d)
            self.assertFalse(d.get("error", "").startswith(("no signature", "not described")), d)


if __name__ == "__main__":
    unittest.main()
