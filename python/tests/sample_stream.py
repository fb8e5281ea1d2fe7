"""A module for test_stream.py: generators, iterators, call_go."""

import time

from pypool import GoError, call_go

closed = []


def numbers(n):
    for i in range(n):
        yield i


def tracked(n):
    try:
        for i in range(n):
            yield i
    finally:
        closed.append(n)


def closed_log():
    return list(closed)


def fails_after(n):
    for i in range(n):
        yield i
    raise KeyError("gone")


def slow_then_pause(seconds):
    yield "first"
    yield "second"
    time.sleep(seconds)
    yield "third"


def a_list():
    return [1, 2]


def sleeper(seconds):
    for i in range(1000):
        time.sleep(seconds)
        yield i


def ask(name, *args):
    return call_go(name, *args)


def ask_error(name):
    try:
        call_go(name)
    except GoError as exc:
        return [exc.code, exc.go_type, exc.message]


def nested():
    return ["outer", call_go("inner")]


def inner_value():
    return "from a nested call"


def generator_asks(n):
    for i in range(n):
        yield call_go("double", i)


def call_go_at_import_fails():
    return "ok"


try:
    call_go("at_import")
    AT_IMPORT = "no error"
except RuntimeError as exc:
    AT_IMPORT = str(exc)


def at_import():
    return AT_IMPORT


def echo(value):
    return value


async def async_numbers(n):
    for i in range(n):
        yield i


def item_then_callback():
    yield "before"
    yield call_go("answer")
