"""A module that uses every type hint pypoolgen supports (the golden test's
and the round trips' module: cmd/pypoolgen's tests, python/tests/test_introspect.py)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import (
    Any,
    AsyncIterator,
    Dict,
    Generator,
    Iterator,
    List,
    Literal,
    NamedTuple,
    Optional,
    Tuple,
    TypedDict,
    Union,
)

try:
    import numpy
except ImportError:  # the hint still reads as numpy's ndarray
    numpy = None


class Item(TypedDict):
    """An item of the inventory."""

    sku: str
    count: int
    tags: List[str]


class Point(NamedTuple):
    x: float
    y: float


@dataclasses.dataclass
class Box:
    """A box of items."""

    label: str
    items: List[Item]
    corner: Point
    weight: Optional[float] = None


class Node(TypedDict):
    name: str
    children: List[Node]


def duplicate_text(text: str) -> str:
    """Return text twice."""
    return text * 2


def add(a: int, b: int) -> int:
    return a + b


def scale(values: list[float], factor: float = 2.0, *, offset: float = 0.0) -> list[float]:
    """Every value times factor, plus offset."""
    return [v * factor + offset for v in values]


def greet(name: str, *, greeting: str, punctuation: str = "!") -> str:
    return "%s, %s%s" % (greeting, name, punctuation)


def maybe(n: Optional[int]) -> Optional[str]:
    return None if n is None else str(n)


def new_style(n: int | None = None) -> dict[str, int] | None:
    return None if n is None else {"n": n}


def checksum(data: bytes) -> bytes:
    return bytes(reversed(data))


def flags(on: bool) -> bool:
    return not on


def counts(words: List[str]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for w in words:
        out[w] = out.get(w, 0) + 1
    return out


def pair(a: int) -> Tuple[int, int]:
    return (a, a + 1)


def mixed(a: int) -> Tuple[int, str]:
    return (a, str(a))


def many(a: int) -> tuple[int, ...]:
    return tuple(range(a))


def when(t: datetime.datetime) -> datetime.datetime:
    return t + datetime.timedelta(seconds=1)


def either(v: Union[int, str]) -> Union[int, str]:
    return v


def mode(m: Literal["fast", "slow"]) -> Literal[1, 2]:
    return 1 if m == "fast" else 2


def make_item(sku: str, count: int = 1) -> Item:
    return {"sku": sku, "count": count, "tags": []}


def total(items: List[Item]) -> int:
    return sum(i["count"] for i in items)


def origin() -> Point:
    return Point(0.0, 0.0)


def box_weight(box: Box) -> float:
    return float(box["weight"] or 0.0)


def tree(depth: int) -> Node:
    node: Node = {"name": "leaf", "children": []}
    for i in range(depth):
        node = {"name": "n%d" % i, "children": [node]}
    return node


def count_up(n: int) -> Iterator[int]:
    yield from range(n)


def words(text: str) -> Generator[str, None, None]:
    yield from text.split()


async def slow_double(x: int) -> int:
    return x * 2


async def ticks(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def untyped(x, y=3):
    return [x, y]


def no_result(x: int):
    return x


def nothing() -> None:
    return None


def anything(x: Any) -> Any:
    return x


def odd(s: set[int]) -> frozenset[int]:
    return frozenset(s)


def variadic(first: str, *rest: int, **options: float) -> List[Any]:
    return [first, list(rest), options]


def positional(a: int, b: int = 2, /) -> int:
    return a * b


def unresolved(x: "NoSuchType") -> int:  # noqa: F821
    return 0


def matrix(m: "numpy.ndarray") -> "numpy.ndarray":
    return m * 2


def sometimes(a: int) -> Union[int, None, str]:
    return a


class Opts(TypedDict, total=False):
    verbose: bool
    level: int


def configure(name: str, opts: Opts) -> Opts:
    return opts


def _private() -> None:
    pass
