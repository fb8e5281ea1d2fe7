"""Functions whose errors must say how to fix them (errmsg_test.go)."""

import dataclasses

from pypool import call_go


def bad_setup():
    raise RuntimeError("setup exploded")


def fail(message):
    raise ValueError(message)


def make_list(n):
    return list(range(n))


async def async_list(n):
    return list(range(n))


def a_coroutine(*args):
    async def inner():
        return 1

    return inner()


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


@dataclasses.dataclass
class Pair:
    left: int
    right: int


def a_set():
    return {"items": [1, {2, 3}]}


def a_point():
    return {"p": Point(1, 2)}


def a_pair():
    return [Pair(1, 2)]


def set_items(n):
    for i in range(n):
        yield i
    yield {n}


def set_to_go():
    return call_go("echo", [{1}])


def needs_missing():
    import pypool_absent_dependency  # noqa: F401  # not installed anywhere


def interpreter():
    import sys

    return [sys.executable, sys.version.split()[0]]
