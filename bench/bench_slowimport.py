"""A module whose import takes about 300 ms, as a heavy dependency's does
(go run ./bench -scenario forkstart): it builds a large structure, then
sleeps for what is left of the 300 ms."""

import time

_started = time.monotonic()
TABLE = {i: str(i) for i in range(200_000)}
time.sleep(max(0.0, 0.3 - (time.monotonic() - _started)))


def duplicate_text(text):
    return text * 2


def echo(data):
    return data
