"""Results that cannot cross, for audit_pykit_test.go: each is called by a
real worker and through pypool.testing, whose errors must be the same."""

import datetime


class Opaque:
    def __repr__(self):
        raise ValueError("no repr")

    def __eq__(self, other):
        raise ValueError("no eq")

    __hash__ = object.__hash__


def tuple_key():
    return {(1, 2): "pair"}


def cyclic():
    items = []
    items.append(items)
    return items


def deep():
    value = []
    for _ in range(5000):
        value = [value]
    return value


def big_int():
    return {"n": [2**64]}


def naive_datetime():
    return [datetime.datetime(2026, 12, 6, 20, 0)]


def opaque():
    return {"x": Opaque()}


def opaque_key():
    return {Opaque(): 1}


def frozen():
    return frozenset([1])


def generator():
    yield 1


def trace():
    import pypool

    call = pypool.current_call()
    return [call.traceparent, call.tracestate, dict(call.metadata)]


def numpy_objects():
    import numpy

    return {"a": numpy.array([{1}], dtype=object)}


def numpy_complex():
    import numpy

    return [numpy.complex128(1j)]


def large_bytes():
    return b"x" * 100000


def large_map():
    return {"a": "y" * 100000, "b": [1, 2, 3]}


def unknown_callback(name):
    import pypool

    try:
        pypool.call_go(name)
    except pypool.GoError as exc:
        return [exc.code, exc.message, exc.go_type, str(exc)]
    return None


def metadata_keys():
    import pypool

    return list(pypool.current_call().metadata)


def surrogate():
    return {"name": "\udc80"}


def strided_view():
    return [memoryview(b"abcdef")[::2]]


def complex_number():
    return 1j
