"""A module whose dependency is not installed (errmsg_test.go)."""

import pypool_absent_dependency  # noqa: F401


def f():
    return 1
