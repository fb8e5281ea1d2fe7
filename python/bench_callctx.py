"""Benchmark of the call context's cost on the worker's side: not a test.

    python3 python/bench_callctx.py [auto|pure] [-n CALLS] [--rounds R]

Runs the worker's serve loop (serve.Worker.serve, the code a worker runs)
in this process over a file of N identical CALL frames of the trivial call
duplicate_text("testing"), its replies written to /dev/null, and prints
the CPU time per call (time.process_time, no pipes, no Go) of the best of
R interleaved rounds, for frames: without a context (the fast path, as
before the call context existed), with keyword arguments (the general
path, for comparison), with a deadline ("r"), and with a deadline and two
metadata entries ("r+m"). docs/call-context.md quotes its figures.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pypool_runtime import codec as codecs  # noqa: E402
from pypool_runtime import frames, purecodec, serve  # noqa: E402

FRAMES = {
    "plain": [2, 7, "duplicate_text", ["testing"], None],
    "kwargs": [2, 7, "duplicate_text", [], {"text": "testing"}],
    "r": [2, 7, "duplicate_text", ["testing"], None, {"r": 29.99}],
    "r+m": [2, 7, "duplicate_text", ["testing"], None, {"r": 29.99, "m": {"tenant": "acme", "request_id": "r-1"}}],
}


def duplicate_text(text):  # type: ignore[no-untyped-def]
    return text + text


def run(codec: codecs.Codec, message: list, n: int, directory: str) -> float:
    body = purecodec.packb(message)
    path = os.path.join(directory, "frames")
    with open(path, "wb") as f:
        f.write((len(body).to_bytes(4, "big") + body) * n)
    fd = os.open(path, os.O_RDONLY)
    out = os.open(os.devnull, os.O_WRONLY)
    try:
        worker = serve.Worker("m", {"duplicate_text": duplicate_text}, codec, frames.FrameReader(fd, 64 << 20), out, 64 << 20)
        start = time.process_time()
        worker.serve()
        return (time.process_time() - start) / n * 1e9
    finally:
        os.close(fd)
        os.close(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("codec", nargs="?", default="auto")
    parser.add_argument("-n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    codec = codecs.load(options.codec)
    best = {name: float("inf") for name in FRAMES}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(options.rounds):
            for name, message in FRAMES.items():
                best[name] = min(best[name], run(codec, message, options.n, directory))
    print("%s %s (%s): ns of CPU a call, best of %d rounds of %d" % (sys.executable, sys.version.split()[0], codec.name, options.rounds, options.n))
    for name, ns in best.items():
        print("  %-7s %6.0f  %+6.0f" % (name, ns, ns - best["plain"]))


if __name__ == "__main__":
    main()
