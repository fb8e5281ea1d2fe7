"""Imports fine until the file named by PYPOOL_FAIL_FLAG exists; then each
import waits for PYPOOL_GO_FLAG to exist and fails. gate() does the same as
a set-up (Config.SetUp): a fork server's workers do not import the module,
their template did, once."""

import os
import time

_fail = os.environ.get("PYPOOL_FAIL_FLAG", "")
_go = os.environ.get("PYPOOL_GO_FLAG", "")


def gate():
    if _fail and os.path.exists(_fail):
        while not os.path.exists(_go):
            time.sleep(0.01)
        raise ImportError("pypool_gated: start refused by the test")


gate()


def echo(value):
    return value
