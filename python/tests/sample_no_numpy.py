"""A module the worker tests load: it hides numpy, as on a machine without
it, so that NDARRAY arguments arrive as pypool_runtime.Array."""

import sys

sys.modules["numpy"] = None  # import numpy now raises ImportError

import pypool_runtime  # noqa: E402


def describe(array):
    """What arrived, and the array itself, sent back as it came."""
    return {"type": type(array).__name__, "is_array": isinstance(array, pypool_runtime.Array), "dtype": array.dtype,
            "shape": list(array.shape), "values": array.tolist(), "array": array}  # fmt: skip


def make(dtype, shape, data):
    return pypool_runtime.Array(dtype, shape, data)
