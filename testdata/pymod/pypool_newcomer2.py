"""audit_newcomer2_test.go's module: a service's function whose caller goes
away, and whose clean-up after the interrupt takes a while."""

import time


def held(cleanup_seconds):
    """Sleep until interrupted, then clean up for cleanup_seconds and let
    the interrupt go on. Each step prints a line the test awaits."""
    print("newcomer2: held", flush=True)
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        print("newcomer2: cleaning up", flush=True)
        time.sleep(cleanup_seconds)
        raise
