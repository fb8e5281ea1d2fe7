"""A module of sync functions only: its worker must never import asyncio."""

import sys


def imported(name):
    """Whether module name has been imported in this worker."""
    return name in sys.modules


def echo(value):
    return value
