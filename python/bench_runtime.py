"""Benchmark of the Python side of pypool's worker: CPU per call, not a test.

    python3 python/bench_runtime.py [-n CALLS] [--python PATH]... [--big]

This script plays Go: it starts each contender as a child process on a pipe
pair, exactly as Go starts it, sends CALL frames one at a time (each waits for
its reply, like a synchronous Go caller) and reports what the child spent in
CPU time (time.process_time, user + system) per call, read by the child
itself before and after the measured calls:

  floor         a minimal Python loop echoing 4-byte-length-prefixed bytes
                (the floor of go run ./bench), no codec
  pypool pure   the worker with --codec pure, calling echo("x")
  pypool auto   the worker with the automatic codec: msgpack-c when that
                interpreter has the msgpack C extension (/usr/bin/python3
                with python3-msgpack, say)
  ... 1 KiB / 1 MiB [/ 16 MiB with --big]: echo(bytes) of that size, with
                MB/s of payload over wall time as well

Each interpreter given with --python (default: this one, and /usr/bin/python3
when it differs and exists) runs every contender. The child measures itself
through a function of this very module, mark(), which returns its CPU time:
this file is also the module the workers import (--module bench_runtime).
"""

import time


def echo(value):  # type: ignore[no-untyped-def]
    """The trivial call: return the argument unchanged."""
    return value


def mark():  # type: ignore[no-untyped-def]
    """The worker's CPU time so far, in seconds."""
    return time.process_time()


_FLOOR = r"""
import os, struct, time
inp, out = 0, 1
hdr = struct.Struct(">I")

def read_exactly(n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(inp, [view[got:]])
        if k == 0:
            raise SystemExit(0)
        got += k
    return buf

while True:
    (size,) = hdr.unpack(read_exactly(4))
    body = read_exactly(size)
    if body == b"mark":  # the benchmark asks for the CPU time
        body = struct.pack(">d", time.process_time())
        size = len(body)
    os.write(out, hdr.pack(size) + body) if size < 65536 else os.writev(out, [hdr.pack(size), body])
"""

_BOOTSTRAP = "import sys;sys.path.insert(0,sys.argv[1]);from pypool_runtime.worker import main;main(sys.argv[2:])"


def _main() -> None:
    import argparse
    import os
    import struct
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    from pypool_runtime import purecodec

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="trivial calls per measurement (default 20000)")
    parser.add_argument("--python", action="append", help="interpreter(s) to run the contenders with")
    parser.add_argument("--big", action="store_true", help="also echo 16 MiB")
    parser.add_argument("--only", help="run only this call: trivial, 1KiB, 1MiB or 16MiB")
    parser.add_argument("--pin", action="store_true", help="run this script and the children on CPU 0 (taskset)")
    parser.add_argument("--pipeline", type=int, default=1, metavar="K",
                        help="send trivial calls K at a time, then read the K replies: CPU without a wake-up per call")
    parser.add_argument("--runtime", help="the directory holding the pypool_runtime to measure (default: this one's)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the best is shown (default 3)")
    options = parser.parse_args()
    runtime = os.path.abspath(options.runtime) if options.runtime else here
    pythons = options.python or [sys.executable] + (
        ["/usr/bin/python3"] if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != "/usr/bin/python3" else []
    )

    header = struct.Struct(">I")

    class Child:
        def __init__(self, argv: list) -> None:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            self.inp = self.proc.stdout.fileno()
            self.out = self.proc.stdin.fileno()

        def read_exactly(self, n: int) -> bytes:
            buf = bytearray(n)
            view = memoryview(buf)
            got = 0
            while got < n:
                k = os.readv(self.inp, [view[got:]])
                if k == 0:
                    raise EOFError("the child ended")
                got += k
            return bytes(buf)

        def roundtrip(self, framed: bytes, count: int = 1) -> bytes:
            """Send framed (count frames), return the last of count replies."""
            view = memoryview(framed)
            while view:
                view = view[os.write(self.out, view) :]
            for _ in range(count):
                (size,) = header.unpack(self.read_exactly(4))
                reply = self.read_exactly(size)
            return reply

        def close(self) -> None:
            self.proc.stdin.close()
            self.proc.wait()

    def frame(body: bytes) -> bytes:
        return header.pack(len(body)) + body

    def measure(child: Child, framed: bytes, calls: int, cpu_of_reply, check) -> tuple:
        mark_frame = cpu_of_reply[0]
        for _ in range(max(calls // 10, 3)):  # warm-up
            check(child.roundtrip(framed))
        cpu0 = cpu_of_reply[1](child.roundtrip(mark_frame))
        wall0 = time.perf_counter()
        batch = options.pipeline if len(framed) < 1024 else 1
        if batch > 1:
            framed = framed * batch
            calls = calls // batch * batch
        for _ in range(calls // batch):
            child.roundtrip(framed, batch)
        wall = time.perf_counter() - wall0
        cpu = cpu_of_reply[1](child.roundtrip(mark_frame)) - cpu0
        return cpu / calls, wall / calls

    floor_mark = (frame(b"mark"), lambda body: struct.unpack(">d", body)[0])
    worker_mark = (frame(purecodec.packb([2, 1, "mark", [], None])), lambda body: purecodec.unpackb(body)[2])

    def worker_call(value) -> bytes:
        return frame(purecodec.packb([2, 12345, "echo", [value], None]))

    def worker_check(value):
        expected = purecodec.packb([3, 12345, value])

        def check(body: bytes) -> None:
            if body != expected:
                raise AssertionError("unexpected reply %r" % body[:60])

        return check

    def floor_check(payload):
        def check(body: bytes) -> None:
            if body != payload:
                raise AssertionError("the floor echoed something else")

        return check

    # (label, payload size or 0 for the trivial call, call count)
    sizes = [("trivial", 0, options.n), ("1 KiB", 1 << 10, options.n), ("1 MiB", 1 << 20, max(options.n // 100, 50))]
    if options.big or options.only == "16MiB":
        sizes.append(("16 MiB", 16 << 20, max(options.n // 1000, 10)))
    if options.only:
        sizes = [entry for entry in sizes if entry[0].replace(" ", "") == options.only]
    if options.pin:
        os.sched_setaffinity(0, {0})  # inherited by the children

    print("%-20s %-10s %-12s %12s %12s %10s %10s" % ("python", "contender", "call", "µs CPU/call", "µs wall/call", "MB/s", "vs floor"))
    for python in pythons:
        version = subprocess.run([python, "-c", "import sys;print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip()
        has_c = subprocess.run([python, "-c", "from msgpack import _cmsgpack"], capture_output=True).returncode == 0
        contenders = [
            ("floor", [python, "-E", "-c", _FLOOR], floor_mark),
            ("pure", [python, "-E", "-c", _BOOTSTRAP, runtime, "--module", "bench_runtime", "--path", here, "--codec", "pure"], worker_mark),
        ]
        if has_c:
            contenders.append(("msgpack-c", [python, "-E", "-c", _BOOTSTRAP, runtime, "--module", "bench_runtime", "--path", here], worker_mark))
        floor_cpu = {}
        for label, size, calls in sizes:
            value = "x" if size == 0 else bytes(range(256)) * (size // 256)
            for name, argv, marker in contenders:
                if name == "floor":
                    payload = value.encode() if size == 0 else value
                    framed, check = frame(payload), floor_check(payload)
                else:
                    framed, check = worker_call(value), worker_check(value)
                best = None
                for _ in range(options.repeat):
                    child = Child(argv)
                    try:
                        if name != "floor":
                            child.read_exactly(header.unpack(child.read_exactly(4))[0])  # HELLO
                        result = measure(child, framed, calls, marker, check)
                    finally:
                        child.close()
                    if best is None or result[0] < best[0]:
                        best = result
                cpu, wall = best
                if name == "floor":
                    floor_cpu[label] = cpu
                mbps = "" if size == 0 else "%.1f" % (size / wall / 1e6)
                print("%-20s %-10s %-12s %12.2f %12.2f %10s %9.2fx" % (
                    "%s (%s)" % (os.path.basename(python), version), name, label, cpu * 1e6, wall * 1e6, mbps, cpu / floor_cpu[label]))
                sys.stdout.flush()


if __name__ == "__main__":
    _main()
