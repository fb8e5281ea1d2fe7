"""Tests of the worker's end of the shared memory (pypool_runtime.shm)."""

import os
import unittest

from pypool_runtime import purecodec, shm


@unittest.skipUnless(hasattr(os, "memfd_create"), "os.memfd_create is Linux-only")
class SharedMemoryTest(unittest.TestCase):
    def setUp(self) -> None:
        self.fd = os.memfd_create("pypool-test")
        self.addCleanup(os.close, self.fd)
        self.mem = shm.SharedMemory(self.fd, threshold=1024, limit=64 << 20)

    def test_reply_values_go_after_the_call_values(self) -> None:
        # Go wrote 100 bytes at 0 (growing the file as it does).
        os.ftruncate(self.fd, 1 << 20)
        os.pwrite(self.fd, b"a" * 100, 0)
        self.mem.begin_call()
        self.assertEqual(self.mem.read_bytes(0, 100), b"a" * 100)
        offset = self.mem.put(b"reply")
        self.assertEqual(offset, 128, "after the call's values, aligned to 64")
        self.assertEqual(os.pread(self.fd, 5, offset), b"reply")
        second = self.mem.put(b"more")
        self.assertEqual(second, 192)
        self.mem.begin_call()
        self.assertEqual(self.mem.put(b"x"), 0, "a new call starts at offset 0")

    def test_grows_the_file(self) -> None:
        self.mem.begin_call()
        data = bytes(range(256)) * (12 << 10)  # 3 MiB
        offset = self.mem.put(data)
        self.assertGreaterEqual(os.fstat(self.fd).st_size, offset + len(data))
        self.assertEqual(os.pread(self.fd, len(data), offset), data)

    def test_sees_what_go_grew(self) -> None:
        self.mem.begin_call()
        self.mem.put(b"small")
        os.ftruncate(self.fd, 8 << 20)
        os.pwrite(self.fd, b"far", 7 << 20)
        self.assertEqual(self.mem.read_bytes(7 << 20, 3), b"far")

    def test_refuses_bad_references(self) -> None:
        os.ftruncate(self.fd, 1 << 20)
        for offset, length in [(-1, 4), (0, -4), (0, 65 << 20), (64 << 20, 1), (2 << 20, 8)]:
            with self.subTest(offset=offset, length=length):
                with self.assertRaises(ValueError):
                    self.mem.view(offset, length)

    def test_refuses_to_grow_past_the_limit(self) -> None:
        small = shm.SharedMemory(self.fd, threshold=1024, limit=1 << 20)
        small.begin_call()
        with self.assertRaises(ValueError):
            small.put(bytes(2 << 20))

    def test_a_received_bytes_result_is_not_copied_again(self) -> None:
        os.ftruncate(self.fd, 1 << 20)
        os.pwrite(self.fd, b"payload", 0)
        self.mem.begin_call()
        data = self.mem.read_bytes(0, 7)
        self.assertEqual(self.mem.bytes_ref(data), purecodec.packb([0, 7]), "where it already is")
        equal = bytes(bytearray(data))  # the same bytes, another object: copied
        self.assertEqual(self.mem.bytes_ref(equal), purecodec.packb([64, 7]))
        self.mem.begin_call()
        self.assertEqual(self.mem.bytes_ref(data), purecodec.packb([0, 7]), "a new call copies it again")

    def test_accepts_arrays(self) -> None:
        import array

        self.mem.begin_call()
        values = array.array("d", [1.5, 2.5])
        offset = self.mem.put(values)
        self.assertEqual(os.pread(self.fd, 16, offset), values.tobytes())


if __name__ == "__main__":
    unittest.main()
