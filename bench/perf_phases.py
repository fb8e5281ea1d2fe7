"""Go CPU per call, phase by phase, from a `perf record -g` of the bench.

Usage (README.md, "The per-call budget": the throughput shape):

    go build -o /tmp/b ./bench
    taskset -c 1 perf record -F 1999 -e cpu-clock -g -o /tmp/p.data \\
        /tmp/b -profile pypool -profile-workers 2 -profile-calls 200000
    python3 bench/perf_phases.py /tmp/p.data 200000 [--hz 1999] [--comm b]

Each sample of the Go process (its threads share the command's name, the
Python workers' are python3) goes to the first phase below whose function
is on its stack, kernel frames included: so a system call's kernel time,
and the context switches that follow it, count in the phase that made it.
What the samples cover beyond the calls (the start, the warm-up) is the
same for a run of 0 calls: subtract one for an exact figure.
"""

from __future__ import annotations

import argparse
import collections
import subprocess

# The phases, in the order a sample is tested against them: a phase's
# functions are looked for anywhere on the sample's stack.
PHASES = [
    ("ppoll (osproc.Readable, crediting output)", ["osproc.Readable"]),
    ("callOver / callEnded, the rest", ["(*outputCalls).callEnded", "(*process).callOver"]),
    ("encode the call", ["encodeCall"]),
    ("write system call", ["syscall.write"]),
    ("write, Go side (fd lock, sendCall)", ["(*process).sendCall", "os.(*File).Write"]),
    ("read system call", ["syscall.read"]),
    ("read, parked in the netpoller", ["runtime_pollWait"]),
    ("read, Go side (bufio, frame reader)", ["(*FrameReader).NextSplit", "io.ReadFull", "bufio.(*Reader).Read"]),
    ("decode the reply, the result", ["decodeReply", "(*process).replied", "(*process).onReply"]),
    ("checkout", ["(*Pool).checkout"]),
    ("checkin", ["(*Pool).checkin"]),
    ("the floor's mutex and loop", ["main.(*floor).call"]),
    ("allocation", ["runtime.mallocgc"]),
    ("garbage collection", ["gcBgMarkWorker", "runtime.gcStart", "bgsweep", "bgscavenge"]),
    ("scheduler (park, findRunnable, netpoll)", ["runtime.park_m", "runtime.schedule", "runtime.findRunnable",
                                                  "runtime.mstart", "runtime.goexit0", "runtime.gosched_m"]),
    ("pypool, the rest of the call path", ["github.com/pypool"]),
    ("the bench's caller", ["main.profileCalls"]),
]


def samples(data: str, comm: str):
    """Yields each sample's stack of function names, innermost first."""
    out = subprocess.run(["perf", "script", "-i", data, "--comm", comm, "-F", "comm,ip,sym"],
                         capture_output=True, text=True, check=True).stdout
    stack: list[str] = []
    for line in out.splitlines():
        if not line.strip() or line.lstrip().startswith(comm):
            if stack:
                yield stack
            stack = []
            continue
        parts = line.split(None, 1)
        stack.append(parts[1] if len(parts) > 1 else parts[0])
    if stack:
        yield stack


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("calls", type=int)
    ap.add_argument("--hz", type=float, default=1999, help="perf record's -F")
    ap.add_argument("--comm", default="b", help="the bench binary's name (the Go process's threads)")
    a = ap.parse_args()
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for stack in samples(a.data, a.comm):
        total += 1
        for name, funcs in PHASES:
            if any(f in frame for frame in stack for f in funcs):
                counts[name] += 1
                break
        else:
            counts["other: " + stack[-1]] += 1
    per_call = lambda n: n / a.hz / a.calls * 1e6  # noqa: E731
    print(f"{per_call(total):6.2f} µs a call in all (Go process, {total} samples)")
    for name, n in counts.most_common():
        if per_call(n) >= 0.01:
            print(f"{per_call(n):6.2f}  {name}")


if __name__ == "__main__":
    main()
