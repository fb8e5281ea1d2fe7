"""Tests of the pool's guardian (pypool_runtime.guardian), driven as Go
drives it: +PGID and -PGID lines on its stdin, and the end of its stdin."""

import os
import subprocess
import sys
import unittest

from pypool_runtime import guardian

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(os.path.dirname(TESTS_DIR), "pypool_runtime", "guardian.py")
TIMEOUT = 20.0


class ApplyTest(unittest.TestCase):
    def test_adds_and_removes_groups(self) -> None:
        groups = set()
        for line in (b"+10", b"+11\r", b"-10", b"+12", b"-99"):
            guardian.apply(groups, line)
        self.assertEqual(groups, {11, 12})

    def test_ignores_what_is_not_a_group(self) -> None:
        groups = set()
        for line in (b"", b"+", b"+x", b"10", b"*10", b"+1", b"+0", b"+-5", b"-"):
            guardian.apply(groups, line)
        self.assertEqual(groups, set())


class GuardianProcessTest(unittest.TestCase):
    def sleeper(self) -> "subprocess.Popen[bytes]":
        """A process in a group of its own, as a worker is."""
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        return proc

    def guardian(self) -> "subprocess.Popen[bytes]":
        proc = subprocess.Popen([sys.executable, "-I", "-S", SCRIPT], stdin=subprocess.PIPE, start_new_session=True)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        return proc

    def test_kills_the_groups_it_owns_at_the_end_of_its_input(self) -> None:
        owned, released = self.sleeper(), self.sleeper()
        g = self.guardian()
        assert g.stdin is not None
        g.stdin.write(b"+%d\n+%d\n-%d\n" % (owned.pid, released.pid, released.pid))
        g.stdin.close()
        self.assertEqual(g.wait(TIMEOUT), 0)
        self.assertEqual(owned.wait(TIMEOUT), -9)
        self.assertIsNone(released.poll(), "a released group is left alone")

    def test_imports_only_built_in_modules(self) -> None:
        # It starts beside a pool's first worker, competing with it for a
        # CPU: no module that runs Python code at import (signal imports
        # enum, functools and collections; os, posixpath and stat), only
        # what the interpreter itself starts with.
        out = subprocess.run(
            [sys.executable, "-I", "-S", "-X", "importtime", SCRIPT],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT, check=True,
        )  # fmt: skip
        started = subprocess.run(
            [sys.executable, "-I", "-S", "-X", "importtime", "-c", "pass"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT, check=True,
        )  # fmt: skip

        def modules(stderr: bytes) -> set:
            return {line.rsplit(b"|", 1)[1].strip().decode() for line in stderr.splitlines() if line.startswith(b"import time:") and b"|" in line} - {"package"}

        own = modules(out.stderr) - modules(started.stderr)
        self.assertLessEqual(own, {"_signal", "posix"} | set(sys.builtin_module_names), "the guardian imported %s" % sorted(own))
        self.assertNotIn("enum", own)
        self.assertNotIn("os", own)

    def test_a_group_gone_already_is_skipped(self) -> None:
        gone = self.sleeper()
        gone.kill()
        gone.wait()
        g = self.guardian()
        assert g.stdin is not None
        g.stdin.write(b"+%d\n" % gone.pid)
        g.stdin.close()
        self.assertEqual(g.wait(TIMEOUT), 0)


if __name__ == "__main__":
    unittest.main()
