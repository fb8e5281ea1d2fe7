"""Imports fine until the file named by PYPOOL_BREAK_FLAG exists; then its
import raises, as a module broken by a deploy would (a fatal start failure).
Removing the file heals it."""

import os
import time

_flag = os.environ.get("PYPOOL_BREAK_FLAG", "")
if _flag and os.path.exists(_flag):
    raise RuntimeError("pypool_lifeflag is broken while its flag file exists")


def echo(value):
    return value


def pid():
    return os.getpid()


def sleep(seconds):
    time.sleep(seconds)
    return seconds
