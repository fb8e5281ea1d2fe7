"""Imports fine until the file named by PYPOOL_EXIT_FLAG exists; then each
import writes a line to stderr and exits with status 3 before the worker's
handshake. gate() does the same as a set-up (Config.SetUp): a fork server's
workers do not import the module, their template did, once."""

import os
import sys

_exit = os.environ.get("PYPOOL_EXIT_FLAG", "")


def gate():
    if _exit and os.path.exists(_exit):
        print("exiting at start, as the test asks", file=sys.stderr, flush=True)
        os._exit(3)


gate()


def echo(value):
    return value
