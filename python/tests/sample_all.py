"""A module with __all__: exactly the callables listed are exposed."""

from os.path import basename

__all__ = ["listed", "basename", "CONSTANT", "_hidden_but_listed"]

CONSTANT = 3


def listed():
    return "listed"


def not_listed():
    return "not listed"


def _hidden_but_listed():
    return "private"
