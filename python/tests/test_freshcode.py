"""freshcode.py: a module rewritten with the same size and modification time
(what a rewrite within the same second looks like to Python's own .pyc
check) is read again, in a fresh interpreter each time, as a new worker
would."""

import os
import subprocess
import sys
import tempfile
import unittest

RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Imports freshmod from argv[1], through freshcode when argv[2] is "fresh",
# and prints its VERSION and its loader's name.
PROGRAM = """
import sys
sys.path.insert(0, %r)
if sys.argv[2] == "fresh":
    from pypool_runtime import freshcode
    freshcode.install([sys.argv[1]])
sys.path.insert(0, sys.argv[1])
import freshmod
print(freshmod.VERSION, type(freshmod.__loader__).__name__)
""" % RUNTIME_DIR


class FreshCodeTest(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.path = os.path.join(self.dir.name, "freshmod.py")

    def write(self, version: str, mtime: float = 0) -> None:
        with open(self.path, "w") as f:
            f.write("VERSION = %r\n" % version)
        if mtime:
            os.utime(self.path, (mtime, mtime))

    def run_import(self, mode: str) -> str:
        out = subprocess.run([sys.executable, "-I", "-c", PROGRAM, self.dir.name, mode],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def test_same_size_and_mtime_is_read_again(self) -> None:
        self.write("v1")
        mtime = os.stat(self.path).st_mtime
        self.assertEqual(self.run_import("fresh"), "v1 FreshSourceLoader")
        self.write("v2", mtime)
        self.assertEqual(self.run_import("fresh"), "v2 FreshSourceLoader")
        self.assertEqual(self.run_import("fresh"), "v2 FreshSourceLoader", "from its checked cache")

    def test_stale_timestamp_cache_is_not_used(self) -> None:
        self.write("v1")
        mtime = os.stat(self.path).st_mtime
        self.assertEqual(self.run_import("plain"), "v1 SourceFileLoader")  # writes a timestamp .pyc
        self.write("v2", mtime)
        self.assertEqual(self.run_import("plain"), "v1 SourceFileLoader", "Python's own check is fooled")
        self.assertEqual(self.run_import("fresh"), "v2 FreshSourceLoader")

    def test_other_paths_keep_the_standard_loader(self) -> None:
        out = subprocess.run([sys.executable, "-I", "-c",
                              "import sys; sys.path.insert(0, %r)\n"
                              "from pypool_runtime import freshcode\n"
                              "freshcode.install([%r])\n"
                              "import json.decoder\n"
                              "print(type(json.decoder.__loader__).__name__)" % (RUNTIME_DIR, self.dir.name)],
                             check=True, capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "SourceFileLoader")


if __name__ == "__main__":
    unittest.main()
