"""Preloaded into a fork server's template (Config.Preload) by the tests of
issue 18, finding 3. With PYPOOL_FORKFAULT=kill (or stop) in the
environment, the template forks the worker it is asked for, then SIGKILLs
(or SIGSTOPs) itself before it answers Go: the fault of a template that
dies right after a fork. The child becomes a worker as usual. Every
template (a restarted one too) does so at each fork request."""

import os
import signal
import sys

_server = sys.modules.get("pypool_runtime.forkserver")
_action = os.environ.get("PYPOOL_FORKFAULT", "")


def _fork_then_fault(self, fds):
    pid = os.fork()
    if pid == 0:
        raise _server._BecomeWorker(fds)
    os.kill(os.getpid(), signal.SIGKILL if _action == "kill" else signal.SIGSTOP)


if _server is not None and _action:
    _server.Template._fork = _fork_then_fault
