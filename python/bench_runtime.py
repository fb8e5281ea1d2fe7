"""Benchmark of the Python side of pypool's worker: CPU per call, not a test.

    python3 python/bench_runtime.py [-n CALLS] [--python PATH]... [--big]
    python3 python/bench_runtime.py --phases [--python PATH]...
    python3 python/bench_runtime.py --cprofile [--python PATH]...

This script plays Go: it starts each contender as a child process on a pipe
pair, exactly as Go starts it, sends CALL frames one at a time (each waits for
its reply, like a synchronous Go caller) and reports what the child spent in
CPU time (time.process_time, user + system) per call, read by the child
itself before and after the measured calls:

  floor         the simplest Python loop echoing 4-byte-length-prefixed
                bytes (the floor of go run ./bench, bench/floor.py), no codec
  floor-readv   the bench's floor before issue 21 (bench/floor_readv.py):
                exact-size readv into a new bytearray, two reads a frame
  pypool pure   the worker with --codec pure, calling echo("x")
  pypool auto   the worker with the automatic codec: msgpack-c when that
                interpreter has the msgpack C extension (/usr/bin/python3
                with python3-msgpack, say)
  ... 1 KiB / 1 MiB [/ 16 MiB with --big]: echo(bytes) of that size, with
                MB/s of payload over wall time as well

Each interpreter given with --python (default: this one, and /usr/bin/python3
when it differs and exists) runs every contender.

--phases times the Python work of one call phase by phase, in this process's
child, without the pipes' system calls (those are the same in number for the
floor and the worker: one read(2) and one write(2) a call, as strace -c
shows): the floor's buffered reads, its header + body and its write + flush,
against the worker's frame read, decode_call, the dispatch (the function's
lookup, the interrupt flag, the call) and result_frame, for the trivial call
(duplicate_text("testing")) and a 1 KiB bytes echo, with both codecs. Each
figure is the best of several repeats of a tight loop (ns per call).

--cprofile runs the floor and the worker (each codec) under cProfile for -n
calls and for none, the trivial call and the 1 KiB echo, and prints the
difference per call: the Python
function calls (built-in ones included) that one call costs, by function, a
count that the machine's load does not change. The child measures itself
through a function of this very module, mark(), which returns its CPU time:
this file is also the module the workers import (--module bench_runtime).
"""

import time


def echo(value):  # type: ignore[no-untyped-def]
    """The trivial call: return the argument unchanged."""
    return value


def duplicate_text(text):  # type: ignore[no-untyped-def]
    """The bench's trivial call (bench/bench_module.py): the text twice."""
    return text + text


def mark():  # type: ignore[no-untyped-def]
    """The worker's CPU time so far, in seconds."""
    return time.process_time()


# The floor of go run ./bench (bench/floor.py), answering b"mark" with its
# CPU time.
_FLOOR = r"""
import struct, sys, time
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
while header := stdin.read(4):
    body = stdin.read(int.from_bytes(header, "big"))
    if body == b"mark":  # the benchmark asks for the CPU time
        body = struct.pack(">d", time.process_time())
        header = len(body).to_bytes(4, "big")
    stdout.write(header + body)
    stdout.flush()
"""

# The bench's floor before issue 21 (bench/floor_readv.py), the same way.
_FLOOR_READV = r"""
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

# --phases: run by each interpreter as python -c _PHASES RUNTIME HERE CODEC.
_PHASES = r"""
import io, os, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from pypool_runtime import codec as codecmod, frames, purecodec
import bench_runtime

codec = codecmod.load(sys.argv[3])
clock = time.perf_counter_ns
N, REPEAT = 20000, 7


def best(fn, n=N):
    times = []
    for _ in range(REPEAT):
        t = clock()
        fn(n)
        times.append((clock() - t) / n)
    return min(times)


def piped(frame, reader_of, per_call):
    # Frames written into a pipe in batches that fit it, then read back:
    # the reads' Python part, with one read(2) a batch, not one a call.
    batch = max(1, (60 << 10) // len(frame))
    def run(n):
        r, w = os.pipe()
        reader = reader_of(r)
        try:
            left = n
            while left:
                k = min(batch, left)
                os.write(w, frame * k)
                for _ in range(k):
                    per_call(reader)
                left -= k
        finally:
            os.close(r)
            os.close(w)
    return best(run)


devnull = os.open(os.devnull, os.O_WRONLY)
rows = []
for label, fn, value in (("trivial", "duplicate_text", "testing"), ("1 KiB", "echo", bytes(range(256)) * 4)):
    call = purecodec.packb([2, 12345, fn, [value], None])
    call_frame = len(call).to_bytes(4, "big") + call
    payload = value.encode() if isinstance(value, str) else value
    floor_frame = len(payload).to_bytes(4, "big") + payload

    def floor_read(reader):
        header = reader.read(4)
        return header, reader.read(int.from_bytes(header, "big"))

    header, body = floor_read(io.BufferedReader(io.BytesIO(floor_frame)))
    out = io.BufferedWriter(io.FileIO(devnull, "wb", closefd=False))

    def concat(n):
        for _ in range(n):
            header + body

    def write_flush(n):
        for _ in range(n):
            out.write(header + body)
            out.flush()
    floor = {
        "read: stdin.read(4), stdin.read(n)": piped(floor_frame, lambda fd: io.BufferedReader(io.FileIO(fd, "rb", closefd=False)), floor_read),
        "header + body": best(concat),
        "write + flush, the write(2) included": best(write_flush),
    }
    functions = {"duplicate_text": bench_runtime.duplicate_text, "echo": bench_runtime.echo}
    decode_call, result_frame = codec.decode_call, codec.result_frame
    call_id, name, args = decode_call(call)
    result = functions[name](*args)
    frame = result_frame(call_id, result)

    class Flags:
        in_user_code = False

    flags = Flags()

    def decode(n):
        for _ in range(n):
            decode_call(call)

    def encode(n):
        for _ in range(n):
            result_frame(call_id, result)

    def write(n):
        for _ in range(n):
            os.write(devnull, frame)

    def dispatch(n):
        for _ in range(n):
            function = functions.get(name)
            try:
                try:
                    flags.in_user_code = True
                    function(*args)
                finally:
                    flags.in_user_code = False
            except BaseException:
                pass

    worker = {
        "read: FrameReader.read": piped(call_frame, lambda fd: frames.FrameReader(fd, 64 << 20), lambda reader: reader.read()),
        "decode_call": best(decode),
        "dispatch: lookup, interrupt flag, the function": best(dispatch),
        "result_frame": best(encode),
        "write: os.write, the write(2) included": best(write),
    }
    for side, phases in (("floor", floor), (codec.name, worker)):
        for phase, ns in phases.items():
            print("%s	%s	%s	%.0f" % (label, side, phase, ns))
"""

# --cprofile: run by each interpreter as python -c _PROFILED OUT SCRIPT ARGS...:
# the script (the floor, or the worker's bootstrap) under cProfile.
_PROFILED = r"""
import cProfile, sys
out, script = sys.argv[1], sys.argv[2]
sys.argv = ["-c"] + sys.argv[3:]
profile = cProfile.Profile()
try:
    profile.runctx(script, {"__name__": "__main__"}, {})
except SystemExit:
    pass
finally:
    profile.dump_stats(out)
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
    parser.add_argument("--phases", action="store_true", help="time the Python work of a call phase by phase, floor against worker (ns/call)")
    parser.add_argument("--importtime", action="store_true", help="the worker's start-up budget: python -X importtime of its start, by share, and its wall time against python -c 'import m'")
    parser.add_argument("--cprofile", action="store_true", help="count the Python function calls of one trivial call and of one 1 KiB echo under cProfile, floor against worker")
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

    def versions(python: str) -> tuple:
        version = subprocess.run([python, "-c", "import sys;print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip()
        has_c = subprocess.run([python, "-c", "from msgpack import _cmsgpack"], capture_output=True).returncode == 0
        return version, has_c

    if options.phases:
        print("call\tside\tphase\tns/call (best of 7 tight loops of 20000)")
        for python in pythons:
            version, has_c = versions(python)
            for codec_name in ["pure"] + (["auto"] if has_c else []):
                print("# %s (%s), codec %s" % (python, version, codec_name))
                sys.stdout.flush()
                subprocess.run([python, "-E", "-c", _PHASES, runtime, here, codec_name], check=True)
        return

    if options.importtime:
        _importtime(pythons, runtime, here, options.repeat)
        return

    if options.cprofile:
        import pstats
        import tempfile

        kilo = bytes(range(256)) * 4
        calls = [
            ("trivial call", frame(b"testing"), frame(purecodec.packb([2, 12345, "duplicate_text", ["testing"], None]))),
            ("1 KiB echo", frame(kilo), frame(purecodec.packb([2, 12345, "echo", [kilo], None]))),
        ]
        for python, (call, floor_frame, worker_frame) in ((p, c) for p in pythons for c in calls):
            version, has_c = versions(python)
            worker = [_BOOTSTRAP, runtime, "--module", "bench_runtime", "--path", here]
            runs = [("floor", [_FLOOR], floor_frame)]
            runs.append(("worker, pure codec", worker + ["--codec", "pure"], worker_frame))
            if has_c:
                runs.append(("worker, msgpack-c", worker, worker_frame))
            for name, script, framed in runs:
                counts = []
                for calls in (options.n, 0):
                    with tempfile.NamedTemporaryFile(suffix=".prof") as out:
                        child = Child([python, "-E", "-c", _PROFILED, out.name] + script)
                        if name != "floor":
                            child.read_exactly(header.unpack(child.read_exactly(4))[0])  # HELLO
                            # An ext value: the worker loads its codec now
                            # (it does once idle after its first call, or
                            # never in the run of no calls; issue 21).
                            child.roundtrip(frame(purecodec.packb([2, 1, "echo", [purecodec.ExtType(5, b"x")], None])))
                        for _ in range(calls):
                            child.roundtrip(framed)
                        child.close()
                        stats = pstats.Stats(out.name).stats  # type: ignore[attr-defined]
                        counts.append({pstats.func_std_string(f): v[1] for f, v in stats.items()})
                many, none = counts
                per = {f: (many.get(f, 0) - none.get(f, 0)) / options.n for f in many}
                per = {f: c for f, c in per.items() if c >= 0.01}
                print("%s (%s), %s: %.2f Python function calls per %s" % (os.path.basename(python), version, name, sum(per.values()), call))
                for f, c in sorted(per.items(), key=lambda item: -item[1]):
                    print("    %6.2f  %s" % (c, f))
                sys.stdout.flush()
        return

    print("%-20s %-11s %-12s %12s %12s %10s %10s" % ("python", "contender", "call", "µs CPU/call", "µs wall/call", "MB/s", "vs floor"))
    for python in pythons:
        version, has_c = versions(python)
        contenders = [
            ("floor", [python, "-E", "-c", _FLOOR], floor_mark),
            ("floor-readv", [python, "-E", "-c", _FLOOR_READV], floor_mark),
            ("pure", [python, "-E", "-c", _BOOTSTRAP, runtime, "--module", "bench_runtime", "--path", here, "--codec", "pure"], worker_mark),
        ]
        if has_c:
            contenders.append(("msgpack-c", [python, "-E", "-c", _BOOTSTRAP, runtime, "--module", "bench_runtime", "--path", here], worker_mark))
        floor_cpu = {}
        for label, size, calls in sizes:
            value = "x" if size == 0 else bytes(range(256)) * (size // 256)
            for name, argv, marker in contenders:
                if name.startswith("floor"):
                    payload = value.encode() if size == 0 else value
                    framed, check = frame(payload), floor_check(payload)
                else:
                    framed, check = worker_call(value), worker_check(value)
                best = None
                for _ in range(options.repeat):
                    child = Child(argv)
                    try:
                        if not name.startswith("floor"):
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
                print("%-20s %-11s %-12s %12.2f %12.2f %10s %9.2fx" % (
                    "%s (%s)" % (os.path.basename(python), version), name, label, cpu * 1e6, wall * 1e6, mbps, cpu / floor_cpu[label]))
                sys.stdout.flush()


# The worker's bootstrap exactly as Go's runtime.go passes it (python -I -c).
_GO_BOOTSTRAP = (
    "import sys\n"
    "if sys.version_info<(3,8):sys.stderr.write('pypool needs Python 3.8 or newer, this is Python '+sys.version.split()[0]+'\\n');sys.exit(86)\n"
    "sys.path[:]=[p for p in sys.path if p]\n"
    "sys.path.insert(0,sys.argv[1]);from pypool_runtime.worker import main;main(sys.argv[2:])"
)


def _importtime(pythons: list, runtime: str, here: str, repeat: int) -> None:
    """--importtime: for each interpreter, the wall time of a worker's start
    (python -I -c bootstrap, as Go starts it, until it exits at the end of
    its input, HELLO sent) against python -E -c 'import bench_module' and
    python -I -c pass, medians of 2*repeat+1 runs; then python -X importtime
    of the worker's start, the modules' own (self) import times summed by
    who imports them, as shares of the total."""
    import os
    import re
    import statistics
    import subprocess
    import sys
    import time

    bench_dir = os.path.join(os.path.dirname(here), "bench")
    worker_args = [runtime, "--module", "bench_module", "--max-message", str(64 << 20), "--path", bench_dir]
    for python in pythons:
        commands = {
            "python -I -c pass": [python, "-I", "-c", "pass"],
            "python -E -c 'import bench_module'": [python, "-E", "-c", "import sys;sys.path.insert(0,%r);import bench_module" % bench_dir],
            "worker start (pure codec), to HELLO": [python, "-I", "-c", _GO_BOOTSTRAP] + worker_args + ["--codec", "pure"],
            "worker start (auto codec), to HELLO": [python, "-I", "-c", _GO_BOOTSTRAP] + worker_args,
        }
        with open(os.devnull, "wb") as null:
            def run(argv: list, stderr=null) -> float:
                t = time.perf_counter()
                # fd 3, the log stream Go gives a worker: /dev/null here
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=null, stderr=stderr, pass_fds=(), check=True,
                               preexec_fn=lambda: os.dup2(null.fileno(), 3))
                return time.perf_counter() - t

            walls = {name: [] for name in commands}
            for name, argv in commands.items():
                run(argv)  # warm-up: page cache, .pyc files
            for _ in range(2 * repeat + 1):
                for name, argv in commands.items():  # interleaved
                    walls[name].append(run(argv))
            version = subprocess.run([python, "-c", "import sys;print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip()
            print("%s (%s): wall time, median of %d interleaved runs (min-max), load average %s" % (
                python, version, 2 * repeat + 1, " ".join(open("/proc/loadavg").read().split()[:3])))
            base = statistics.median(walls["python -E -c 'import bench_module'"])
            for name, xs in walls.items():
                print("    %-40s %6.1f ms (%.1f-%.1f)  %.2fx import" % (name, statistics.median(xs) * 1e3, min(xs) * 1e3, max(xs) * 1e3, statistics.median(xs) / base))
            for codec_name in ("pure", "auto"):
                argv = [python, "-X", "importtime", "-I", "-c", _GO_BOOTSTRAP] + worker_args + (["--codec", "pure"] if codec_name == "pure" else [])
                # Each line's cumulative time, the least of several runs
                # (the order of the imports is the same in each).
                best: dict = {}
                for _ in range(2 * repeat + 1):
                    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=null, stderr=subprocess.PIPE, text=True,
                                          preexec_fn=lambda: os.dup2(null.fileno(), 3))
                    index = 0
                    for line in proc.stderr.splitlines():
                        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
                        if m:
                            key = (index, len(m.group(3)) // 2, m.group(4))
                            best[key] = min(best.get(key, 1 << 62), int(m.group(2)))
                            index += 1
                lines = [(level, name, us) for (index, level, name), us in sorted(best.items())]
                top = [(name, us) for level, name, us in lines if level == 0]
                total = sum(us for _, us in top)
                print("  -X importtime of the worker's start, codec %s: %.1f ms of imports; each top-level import's cumulative time" % (codec_name, total / 1e3))
                print("  (the least of %d runs) and its share, in the order of the start:" % (2 * repeat + 1))
                for name, us in top:
                    if us >= total / 200:
                        print("    %-36s %6.1f ms  %4.1f%%" % (name, us / 1e3, 100 * us / total))
                print("    (the %d other top-level imports: %.1f ms)" % (
                    sum(1 for _, us in top if us < total / 200), sum(us for _, us in top if us < total / 200) / 1e3))
                print("  what pypool_runtime.worker imports, its direct imports' cumulative times:")
                children = []
                for i, (level, name, us) in enumerate(lines):
                    if level == 0 and name == "pypool_runtime.worker":
                        j = i - 1
                        while j >= 0 and lines[j][0] > 0:
                            if lines[j][0] == 1:
                                children.append((lines[j][1], lines[j][2]))
                            j -= 1
                for name, us in sorted(children, key=lambda item: -item[1]):
                    print("    %-36s %6.1f ms" % (name, us / 1e3))
                after_site = [i for i, (level, name, _) in enumerate(lines) if level == 0 and name == "site"]
                rest = lines[after_site[0] + 1 :] if after_site else lines
                heavy = sorted(((us, name) for level, name, us in rest if level >= 1 and not name.startswith("pypool_runtime")), reverse=True)[:10]
                print("  the largest standard or msgpack modules the runtime and its preloads import (cumulative): " + ", ".join("%s %.1f ms" % (name, us / 1e3) for us, name in heavy))
            sys.stdout.flush()


if __name__ == "__main__":
    _main()
