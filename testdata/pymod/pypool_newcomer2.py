"""audit_newcomer2_test.go's module: a service's function whose caller goes
away, and whose clean-up after the interrupt takes a while."""

import time


def held(cleanup_seconds):
    """Sleep until interrupted, then clean up for cleanup_seconds and let
    the interrupt go on. Each step prints a line the test awaits; the first
    inside the try block, so that the interrupt it announces is caught."""
    try:
        print("newcomer2: held", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("newcomer2: cleaning up", flush=True)
        time.sleep(cleanup_seconds)
        raise
