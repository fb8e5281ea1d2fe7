"""Functions for the stream and callback tests (stream_test.go, callback_test.go)."""

import os
import time

from pypool import GoError, call_go

# What the generators' clean-up and the callbacks saw, for the tests to read.
events = []


def numbers(n):
    for i in range(n):
        yield i


def tracked(n):
    """Yields 0..n-1; its finally records that it ran."""
    try:
        for i in range(n):
            yield i
    finally:
        events.append("finally")


def events_seen():
    seen = list(events)
    del events[:]
    return seen


def raises_after(n):
    for i in range(n):
        yield i
    raise ValueError("broke after %d" % n)


def slow(n, seconds):
    for i in range(n):
        time.sleep(seconds)
        yield i


def records(n):
    for i in range(n):
        yield {"id": i, "name": "item %d" % i}


def not_iterator():
    return [1, 2, 3]


def iterator(n):
    return iter(range(n))


def unencodable_at(n):
    for i in range(n):
        yield i
    yield {1, 2}


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def peak_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def small_items(n):
    """n small items, made lazily: memory stays flat whatever n."""
    item = b"x" * 16
    for i in range(n):
        yield [i, item]


def pid():
    return os.getpid()


def pid_then_numbers(n):
    yield os.getpid()
    for i in range(n):
        yield i
    time.sleep(60)


def asks_go(name, *args):
    return call_go(name, *args)


def go_error(name, *args):
    """What call_go(name, *args) raises, as [code, go_type, message]."""
    try:
        call_go(name, *args)
    except GoError as exc:
        return [exc.code, exc.go_type, exc.message, str(exc)]
    return None


def depth(n):
    """Go calls depth(n) calls Go's "deeper"(n) calls depth(n-1) ... on one worker."""
    if n == 0:
        return [os.getpid()]
    return [os.getpid()] + call_go("deeper", n - 1)


def late_callback(seconds):
    """Sleeps past the call's deadline, then asks Go: the answer must be an error."""
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        pass
    try:
        call_go("echo", "late")
    except GoError as exc:
        events.append(exc.code)
        raise
    events.append("answered")


def callback_then_sleep():
    call_go("crash_me")
    time.sleep(60)


def streams_callbacks(n):
    for i in range(n):
        yield call_go("double", i)


def outside_call():
    import threading

    result = []

    def other():
        try:
            call_go("echo", 1)
        except RuntimeError as exc:
            result.append(str(exc))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    return result[0]


async def async_numbers(n):
    """An async generator: streamed on the worker's event loop."""
    try:
        for i in range(n):
            yield i
    finally:
        events.append("async finally")


def sleep(seconds):
    time.sleep(seconds)
    return seconds


async def awaited_numbers(n):
    """An async function whose value is an async generator."""
    return async_numbers(n)


def first_then_stuck(seconds):
    """Yields 0, then takes seconds to make the next item."""
    yield 0
    time.sleep(seconds)
    yield 1


async def async_asks_go(name, *args):
    """An async function that calls Go."""
    return call_go(name, *args)
