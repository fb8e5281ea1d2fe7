"""The worker's hot path, counted rather than timed: the Python function
calls (built-in ones included) that serving one call costs, as cProfile
counts them (python/bench_runtime.py --cprofile, bench/README.md's per-call
budget). A count does not depend on the machine's load, so an upper bound
on it holds the cuts of issue 21 in place: a change that adds a call to
every call of every worker fails here, where a timing would not show it."""

import os
import sys
import unittest
from typing import Any, Callable, Dict, List

from pypool_runtime import codec, ext, purecodec, shm
from pypool_runtime.frames import FrameReader
from pypool_runtime.serve import Worker

CALL = 2


def duplicate_text(text: str) -> str:
    return text + text


def echo(value: Any) -> Any:
    return value


def big(size: int) -> bytes:
    return b"z" * size


FUNCTIONS: Dict[str, Callable[..., Any]] = {"duplicate_text": duplicate_text, "echo": echo, "len": len, "big": big}


def codecs() -> List[codec.Codec]:
    try:
        return [codec.PURE, codec.load(codec.C_NAME)]
    except ImportError:
        return [codec.PURE]


def calls_while_serving(c: codec.Codec, frames: bytes) -> int:
    """The function calls (Python and built-in) a Worker makes while it
    serves frames, written into a pipe, until the end of its input."""
    r, w = os.pipe()
    out = os.open(os.devnull, os.O_WRONLY)
    try:
        os.write(w, frames)  # small enough for the pipe's buffer (64 KiB)
        os.close(w)
        w = -1
        worker = Worker("hot", dict(FUNCTIONS), c, FrameReader(r, 64 << 20), out, 64 << 20)
        count = 0

        def profile(frame: Any, event: str, arg: Any) -> None:
            nonlocal count
            if event == "call" or event == "c_call":
                count += 1

        sys.setprofile(profile)
        try:
            worker.serve()
        finally:
            sys.setprofile(None)
        return count
    finally:
        os.close(r)
        os.close(out)
        if w >= 0:
            os.close(w)


def per_call(c: codec.Codec, name: str, value: Any, n: int = 20) -> float:
    """The calls of one call of name(value): the difference between serving
    2n and n of them, over n (the serve loop's own start and end, and the
    first read, taken off)."""
    body = purecodec.packb([CALL, 70000, name, [value], None])
    framed = len(body).to_bytes(4, "big") + body
    return (calls_while_serving(c, framed * 2 * n) - calls_while_serving(c, framed * n)) / n


class HotPathCallsTest(unittest.TestCase):
    # The most function calls one call may cost, the user's function and
    # the frame's read included, by codec (before issue 21's cuts: a trivial
    # call 20 with the pure codec, 19 with msgpack-c; the 1 KiB echo 32 and
    # 21). The floor's loop (bench/floor.py) makes 5.
    LIMITS = {
        ("pure", "trivial"): 15,
        ("msgpack-c", "trivial"): 12,
        ("pure", "1 KiB"): 15,
        ("msgpack-c", "1 KiB"): 13,
    }

    def test_calls_per_call(self) -> None:
        for c in codecs():
            for label, name, value in (("trivial", "duplicate_text", "testing"), ("1 KiB", "echo", bytes(range(256)) * 4)):
                with self.subTest(codec=c.name, call=label):
                    self.assertLessEqual(per_call(c, name, value), self.LIMITS[c.name, label])

    @unittest.skipUnless(hasattr(os, "memfd_create"), "os.memfd_create is Linux-only")
    def test_calls_per_call_with_shared_memory(self) -> None:
        # Go gives every worker shared memory by default: a call that does
        # not use it costs no call more (the serve loop skips begin_call).
        with shared_memory():
            for c in codecs():
                with self.subTest(codec=c.name):
                    self.assertLessEqual(per_call(c, "duplicate_text", "testing"), self.LIMITS[c.name, "trivial"])

    def test_calls_per_call_once_a_deferred_codec_loaded(self) -> None:
        # A worker's codec is loaded later (codec.deferred): once it is, a
        # call costs what it costs with that codec, not one call more for
        # the entry points that forwarded to it. The first frame's argument
        # (an ext value) makes the worker load it.
        loading = purecodec.packb([CALL, 1, "echo", [purecodec.ExtType(5, b"x")], None])
        self.assert_trivial_calls_once_loaded(len(loading).to_bytes(4, "big") + loading)

    def test_a_busy_worker_loads_its_codec_after_a_few_frames(self) -> None:
        # Calls that keep coming (every frame waits in the pipe here) do not
        # keep a worker on the slower pure codec: it loads its C codec after
        # serve.INTERIM_FRAMES frames, idle or not.
        self.assert_trivial_calls_once_loaded(b"")

    def assert_trivial_calls_once_loaded(self, first: bytes, n: int = 20) -> None:
        """Serve first, then 2n and n trivial calls, with each codec
        deferred (codec.deferred): it is loaded by the end, and a call then
        costs what it costs with that codec (as per_call)."""
        body = purecodec.packb([CALL, 70000, "duplicate_text", ["testing"], None])
        framed = len(body).to_bytes(4, "big") + body
        for c in codecs():
            with self.subTest(codec=c.name):
                counts = []
                for calls in (2 * n, n):
                    d = codec.deferred(c.name, lambda c=c: c)  # type: ignore[misc]
                    counts.append(calls_while_serving(d, first + framed * calls))
                    self.assertIsNone(d.finish)
                self.assertLessEqual((counts[0] - counts[1]) / n, self.LIMITS[c.name, "trivial"])

    def test_replies_are_the_codecs(self) -> None:
        # What the counted loop sends is what packb sends, length included.
        for c in codecs():
            r, w = os.pipe()
            out_r, out_w = os.pipe()
            try:
                body = purecodec.packb([CALL, 7, "duplicate_text", ["ab"], None])
                os.write(w, len(body).to_bytes(4, "big") + body)
                os.close(w)
                w = -1
                Worker("hot", dict(FUNCTIONS), c, FrameReader(r, 64 << 20), out_w, 64 << 20).serve()
                reply = os.read(out_r, 1 << 16)
                expected = purecodec.packb([3, 7, "abab"])
                self.assertEqual(reply, len(expected).to_bytes(4, "big") + expected)
            finally:
                for fd in (r, out_r, out_w) + ((w,) if w >= 0 else ()):
                    os.close(fd)


class shared_memory:
    """shm.ACTIVE set to a fresh memfd's SharedMemory (threshold 1 KiB) inside the with block."""

    def __enter__(self) -> shm.SharedMemory:
        self.fd = os.memfd_create("pypool-test")
        os.ftruncate(self.fd, 1 << 20)
        shm.ACTIVE = shm.SharedMemory(self.fd, threshold=1024, limit=64 << 20)
        return shm.ACTIVE

    def __exit__(self, *exc: Any) -> None:
        shm.ACTIVE = None
        ext.SHARED_READ = False
        os.close(self.fd)


@unittest.skipUnless(hasattr(os, "memfd_create"), "os.memfd_create is Linux-only")
class SharedMemoryStateTest(unittest.TestCase):
    """The serve loop forgets a call's values in the shared memory before
    the next call whenever the call used it, and only then."""

    def replies(self, c: codec.Codec, messages: List[Any]) -> List[bytes]:
        """The bodies of the replies a Worker sends to messages."""
        r, w = os.pipe()
        out_r, out_w = os.pipe()
        try:
            for message in messages:
                body = purecodec.packb(message)
                os.write(w, len(body).to_bytes(4, "big") + body)
            os.close(w)
            w = -1
            Worker("hot", dict(FUNCTIONS), c, FrameReader(r, 64 << 20), out_w, 64 << 20).serve()
            data = os.read(out_r, 1 << 16)
        finally:
            for fd in (r, out_r, out_w) + ((w,) if w >= 0 else ()):
                os.close(fd)
        replies = []
        while data:
            size = int.from_bytes(data[:4], "big")
            replies.append(data[4 : 4 + size])
            data = data[4 + size :]
        return replies

    def test_before_the_codec_is_loaded(self) -> None:
        # The calls a worker serves before it loads its codec (codec.deferred)
        # forget their values in the shared memory as serve does.
        for c in codecs():
            with self.subTest(codec=c.name), shared_memory():
                d = codec.deferred(c.name, lambda c=c: c)  # type: ignore[misc]
                replies = self.replies(d, [[CALL, 1, "big", [2000], None], [CALL, 2, "echo", ["x"], None], [CALL, 3, "big", [3000], None]])
                self.assertIsNotNone(d.finish, "served by the pure codec")
                self.assertEqual(replies[1], purecodec.packb([3, 2, "x"]))
                for reply, call_id, size in ((replies[0], 1, 2000), (replies[2], 3, 3000)):
                    ref = purecodec.ExtType(shm.EXT_SHM_BYTES, purecodec.packb([0, size]))
                    self.assertEqual(reply, purecodec.packb([3, call_id, ref]))

    def test_a_call_that_only_read_from_it(self) -> None:
        for c in codecs():
            with self.subTest(codec=c.name), shared_memory():
                os.pwrite(shm.ACTIVE.fd, b"a" * 100, 0)  # type: ignore[union-attr]
                ref = purecodec.ExtType(shm.EXT_SHM_BYTES, purecodec.packb([0, 100]))
                replies = self.replies(c, [[CALL, 1, "len", [ref], None], [CALL, 2, "big", [2000], None],
                                           [CALL, 3, "echo", ["x"], None], [CALL, 4, "big", [3000], None]])  # fmt: skip
                self.assertEqual(replies[0], purecodec.packb([3, 1, 100]))
                self.assertEqual(replies[2], purecodec.packb([3, 3, "x"]))
                # The large results go at offset 0, not after call 1's 100
                # bytes: the values of the call before them were forgotten.
                for reply, call_id, size in ((replies[1], 2, 2000), (replies[3], 4, 3000)):
                    ref = purecodec.ExtType(shm.EXT_SHM_BYTES, purecodec.packb([0, size]))
                    self.assertEqual(reply, purecodec.packb([3, call_id, ref]))


if __name__ == "__main__":
    unittest.main()
