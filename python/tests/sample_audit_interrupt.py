"""For test_audit_interrupt.py: a SIGINT made to come where the runtime,
inside a call, reads the frame of a call Go made in a callback (Channel's
read_message, wrapped at import): a worker not scheduled between its wait
for input and that read, when Go cut the nested call off."""

import os
import signal
import time

from pypool_runtime import call_go
from pypool_runtime.channel import Channel

_read_message = Channel.read_message
_armed = [False]


def _read_message_interrupted(self):  # type: ignore[no-untyped-def]
    if _armed[0]:
        _armed[0] = False
        os.kill(os.getpid(), signal.SIGINT)  # its handler runs here, in the runtime's code
    return _read_message(self)


Channel.read_message = _read_message_interrupted  # type: ignore[method-assign]


def ask_interrupted_at_the_read(name):
    """call_go(name), the SIGINT coming as the runtime reads the next frame."""
    _armed[0] = True
    return call_go(name)


def sleep(seconds):
    time.sleep(seconds)
    return "slept"


def echo(value):
    return value


def ask_swallowing(name):
    """call_go(name), its interrupt swallowed."""
    try:
        return call_go(name)
    except KeyboardInterrupt:
        return "swallowed"


from pypool_runtime import stream as _stream  # noqa: E402

_stream_run = _stream.run
_stream_armed = [False]


def _stream_run_interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
    if _stream_armed[0]:
        _stream_armed[0] = False
        os.kill(os.getpid(), signal.SIGINT)  # after the stream's frame was read, before its function runs
    return _stream_run(*args, **kwargs)


_stream.run = _stream_run_interrupted


def arm_stream():
    """The next stream's SIGINT comes after its frame was read, before its
    function is called (the runtime's code, between the two)."""
    _stream_armed[0] = True


def slow_numbers(n, seconds):
    for i in range(n):
        time.sleep(seconds)
        yield i


_decode = Channel.decode
_decode_armed = [False]


def _decode_interrupted(self, body):  # type: ignore[no-untyped-def]
    message = _decode(self, body)
    if _decode_armed[0]:
        _decode_armed[0] = False
        os.kill(os.getpid(), signal.SIGINT)  # its handler runs in the runtime's code, the answer read
    return message


Channel.decode = _decode_interrupted  # type: ignore[method-assign]


def ask_then_sleep(name, seconds):
    """call_go(name), the SIGINT coming as the runtime decodes Go's answer;
    then sleep seconds: the user's code that the interrupt must reach."""
    _decode_armed[0] = True
    answer = call_go(name)
    time.sleep(seconds)
    return answer
