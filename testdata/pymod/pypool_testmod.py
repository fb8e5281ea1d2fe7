"""Functions the Go tests call. Each one exercises one behaviour."""

import os
import sys
import time
from os import getpid  # imported, not defined here: must not be callable

_state = {}


def echo(value):
    return value


def duplicate_text(text):
    return text * 2


def add(a, b):
    return a + b


def describe(a, b=2, *rest, **options):
    return {"a": a, "b": b, "rest": list(rest), "options": options}


def fail(message):
    raise ValueError(message)


def sleep(seconds):
    time.sleep(seconds)
    return "slept"


def announced_sleep(seconds):
    """sleep, once it has said so on stderr: the line and the sleep are one
    line of source, so that a stack dump taken once the test has the line
    shows that line."""
    print("sleeping", file=sys.stderr, flush=True) or time.sleep(seconds)
    return "slept"


def swallow_interrupt(seconds):
    """Ignore KeyboardInterrupt: the pool must kill this worker. The line on
    stderr tells the test that the interrupt can come: it is written inside
    the try block."""
    deadline = time.monotonic() + seconds
    announced = False
    while time.monotonic() < deadline:
        try:
            if not announced:
                announced = True
                print("swallowing interrupts", file=sys.stderr, flush=True)
            time.sleep(max(deadline - time.monotonic(), 0))
        except KeyboardInterrupt:
            pass
    return "ignored"


def crash(status):
    sys.stderr.write("about to crash\n")
    sys.stderr.flush()
    os._exit(status)


def exit_call(status):
    sys.exit(status)


def chatty():
    print("line from print")
    os.write(1, b"line from os.write\n")
    sys.stderr.write("line to stderr\n")
    try:
        input()
    except EOFError:
        eof = True
    else:
        eof = False
    return {"eof": eof}


def unencodable():
    return {1, 2, 3}


def nested_unencodable():
    return {"items": [1, {"score": {1, 2}}]}


def numpy_scalars():
    # numpy only here, so that the module imports without it.
    import numpy

    return {
        "bool_": numpy.bool_(True),
        "int8": numpy.int8(-128),
        "int16": numpy.int16(-32768),
        "int32": numpy.int32(-(2**31)),
        "int64": numpy.int64(-(2**63)),
        "uint8": numpy.uint8(255),
        "uint16": numpy.uint16(65535),
        "uint32": numpy.uint32(2**32 - 1),
        "uint64": numpy.uint64(2**64 - 1),
        "float16": numpy.float16(1.5),
        "float32": numpy.float32(0.25),
        "float64": numpy.float64(0.1),
        "nested": [numpy.int8(1), {"x": numpy.float32(2.5)}, (numpy.uint64(3),)],
    }


def pid():
    return getpid()


def set_value(key, value):
    _state[key] = value


def get_value(key):
    return _state.get(key)


def note_setup_pid():
    """A set-up that records which process ran it."""
    _state["setup_pid"] = os.getpid()


def random_value():
    import random

    return random.random()


def big(n):
    return b"x" * n


def python_types():
    """Values as Python makes them, for the decoding table."""
    import datetime

    return {
        "none": None,
        "true": True,
        "int": 42,
        "neg": -7,
        "big": 2**64 - 1,
        "float": 1.5,
        "str": "héllo",
        "bytes": b"\x00\xff",
        "list": [1, "a"],
        "tuple": (1, 2),
        "int_keys": {1: "one", 2: "two"},
        "time": datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.timezone.utc),
    }


def _private():
    return "secret"


def crash_once(flag):
    """Crash the worker the first time (the flag file does not exist yet)."""
    if not os.path.exists(flag):
        open(flag, "w").close()
        os._exit(9)
    return "survived"


_hoard = []


def hog(megabytes):
    """Keep megabytes of memory resident."""
    _hoard.append(bytearray(megabytes << 20))
    return len(_hoard)


def deep(n):
    """A list nested n levels deep."""
    value = []
    for _ in range(n):
        value = [value]
    return value


def recurse(n):
    return recurse(n + 1)


def bad_str():
    return "\udcff"


class Custom:
    pass


def custom_objects():
    return {Custom(), Custom()}


def stuck_in_c():
    """Spend minutes in OpenSSL's PBKDF2 loop, which never looks at signals.
    SIGINT is blocked before the line that tells the test the interrupt can
    come, so that it cannot land in Python code before the loop starts."""
    import hashlib
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    print("entering C", file=sys.stderr, flush=True)
    return hashlib.pbkdf2_hmac("sha256", b"password", b"salt", 2**31 - 1)


def _sleeper(seconds):
    time.sleep(seconds)


def sleep_in_threads(count, seconds):
    """Sleep in count daemon threads and in the calling thread: a stack dump
    shows them all."""
    import threading

    for _ in range(count):
        threading.Thread(target=_sleeper, args=(seconds,), daemon=True).start()
    # The line on stderr tells the test that every thread is in its sleep
    # (no event says so: its frame's line is looked at until it is there).
    line = _sleeper.__code__.co_firstlineno + 1
    while sum(f.f_code is _sleeper.__code__ and f.f_lineno == line for f in sys._current_frames().values()) < count:
        time.sleep(0.001)
    print("threads asleep", file=sys.stderr, flush=True) or time.sleep(seconds)
    return "slept"


# Issue 18, finding 1: processes that a worker's Python code starts. Each
# returns the pid of a child that sleeps a minute in the worker's process
# group; the tests check that it does not outlive the worker.
_children = []


def spawn_sleeping_child():
    """Start a sleeping python with subprocess and return its pid."""
    import subprocess

    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _children.append(child)  # never collected, never waited for
    return child.pid


def fork_sleeping_child():
    """os.fork() a child that sleeps (holding every descriptor of the
    worker, the protocol pipes included) and return its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(60)
        finally:
            os._exit(0)
    return pid


def sleeping_child_then_exit(how, delay):
    """Start a sleeping child ("spawn" or "fork"), return its pid, and make
    the worker exit by itself (status 0) delay seconds later, between
    calls."""
    import threading

    pid = spawn_sleeping_child() if how == "spawn" else fork_sleeping_child()

    def leave():
        time.sleep(delay)
        os._exit(0)

    threading.Thread(target=leave, daemon=True).start()
    return pid


def busy_in_c():
    """Spend minutes in one C call (sum over a range never runs a Python
    signal handler). The line on stdout tells the test that it has begun."""
    print("entering C", flush=True)
    return sum(range(10**11))
