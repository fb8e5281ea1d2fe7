"""Imports fine until the file named by PYPOOL_BREAK_FLAG exists; then its
import raises, as a module broken by a deploy would (a fatal start failure).
Removing the file heals it. With PYPOOL_DIE_AFTER set (seconds), each
worker exits by itself (status 7) that long after its import, idle or not:
a crash loop that no call of the module causes."""

import os
import threading
import time

_flag = os.environ.get("PYPOOL_BREAK_FLAG", "")
if _flag and os.path.exists(_flag):
    raise RuntimeError("pypool_lifeflag is broken while its flag file exists")

_die_after = os.environ.get("PYPOOL_DIE_AFTER", "")
if _die_after:
    _timer = threading.Timer(float(_die_after), os._exit, (7,))
    _timer.daemon = True
    _timer.start()


def echo(value):
    return value


def pid():
    return os.getpid()


def sleep(seconds):
    time.sleep(seconds)
    return seconds
