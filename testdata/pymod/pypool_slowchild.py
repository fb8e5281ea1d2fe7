"""Preloaded into a fork server's template (Config.Preload) by
audit_fork_linux_test.go: each child the template forks waits 1 s before
it becomes a worker (before it leaves the template's process group), so
that the template can be killed while a child it forked and answered for
has not yet taken a group of its own."""

import sys
import time

_server = sys.modules.get("pypool_runtime.forkserver")

if _server is not None:
    _become = _server.Template.become_worker

    def _slow_become(self, fds):
        time.sleep(1)
        return _become(self, fds)

    _server.Template.become_worker = _slow_become
