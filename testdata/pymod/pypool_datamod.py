"""Functions the Go end-to-end tests of issue 9 call: numpy arrays,
pypool_runtime.Array (numpy missing), the shared memory, user extensions
and the default hook. numpy is optional: the module imports without it, and
the functions that make numpy arrays raise ImportError then.

At import it registers, as a user module would:
- decimal.Decimal as extension 10 (Go: pypool.Ext(10, ...) of DecimalString);
- a default hook: dataclasses become dicts, datetime.date its isoformat."""

import dataclasses
import datetime
import decimal
import os
import struct
import sys

import pypool_runtime
from pypool_runtime import shm as _shm


pypool_runtime.register_ext(decimal.Decimal, 10, lambda d: str(d).encode(), lambda b: decimal.Decimal(b.decode()))


def _default(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    return obj  # not ours: the packer's own error (or the runtime's, for an ndarray)


pypool_runtime.set_default(_default)


def _numpy():
    """numpy, imported at the first use (as the runtime does): the tests that
    need no numpy do not pay for its import at every worker start."""
    import numpy

    return numpy


# -- What crosses ---------------------------------------------------------------


def echo(value):
    return value


def has_numpy():
    try:
        _numpy()
    except ImportError:
        return False
    return True


def describe(value):
    """What an argument became in Python: for arrays their class, dtype,
    shape, byte order and elements (the first and last few, and their sum,
    for large ones); containers are described element by element."""
    numpy = sys.modules.get("numpy")  # imported if an ndarray arrived
    if numpy is not None and isinstance(value, numpy.ndarray):
        flat = value.reshape(-1)
        out = {
            "type": "numpy.ndarray",
            "dtype": value.dtype.name,
            "shape": list(value.shape),
            "byteorder": value.dtype.str[0],
            "writeable": bool(value.flags.writeable),
            "owndata": bool(value.flags.owndata),
            "contiguous": bool(value.flags.c_contiguous),
            "size": int(value.size),
        }
        if value.size <= 4096:
            out["values"] = value.tolist()
        else:
            out["first"] = flat[:3].tolist()
            out["last"] = flat[-3:].tolist()
            out["sum"] = float(flat.sum(dtype=numpy.float64))
        return out
    if isinstance(value, pypool_runtime.Array):
        return {
            "type": "pypool_runtime.Array",
            "dtype": value.dtype,
            "shape": list(value.shape),
            "byteorder": value.byteorder,
            "readonly": value.data.readonly,
            "values": value.tolist(),
        }
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    cls = type(value)
    out = {"type": cls.__name__ if cls.__module__ == "builtins" else "%s.%s" % (cls.__module__, cls.__qualname__)}
    if isinstance(value, (bytes, bytearray)):
        out["len"] = len(value)
        out["head"] = bytes(value[:8])
        out["tail"] = bytes(value[-8:])
    else:
        out["value"] = value
    return out


def describe_kwargs(**kwargs):
    return {k: describe(v) for k, v in kwargs.items()}


# -- numpy arrays made in Python --------------------------------------------------

# numpy's dtype names, in the order of the tests' table.
DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]


def extremes(dtype):
    """Values at the ends of the dtype's range (and a few in between)."""
    np = _numpy()
    if dtype == "bool":
        return [True, False, True, True]
    if dtype.startswith("float"):
        info = np.finfo(dtype)
        return [0.0, -1.5, float(info.max), float(info.min), float(info.tiny), float("inf"), float("-inf")]
    info = np.iinfo(dtype)
    return [int(info.min), int(info.max), 0, 1]


def every_dtype():
    """One 1-d array of each supported dtype, of extremes(dtype)."""
    np = _numpy()
    return {name: np.array(extremes(name), dtype=name) for name in DTYPES}


def made_in_python(n):
    """Arrays numpy makes, that Go checks element by element (see the Go
    side's expectations): views that are not C-contiguous, big-endian
    dtypes, 0-d, empty and 3-d arrays. n sets the size of most."""
    np = _numpy()
    base = np.arange(2 * n, dtype=np.int64)
    square = np.arange(3 * n, dtype=np.float64).reshape(3, n)
    arrays = {
        "sliced": base[::2],  # 2*i
        "transposed": square.T,  # [i][j] = j*n + i
        "reversed": np.arange(n, dtype=np.int32)[::-1],  # n-1-i
        "cube": np.arange(6 * n, dtype=np.float32).reshape(2, 3, n),  # i
        "empty": np.zeros((0, 4), dtype=np.uint16),
        "zero_d": np.array(-7, dtype=np.int16),
        "zero_d_f8": np.array(2.5),
        "bools": np.arange(n) % 3 == 0,
    }
    for kind in ("i2", "i4", "i8", "u2", "u4", "u8", "f4", "f8"):
        # Big-endian: (i - n//2) for signed, 3*i for unsigned, i/4 for floats,
        # each wrapped to the type.
        if kind[0] == "i":
            values = np.arange(n, dtype=np.int64) - n // 2
        elif kind[0] == "u":
            values = np.arange(n, dtype=np.uint64) * 3
        else:
            values = np.arange(n, dtype=np.float64) / 4
        big = values.astype(">" + kind)
        assert big.dtype.str == ">" + kind and not big.dtype.isnative
        arrays["big_" + kind] = big
    return arrays


def nested_arrays(n):
    """Arrays inside lists, tuples and dicts."""
    np = _numpy()
    return {
        "list": [np.arange(n, dtype=np.int32), {"inner": np.full((2, 2), 0.5), "n": n}],
        "tuple": (np.ones(n, dtype=np.uint8),),
        "plain": 3,
    }


def floats(n):
    """A 1-d float64 array: i/4."""
    return _numpy().arange(n, dtype=_numpy().float64) / 4


def int32s(n):
    """A 1-d int32 array."""
    return _numpy().arange(n, dtype=_numpy().int32)


def record(n):
    """A dict for a Go struct with an Array field and a []float64 field."""
    np = _numpy()
    return {
        "name": "rec",
        "matrix": np.arange(2 * n, dtype=np.int32).reshape(2, n),
        "weights": np.arange(n, dtype=np.float64) / 2,
        "count": n,
    }


def count_of_floats(n):
    """A dict whose "count" is an ndarray of floats, for a Go int64 field."""
    np = _numpy()
    return {"name": "bad", "count": np.arange(n, dtype=np.float64)}


def nested_list():
    return [[1, 2, 3], [4, 5, 6]]


def float_list():
    return [0.5, 1, 2]


def double(value):
    """An array (or anything with *) times 2: a new object, not the argument."""
    return value * 2


def complex_array():
    return _numpy().array([1 + 2j])


def big_array(n):
    """A float64 array of n elements: i/2."""
    return _numpy().arange(n, dtype=_numpy().float64) / 2


def check_big(a, positions):
    """The elements of a at the flat positions given, after checking that
    it is a writable float64 ndarray that owns its data."""
    np = _numpy()
    assert type(a) is np.ndarray, type(a)
    assert a.dtype == np.float64 and a.flags.writeable and a.flags.owndata, (a.dtype, a.flags)
    return {"shape": list(a.shape), "at": [float(a[p]) for p in positions]}


def check_and_return(a, positions):
    """check_big's answer, and a itself."""
    return {"check": check_big(a, positions), "array": a}


def add_one(a):
    """a + 1, as a new array of a's dtype."""
    return a + 1


# -- pypool_runtime.Array (numpy missing) -------------------------------------------


def fallback_arrays():
    """pypool_runtime.Array values made in Python: host order, big-endian, 0-d."""
    return {
        "f8": pypool_runtime.Array("float64", (2, 2), struct.pack("<4d", 0.5, 1.5, -2.0, 4.0)),
        "big_i4": pypool_runtime.Array(">i4", (3,), struct.pack(">3i", -1, 2, 1 << 30)),
        "zero_d": pypool_runtime.Array("uint16", (), struct.pack("<H", 65535)),
    }


# -- Bytes and the shared memory -----------------------------------------------------


def via_shared_memory(data):
    """Whether the bytes argument came through the shared memory."""
    memory = _shm.ACTIVE
    return memory is not None and id(data) in memory._received


def grow_shared_memory(size):
    """Grow the worker's shared memory to size bytes, as code that breaks
    the shared-memory protocol does (issue 18, finding 7)."""
    os.ftruncate(_shm.ACTIVE.fd, size)


def shared_memory_threshold():
    """The worker's threshold, None without shared memory."""
    memory = _shm.ACTIVE
    return None if memory is None else memory.threshold


def big(n):
    return b"x" * n


def patterned(n):
    """n bytes of a pattern the Go side recomputes: byte i is i*7 % 251."""
    pattern = bytes((i * 7) % 251 for i in range(251))
    return (pattern * (n // 251 + 1))[:n]


def slice_of(data, start, stop):
    return data[start:stop]


def reversed_bytes(data):
    return data[::-1]


def concat(a, b):
    return a + b


def repeated(data, times):
    return data * times


def bytearray_of(data):
    return bytearray(data)


def bytes_in_list(data):
    return [data, len(data)]


def lengths(*args, **kwargs):
    """len() of each argument and keyword argument."""
    return {"args": [len(a) for a in args], "kwargs": {k: len(v) for k, v in kwargs.items()}}


def each_length(*args):
    """A generator of len() of each argument."""
    for a in args:
        yield len(a)


def kwargs_echo(**kwargs):
    return kwargs


# -- Extensions and the default hook ---------------------------------------------


def decimal_info(x):
    """Whether x arrived as a decimal.Decimal; x doubled, as a Decimal."""
    return {"is_decimal": type(x) is decimal.Decimal, "str": str(x), "doubled": x * 2}


def decimal_kwargs(**kwargs):
    return {k: type(v) is decimal.Decimal for k, v in kwargs.items()}


def price():
    return decimal.Decimal("19.99")


def invoice():
    return {
        "id": "inv-1",
        "total": decimal.Decimal("123.45"),
        "lines": [{"sku": "a", "price": decimal.Decimal("0.10")}, {"sku": "b", "price": decimal.Decimal("-3")}],
    }


@dataclasses.dataclass
class _Reading:
    sensor: str
    value: decimal.Decimal
    taken: datetime.date
    tags: list


def reading():
    return _Reading("t1", decimal.Decimal("21.50"), datetime.date(2024, 5, 6), ["a", "b"])


def readings():
    return [reading(), _Reading("t2", decimal.Decimal("-0.5"), datetime.date(1999, 12, 31), [])]


def a_date():
    return datetime.date(2024, 5, 6)


def unknown_object():
    return object()


# -- Type mismatches --------------------------------------------------------------


def scores():
    return {"id": "o", "items": [{"name": "a", "score": 3}, {"name": "b", "score": 2.5}]}


def exit_now(status):
    """End the worker at once, as a crash does."""
    import os

    os._exit(status)


def array_and_bytes(n_floats, n_bytes, **ignored):
    """A float64 array of n_floats zeros and n_bytes bytes, in one list."""
    return [_numpy().zeros(n_floats), b"y" * n_bytes]
