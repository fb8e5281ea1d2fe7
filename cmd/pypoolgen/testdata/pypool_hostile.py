"""Hostile but valid: a module whose names, signatures and classes push
pypoolgen (cmd/pypoolgen's golden test of internal/hostile, whose test
calls through the bindings against real workers)."""

from __future__ import annotations

import datetime
import functools
from typing import Any, AsyncIterator, Dict, Iterator, List, Literal, NamedTuple, Optional, Tuple, TypedDict

_MISSING = object()


class _Matrix:
    """A default whose repr spans lines, as numpy's arrays do."""

    def __repr__(self) -> str:
        return "array([[1., 0.],\n       [0., 1.]])"


class Record(TypedDict, total=False):
    名前: str
    café: int
    when: datetime.datetime
    blob: bytes


Spaced = TypedDict("Spaced", {"first name": str, "last-name": str})


class Link(TypedDict):
    value: int
    next: Optional[Link]
    up: Link


class Pair(NamedTuple):
    left: int
    right: str


def keywords(type: int, func: str, range: float, len: bool, map: List[int], chan: Dict[str, int], string: str, error: str, nil: Any) -> List[Any]:
    """Parameters named as Go's keywords and predeclared names."""
    return [type, func, range, len, map, chan, string, error, nil]


def own_names(ctx: int, c: int, opts: int, args: int, kw: int, err: int, v: int, k: int, *, result: int = 0, out: int = 0) -> List[int]:
    """Parameters named as the generated code's own."""
    return [ctx, c, opts, args, kw, err, v, k, result, out]


def collide(user_id: int, userID: int, user__id: int = 3) -> List[int]:  # noqa: N803
    return [user_id, userID, user__id]


def 名前(café: str, *, ñandú: int = 2) -> str:
    return café * ñandú


def shapes(a: int, b: int = 2, /, c: int = 3, *rest: int, d: int, e: Optional[int] = 5, **kw: str) -> List[Any]:
    """Every kind of parameter at once."""
    return [a, b, c, list(rest), d, e, kw]


def sentinel(key: str, default: Any = _MISSING, m: Any = _Matrix(), tags: frozenset = frozenset({"alpha", "beta", "gamma", "delta"})) -> bool:
    return default is _MISSING


def nested(x: List[Dict[str, int]], y: Dict[int, List[str]], z: Optional[List[Pair]] = None) -> Tuple[int, ...]:
    return (len(x), len(y), len(z or []))


def bump(r: Record) -> Record:
    out = dict(r)
    out["café"] = out.get("café", 0) + 1
    return out  # type: ignore[return-value]


def flip(s: Spaced) -> Spaced:
    return {"first name": s["last-name"], "last-name": s["first name"]}


def chain(n: int) -> Link:
    node: Any = None
    for i in range(n):
        node = {"value": i, "next": node, "up": None}
    return node


def swap(p: Pair) -> Pair:
    return Pair(p[0] + 1, p[1] * 2)


def level(l: Literal["low", "high"], n: Literal[1, 2, 3] = 1) -> Literal["ok"]:  # noqa: E741
    return "ok"


def when(t: datetime.datetime, raw: bytes, buf: bytearray) -> Tuple[datetime.datetime, bytes]:
    return (t + datetime.timedelta(hours=1), bytes(raw) + bytes(buf))


def count(n: int) -> Iterator[int]:
    yield from range(n)


def not_a_generator(n: int) -> Iterator[str]:
    """Returns an iterator without being a generator function."""
    return iter([str(i) for i in range(n)])


async def later(x: int) -> int:
    return x + 1


async def ticks(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


def _traced(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@_traced
def decorated(x: int, y: str = "y") -> str:
    return y * x


def _base(a: int, b: int, c: int = 10) -> int:
    return a + b + c


partial = functools.partial(_base, 1)
partial.__module__ = __name__


class _Callable:
    def __call__(self, x: float) -> float:
        return x * 2


callable_instance = _Callable()
callable_instance.__module__ = __name__  # type: ignore[attr-defined]


def nothing(x: Any = None) -> None:
    return None
