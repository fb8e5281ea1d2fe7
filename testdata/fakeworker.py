"""A misbehaving stand-in for the pypool runtime, for the bad-input tests.

It answers the handshake as FAKE_HELLO says (ok, bad-version, garbage,
exit, silent) and each call by the function's name: "echo" answers
properly, "deep..." sends values nested as deep as asked (a result, a
stream's item, a callback's argument), every other name breaks the
protocol in its own way.
"""

import os
import select
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from pypool_runtime import purecodec  # noqa: E402

proto_in, proto_out = os.dup(0), os.dup(1)
os.dup2(2, 1)


def send(body, declared=None):
    size = len(body) if declared is None else declared
    data = memoryview(struct.pack(">I", size) + body)
    while data:
        data = data[os.write(proto_out, data) :]


def read_exactly(n):
    data = b""
    while len(data) < n:
        chunk = os.read(proto_in, n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


hello = os.environ.get("FAKE_HELLO", "ok")
if hello == "exit":
    print("fake worker: exiting before the handshake", file=sys.stderr, flush=True)
    sys.exit(7)
if hello == "silent":
    time.sleep(3600)
if hello == "garbage":
    send(purecodec.packb([3, 1, "not a hello"]))
else:
    version = 99 if hello == "bad-version" else 1
    send(purecodec.packb([1, version, os.getpid(), "3.fake", "pure", None]))

# The worker's shared memory (Go's sharedMemoryFd), when Go gave it one.
SHM_FD = 4


def read_message():
    (size,) = struct.unpack(">I", read_exactly(4))
    return purecodec.unpackb(read_exactly(size))


def deep(levels):
    """A msgpack value nested levels deep: lists of one list, then nil."""
    return b"\x91" * levels + b"\xc0"


def shm_ref(code, fields):
    """A RESULT value that is a shared-memory reference (ext 126 or 125)
    with fields as its payload, or the payload itself when it is bytes."""
    payload = fields if isinstance(fields, bytes) else purecodec.packb(fields)
    return purecodec.packb(purecodec.ExtType(code, payload))


def callback_answer():
    """The code of Go's answer to CALLBACK 1: "ok" or its CB_ERROR code."""
    while True:
        msg = read_message()
        if msg[0] == 10 and msg[1] == 1:
            return "ok"
        if msg[0] == 11 and msg[1] == 1:
            return msg[2]


def stream(call_id, name, args):
    """A STREAM: "deep" sends one item nested args[0] levels deep; the
    stream then ends (a CLOSE that Go sends meanwhile is ignored)."""
    if name == "deep":
        send(b"\x93\x06" + purecodec.packb(call_id) + b"\x91" + deep(args[0]))
    send(purecodec.packb([3, call_id, None]))


def shm_reply(call_id, name):
    """A RESULT whose shared-memory reference is invalid (issue 18, finding 7)."""
    if name == "shm_beyond_limit":
        value = shm_ref(126, [1 << 40, 16])
    elif name == "shm_beyond_file":
        value = shm_ref(126, [0, 4096])
    elif name == "shm_malformed":
        value = shm_ref(126, b"\xc1")
    elif name == "shm_array_mismatch":
        value = shm_ref(125, ["<f8", [4], 0, 8])
    else:  # shm_grown: the memory grown far beyond its limit
        os.ftruncate(SHM_FD, 1 << 40)
        value = shm_ref(126, [0, 16])
    send(b"\x93\x03" + purecodec.packb(call_id) + value)


def interrupted_in_call_go(call_id):
    """A CALLBACK, then, as the runtime did when SIGINT landed in call_go
    before it had read what Go sent meanwhile (a nested CALL): the call
    ends with ERROR interrupted, and the frames Go sent are left for the
    loop, which serves the nested call after the outer one's reply. The
    drain must not depend on the order of the two replies."""
    # Go's interrupt raises here even when the test runs with SIGINT
    # ignored (a background job), as the runtime's own handler does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    send(purecodec.packb([9, 1, "nested", ["inner"]]))
    try:
        # Go's nested CALL has come, unread: the test's deadline may pass.
        select.select([proto_in], [], [])
        os.write(2, b"interrupted_in_call_go: nested call sent\n")
        time.sleep(60)  # reads nothing until the interrupt
    except KeyboardInterrupt:
        pass
    send(purecodec.packb([4, call_id, "interrupted", "KeyboardInterrupt", "", ""]))


def half_reply(call_id, size):
    """A RESULT of size bytes sent half, then, once Go's interrupt (its
    call was cut off) has come, the other half: the drain reads the frame
    to its end."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    body = b"\x93\x03" + purecodec.packb(call_id) + purecodec.packb(b"y" * size)
    data = struct.pack(">I", len(body)) + body
    half = len(data) // 2
    view = memoryview(data)
    sent = 0
    while sent < half:
        sent += os.write(proto_out, view[sent:half])
    # The pipe holds at most 1 MiB: Go has read the rest of the half.
    os.write(2, b"half_reply: half sent\n")
    try:
        time.sleep(60)  # until the interrupt
    except KeyboardInterrupt:
        pass
    while sent < len(data):
        sent += os.write(proto_out, view[sent:])


while True:
    msg = read_message()
    if msg[0] in (7, 8):  # CREDIT, CLOSE: streams here end at once
        continue
    if msg[0] in (10, 11):  # CB_RESULT, CB_ERROR of a callback nobody waits for
        continue
    if msg[0] == 5:
        stream(msg[1], msg[2], msg[3])
        continue
    call_id, name, args = msg[1:4]  # a CALL, with or without its context (a sixth element)
    reply = purecodec.packb([3, call_id, args[0] if args else None])
    if name.startswith("shm_"):
        shm_reply(call_id, name)
    elif name == "deep":
        send(b"\x93\x03" + purecodec.packb(call_id) + deep(args[0]))
    elif name == "deep_in_map":
        send(b"\x93\x03" + purecodec.packb(call_id) + b"\x81\xa1A" + deep(args[0]))
    elif name == "deep_callback":
        send(b"\x94\x09\x01" + purecodec.packb("cb") + b"\x91" + deep(args[0]))
        send(purecodec.packb([3, call_id, callback_answer()]))
    elif name == "echo":
        send(reply)
    elif name == "half_reply":
        half_reply(call_id, args[0])
    elif name == "interrupted_in_call_go":
        interrupted_in_call_go(call_id)
    elif name == "garbage":
        send(b"\xc1")
    elif name == "truncated":
        send(reply[:3], declared=100)
        sys.exit(0)
    elif name == "longer":
        os.write(proto_out, struct.pack(">I", len(reply)) + reply + b"\xff\xff\xff\xff")
    elif name == "unknown_kind":
        send(purecodec.packb([9, call_id, "x"]))
    elif name == "wrong_id":
        send(purecodec.packb([3, call_id + 1, 1]))
    elif name == "huge_length":
        os.write(proto_out, struct.pack(">I", 0xFFFFFFF0))
    elif name == "short_error":
        send(purecodec.packb([4, call_id, "exception"]))
    elif name == "not_an_array":
        send(purecodec.packb("hello"))
    elif name == "too_deep":
        send(b"\x93\x03" + purecodec.packb(call_id) + b"\x91" * 20000 + b"\xc0")
    elif name == "close_stdout":
        os.close(proto_out)
        time.sleep(3600)
    elif name == "exit":
        os._exit(3)
