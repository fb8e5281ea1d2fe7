"""A misbehaving stand-in for the pypool runtime, for the bad-input tests.

It answers the handshake as FAKE_HELLO says (ok, bad-version, garbage,
exit, silent) and each call by the function's name: "echo" answers
properly, every other name breaks the protocol in its own way.
"""

import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from pypool_runtime import purecodec  # noqa: E402

proto_in, proto_out = os.dup(0), os.dup(1)
os.dup2(2, 1)


def send(body, declared=None):
    size = len(body) if declared is None else declared
    os.write(proto_out, struct.pack(">I", size) + body)


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

while True:
    (size,) = struct.unpack(">I", read_exactly(4))
    _, call_id, name, args, _ = purecodec.unpackb(read_exactly(size))
    reply = purecodec.packb([3, call_id, args[0] if args else None])
    if name == "echo":
        send(reply)
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
