"""A module that starts a child process while it is imported, as a module
that launches a helper (a language server, a cache daemon) at import
would: with the fork server, in the template. The child inherits the
importing process's stdin, stdout and stderr (subprocess's default) and
sleeps for PYPOOL_IMPORTCHILD_SLEEP seconds (default 30); with
PYPOOL_IMPORTCHILD_SESSION=1 it leaves the group (setsid, as a daemon
does). Tests of the fork server path (audit_fork_linux_test.go)."""

import os
import subprocess
import sys

_child = subprocess.Popen(
    [sys.executable, "-c", "import time, sys; time.sleep(float(sys.argv[1]))",
     os.environ.get("PYPOOL_IMPORTCHILD_SLEEP", "30")],
    start_new_session=os.environ.get("PYPOOL_IMPORTCHILD_SESSION") == "1",
)


def import_child():
    """The pid of the child started at import: in a forked worker, the
    template's child."""
    return _child.pid


def echo(value):
    return value
