"""The module every contender of the pypool benchmark calls (go run ./bench).

It does as little as it can, so that what the benchmark measures is the cost
of getting a call to Python and its result back, not the work in between.
"""


def duplicate_text(text):
    """Return text twice: the trivial call of the latency scenarios."""
    return text * 2


def echo(data):
    """Return data unchanged: the call of the payload scenario."""
    return data


def small_items(n):
    """n small items, [i, 16 bytes], as a generator: the stream scenario."""
    item = b"x" * 16
    for i in range(n):
        yield [i, item]
