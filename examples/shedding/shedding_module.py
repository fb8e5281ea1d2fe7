"""The shedding example's Python side: one request's work. It sleeps
instead of computing, so that the example shows how the pool hands out
its workers, not a contest for the machine's CPUs."""

import time


def work(millis):
    """Serve one request: millis milliseconds of work."""
    time.sleep(millis / 1000)
    return millis
