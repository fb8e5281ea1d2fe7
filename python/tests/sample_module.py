"""The module the worker tests load: each function exercises one behaviour."""

import os
import sys
import time
from os import getpid  # imported, not defined here: must not be callable


class CustomError(Exception):
    pass


def duplicate_text(text):
    return text * 2


def echo(value):
    return value


def describe(a, b=2, *rest, **options):
    return {"a": a, "b": b, "rest": list(rest), "options": options}


def fail(message, times=1):
    raise ValueError(message * times)


def fail_custom():
    try:
        {}["missing"]
    except KeyError as exc:
        raise CustomError("wrapped") from exc


def exit_call(status):
    sys.exit(status)


def sleep(seconds):
    time.sleep(seconds)
    return "slept"


def sleep_announced(seconds):
    """Write "sleeping" to stderr, then sleep: a test waits for that line
    (read_stderr_until) instead of guessing when the call began."""
    os.write(2, b"sleeping\n")
    time.sleep(seconds)  # sleep_announced's sleep
    return "slept"


def chatty():
    print("line from print")
    os.write(1, b"line from os.write\n")
    sys.stderr.write("line to stderr\n")
    try:
        input()
    except EOFError:
        return {"eof": True}
    return {"eof": False}


def unencodable():
    return {1, 2, 3}


def nested_unencodable():
    return {"items": [1, {"score": {1, 2}}]}


def numpy_scalars():
    import numpy

    return {"int8": numpy.int8(-8), "uint64": numpy.uint64(2**64 - 1), "float32": numpy.float32(0.5),
            "bool": numpy.bool_(True), "list": [numpy.int16(3), (numpy.float16(1.5),)]}  # fmt: skip


def numpy_array():
    import numpy

    return {"a": [numpy.arange(6, dtype="<i4").reshape(2, 3)]}


def numpy_unsupported():
    import numpy

    return {"a": [numpy.zeros(2, dtype=complex)]}


def describe_array(array, *, scale=1):
    """What arrived (a numpy.ndarray), sent back as it came and scaled."""
    return {"type": type(array).__name__, "dtype": array.dtype.str, "shape": list(array.shape),
            "owns": bool(array.flags.owndata), "writeable": bool(array.flags.writeable), "array": array,
            "scaled": array * scale}  # fmt: skip


def deep(levels):
    """levels nested lists around None."""
    value = None
    for _ in range(levels):
        value = [value]
    return value


def numpy_loaded():
    return "numpy" in sys.modules


def loaded(name):
    return name in sys.modules


def keyboard_interrupt():
    raise KeyboardInterrupt("raised by the function itself")


def naive_time():
    import datetime

    return datetime.datetime(2024, 1, 2, 3, 4, 5)


def big(n):
    return b"x" * n


def path():
    return list(sys.path)


def argv():
    return list(sys.argv)


def surrogate_error():
    raise OSError(os.fsdecode(b"bad name \xff"))


def start_lingering_thread():
    import threading

    threading.Thread(target=time.sleep, args=(3600,), daemon=False).start()


def _private():
    return "secret"
