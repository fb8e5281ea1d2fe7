"""A module with set-up functions (Config.SetUp), for the worker's tests."""

_set_up: dict = {}


def set_up(key="default", value=True):
    """Store value under key."""
    _set_up[key] = value


def set_up_value(key):
    """What set_up stored under key."""
    return _set_up.get(key)


def set_up_fails():
    raise ValueError("no model file")
