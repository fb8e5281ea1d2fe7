"""Preloaded into a fork server's template (Config.Preload) by
TestForkServerFirstWorkerNeedsNoRequest (issue 21): the template reads each
fork request and drops it (closing its descriptors) without forking or
answering. Only a worker the template forks without a request, the pool's
first, can then be forked at all; any other start waits for forkTimeout,
and the pool kills the template and starts the worker by exec."""

import sys

_server = sys.modules.get("pypool_runtime.forkserver")
_sockets = getattr(_server, "_socket", None) or getattr(_server, "socket", None)  # _socket since issue 21


def _drop(self):
    data, ancdata, _, _ = self.control.recvmsg(16, _sockets.CMSG_SPACE(self.worker_fds * 4))
    _server._close_all(_server._received_fds(ancdata))
    return bool(data)


if _server is not None:
    _server.Template._request = _drop
