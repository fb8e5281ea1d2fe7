"""The Python side of examples/streaming: generators that Go iterates."""

import time


def words(text, delay):
    """Yield the words of text one by one, as a slow producer would (a model
    emitting tokens, a crawler, a query): each reaches Go as it is made."""
    for word in text.split():
        time.sleep(delay)
        yield word


def squares(n):
    """Yield n records, lazily: Go reads as many as it wants."""
    try:
        for i in range(n):
            yield {"n": i, "square": i * i}
    finally:
        # Runs at the end, and when Go breaks out of its loop (GeneratorExit).
        print("squares: generator finished")
