"""Tests of what crosses beyond msgpack's own types (pypool_runtime.ext):
NDARRAY both ways, pypool_runtime.Array, user ext types and the default
hook. Each runs on the pure codec, and on the C extension
when it is importable, and checks that both give the same bytes."""

import dataclasses
import datetime
import decimal
import math
import os
import struct
import subprocess
import sys
import unittest
from typing import Any, Callable, List, Tuple
from unittest import mock

import pypool_runtime
from pypool_runtime import codec, ext, purecodec
from test_codec import import_numpy_or_skip, joined, nested_lists, outcome, short

UTC = datetime.timezone.utc
RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "<" if sys.byteorder == "little" else ">"

# Every dtype NDARRAY carries: (dtype string, numpy name, struct format character).
DTYPES: List[Tuple[str, str, str]] = [("|b1", "bool", "?"), ("|i1", "int8", "b"), ("|u1", "uint8", "B")] + [
    (order + code, name, char)
    for order in "<>"
    for code, name, char in [("i2", "int16", "h"), ("i4", "int32", "i"), ("i8", "int64", "q"), ("u2", "uint16", "H"),
                             ("u4", "uint32", "I"), ("u8", "uint64", "Q"), ("f4", "float32", "f"), ("f8", "float64", "d")]
]  # fmt: skip
SUPPORTED = "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64"


def setUpModule() -> None:
    """Say why tests will skip: the default runner shows only an 's'."""
    try:
        import numpy  # noqa: F401
    except ImportError:
        print("\ntest_ext: numpy not importable in %s: its numpy tests skip (Debian: apt-get install python3-numpy)"
              % sys.executable)  # fmt: skip
    try:
        codec.load(codec.C_NAME)
    except ImportError:
        print("\ntest_ext: msgpack C extension not importable in %s: only the pure codec is tested" % sys.executable)


def codecs() -> List[codec.Codec]:
    try:
        return [codec.PURE, codec.load(codec.C_NAME)]
    except ImportError:
        return [codec.PURE]


def edge_values(char: str) -> List[Any]:
    """An even number of values of a struct format character, edges included."""
    if char == "?":
        return [True, False, True, False]
    if char in "fd":
        return [0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, 0.1, 3.0e38 if char == "f" else 1e308]
    bits = struct.calcsize(char) * 8
    if char.isupper():
        return [0, 1, 2**bits - 1, 2 ** (bits - 1)]
    return [0, -1, 2 ** (bits - 1) - 1, -(2 ** (bits - 1))]


def element_bytes(dtype: str, char: str, values: List[Any]) -> bytes:
    order = "<" if dtype[0] == "|" else dtype[0]
    return struct.pack("%s%d%s" % (order, len(values), char), *values)


def ndarray_payload(dtype: str, shape: List[int], data: bytes) -> bytes:
    """NDARRAY's payload as the spec puts it, built without the code under test's helpers."""
    return purecodec.packb([dtype, shape]) + data


def ndarray_encoding(dtype: str, shape: List[int], data: bytes) -> bytes:
    """The whole msgpack encoding of that NDARRAY (ext 127)."""
    return purecodec.packb(purecodec.ExtType(127, ndarray_payload(dtype, shape, data)))


def nested(values: List[Any], shape: List[int]) -> Any:
    """values (flat) as nested lists of this shape, as tolist() gives them."""
    if not shape:
        return values[0]
    step = len(values) // shape[0] if shape[0] else 0
    return [nested(values[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def without_numpy() -> Any:
    """A context in which decoding acts as if numpy were not importable."""
    return mock.patch.object(ext, "_numpy_module", False)


class SameBytesMixin(unittest.TestCase):
    def assertSameOnEveryCodec(self, value: Any, expected: Any = None) -> bytes:
        """packb and result_frame of value agree on every codec (outcomes
        included, for errors); returns the encoding (or checks it against
        expected, an encoding or an outcome)."""
        results = [outcome(c.packb, value) for c in codecs()]
        frames = [outcome(lambda v: joined(c.result_frame(77, v)), value) for c in codecs()]
        for c, result, frame in zip(codecs(), results, frames):
            self.assertEqual(result, results[0], c.name)
            self.assertEqual(frame, frames[0], c.name)
            if frame[0] == "ok":  # the frame of [3, 77, value]
                self.assertEqual(frame[1][4:], b"\x93\x03\x4d" + result[1])
        if expected is not None:
            self.assertEqual(results[0] if type(expected) is tuple else results[0][1], expected)
        return results[0][1]


class NdarrayTest(SameBytesMixin):
    """numpy arrays both ways (needs numpy)."""

    def setUp(self) -> None:
        self.np = import_numpy_or_skip(self)

    def check_round_trip(self, array: Any, dtype: str, shape: List[int]) -> None:
        np = self.np
        expected = ndarray_encoding(dtype, shape, np.ascontiguousarray(array).tobytes())
        encoded = self.assertSameOnEveryCodec(array, expected)
        for c in codecs():
            with self.subTest(codec=c.name):
                decoded = c.unpackb(encoded)
                self.assertIs(type(decoded), np.ndarray)
                self.assertEqual(decoded.dtype.str, dtype)
                self.assertEqual(decoded.shape, tuple(shape))
                self.assertTrue(decoded.flags.owndata and decoded.flags.writeable and decoded.flags.c_contiguous)
                self.assertTrue(np.array_equal(decoded, array, equal_nan=decoded.dtype.kind == "f"))
                decoded.flat[:1] = 1  # writable, and no one else's data
                self.assertEqual(c.packb(decoded)[: len(encoded) - decoded.nbytes],
                                 encoded[: len(encoded) - decoded.nbytes])  # fmt: skip

    def test_every_dtype_both_ways(self) -> None:
        np = self.np
        for dtype, name, char in DTYPES:
            values = edge_values(char) * 2
            for shape in ([len(values)], [2, len(values) // 2]):
                with self.subTest(dtype=dtype, shape=shape):
                    array = np.array(values, dtype=np.dtype(dtype)).reshape(shape)
                    self.assertEqual(array.dtype.name, name)
                    self.check_round_trip(array, dtype, shape)
                    # The element bytes are those struct gives: the spec's layout.
                    self.assertEqual(array.tobytes(), element_bytes(dtype, char, values))

    def test_shapes(self) -> None:
        np = self.np
        cases = [
            (np.zeros(0), [0]),
            (np.zeros((2, 0, 3), dtype=np.int16), [2, 0, 3]),
            (np.array(2.5), []),  # 0-d: one element
            (np.array(True), []),
            (np.arange(24, dtype=np.uint32).reshape(2, 3, 4), [2, 3, 4]),
            (np.arange(64, dtype=np.int8).reshape((2,) * 6), [2] * 6),
        ]
        for array, shape in cases:
            with self.subTest(shape=shape, dtype=array.dtype.str):
                self.check_round_trip(array, array.dtype.str, shape)

    def test_non_contiguous_arrays_are_sent_in_c_order(self) -> None:
        np = self.np
        base = np.arange(24, dtype="<i8").reshape(4, 6)
        cases = [base[::2], base[:, 1::2], base.T, base[::-1, ::-1], np.asfortranarray(base), base[1:3, 2:5].T,
                 np.arange(10.0)[::3], np.arange(6, dtype=">f4").reshape(2, 3).T]  # fmt: skip
        for array in cases:
            with self.subTest(array=short(array)):
                self.assertFalse(array.flags.c_contiguous and array.base is None)
                self.check_round_trip(array, array.dtype.str, list(array.shape))
                self.assertEqual(codec.PURE.packb(array), codec.PURE.packb(array.copy(order="C")))

    def test_big_endian_stays_big_endian(self) -> None:
        np = self.np
        array = np.array([1, -2, 3], dtype=">i4")
        encoded = self.assertSameOnEveryCodec(array)
        self.assertEqual(encoded, ndarray_encoding(">i4", [3], b"\x00\x00\x00\x01\xff\xff\xff\xfe\x00\x00\x00\x03"))
        for c in codecs():
            self.assertEqual(c.unpackb(encoded).dtype.str, ">i4")
        # and the host's order as the host writes it
        native = array.astype(HOST + "i4")
        self.assertSameOnEveryCodec(native, ndarray_encoding(HOST + "i4", [3], native.tobytes()))

    def test_arrays_inside_containers(self) -> None:
        np = self.np
        a, b = np.arange(3, dtype=np.float32), np.ones((2, 2), dtype=np.uint8)
        value = {"a": [a, (b, {"deep": [a.reshape(3, 1)]})], "n": np.int64(5), "list": [np.zeros(0, dtype=bool)]}
        encoded = self.assertSameOnEveryCodec(value)
        plain = {"a": [purecodec.ExtType(127, ndarray_payload("<f4", [3], a.tobytes())),
                       [purecodec.ExtType(127, ndarray_payload("|u1", [2, 2], b.tobytes())),
                        {"deep": [purecodec.ExtType(127, ndarray_payload("<f4", [3, 1], a.tobytes()))]}]],
                 "n": 5, "list": [purecodec.ExtType(127, ndarray_payload("|b1", [0], b""))]}  # fmt: skip
        self.assertEqual(encoded, purecodec.packb(plain))
        for c in codecs():
            decoded = c.unpackb(encoded)
            self.assertTrue(np.array_equal(decoded["a"][1][1]["deep"][0], a.reshape(3, 1)))
            self.assertEqual(decoded["list"][0].dtype, bool)

    def test_subclasses_and_borrowed_data(self) -> None:
        np = self.np

        class Tagged(np.ndarray):
            pass

        tagged = np.arange(4, dtype=np.int16).view(Tagged)
        self.assertSameOnEveryCodec(tagged, ndarray_encoding("<i2", [4], tagged.tobytes()))
        borrowed = np.frombuffer(b"\x01\x00\x02\x00", dtype="<i2")  # read-only, not its own data
        self.assertSameOnEveryCodec(borrowed, ndarray_encoding("<i2", [2], b"\x01\x00\x02\x00"))

    def test_unsupported_dtypes_are_refused_by_name(self) -> None:
        np = self.np
        cases = [np.zeros(2, dtype=complex), np.zeros(2, dtype=np.float16), np.array(["ab"]), np.array([None]),
                 np.array(["2020-01-01"], dtype="datetime64[D]"), np.zeros(2, dtype=[("x", "<i4")]),
                 np.zeros((), dtype=np.longdouble), np.zeros(3, dtype=">c8")]  # fmt: skip
        for array in cases:
            with self.subTest(dtype=array.dtype.str):
                message = "can not serialize numpy array of dtype %s (supported: %s)" % (array.dtype.name, SUPPORTED)
                self.assertSameOnEveryCodec(array, ("error", "TypeError", message))
                self.assertSameOnEveryCodec({"k": [1, array]}, ("error", "TypeError", message))
                found = codec.find_unencodable({"k": [1, array]})
                assert found is not None
                self.assertEqual((found[0], str(found[2])), ("result['k'][1]", message))

    def test_the_default_hook_may_take_unsupported_arrays(self) -> None:
        np = self.np
        self.addCleanup(pypool_runtime.set_default, None)
        pypool_runtime.set_default(lambda o: [[z.real, z.imag] for z in o.tolist()])
        self.assertSameOnEveryCodec(np.array([1 + 2j]), purecodec.packb([[1.0, 2.0]]))

    def test_decoding_imports_numpy_at_the_first_ndarray(self) -> None:
        script = ("import sys; sys.path.insert(0, sys.argv[1]); from pypool_runtime import codec, purecodec\n"
                  "for c in [codec.PURE] + ([codec.load('msgpack-c')] if codec.NAME != 'pure' else []):\n"
                  "    c.unpackb(purecodec.packb([1, 'a', purecodec.ExtType(5, b'x'), b'z']))\n"
                  "print('numpy' in sys.modules)\n"
                  "array = codec.unpackb(bytes.fromhex(sys.argv[2]))\n"
                  "print('numpy' in sys.modules, type(array).__module__, array.tolist())")  # fmt: skip
        payload = ndarray_encoding("<i2", [2], b"\x01\x00\x02\x00").hex()
        result = subprocess.run([sys.executable, "-E", "-c", script, RUNTIME_DIR, payload], capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(result.stdout, "False\nTrue numpy [1, 2]\n")


class ArrayTest(SameBytesMixin):
    """pypool_runtime.Array, what NDARRAYs decode to without numpy: runs on
    every interpreter (numpy, if present, is hidden from the decoder)."""

    def decode_all(self, encoded: bytes) -> List[Any]:
        with without_numpy():
            return [c.unpackb(encoded) for c in codecs()]

    def test_every_dtype(self) -> None:
        for dtype, name, char in DTYPES:
            values = edge_values(char)
            data = element_bytes(dtype, char, values)
            # What struct reads back: float32 rounds.
            expected = list(struct.unpack("%s%d%s" % ("<" if dtype[0] == "|" else dtype[0], len(values), char), data))
            for shape in ([len(values)], [2, len(values) // 2], [1, 1, len(values)]):
                encoded = ndarray_encoding(dtype, shape, data)
                for array in self.decode_all(encoded):
                    with self.subTest(dtype=dtype, shape=shape):
                        self.assertIs(type(array), pypool_runtime.Array)
                        self.assertEqual((array.dtype, array.shape, array.byteorder), (name, tuple(shape), dtype[0]))
                        self.assertEqual(array.tolist(), nested(expected, shape))
                        self.assertEqual(len(array), shape[0])
                        view = array.data
                        self.assertTrue(view.readonly)
                        self.assertEqual(view.tobytes(), data)
                        if dtype[0] in "|" + HOST:
                            self.assertEqual((view.format, view.shape), (char, tuple(shape)))
                            self.assertEqual(view.tolist(), nested(expected, shape))
                        else:  # the other byte order: the bytes as they are
                            self.assertEqual((view.format, view.shape), ("B", (len(data),)))
                        self.assertRaises(TypeError, view.__setitem__, 0, 0)
                        # Sent back, the same NDARRAY.
                        self.assertSameOnEveryCodec(array, encoded)

    def test_zero_length_and_0d(self) -> None:
        cases = [
            ("<f8", "d", [0], b"", []),
            ("<i4", "i", [2, 0], b"", [[], []]),
            ("|u1", "B", [0, 3], b"", []),
            ("<f8", "d", [], struct.pack("<d", 2.5), 2.5),
            ("|b1", "?", [], b"\x01", True),
        ]
        for dtype, char, shape, data, values in cases:
            encoded = ndarray_encoding(dtype, shape, data)
            for array in self.decode_all(encoded):
                with self.subTest(dtype=dtype, shape=shape):
                    self.assertEqual(array.shape, tuple(shape))
                    self.assertEqual(array.tolist(), values)
                    if shape:
                        self.assertEqual(len(array), shape[0])
                        # memoryview takes no zero in a shape: a flat view of no elements
                        self.assertEqual((array.data.ndim, len(array.data), array.data.format), (1, 0, char))
                    else:
                        self.assertRaisesRegex(TypeError, "unsized", len, array)
                        self.assertEqual((array.data.ndim, array.data.tolist()), (0, values))
                    self.assertSameOnEveryCodec(array, encoded)

    def test_constructor(self) -> None:
        Array = pypool_runtime.Array
        array = Array("float64", (2,), struct.pack(HOST + "2d", 1.0, 2.0))
        self.assertEqual((array.dtype, array.shape, array.byteorder, array.tolist()), ("float64", (2,), HOST, [1.0, 2.0]))
        self.assertSameOnEveryCodec(array, ndarray_encoding(HOST + "f8", [2], struct.pack(HOST + "2d", 1.0, 2.0)))
        big = Array(">u2", [3], bytearray(b"\x00\x01\x00\x02\x01\x00"))
        self.assertEqual((big.dtype, big.tolist()), ("uint16", [1, 2, 256]))
        self.assertEqual(Array("bool", (), memoryview(b"\x01")).tolist(), True)
        errors = [
            (("complex128", [1], bytes(16)), "unsupported dtype 'complex128'"),
            (("=f8", [1], bytes(8)), "unsupported dtype '=f8'"),
            (("f8", [1], bytes(8)), "unsupported dtype 'f8'"),
            (("float64", [2], bytes(8)), "8 bytes of data for dtype %sf8 and shape \\(2,\\), which take 16" % HOST),
            (("int8", [-1], b""), "non-negative ints"),
            (("int8", [1.0], b"\x00"), "non-negative ints"),
            (("int8", [True], b"\x00"), "non-negative ints"),
        ]
        for args, message in errors:
            with self.subTest(args=args):
                self.assertRaisesRegex(ValueError, message, Array, *args)

    def test_equality_and_repr(self) -> None:
        Array = pypool_runtime.Array
        little = Array("<i4", [2], struct.pack("<2i", 1, 2))
        big = Array(">i4", [2], struct.pack(">2i", 1, 2))
        self.assertEqual(little, big)  # values, whatever the byte order
        self.assertNotEqual(little, Array("<i8", [2], struct.pack("<2q", 1, 2)))  # another dtype
        self.assertNotEqual(little, Array("<i4", [1, 2], struct.pack("<2i", 1, 2)))  # another shape
        self.assertNotEqual(little, [1, 2])
        nan = Array("<f8", [1], struct.pack("<d", math.nan))
        self.assertNotEqual(nan, nan)  # as numpy's elementwise ==
        self.assertRaises(TypeError, hash, little)
        self.assertEqual(repr(little), "Array(int32, shape=(2,), [1, 2])" if HOST == "<" else repr(little))
        self.assertEqual(repr(big), "Array(int32, shape=(2,), byteorder='>', [1, 2])" if HOST == "<" else repr(big))
        self.assertEqual(repr(Array("uint8", [1000], bytes(1000))), "Array(uint8, shape=(1000,), <1000 bytes>)")
        self.assertEqual(repr(Array("bool", [], b"\x00")), "Array(bool, shape=(), False)")

    def test_arrays_inside_containers(self) -> None:
        one = ndarray_encoding("<i2", [2], b"\x01\x00\x02\x00")
        encoded = b"\x82\xa1a\x92" + one + b"\x80\xa1b" + one
        for value in self.decode_all(encoded):
            self.assertEqual(value["a"][0].tolist(), [1, 2])
            self.assertEqual(value["b"], value["a"][0])
            self.assertSameOnEveryCodec(value, encoded)

    def test_bad_ndarrays_are_decode_errors(self) -> None:
        good = purecodec.packb(["<f8", [2]]) + bytes(16)
        cases = [
            (purecodec.packb(["<c16", [1]]) + bytes(16), "NDARRAY of unsupported dtype '<c16'"),
            (purecodec.packb(["=f8", [1]]) + bytes(8), "NDARRAY of unsupported dtype '=f8'"),
            (purecodec.packb(["f8", [1]]) + bytes(8), "NDARRAY of unsupported dtype 'f8'"),
            (purecodec.packb(["|i2", [1]]) + bytes(2), "NDARRAY of unsupported dtype '|i2'"),
            (purecodec.packb(["<f8", [2]]) + bytes(15), "bad NDARRAY: 15 bytes of data for dtype <f8 and shape \\(2,\\)"),
            (good + b"\x00", "bad NDARRAY: 17 bytes of data"),
            (purecodec.packb(["<f8", [-1]]), "shape \\[-1\\] is not an array of non-negative ints"),
            (purecodec.packb(["<f8", ["2"]]) + bytes(16), "is not an array of non-negative ints"),
            (purecodec.packb(["<f8", [True]]) + bytes(8), "is not an array of non-negative ints"),
            (purecodec.packb(["<f8", 2]) + bytes(16), "bad NDARRAY: its head is not \\[dtype, shape\\]"),
            (purecodec.packb([b"<f8", [2]]) + bytes(16), "its head is not"),
            (purecodec.packb(["<f8", [2], 0]) + bytes(16), "its head is not"),
            (purecodec.packb({"dtype": "<f8"}), "its head is not"),
            (b"", "its \\[dtype, shape\\] head does not decode"),
            (b"\x92\xa3<f8\x91", "head does not decode"),
        ]
        for payload, message in cases:
            encoded = purecodec.packb([1, purecodec.ExtType(127, payload)])
            for hidden in (True, False):
                with self.subTest(payload=payload[:20], numpy_hidden=hidden):
                    results = []
                    for c in codecs():
                        if hidden:
                            with without_numpy():
                                results.append(outcome(c.unpackb, encoded))
                        else:
                            results.append(outcome(c.unpackb, encoded))
                    self.assertEqual(results[0][:2], ("error", "ValueError"))
                    self.assertRegex(results[0][2], message)
                    self.assertEqual(results, [results[0]] * len(results))
        # Ints of every width in the head are ints: Go may write them so.
        for head in (b"\x92\xa3<f8\x91\xcc\x02", b"\x92\xa3<f8\x91\xd3" + struct.pack(">q", 2), b"\x92\xd9\x03<f8\x91\x02"):
            for value in self.decode_all(purecodec.packb(purecodec.ExtType(127, head + bytes(16)))):
                self.assertEqual((value.dtype, value.shape), ("float64", (2,)))

    def test_shared_memory_codes_are_reserved(self) -> None:
        for code in (125, 126):
            encoded = purecodec.packb(purecodec.ExtType(code, purecodec.packb([0, 8])))
            for c in codecs():
                with self.subTest(code=code, codec=c.name):
                    self.assertEqual(outcome(c.unpackb, encoded),
                                     ("error", "ValueError", "shared-memory reference with no shared memory"))  # fmt: skip

    def test_same_as_numpy(self) -> None:
        """An Array and the ndarray of the same NDARRAY encode alike."""
        np = import_numpy_or_skip(self)
        for dtype, _, char in DTYPES:
            encoded = ndarray_encoding(dtype, [2, 2], element_bytes(dtype, char, (edge_values(char) * 2)[:4]))
            with self.subTest(dtype=dtype):
                (array,) = self.decode_all(encoded)[:1]
                numpy_array = codec.PURE.unpackb(encoded)
                self.assertIsInstance(numpy_array, np.ndarray)
                self.assertEqual(numpy_array.tolist(), array.tolist())
                self.assertEqual(codec.PURE.packb(numpy_array), codec.PURE.packb(array))


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class RegisterExtTest(SameBytesMixin):
    """pypool_runtime.register_ext and ext_type."""

    def register(self, cls: type, code: int, encode: Callable[[Any], Any], decode: Callable[[bytes], Any]) -> None:
        pypool_runtime.register_ext(cls, code, encode, decode)
        self.addCleanup(ext.unregister_ext, code)

    def register_decimal(self) -> None:
        self.register(decimal.Decimal, 5, lambda d: str(d).encode(), lambda b: decimal.Decimal(b.decode()))

    def test_decimal_round_trip(self) -> None:
        self.register_decimal()
        value = [decimal.Decimal("1.50"), {"total": decimal.Decimal("-0.001"), "n": 1}, decimal.Decimal("NaN")]
        plain = [purecodec.ExtType(5, b"1.50"), {"total": purecodec.ExtType(5, b"-0.001"), "n": 1},
                 purecodec.ExtType(5, b"NaN")]  # fmt: skip
        encoded = self.assertSameOnEveryCodec(value, purecodec.packb(plain))
        for c in codecs():
            with self.subTest(codec=c.name):
                decoded = c.unpackb(encoded)
                self.assertEqual(decoded[:2], value[:2])
                self.assertIs(type(decoded[0]), decimal.Decimal)
                self.assertTrue(decoded[2].is_nan())
                # In a CALL, through the hot path and the general one.
                body = purecodec.packb([2, 9, "f", [decimal.Decimal("2.5")], None])
                self.assertEqual(c.decode_call(body), (9, "f", [decimal.Decimal("2.5")]))
                body = purecodec.packb([2, 9, "f", [], {"price": decimal.Decimal("2.5")}])
                self.assertEqual(c.unpackb(body)[4], {"price": decimal.Decimal("2.5")})
                self.assertIs(type(c.unpackb(body)[4]["price"]), decimal.Decimal)

    def test_decorator_and_subclasses(self) -> None:
        @pypool_runtime.ext_type(7, encode=lambda p: struct.pack(">ii", p.x, p.y),
                                 decode=lambda b: Point(*struct.unpack(">ii", b)))  # fmt: skip
        class Registered(Point):
            pass

        self.addCleanup(ext.unregister_ext, 7)
        self.assertEqual(Registered.__name__, "Registered")  # the class itself is returned

        class Derived(Registered):
            pass

        for value in (Registered(1, -2), Derived(1, -2)):
            encoded = self.assertSameOnEveryCodec(value, purecodec.packb(purecodec.ExtType(7, struct.pack(">ii", 1, -2))))
            for c in codecs():
                self.assertEqual(c.unpackb(encoded), Point(1, -2))

    def test_encoders_may_return_any_bytes_like(self) -> None:
        self.register(Point, 8, lambda p: memoryview(bytearray([p.x, p.y])), lambda b: Point(b[0], b[1]))
        self.assertSameOnEveryCodec([Point(3, 4)], purecodec.packb([purecodec.ExtType(8, b"\x03\x04")]))

    def test_encoder_errors(self) -> None:
        self.register(Point, 8, lambda p: "not bytes", lambda b: b)
        self.assertSameOnEveryCodec({"p": Point(1, 2)},
                                    ("error", "TypeError", "the ext encoder of Point returned str, not bytes"))  # fmt: skip
        ext.unregister_ext(8)
        pypool_runtime.register_ext(Point, 8, lambda p: 1 / 0, lambda b: b)
        self.assertSameOnEveryCodec([Point(1, 2)], ("error", "ZeroDivisionError", "division by zero"))

    def test_decoder_errors_pass_through(self) -> None:
        # IndexError and struct.error too: the pure decoder uses them for short data.
        raisers = {9: lambda b: b[5], 10: lambda b: struct.unpack(">q", b), 11: lambda b: {}["k"]}
        for code, decode in raisers.items():
            self.register(type("Class%d" % code, (), {}), code, lambda obj: b"", decode)
        for code, error in ((9, "IndexError"), (10, "error"), (11, "KeyError")):
            encoded = purecodec.packb([1, purecodec.ExtType(code, b"ab")])
            with self.subTest(code=code):
                results = [outcome(c.unpackb, encoded) for c in codecs()]
                self.assertEqual(results[0][:2], ("error", error))
                self.assertEqual(results, [results[0]] * len(results))
                for c in codecs():  # the Unpacker too, which must not take it for short data
                    unpacker = c.Unpacker()
                    unpacker.feed(encoded)
                    self.assertEqual(outcome(lambda u: u.unpack(), unpacker)[:2], ("error", error))

    def test_unknown_codes_stay_ext_values(self) -> None:
        encoded = purecodec.packb([purecodec.ExtType(12, b"x"), purecodec.ExtType(120, b"y")])
        for c in codecs():
            decoded = c.unpackb(encoded)
            self.assertIsInstance(decoded[0], c.ExtType)
            self.assertEqual([tuple(v) for v in decoded], [(12, b"x"), (120, b"y")])
            self.assertEqual(c.packb(decoded), encoded)
        self.register(Point, 12, lambda p: b"", lambda b: Point(0, 0))
        for c in codecs():
            self.assertEqual(c.unpackb(encoded)[0], Point(0, 0))
        ext.unregister_ext(12)
        pypool_runtime.register_ext(Point, 12, lambda p: b"", lambda b: Point(0, 0))  # registrable again

    def test_refused_registrations(self) -> None:
        self.register_decimal()
        cases = [
            ((Point, 120, bytes, bytes), ValueError, "code 120 is not in 0..119 \\(120..127 are reserved for pypool\\)"),
            ((Point, 127, bytes, bytes), ValueError, "reserved"),
            ((Point, 125, bytes, bytes), ValueError, "reserved"),
            ((Point, -1, bytes, bytes), ValueError, "not in 0..119"),
            ((Point, 128, bytes, bytes), ValueError, "not in 0..119"),
            ((Point, True, bytes, bytes), ValueError, "not in 0..119"),
            ((Point, 1.0, bytes, bytes), ValueError, "not in 0..119"),
            ((Point, "1", bytes, bytes), ValueError, "not in 0..119"),
            ((Point, 5, bytes, bytes), ValueError, "code 5 is already registered"),
            ((decimal.Decimal, 6, bytes, bytes), ValueError, "Decimal is already registered with code 5"),
            ((int, 6, bytes, bytes), TypeError, "int values are encoded without hooks"),
            ((dict, 6, bytes, bytes), TypeError, "without hooks"),
            ((type("Name", (tuple,), {}), 6, bytes, bytes), TypeError, "without hooks"),
            ((type("Text", (str,), {}), 6, bytes, bytes), TypeError, "without hooks"),
            ((pypool_runtime.Array, 6, bytes, bytes), TypeError, "without hooks"),
            ((Point(1, 2), 6, bytes, bytes), TypeError, "must be a class"),
            ((Point, 6, None, bytes), TypeError, "must be callable"),
            ((Point, 6, bytes, "decode"), TypeError, "must be callable"),
        ]
        for args, error, message in cases:
            with self.subTest(args=args[:2]):
                self.assertRaisesRegex(error, message, pypool_runtime.register_ext, *args)
        # Nothing half-registered: code 6 still decodes as an ExtType, Point still does not encode.
        self.assertEqual(tuple(codec.PURE.unpackb(b"\xd4\x06\x00")), (6, b"\x00"))
        self.assertSameOnEveryCodec(Point(1, 2), ("error", "TypeError", "can not serialize 'Point' object"))
        self.assertRaises(ValueError, pypool_runtime.ext_type(121, encode=bytes, decode=bytes), Point)
        self.assertRaises(KeyError, ext.unregister_ext, 127)
        self.assertRaises(KeyError, ext.unregister_ext, 6)


@dataclasses.dataclass
class Item:
    name: str
    when: datetime.date
    tags: List[str]


class DefaultHookTest(SameBytesMixin):
    """pypool_runtime.set_default."""

    def set_default(self, func: Any) -> None:
        pypool_runtime.set_default(func)
        self.addCleanup(pypool_runtime.set_default, None)

    @staticmethod
    def dates_and_dataclasses(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return dataclasses.asdict(obj)
        if isinstance(obj, datetime.date):
            return obj.isoformat()
        raise TypeError("no default for %s" % type(obj).__name__)

    def test_dates_and_dataclasses(self) -> None:
        self.set_default(self.dates_and_dataclasses)
        value = [datetime.date(2024, 5, 6), {"item": Item("tea", datetime.date(2024, 1, 2), ["hot"])},
                 datetime.datetime(2024, 1, 1, 12), datetime.datetime(2024, 1, 1, tzinfo=UTC)]  # fmt: skip
        plain = ["2024-05-06", {"item": {"name": "tea", "when": "2024-01-02", "tags": ["hot"]}},
                 "2024-01-01T12:00:00", datetime.datetime(2024, 1, 1, tzinfo=UTC)]  # fmt: skip
        self.assertSameOnEveryCodec(value, purecodec.packb(plain))
        # asdict keeps the date inside: the hook meets it again.
        self.assertSameOnEveryCodec(Item("x", datetime.date(2000, 1, 1), []),
                                    purecodec.packb({"name": "x", "when": "2000-01-01", "tags": []}))  # fmt: skip
        self.assertSameOnEveryCodec({1, 2}, ("error", "TypeError", "no default for set"))

    def test_what_the_hook_sees(self) -> None:
        seen: List[Any] = []

        def record(obj: Any) -> Any:
            seen.append(obj)
            return "x"

        self.set_default(record)
        common = [None, True, 1, -2**63, 2**64 - 1, 1.5, "s", b"b", bytearray(b"c"), memoryview(b"m"), [1], (2,), {3: 4},
                  datetime.datetime(2020, 1, 1, tzinfo=UTC), purecodec.ExtType(3, b"e")]  # fmt: skip
        for c in codecs():
            seen.clear()
            if c.name == codec.C_NAME:
                common[-1] = c.ExtType(3, b"e")
            c.packb(common)
            self.assertEqual(seen, [], c.name)
            naive, date = datetime.datetime(2020, 1, 1), datetime.date(2020, 1, 1)
            odd = [2**64, -2**63 - 1, naive, {1}, date, object]
            self.assertEqual(c.packb(odd), purecodec.packb(["x"] * len(odd)))
            self.assertEqual(seen, odd, c.name)

    def test_the_return_value_is_encoded_in_turn(self) -> None:
        self.addCleanup(ext.unregister_ext, 5)
        pypool_runtime.register_ext(decimal.Decimal, 5, lambda d: str(d).encode(), lambda b: decimal.Decimal(b.decode()))
        calls: List[Any] = []

        class Unknown:
            pass

        def hook(obj: Any) -> Any:
            calls.append(type(obj).__name__)
            if isinstance(obj, set):
                return sorted(obj)
            if isinstance(obj, frozenset):
                return [set(obj)]  # the set inside meets the hook again
            if isinstance(obj, type):  # a class: an Array stands for it
                return pypool_runtime.Array("int8", [1], b"\x07")
            if isinstance(obj, complex):
                return decimal.Decimal(obj.real)  # a registered type
            if isinstance(obj, range):
                return Unknown()  # unknown again: not given to the hook twice
            return obj  # unchanged: the packer's own error

        self.set_default(hook)
        self.assertSameOnEveryCodec([{3, 1}, frozenset([2])], purecodec.packb([[1, 3], [[2]]]))
        self.assertSameOnEveryCodec(int, ndarray_encoding("|i1", [1], b"\x07"))
        self.assertSameOnEveryCodec(2.5 + 0j, purecodec.packb(purecodec.ExtType(5, b"2.5")))
        calls.clear()
        self.assertSameOnEveryCodec(range(2), ("error", "TypeError", "can not serialize 'Unknown' object"))
        self.assertEqual(calls, ["range"] * 2 * len(codecs()))  # packb and result_frame, once each
        self.assertSameOnEveryCodec(Unknown(), ("error", "TypeError", "can not serialize 'Unknown' object"))
        self.assertSameOnEveryCodec(2**64, ("error", "OverflowError", "Integer value out of range"))
        naive = "can not serialize 'datetime.datetime' object where tzinfo=None"
        self.assertSameOnEveryCodec(datetime.datetime(2020, 1, 1), ("error", "ValueError", naive))

    def test_numpy_values_returned_by_the_hook(self) -> None:
        np = import_numpy_or_skip(self)
        self.set_default(lambda obj: np.arange(3, dtype=np.uint8) if isinstance(obj, set) else np.float32(0.5))
        array = purecodec.ExtType(127, ndarray_payload("|u1", [3], b"\x00\x01\x02"))
        self.assertSameOnEveryCodec([{1}, object()], purecodec.packb([array, 0.5]))
        self.set_default(lambda obj: np.zeros(1, dtype=complex))
        message = "can not serialize numpy array of dtype complex128 (supported: %s)" % SUPPORTED
        self.assertSameOnEveryCodec({1}, ("error", "TypeError", message))

    def test_hook_errors_pass_through(self) -> None:
        def refuse(obj: Any) -> Any:
            raise KeyError("nope")

        self.set_default(refuse)
        self.assertSameOnEveryCodec([1, {"a": {2}}], ("error", "KeyError", "'nope'"))

    def test_set_default_none_removes_it(self) -> None:
        self.set_default(lambda obj: "x")
        self.assertSameOnEveryCodec({1}, purecodec.packb("x"))
        pypool_runtime.set_default(None)
        self.assertSameOnEveryCodec({1}, ("error", "TypeError", "can not serialize 'set' object"))
        self.assertRaisesRegex(TypeError, "not callable", pypool_runtime.set_default, "x")

    def test_hooks_at_the_deepest_level(self) -> None:
        """What a hook returns nests where the value it stands for was: the
        limit (see test_codec.NestingLimitTest) counts its containers too."""
        self.set_default(lambda obj: sorted(obj) if isinstance(obj, set) else len(obj))
        array = pypool_runtime.Array("uint8", [2], b"\x01\x02")
        leaf = [datetime.datetime(2020, 1, 1, tzinfo=UTC), array, frozenset([1, 2]), 2**63]
        self.assertSameOnEveryCodec(nested_lists(1023, leaf))
        self.assertSameOnEveryCodec(nested_lists(1022, [{3}]))  # the hook's list is the 1024th level
        self.assertSameOnEveryCodec(nested_lists(1023, [{3}]), ("error", "ValueError", "recursion limit exceeded."))

    def test_find_unencodable_respects_the_hooks(self) -> None:
        value = [datetime.date(2020, 1, 1), {"s": {1}}]
        found = codec.find_unencodable(value)
        assert found is not None
        self.assertEqual(found[0], "result[0]")
        self.set_default(self.dates_and_dataclasses)
        found = codec.find_unencodable(value)
        assert found is not None
        self.assertEqual((found[0], str(found[2])), ("result[1]['s']", "no default for set"))
        array = pypool_runtime.Array("bool", [], b"\x01")
        self.assertIsNone(codec.find_unencodable([Item("a", datetime.date(2020, 1, 1), []), array]))


if __name__ == "__main__":
    unittest.main()
