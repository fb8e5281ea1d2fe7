"""A module (test_audit_hostile.py) that sets sys.stderr to None and lowers
the recursion limit so far at import that msgpack's C extension, loaded at
the worker's first idle moment, does not load."""

import sys

sys.stderr = None
sys.setrecursionlimit(40)


def echo(value):
    return value
