"""A module whose functions report the call's context (test_callctx.py)."""

import pypool


def context():
    cc = pypool.current_call()
    if cc is None:
        return None
    return {
        "function": cc.function,
        "attempt": cc.attempt,
        "metadata": dict(cc.metadata),
        "remaining": pypool.remaining(),
        "trace_context": pypool.trace_context(),
    }


def stream(n):
    for _ in range(n):
        yield context()
