"""The HTTP service example's Python side."""

import time


def duplicate(text, delay_ms=0):
    """Return text twice, after delay_ms milliseconds: the delay stands in
    for real work (a model, a query), so that the example can show
    deadlines and load shedding."""
    time.sleep(delay_ms / 1000)
    return text * 2
