"""Preloaded into a fork server's template (Config.Preload) by the tests of
issue 18, finding 3. With PYPOOL_FORKFAULT=kill (or stop) in the
environment, the template forks the worker it is asked for, then SIGKILLs
(or SIGSTOPs) itself before it answers Go: the fault of a template that
dies right after a fork. The child becomes a worker as usual. Every
template (a restarted one too) does so at each fork request.

With PYPOOL_FORKFAULT=slow, the template waits 2 ms between each fork and
its answer: a fault injected from outside at a random moment of a burst of
starts then lands in that window often."""

import os
import signal
import sys
import time

_server = sys.modules.get("pypool_runtime.forkserver")
_action = os.environ.get("PYPOOL_FORKFAULT", "")


def _fork_then_fault(self, fds):
    pid = os.fork()
    if pid == 0:
        raise _server._BecomeWorker(fds)
    os.kill(os.getpid(), signal.SIGKILL if _action == "kill" else signal.SIGSTOP)


_pidfd_open = os.pidfd_open if hasattr(os, "pidfd_open") else None


def _slow_pidfd_open(pid, *flags):
    time.sleep(0.002)  # the template opens the child's pidfd after the fork, before it answers
    return _pidfd_open(pid, *flags)


if _server is not None and _action == "slow":
    os.pidfd_open = _slow_pidfd_open
elif _server is not None and _action:
    _server.Template._fork = _fork_then_fault
