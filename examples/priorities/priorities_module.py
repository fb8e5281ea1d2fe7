"""The priorities example's Python side: a slow, retryable read and a short
write. Both sleep instead of computing, so that the example shows queueing
in the pools, not a contest for the machine's CPUs."""

import os
import random
import time


def read(key, millis, crash_rate):
    """Look key up slowly. Now and then the worker dies (os._exit), as a
    worker hit by the OOM killer would: the read pool's CrashRetries tries
    the read again on another worker, so that the caller never sees it."""
    if random.random() < crash_rate:
        os._exit(1)
    time.sleep(millis / 1000)
    return "value of " + key


def write(key, value):
    """Store value under key: short, and must not wait behind the reads."""
    time.sleep(0.001)
    return len(value)
