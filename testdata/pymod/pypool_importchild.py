"""A module that starts a child process while it is imported, as a module
that launches a helper (a language server, a cache daemon) at import
would: with the fork server, in the template. The child inherits the
importing process's stdin, stdout and stderr (subprocess's default) and
sleeps for PYPOOL_IMPORTCHILD_SLEEP seconds (default 30); with
PYPOOL_IMPORTCHILD_SESSION=1 it leaves the group (setsid, as a daemon
does). With PYPOOL_IMPORTCHILD_FORK=1 the import also forks a child
without exec (as multiprocessing's fork method does), which holds every
descriptor of the importing process. Tests of the fork server path
(audit_fork_linux_test.go)."""

import os
import subprocess
import sys

_child = subprocess.Popen(
    [sys.executable, "-c", "import time, sys; time.sleep(float(sys.argv[1]))",
     os.environ.get("PYPOOL_IMPORTCHILD_SLEEP", "30")],
    start_new_session=os.environ.get("PYPOOL_IMPORTCHILD_SESSION") == "1",
)

_forked = 0
if os.environ.get("PYPOOL_IMPORTCHILD_FORK") == "1":
    _forked = os.fork()
    if _forked == 0:
        import time

        time.sleep(float(os.environ.get("PYPOOL_IMPORTCHILD_SLEEP", "30")))
        os._exit(0)


def forked_child():
    """The pid of the child forked at import (0 without one)."""
    return _forked


def import_child():
    """The pid of the child started at import: in a forked worker, the
    template's child."""
    return _child.pid


def echo(value):
    return value
