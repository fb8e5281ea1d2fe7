"""Hostile functions for audit_data_test.go: code that breaks the real
runtime's protocol descriptors or its shared memory, output that is not
text, and values around the limits of MaxMessageSize and the shared
memory's threshold."""

import fcntl
import os
import struct
import sys

from pypool_runtime import channel as _channel
from pypool_runtime import shm as _shm

from pypool import call_go


def echo(value):
    return value


def _proto():
    """The protocol's (input, output) descriptors of this worker."""
    ch = _channel.CURRENT
    return ch.reader.fileno(), ch.out_fd


# -- The protocol's descriptors -------------------------------------------------


def write_garbage(value):
    """Writes a frame that is no message, then returns value."""
    os.write(_proto()[1], b"\x00\x00\x00\x03abc")
    return value


def write_half_header(value):
    """Writes half a frame's length, then returns value: the real reply
    follows those two bytes."""
    os.write(_proto()[1], b"\x7f\xff")
    return value


def close_output(value):
    os.close(_proto()[1])
    return value


def close_input(value):
    os.close(_proto()[0])
    return value


def devnull_over_output(value):
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, _proto()[1])
    os.close(fd)
    return value


def stdout_over_output(value):
    """The protocol's output becomes the log stream: the replies go to the
    logger, the protocol pipe has no writer left."""
    os.dup2(1, _proto()[1])
    return value


def devnull_over_input(value):
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, _proto()[0])
    os.close(fd)
    return value


def stream_then_garbage(n):
    for i in range(n):
        yield i
    os.write(_proto()[1], b"\x00\x00\x00\x02\x91\xc1")
    yield n


def callback_then_garbage(value):
    call_go("echo", value)
    os.write(_proto()[1], b"\x00\x00\x00\x03abc")
    return value


# -- The shared memory ------------------------------------------------------------

F_ADD_SEALS = 1033


def _shm_fd():
    return _shm.ACTIVE.fd


def shm_add_seal(seal):
    """Adds a seal to the shared memory; the errno's text, or ''."""
    try:
        fcntl.fcntl(_shm_fd(), F_ADD_SEALS, seal)
    except OSError as exc:
        return os.strerror(exc.errno)
    return ""


# -- Sizes --------------------------------------------------------------------------


def lengths(*args, **kwargs):
    """The lengths of the bytes arguments, positional then by keyword."""
    out = [len(a) for a in args]
    for k in sorted(kwargs):
        out.append(len(kwargs[k]))
    return out


def make_bytes(n):
    return b"b" * n


def make_bytearray(n):
    return bytearray(b"a" * n)


def make_nested(n, count):
    """count bytes values of n bytes each inside a list and a dict."""
    return {"list": [b"l" * n for _ in range(count)], "one": b"o" * n}


def make_items(n, count):
    for _ in range(count):
        yield b"i" * n


def callback_with(name, n):
    """call_go(name, n bytes); the length of what it answered."""
    out = call_go(name, b"c" * n)
    return len(out) if isinstance(out, (bytes, bytearray)) else out


# -- Output --------------------------------------------------------------------------


def print_binary():
    os.write(1, bytes(range(256)) + b"\n")
    os.write(2, b"\xff\xfe\x00junk\n")
    return 1


def print_huge_line(n):
    sys.stdout.write("h" * n + "\n")
    sys.stdout.flush()
    return n


def print_partial(text, flush):
    """Prints text without a newline, flushed or left in Python's buffer."""
    print(text, end="", flush=flush)
    return 1


def print_partial_raw(text):
    """Writes text to fd 1 without a newline (C-level output)."""
    os.write(1, text.encode())
    return 1


# -- Types and their errors ------------------------------------------------------------


def tuple_key():
    return {(1, 2): "x"}


def bytes_key():
    return {b"k": 1}


def nested_tuple_key():
    return {"outer": [{(1, (2, 3)): "x"}]}


# -- More of the protocol's descriptors, async functions, callbacks, times ---------


def hide_output(value):
    """Keeps a copy of the protocol's output and puts /dev/null in its place:
    the replies vanish, the pipe stays open."""
    _, out = _proto()
    global _hidden
    _hidden = os.dup(out)
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, out)
    os.close(fd)
    return value


_hidden = None


async def async_echo(value):
    return value


async def async_garbage(value):
    os.write(_proto()[1], b"\x00\x00\x00\x03abc")
    return value


def through_callback(data, n, fresh):
    """Calls Go's "nested" callback (which makes nested calls with values of
    n bytes) while data, a large argument, is held; returns data itself (a
    reference to where it already is in the shared memory) or, with fresh,
    a new bytes object made from it."""
    got = call_go("nested", n)
    if got != [n, [n]]:
        raise ValueError("the nested calls saw %r" % (got,))
    if fresh:
        return data[::-1]
    return data


def callback_reply_length(name, n):
    """call_go(name, n) (small arguments); the length of its answer."""
    return len(call_go(name, n))


async def async_make_bytes(n):
    return b"a" * n


async def async_lengths(*args):
    return [len(a) for a in args]


def times():
    """Aware datetimes at the ends of Python's range and in other zones."""
    import datetime

    utc = datetime.timezone.utc
    plus5 = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    return {
        "min": datetime.datetime.min.replace(tzinfo=utc),
        "max": datetime.datetime.max.replace(tzinfo=utc),
        "epoch": datetime.datetime(1970, 1, 1, tzinfo=utc),
        "before_epoch_micro": datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc),
        "zone": datetime.datetime(2024, 1, 1, 5, 30, 0, 1, tzinfo=plus5),
    }


# -- Shared-memory references where the runtime never puts them ------------------


def _bad_ref():
    from pypool_runtime import purecodec

    return purecodec.ExtType(_shm.EXT_SHM_BYTES, purecodec.packb([1 << 40, 16]))


def _send_raw(message):
    from pypool_runtime import purecodec

    body = purecodec.packb(message)
    os.write(_proto()[1], struct.pack(">I", len(body)) + body)


def stream_bad_reference():
    """An ITEMS frame of this stream whose item is a reference beyond any
    limit, then ordinary items."""
    _send_raw([6, _channel.CURRENT.streams[-1].call_id, [_bad_ref()]])
    yield 1
    yield 2


def callback_bad_reference(seconds):
    """A CALLBACK frame whose argument is a reference beyond any limit; then
    the function waits, as if for Go's answer."""
    ch = _channel.CURRENT
    ch.callback_seq += 1
    _send_raw([9, ch.callback_seq, "echo", [_bad_ref()]])
    import time

    time.sleep(seconds)
    return "not killed"


def stream_of(fn):
    """Yields what the function named fn returns: a stream item like a
    result."""
    yield globals()[fn]()
