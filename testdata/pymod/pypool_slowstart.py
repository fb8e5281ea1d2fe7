"""Imports at once, unless the file named by PYPOOL_HOLD_FLAG exists: then the
import waits until that file is removed. Tests use it to keep worker starts
in flight for as long as they need, without timing. hold() does the same as
a set-up (Config.SetUp), for a fork server's workers, which do not import
the module (their template did, once)."""

import os
import sys
import threading
import time

_hold = os.environ.get("PYPOOL_HOLD_FLAG", "")


def hold():
    if _hold and os.path.exists(_hold):
        print("start held", file=sys.stderr, flush=True)
    while _hold and os.path.exists(_hold):
        time.sleep(0.01)


hold()


def echo(value):
    return value


def pid():
    return os.getpid()


def linger(seconds):
    """Leave a non-daemon thread behind: the interpreter cannot exit at end
    of input until it ends, so a graceful stop takes until StopTimeout."""
    threading.Thread(target=time.sleep, args=(seconds,)).start()
    return "lingering"


def crash(status):
    os._exit(status)
