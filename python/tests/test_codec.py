"""Tests of the codecs: the pure codec on its own, then against the C extension."""

import array
import collections
import datetime
import enum
import math
import random
import os
import struct
import subprocess
import sys
import unittest
from typing import Any, Callable, List, Tuple

from pypool_runtime import codec, purecodec

# purecodec as the workers run it, with ext.py's hooks (numpy scalars,
# user extensions): codec.py gives them at its first use, not at import.
assert codec.pure_module() is purecodec

UTC = datetime.timezone.utc


def load_c_or_skip(test: unittest.TestCase) -> codec.Codec:
    try:
        return codec.load(codec.C_NAME)
    except ImportError:
        test.skipTest("msgpack C extension not importable in " + sys.executable)
        raise  # not reached: skipTest raises


def import_numpy_or_skip(test: unittest.TestCase) -> Any:
    try:
        import numpy
    except ImportError:
        test.skipTest("numpy not importable in %s (Debian: apt-get install python3-numpy)" % sys.executable)
        raise  # not reached: skipTest raises
    return numpy


def numpy_scalars(np: Any) -> List[Any]:
    """One numpy scalar of each type the codecs turn into a Python number,
    at edge values, and the C aliases (intc, longlong...)."""
    return [np.bool_(True), np.bool_(False), np.int8(-128), np.int8(127), np.int16(-32768), np.int32(-2**31),
            np.int64(-2**63), np.int64(2**63 - 1), np.uint8(255), np.uint16(65535), np.uint32(2**32 - 1),
            np.uint64(2**64 - 1), np.uint64(0), np.float16(1.5), np.float16(-np.inf), np.float32(0.1),
            np.float32(np.nan), np.float64(0.1), np.intc(-3), np.uintc(3), np.longlong(-4), np.ulonglong(4),
            np.int_(5), np.short(-6), np.ubyte(7)]  # fmt: skip


def numpy_unencodables(np: Any) -> List[Any]:
    """numpy scalars that stay unencodable, and no others are. (Arrays of
    unsupported dtypes are refused too, with an error of their own: see
    test_ext.)"""
    return [np.longdouble(1), np.complex64(1), np.complex128(2), np.datetime64("2020-01-01"), np.timedelta64(5, "s"),
            np.void(b"x"), [1, {"a": np.clongdouble(1)}]]  # fmt: skip


def short(value: Any, size: int = 60) -> str:
    """The start of repr(value), for subtests; values too deep for repr say so."""
    try:
        return repr(value)[:size]
    except RecursionError:
        return "<%s nested too deep for repr>" % type(value).__name__


def nested_lists(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_dicts(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def edge_ints() -> List[int]:
    return [0, 1, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
            2**64 - 1, -1, -31, -32, -33, -127, -128, -129, -32767, -32768, -32769, -2**31 + 1, -2**31,
            -2**31 - 1, -2**63 + 1, -2**63]  # fmt: skip


def edge_datetimes() -> List[datetime.datetime]:
    plus5 = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    return [
        datetime.datetime(1970, 1, 1, tzinfo=UTC),
        datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
        datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        datetime.datetime(2024, 5, 6, 7, 8, 9, 5, tzinfo=UTC),
        datetime.datetime(2024, 5, 6, 7, 8, 9, 999999, tzinfo=plus5),
        datetime.datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC),  # 2**32 - 1 seconds: timestamp 32
        datetime.datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC),  # 2**32 seconds: timestamp 64
        datetime.datetime(2514, 5, 30, 1, 53, 3, 999999, tzinfo=UTC),  # 2**34 - 1 seconds: timestamp 64
        datetime.datetime(2514, 5, 30, 1, 53, 4, tzinfo=UTC),  # 2**34 seconds: timestamp 96
        datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime.datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime.datetime(1, 1, 1, tzinfo=UTC),
        datetime.datetime(1, 1, 1, 5, 30, tzinfo=plus5),
    ]


class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


class Number(int):
    pass


class Real(float):
    pass


class Blob(bytes):
    pass


class Items(list):
    pass


class Mapping(dict):
    pass


Pair = collections.namedtuple("Pair", "left right")


def value_corpus(ext_type: type) -> List[Any]:
    """Values both codecs must pack identically."""
    corpus: List[Any] = [None, True, False, 0.0, -0.0, 1.5, -2.25, 1e308, 5e-324, math.inf, -math.inf, math.nan]
    corpus += edge_ints()
    for n in (0, 1, 31, 32, 255, 256, 65535, 65536):
        corpus += ["a" * n, b"b" * n, bytearray(b"c" * n)]
    corpus += ["é" * 20, "漢字" * 100, "\U0001f600", "nul\x00byte"]
    for n in (0, 1, 15, 16, 65535, 65536):
        corpus.append(list(range(n)))
        corpus.append(tuple(["x"] * n))
        corpus.append({i: i for i in range(n)})
    corpus += edge_datetimes()
    corpus += [
        {"a": 1, 2: "b", None: [], 1.5: {}, True: False, b"k": b"v"},
        [[[[[]]]]], [{}, [{}], {"x": [{"y": None}]}],
        nested_lists(511), nested_lists(1024), {"k": nested_lists(1023)},
        memoryview(b"view"), memoryview(array.array("i", [1, 2, 3])), memoryview(b"abcdef")[1:4],
        Color.RED, Text("sub"), Number(300), Real(2.5), Blob(b"blob"), Items([1, 2]), Mapping(k=1),
        collections.OrderedDict([("z", 1), ("a", 2)]), Pair(1, "two"),
        [datetime.datetime(2000, 1, 1, tzinfo=UTC), {"when": datetime.datetime(1950, 6, 1, tzinfo=UTC)}],
    ]  # fmt: skip
    for code, n in [
        (0, 1),
        (1, 2),
        (5, 4),
        (119, 8),
        (120, 8),
        (3, 16),
        (4, 0),
        (6, 3),
        (7, 17),
        (8, 255),
        (9, 256),
        (10, 65536),
    ]:
        corpus.append(ext_type(code, bytes(range(256)) * (n // 256) + bytes(range(n % 256))))
    return corpus


def encoded_corpus() -> List[bytes]:
    """Encodings both codecs must decode identically, including forms the
    packers never produce (float32, non-minimal ints and lengths)."""
    blobs = [
        b"\xca\x3f\xc0\x00\x00", b"\xca\x7f\x80\x00\x00", b"\xca\x7f\xc0\x00\x00",
        b"\xcc\x01", b"\xcd\x00\x01", b"\xce\x00\x00\x00\x01", b"\xcf" + b"\x00" * 7 + b"\x01",
        b"\xd0\x01", b"\xd0\xff", b"\xd1\x80\x00", b"\xd2\x80\x00\x00\x00", b"\xd3\x80" + b"\x00" * 7,
        b"\xd9\x01a", b"\xda\x00\x01a", b"\xdb\x00\x00\x00\x01a",
        b"\xc4\x00", b"\xc5\x00\x01a", b"\xc6\x00\x00\x00\x01a",
        b"\xdc\x00\x01\xc0", b"\xdd\x00\x00\x00\x01\xc0", b"\xde\x00\x01\x01\x02", b"\xdf\x00\x00\x00\x01\x01\x02",
        b"\xc7\x00\x05", b"\xc8\x00\x01\x05a", b"\xc9\x00\x00\x00\x01\x05a",
        b"\x82\x01\x02\x01\x03",  # duplicate key: the last wins
        b"\x81\x92\x01\x02\x03",  # unhashable key
        b"\xd6\xff\x00\x00\x00\x00", b"\xd6\xff\xff\xff\xff\xff",
        b"\xd7\xff" + b"\xff" * 8,  # nanoseconds above 10**9: accepted as is
        b"\xc7\x0c\xff" + struct.pack(">Iq", 2**32 - 1, 0),
        b"\xd4\xff\x00", b"\xd8\xff" + b"\x00" * 16,  # timestamps of the wrong length
        b"\xd4\x80\x00", b"\xd4\xfb\x00",  # negative ext codes other than -1
        b"\xa1\xff", b"\xa2\xc3\x28", b"\xa3\xed\xa0\x80",  # invalid UTF-8 (a surrogate)
        b"", b"\x92\x01", b"\xa5ab", b"\xc4\x05ab", b"\xcd\x01", b"\xd9", b"\xc7\x05\x01ab", b"\xd6\xff\x00",
        b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\x9f\x01", b"\x8f\x01",
        b"\xc1", b"\x92\x01\xc1", b"\x01\x02", b"\x90\x90",
        b"\x91" * 1024 + b"\xc0", b"\x91" * 1025 + b"\xc0", b"\x91" * 1024 + b"\x90", b"\x91" * 1023 + b"\x80",
        b"\x81\x01" * 1024 + b"\xc0", b"\x81\x01" * 1025 + b"\xc0", b"\x91" * 3000,
    ]  # fmt: skip
    for seconds in [0, 1, -1, -86399, -86400, -86401, 2**34, -62135596800, -62135596801, 253402300799,
                    253402300800, 86400 * 999999999, 86400 * 1000000000, 2**40 * 86400, 2**63 - 1, -2**63,
                    -(2**40) * 86400 - 1]:  # fmt: skip
        for nanoseconds in (0, 999, 1000, 999999999):
            blobs.append(b"\xc7\x0c\xff" + struct.pack(">Iq", nanoseconds, seconds))
    return blobs


def outcome(func: Callable[[Any], Any], arg: Any) -> Tuple[str, Any]:
    """('ok', value) or ('error', exception class name, message)."""
    try:
        return ("ok", func(arg))
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


class SameValue:
    """Strict equality: same types all the way down, NaN equal to NaN.
    Iterative, since decoded values may nest 1024 levels deep."""

    @staticmethod
    def check(test: unittest.TestCase, a: Any, b: Any) -> None:
        stack = [(a, b, "value")]
        while stack:
            a, b, where = stack.pop()
            if type(a).__name__ == type(b).__name__ == "ExtType":  # one class per codec
                test.assertEqual(tuple(a), tuple(b), where)
                continue
            test.assertIs(type(a), type(b), "%s: %r vs %r" % (where, type(a), type(b)))
            if isinstance(a, list):
                test.assertEqual(len(a), len(b), where)
                stack.extend((x, y, "%s[%d]" % (where, i)) for i, (x, y) in enumerate(zip(a, b)))
            elif isinstance(a, dict):
                test.assertEqual(len(a), len(b), where)
                for (ka, va), (kb, vb) in zip(a.items(), b.items()):
                    stack.append((ka, kb, "%s key" % where))
                    stack.append((va, vb, "%s[%r]" % (where, ka)))
            elif isinstance(a, float) and math.isnan(a):
                test.assertTrue(math.isnan(b), where)
            elif isinstance(a, datetime.datetime):
                test.assertEqual((a, a.tzinfo), (b, b.tzinfo), where)
            else:
                test.assertEqual(a, b, where)


class PureCodecTest(unittest.TestCase):
    """The pure codec against known encodings: runs on every interpreter."""

    def test_known_encodings(self) -> None:
        cases = [
            (None, "c0"), (False, "c2"), (True, "c3"), (0, "00"), (127, "7f"), (128, "cc80"), (255, "ccff"),
            (256, "cd0100"), (65535, "cdffff"), (65536, "ce00010000"), (2**32 - 1, "ceffffffff"),
            (2**32, "cf0000000100000000"), (2**63 - 1, "cf7fffffffffffffff"), (2**64 - 1, "cfffffffffffffffff"),
            (-1, "ff"), (-32, "e0"), (-33, "d0df"), (-128, "d080"), (-129, "d1ff7f"), (-2**31, "d280000000"),
            (-2**63, "d38000000000000000"), (1.5, "cb3ff8000000000000"), ("", "a0"), ("a" * 31, "bf" + "61" * 31),
            ("a" * 32, "d920" + "61" * 32), ("a" * 256, "da0100" + "61" * 256), (b"", "c400"),
            (b"ab", "c4026162"), (bytearray(b"a"), "c40161"), ([], "90"), ((1, 2), "920102"), ({}, "80"),
            ({"a": 1}, "81a16101"), ({1: 2}, "810102"), (purecodec.ExtType(5, b"ab"), "d5056162"),
            (purecodec.ExtType(1, b"abc"), "c703016162 63".replace(" ", "")),
            (datetime.datetime(2020, 1, 1, tzinfo=UTC), "d6ff5e0be100"),
            (datetime.datetime(2020, 1, 1, 0, 0, 0, 5, tzinfo=UTC), "d7ff00004e205e0be100"),
            (datetime.datetime(1960, 1, 1, 0, 0, 0, 5, tzinfo=UTC), "c70cff00001388ffffffffed300880"),
            (datetime.datetime(2600, 1, 1, tzinfo=UTC), "c70cff0000000000000004a0fe7280"),
        ]  # fmt: skip
        for value, expected in cases:
            with self.subTest(value=value):
                self.assertEqual(purecodec.packb(value).hex(), expected)
                decoded = purecodec.unpackb(bytes.fromhex(expected))
                if type(value) in (tuple, bytearray):
                    value = list(value) if type(value) is tuple else bytes(value)
                SameValue.check(self, decoded, value)

    def test_round_trip(self) -> None:
        for value in value_corpus(purecodec.ExtType):
            with self.subTest(value=short(value, 60)):
                decoded = purecodec.unpackb(purecodec.packb(value))
                if isinstance(value, float) and math.isnan(value):
                    self.assertTrue(math.isnan(decoded))
                elif isinstance(value, (list, tuple, dict, memoryview, bytearray)):
                    self.assertEqual(purecodec.packb(decoded), purecodec.packb(value))
                else:
                    self.assertEqual(decoded, value)

    def test_decoded_types(self) -> None:
        value = purecodec.unpackb(purecodec.packb([(1,), b"b", bytearray(b"c"), memoryview(b"d"), "s", {1: 2}]))
        SameValue.check(self, value, [[1], b"b", b"c", b"d", "s", {1: 2}])
        when = purecodec.unpackb(
            purecodec.packb(datetime.datetime(2024, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2))))
        )
        SameValue.check(self, when, datetime.datetime(2024, 1, 1, 10, tzinfo=UTC))
        self.assertEqual(purecodec.unpackb(b"\xd4\x05a"), purecodec.ExtType(5, b"a"))
        self.assertEqual(purecodec.unpackb(bytearray(b"\x01")), 1)
        self.assertEqual(purecodec.unpackb(memoryview(b"\x02")), 2)

    def test_pack_errors(self) -> None:
        cases = [
            ({1, 2}, TypeError, "can not serialize 'set' object"),
            (object(), TypeError, "can not serialize 'object' object"),
            (datetime.date(2020, 1, 1), TypeError, "can not serialize 'datetime.date' object"),
            (array.array("i"), TypeError, "can not serialize 'array.array' object"),
            ([1, Pair], TypeError, "can not serialize 'type' object"),
            (datetime.datetime(2020, 1, 1), ValueError, "can not serialize 'datetime.datetime' object where tzinfo=None"),
            (2**64, OverflowError, "Integer value out of range"),
            (-2**63 - 1, OverflowError, "Integer value out of range"),
            ("\ud800", UnicodeEncodeError, None),
            (memoryview(b"abcdef")[::2], BufferError, "memoryview: underlying buffer is not C-contiguous"),
            (nested_lists(1025), ValueError, "recursion limit exceeded."),
            ({"k": nested_lists(1024)}, ValueError, "recursion limit exceeded."),
        ]  # fmt: skip
        for value, error, message in cases:
            with self.subTest(value=short(value, 40)):
                with self.assertRaises(error) as caught:
                    purecodec.packb(value)
                self.assertIs(type(caught.exception), error)
                if message is not None:
                    self.assertEqual(str(caught.exception), message)
        cyclic: List[Any] = []
        cyclic.append(cyclic)
        self.assertRaisesRegex(ValueError, "recursion limit", purecodec.packb, cyclic)

    def test_unpack_errors(self) -> None:
        cases = [
            (b"", ValueError, "Unpack failed: incomplete input"),
            (b"\x92\x01", ValueError, "Unpack failed: incomplete input"),
            (b"\xa5ab", ValueError, "Unpack failed: incomplete input"),
            (b"\xcd\x01", ValueError, "Unpack failed: incomplete input"),
            (b"\xc1", purecodec.FormatError, ""),
            (b"\x01\x02", purecodec.ExtraData, "unpack(b) received extra data."),
            (b"\xa1\xff", UnicodeDecodeError, "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
            (b"\x81\x90\x01", TypeError, "unhashable type: 'list'"),
            (b"\xd4\xff\x00", ValueError, "Unpack failed: error = -1"),
            (b"\xd4\x80\x00", ValueError, "code must be 0~127"),
            (b"\xc7\x0c\xff" + struct.pack(">Iq", 0, 2**63 - 1), OverflowError, "date value out of range"),
            (b"\x91" * 1025 + b"\xc0", purecodec.StackError, ""),
            (b"\x91" * 1024 + b"\x90", purecodec.StackError, ""),
            (b"\x91" * 100000, purecodec.StackError, ""),
            (b"\xdd\xff\xff\xff\xff", ValueError, "4294967295 exceeds max_array_len(5)"),
            (b"\x8f\x01", ValueError, "15 exceeds max_map_len(1)"),
        ]  # fmt: skip
        for data, error, message in cases:
            with self.subTest(data=data[:12]):
                with self.assertRaises(error) as caught:
                    purecodec.unpackb(data)
                self.assertIs(type(caught.exception), error)
                self.assertEqual(str(caught.exception), message)
        for error in (purecodec.FormatError, purecodec.StackError, purecodec.ExtraData):
            self.assertTrue(issubclass(error, ValueError))

    def test_deep_nesting_is_accepted_up_to_the_c_limits(self) -> None:
        SameValue.check(self, purecodec.unpackb(b"\x91" * 1024 + b"\xc0"), nested_lists(1024))
        SameValue.check(self, purecodec.unpackb(b"\xdc\x00\x01" * 1023 + b"\x90"), nested_lists(1023, []))
        self.assertEqual(len(purecodec.packb(nested_lists(1024))), 1025)
        # Also from deep inside a call stack, where the recursion limit is near.
        limit = sys.getrecursionlimit()

        def deep(levels: int) -> Any:
            return deep(levels - 1) if levels else purecodec.unpackb(b"\x91" * 1024 + b"\xc0")

        SameValue.check(self, deep(limit - 100), nested_lists(1024))
        self.assertEqual(sys.getrecursionlimit(), limit)

    def test_unpacker(self) -> None:
        unpacker = purecodec.Unpacker()
        self.assertRaises(purecodec.OutOfData, unpacker.unpack)
        unpacker.feed(b"\x94\x01")
        self.assertEqual(unpacker.read_array_header(), 4)
        self.assertEqual(unpacker.unpack(), 1)
        self.assertRaises(purecodec.OutOfData, unpacker.unpack)
        unpacker.feed(b"\xa2x")
        self.assertRaises(purecodec.OutOfData, unpacker.unpack)
        self.assertRaises(purecodec.OutOfData, unpacker.skip)
        unpacker.feed(bytearray(b"y\xa1\xff"))
        self.assertEqual(unpacker.unpack(), "xy")
        self.assertRaises(UnicodeDecodeError, unpacker.unpack)
        self.assertRaises(UnicodeDecodeError, unpacker.unpack)  # nothing consumed
        unpacker.skip()  # skipping decodes no string
        unpacker.feed(b"\x01\xdc\x00\x02\xd4\xff\x00\x92")
        self.assertRaisesRegex(ValueError, "Unexpected type header", unpacker.read_array_header)
        self.assertEqual(unpacker.unpack(), 1)
        self.assertEqual(unpacker.read_array_header(), 2)
        unpacker.skip()  # a timestamp of the wrong length: skipped unchecked
        self.assertEqual(unpacker.read_array_header(), 2)
        self.assertRaises(purecodec.OutOfData, unpacker.read_array_header)
        for data in (b"\xc1", b"\x91" * 1025 + b"\xc0"):
            unpacker = purecodec.Unpacker()
            unpacker.feed(data)
            self.assertRaises(ValueError, unpacker.skip)

    def test_codec_selection(self) -> None:
        self.assertIs(codec.load("pure"), codec.PURE)
        self.assertEqual(codec.load("pure").name, "pure")
        # codec.py names them without importing purecodec (issue 21).
        self.assertEqual((codec.PURE_NAME, codec.JOIN_LIMIT), (purecodec.NAME, purecodec.JOIN_LIMIT))
        self.assertRaises(ValueError, codec.load, "fast")
        self.assertIn(codec.NAME, ("pure", "msgpack-c"))
        self.assertEqual(codec.unpackb(codec.packb([3, 7, "testingtesting"])), [3, 7, "testingtesting"])


class NumpyScalarTest(unittest.TestCase):
    """numpy's bool, integer and float scalars encode as the Python numbers
    they stand for (obj.item()), wherever they are; nothing else of numpy
    encodes. For the pure codec, and the C extension when it is importable."""

    def setUp(self) -> None:
        self.np = import_numpy_or_skip(self)

    def codecs(self) -> List[codec.Codec]:
        try:
            return [codec.PURE, codec.load(codec.C_NAME)]
        except ImportError:
            return [codec.PURE]

    def test_scalars_encode_as_python_numbers(self) -> None:
        for c in self.codecs():
            for value in numpy_scalars(self.np):
                with self.subTest(codec=c.name, value=repr(value)):
                    number = value.item()
                    self.assertIn(type(number), (bool, int, float))
                    self.assertEqual(c.packb(value), purecodec.packb(number))
                    self.assertEqual(joined(c.result_frame(9, value)), joined(codec.PURE.result_frame(9, number)))
                    decoded = c.unpackb(c.packb(value))
                    self.assertIs(type(decoded), type(number))

    def test_scalars_inside_containers(self) -> None:
        np = self.np
        value = {"n": [np.int8(1), (np.uint64(2**64 - 1), {"f": np.float32(0.5)})], np.int16(3): np.bool_(True),
                 "t": (np.float16(2), [np.float64(0.25)])}  # fmt: skip
        plain = {"n": [1, (2**64 - 1, {"f": 0.5})], 3: True, "t": (2.0, [0.25])}
        for c in self.codecs():
            with self.subTest(codec=c.name):
                self.assertEqual(c.packb(value), purecodec.packb(plain))
                self.assertEqual(joined(c.result_frame(300, value)), joined(codec.PURE.result_frame(300, plain)))

    def test_other_numpy_values_stay_unencodable(self) -> None:
        for c in self.codecs():
            for value in numpy_unencodables(self.np):
                with self.subTest(codec=c.name, value=short(value, 60)):
                    self.assertRaises(TypeError, c.packb, value)
                    self.assertRaises(TypeError, c.result_frame, 1, value)
                    self.assertEqual(outcome(lambda v: joined(c.result_frame(7, v))[4:], value),
                                     outcome(lambda v: c.packb([3, 7, v]), value))  # fmt: skip
        self.assertEqual(outcome(purecodec.packb, self.np.complex128(1)),
                         ("error", "TypeError", "can not serialize 'numpy.complex128' object"))  # fmt: skip


class NumpyNotImportedTest(unittest.TestCase):
    def test_the_runtime_does_not_import_numpy(self) -> None:
        # Neither loading the runtime nor encoding every common type and
        # failing on unknown ones may import numpy (about 100 ms).
        script = ("import sys; sys.path.insert(0, sys.argv[1]); from pypool_runtime import worker, codec, purecodec\n"
                  "for c in [codec.PURE] + ([codec.load('msgpack-c')] if codec.NAME != 'pure' else []):\n"
                  "    c.result_frame(1, [1, 'a', {'b': 2.5}, None, True, b'x'])\n"
                  "    for bad in ({1}, object(), 2**64):\n"
                  "        try: c.result_frame(1, [bad])\n"
                  "        except Exception as exc: worker.not_encodable_detail([bad], exc)\n"
                  "print('numpy' in sys.modules)")  # fmt: skip
        result = subprocess.run([sys.executable, "-E", "-c", script, os.path.dirname(os.path.dirname(__file__))],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "False\n", ""))


class FindUnencodableTest(unittest.TestCase):
    """codec.find_unencodable: where in a result the value the codecs refuse is."""

    def test_paths(self) -> None:
        class Unknown:
            pass

        odd = Unknown()
        cyclic: List[Any] = [1]
        cyclic.append(cyclic)
        cases = [
            ({1}, "result", set),
            ({"items": [1, {"score": {1, 2}}]}, "result['items'][1]['score']", set),
            ([0, 1, 2, {"score": odd}], "result[3]['score']", Unknown),
            ((1, [2, (3, frozenset())]), "result[1][1][1]", frozenset),
            ({1: "a", 2.5: [b"x", 2**64]}, "result[2.5][1]", int),
            ({"a": 1, frozenset(): 2}, "a key of result", frozenset),
            ([{(1, (2, odd)): 1}], "a key of result[0]", Unknown),
            ({b"k": ["ok", "\udfff"]}, "result[b'k'][1]", str),
            ([datetime.datetime(2020, 1, 1, tzinfo=UTC), datetime.datetime(2020, 1, 1)], "result[1]", datetime.datetime),
            (Items([Mapping(k=[odd])]), "result[0]['k'][0]", Unknown),
            ({"x" * 100: odd}, "result['" + "x" * 56 + "...]", Unknown),
            ([{2}, cyclic, cyclic], "result[0]", set),
        ]  # fmt: skip
        for value, path, cls in cases:
            with self.subTest(path=path):
                found = codec.find_unencodable(value)
                self.assertIsNotNone(found)
                assert found is not None
                self.assertEqual(found[0], path)
                self.assertIs(type(found[1]), cls)
                # The error of the element alone is the codecs' error for the whole.
                self.assertEqual(outcome(purecodec.packb, value)[1:], (type(found[2]).__name__, str(found[2])))
        # Depth limits are not looked at: past a cycle, the first element
        # refused on its own is not where the codecs fail.
        self.assertEqual(codec.find_unencodable([cyclic, {2}])[:2], ("result[1]", {2}))  # type: ignore[index]

    def test_nothing_found(self) -> None:
        cyclic: List[Any] = []
        cyclic.append(cyclic)
        for value in [1, "a", [1, {"a": b"b"}], purecodec.ExtType(1, b"x"), nested_lists(600), cyclic,
                      {"a": cyclic}, Pair(1, 2), memoryview(b"x"), bytearray(10)]:  # fmt: skip
            with self.subTest(value=short(value, 40)):
                self.assertIsNone(codec.find_unencodable(value))

    def test_numpy(self) -> None:
        np = import_numpy_or_skip(self)
        found = codec.find_unencodable([np.int8(1), {"a": np.float32(1), "b": (np.bool_(True), np.zeros(2, complex))}])
        self.assertIsNotNone(found)
        assert found is not None
        self.assertEqual(found[:2], ("result[1]['b'][1]", found[1]))
        self.assertIs(type(found[1]), np.ndarray)
        self.assertIsNone(codec.find_unencodable(numpy_scalars(np)))
        self.assertIsNone(codec.find_unencodable([np.zeros(()), {"a": np.ones((2, 3), ">f4")[:, ::2]}]))


class ByteShortcutsTest(unittest.TestCase):
    """The byte-level helpers the worker uses instead of the codec on its hot
    paths: runs on every interpreter."""

    CALL, RESULT = 2, 3

    def test_bin_header(self) -> None:
        for size in (0, 1, 255, 256, 65535, 65536, 70000):
            with self.subTest(size=size):
                data = b"x" * size
                self.assertEqual(codec.bin_header(size) + data, purecodec.packb(data))
        self.assertEqual(codec.bin_header(2**32 - 1), b"\xc6\xff\xff\xff\xff")
        self.assertRaises(struct.error, codec.bin_header, 2**32)

    def test_bytes_result_head(self) -> None:
        for call_id in [i for i in edge_ints() if i >= 0]:
            for size in (0, 255, 256, 65535, 65536, 1 << 20):
                data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
                with self.subTest(call_id=call_id, size=size):
                    self.assertEqual(
                        codec.bytes_result_head(call_id, size) + data, purecodec.packb([self.RESULT, call_id, data])
                    )


def joined(frame: Any) -> bytes:
    """A result_frame's frame as one bytes object."""
    return frame if type(frame) is bytes else frame[0] + bytes(frame[1])


def call_ids() -> List[int]:
    return [i for i in edge_ints() if i >= 0]


def call_bodies(rng: random.Random, values: List[Any]) -> List[bytes]:
    """CALL frames without keyword arguments, of assorted ids, names and arguments."""
    names = ["echo", "", "f" * 31, "g" * 32, "h" * 255, "héllo"]
    bodies = []
    for i, value in enumerate(values):
        args = [value] if i % 3 else [value, "s", 1, None]
        try:
            bodies.append(purecodec.packb([2, rng.choice(call_ids()), names[i % len(names)], args, None]))
        except ValueError:  # nested too deep to be an argument
            pass
    return bodies


class HotPathsTest(unittest.TestCase):
    """The worker's hot paths (Codec.decode_call, Codec.result_frame) must
    agree with the codecs' general entry points: runs on every interpreter,
    for the pure codec and for the C extension when it is importable."""

    def codecs(self) -> List[codec.Codec]:
        try:
            return [codec.PURE, codec.load(codec.C_NAME)]
        except ImportError:
            return [codec.PURE]

    def test_result_frame_is_packb_behind_the_length(self) -> None:
        values = value_corpus(purecodec.ExtType) + [b"x" * 70000, bytearray(b"y" * 70000), "z" * 70000, "é" * 40000,
                                                    b"w" * (1 << 20), ["a", "b" * 40, 1, 200, -1, None, True, 1.5],
                                                    {"k": "v", "long" * 10: 1, 2: b"x"}, Blob(b"b" * 70000)]  # fmt: skip
        for c in self.codecs():
            for value in values:
                if c.name != codec.PURE_NAME and isinstance(value, purecodec.ExtType):
                    value = c.ExtType(*value)
                for call_id in call_ids():
                    with self.subTest(codec=c.name, value=short(value, 60), call_id=call_id):
                        expected = outcome(lambda v: c.packb([3, call_id, v]), value)
                        if expected[0] == "ok":
                            expected = ("ok", struct.pack(">I", len(expected[1])) + expected[1])
                        self.assertEqual(outcome(lambda v: joined(c.result_frame(call_id, v)), value), expected)

    def test_result_frame_errors_are_packb_errors(self) -> None:
        cyclic: List[Any] = []
        cyclic.append(cyclic)
        bad = [{1}, object(), datetime.datetime(2020, 1, 1), 2**64, -2**63 - 1, "\ud800", ["ok", "\udfff"],
               {"\ud800": 1}, nested_lists(1024), nested_lists(1023), ["x", {2}], {"a": object()}, cyclic]  # fmt: skip
        for c in self.codecs():
            for value in bad:
                with self.subTest(codec=c.name, value=short(value, 60)):
                    self.assertEqual(outcome(lambda v: joined(c.result_frame(7, v))[4:], value),
                                     outcome(lambda v: c.packb([3, 7, v]), value))  # fmt: skip

    def check_decode_call(self, c: codec.Codec, body: bytes) -> None:
        """decode_call(body) is None, or what unpackb(body) gives for a
        CALL without keyword arguments; the same for a memoryview body."""
        general = outcome(c.unpackb, body)
        for data in (body, memoryview(bytearray(body))):
            call = c.decode_call(data)
            if call is not None:
                self.assertEqual(general[0], "ok", general)
                message = general[1]
                self.assertEqual(len(message), 5)
                self.assertEqual(message[0], 2)
                self.assertIsNone(message[4])
                self.assertIs(type(call[2]), list)
                SameValue.check(self, list(call), message[1:4])

    def test_decode_call(self) -> None:
        rng = random.Random(5)
        args_values = [v for v in value_corpus(purecodec.ExtType) if not isinstance(v, purecodec.ExtType)]
        args_values += ["s" * 70000, b"b" * 70000, "é" * 40000]
        for c in self.codecs():
            for body in call_bodies(rng, args_values):
                with self.subTest(codec=c.name, body=body[:20]):
                    call = c.decode_call(body)
                    if b"\x91" * 200 not in body:  # deeper may take the general path, which has the headroom
                        self.assertIsNotNone(call)
                    self.check_decode_call(c, body)
            bodies = call_bodies(rng, ["x", b"", [1], "é" * 40, 2**40, -1, 1.5, None, True, {"a": 1}, b"b" * 70000])
            for _ in range(3000):  # corrupted and cut frames
                data = bytearray(rng.choice(bodies))
                for _ in range(rng.randint(1, 3)):
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
                data = bytes(data[: rng.randint(1, len(data))] if rng.random() < 0.3 else data)
                with self.subTest(codec=c.name, data=data[:40].hex()):
                    self.check_decode_call(c, data)

    def test_decode_call_leaves_other_frames_to_the_general_path(self) -> None:
        for c in self.codecs():
            for body in [
                purecodec.packb([2, 1, "echo", [], {"a": None}]),
                purecodec.packb([2, 1, "echo", [1], {}]),
                purecodec.packb([2, 1, "echo", "not a list", None]),
                purecodec.packb([3, 1, "echo", [], None]),
                purecodec.packb([2, 1, b"echo", [], None]),
                purecodec.packb([2, -1, "echo", [], None]),
                b"\x95\x02\x01\xa4echo\x91\xa1x",  # no nil at the end
                b"\x95\x02\x01\xa4echo\x91\xa2x\xc0",  # the str runs into the nil
                b"\x95\x02\x01\xa4echo\x91\xa1\xff\xc0",  # invalid UTF-8
                b"\x95\x02\x01\xa4echo\x91\xc4\x05ab\xc0",  # a bin cut short
            ]:
                for data in (body, memoryview(bytearray(body))):
                    with self.subTest(codec=c.name, body=body[:20], view=type(data) is memoryview):
                        self.assertIsNone(c.decode_call(data))
            # Valid, if less usual: the general path or the hot one, with the same result.
            for args in ([b"x" * 70000, 1], list(range(16)), [[1, 2], {"a": b"b"}], ["é" * 40000, b"", ""]):
                body = purecodec.packb([2, 300, "echo", args, None])
                with self.subTest(codec=c.name, args=repr(args)[:20]):
                    self.check_decode_call(c, body)


class NestingLimitTest(unittest.TestCase):
    """Both codecs accept what msgpack >= 1.2's C packer accepts, whatever
    msgpack is installed: an object with 1024 levels of containers below it
    (a reply's value, one level less: the reply's array is one); one more
    level is refused with the C packer's error."""

    TOO_DEEP = ("error", "ValueError", "recursion limit exceeded.")

    def codecs(self) -> List[codec.Codec]:
        try:
            return [codec.PURE, codec.load(codec.C_NAME)]
        except ImportError:
            return [codec.PURE]

    def test_packb(self) -> None:
        kinds = [("lists", nested_lists), ("dicts", nested_dicts),
                 ("lists around a dict", lambda n: nested_lists(n - 1, {"k": []}))]  # fmt: skip
        for kind, make in kinds:
            encodings = []
            for c in self.codecs():
                with self.subTest(kind=kind, codec=c.name):
                    encoded = c.packb(make(1024))
                    encodings.append(encoded)
                    self.assertEqual(outcome(c.packb, make(1025)), self.TOO_DEEP)
                    if kind != "lists around a dict":  # its empty array would be the 1025th container the decoder opens
                        self.assertEqual(c.packb(c.unpackb(encoded)), encoded)
            self.assertEqual(encodings, [encodings[0]] * len(encodings))
        self.assertEqual(codec.PURE.packb(nested_lists(1024)), b"\x91" * 1024 + b"\xc0")

    def test_result_frame(self) -> None:
        for c in self.codecs():
            with self.subTest(codec=c.name):
                self.assertEqual(joined(c.result_frame(5, nested_lists(1023))),
                                 struct.pack(">I", 1027) + b"\x93\x03\x05" + b"\x91" * 1023 + b"\xc0")  # fmt: skip
                self.assertEqual(outcome(lambda v: c.result_frame(5, v), nested_lists(1024)), self.TOO_DEEP)
                self.assertEqual(outcome(lambda v: c.result_frame(5, v), {"a": nested_dicts(1023)}), self.TOO_DEEP)

    def test_c_extension_values_past_its_own_limit(self) -> None:
        """msgpack 1.0's C packer stops at 511 levels: deeper values go to the
        pure packer, which must write msgpack's own classes as the C one."""
        c = load_c_or_skip(self)
        import msgpack

        leaf = [msgpack.ExtType(3, b"abc"), msgpack.Timestamp(1, 2), msgpack.Timestamp(2**40, 0),
                datetime.datetime(2020, 1, 1, tzinfo=UTC), Pair(1, 2)]  # fmt: skip
        shallow = c.packb(leaf)
        self.assertEqual(c.packb(nested_lists(1000, leaf)), b"\x91" * 1000 + shallow)
        self.assertEqual(joined(c.result_frame(1, nested_lists(1000, leaf)))[7:], b"\x91" * 1000 + shallow)
        if msgpack.version < (1, 2):
            from msgpack import _cmsgpack

            self.assertRaisesRegex(ValueError, "recursion limit", _cmsgpack.Packer().pack, nested_lists(600))


class CompareWithCExtensionTest(unittest.TestCase):
    """The pure codec must be indistinguishable from the C extension."""

    def setUp(self) -> None:
        self.c = load_c_or_skip(self)
        self.assertEqual(self.c.name, "msgpack-c")

    def test_auto_selects_the_c_extension(self) -> None:
        self.assertEqual(codec.NAME, "msgpack-c")
        self.assertEqual(codec.load("auto").name, "msgpack-c")

    def test_identical_packing(self) -> None:
        for value in value_corpus(self.c.ExtType):
            with self.subTest(value=short(value, 60)):
                expected = self.c.packb(value)
                if isinstance(value, self.c.ExtType):
                    value = purecodec.ExtType(*value)
                self.assertEqual(purecodec.packb(value), expected)

    def test_identical_pack_errors(self) -> None:
        class Unknown:
            pass

        class Moment(datetime.datetime):
            pass

        class NoOffset(datetime.tzinfo):
            def utcoffset(self, dt: Any) -> None:
                return None

        cyclic: List[Any] = []
        cyclic.append(cyclic)
        bad = [{1}, frozenset(), Unknown(), Unknown, object(), 1j, datetime.date(2020, 1, 1), datetime.time(1),
               datetime.timedelta(1), datetime.datetime(2020, 1, 1), Moment(2020, 1, 1, tzinfo=UTC), Moment(2020, 1, 1),
               datetime.datetime(2020, 1, 1, tzinfo=NoOffset()), 2**64, -2**63 - 1, 10**30, "\ud800", ["ok", "\udfff"],
               memoryview(b"abcdef")[::2], array.array("b"), nested_lists(1025), nested_lists(1200), cyclic,
               {"a": nested_lists(1024)}, {(1,): {2}}, range(3), iter([]), None.__class__,
               {(1, 2): "tuple key"}, memoryview(bytearray(8)).cast("i", (1, 2)), memoryview(b"")]  # fmt: skip
        # The numpy values that stay unencodable, when numpy is importable.
        try:
            import numpy
        except ImportError:
            print("\nnumpy not importable in %s: no numpy values among the pack errors" % sys.executable)
        else:
            bad += numpy_unencodables(numpy)
        from msgpack import _cmsgpack

        for value in bad:
            with self.subTest(value=short(value, 60)):
                self.assertEqual(outcome(purecodec.packb, value), outcome(self.c.packb, value))
                # The default= hook changes no error (msgpack 1.0 stops sooner: see NestingLimitTest).
                if "recursion limit" not in str(outcome(self.c.packb, value)):
                    self.assertEqual(
                        outcome(self.c.packb, value),
                        outcome(_cmsgpack.Packer(use_bin_type=True, datetime=True).pack, value),
                    )

    def test_identical_numpy_scalars(self) -> None:
        np = import_numpy_or_skip(self)
        scalars = numpy_scalars(np)
        values = scalars + [scalars, tuple(scalars), {"k%d" % i: v for i, v in enumerate(scalars)},
                            {np.int64(1): np.uint8(2)}]  # fmt: skip
        for value in values:
            with self.subTest(value=short(value, 60)):
                expected = self.c.packb(value)
                self.assertEqual(purecodec.packb(value), expected)
                for call_id in (1, 2**40):
                    self.assertEqual(joined(codec.PURE.result_frame(call_id, value)),
                                     joined(self.c.result_frame(call_id, value)))  # fmt: skip

    def test_identical_unpacking(self) -> None:
        blobs = encoded_corpus() + [self.c.packb(value) for value in value_corpus(self.c.ExtType)]
        for data in blobs:
            with self.subTest(data=data[:16]):
                pure, c = outcome(purecodec.unpackb, data), outcome(self.c.unpackb, data)
                self.assertEqual(pure[0], c[0], (pure[1:], c[1:]))
                if c[0] == "error":
                    self.assertEqual(pure, c)
                else:
                    SameValue.check(self, pure[1], c[1])

    def test_random_values(self) -> None:
        rng = random.Random(1234)

        def scalar() -> Any:
            return rng.choice([
                None, True, False, rng.randint(-2**63, 2**64 - 1), rng.randint(-200, 300), rng.random() * 10**rng.randint(-5, 300),
                "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)])) for _ in range(rng.randint(0, 40))),
                bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))),
                datetime.datetime(1970, 1, 1, tzinfo=UTC) + datetime.timedelta(microseconds=rng.randint(-6 * 10**16, 2 * 10**17)),
            ])  # fmt: skip

        def value(depth: int) -> Any:
            kind = rng.random()
            if depth > 3 or kind < 0.4:
                return scalar()
            if kind < 0.75:
                return [value(depth + 1) for _ in range(rng.randint(0, 8))]
            return {
                scalar() if rng.random() < 0.3 else str(rng.random()): value(depth + 1)
                for _ in range(rng.randint(0, 8))
            }

        for _ in range(300):
            item = value(0)
            packed = self.c.packb(item)
            self.assertEqual(purecodec.packb(item), packed)
            SameValue.check(self, purecodec.unpackb(packed), self.c.unpackb(packed))

    def test_random_corruption(self) -> None:
        rng = random.Random(99)
        base = self.c.packb(
            [
                1,
                -5,
                "text",
                b"\x00\x01",
                {"k": [1.5, None, True]},
                datetime.datetime(2020, 1, 1, 0, 0, 0, 7, tzinfo=UTC),
                2**40,
                "é" * 40,
            ]
        )
        for _ in range(2000):
            data = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data[: rng.randint(1, len(data))] if rng.random() < 0.3 else data)
            pure, c = outcome(purecodec.unpackb, data), outcome(self.c.unpackb, data)
            with self.subTest(data=data.hex()):
                if c[0] == "error":
                    self.assertEqual(pure, c)
                else:
                    self.assertEqual(pure[0], "ok", pure)
                    SameValue.check(self, pure[1], c[1])

    def test_bytes_result_head_matches_the_c_extension(self) -> None:
        for call_id in (0, 127, 128, 2**32, 2**64 - 1):
            for size in (65537, 1 << 20):
                data = b"\x01" * size
                with self.subTest(call_id=call_id, size=size):
                    self.assertEqual(codec.bytes_result_head(call_id, size) + data, self.c.packb([3, call_id, data]))

    def test_identical_unpacker(self) -> None:
        script = [
            ("unpack", None), ("feed", b"\x94\x01"), ("read_array_header", None), ("unpack", None), ("unpack", None),
            ("feed", b"\xa2x"), ("unpack", None), ("skip", None), ("feed", b"y\xa1\xff"), ("unpack", None),
            ("unpack", None), ("unpack", None), ("skip", None), ("feed", b"\x01\xdc\x00\x02\xd4\xff\x00\x92"),
            ("read_array_header", None), ("unpack", None), ("read_array_header", None), ("skip", None),
            ("read_array_header", None), ("read_array_header", None), ("feed", b"\xc1"), ("skip", None),
        ]  # fmt: skip
        pure, c = purecodec.Unpacker(), self.c.Unpacker()
        for step, arg in script:
            with self.subTest(step=step, arg=arg):
                if step == "feed":
                    pure.feed(arg)
                    c.feed(arg)
                else:
                    self.assertEqual(
                        outcome(lambda u: getattr(u, step)(), pure), outcome(lambda u: getattr(u, step)(), c)
                    )


if __name__ == "__main__":
    unittest.main()


class DeferredCodecTest(unittest.TestCase):
    """Issue 21: a worker's C codec is loaded later (codec.load with
    defer=True, codec.deferred): until then the pure codec encodes and
    decodes for it, and loads it for the values where the two would differ
    (an error: the loaded codec's own; an ext value of a code no extension
    decodes: the loaded codec's ExtType class), then answers as it does:
    the same bytes, values, classes and errors as the loaded codec."""

    def loaded_codecs(self) -> List[codec.Codec]:
        try:
            return [codec.PURE, codec.load(codec.C_NAME)]
        except ImportError:
            return [codec.PURE]

    def fresh(self, loaded: codec.Codec) -> codec.Codec:
        """A deferred codec that loads the codec named like loaded."""
        return codec.deferred(loaded.name, lambda: codec.load(loaded.name))

    @staticmethod
    def ext_classes(value: Any) -> set:
        """The classes of the ExtType values in value, all levels."""
        found = set()
        stack = [value]
        while stack:
            item = stack.pop()
            if type(item).__name__ == "ExtType":
                found.add(type(item))
            elif isinstance(item, (list, tuple)):
                stack.extend(item)
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
        return found

    def test_large_values_load_the_codec_first(self) -> None:
        # The pure codec stands in for small values only: a CALL frame of
        # more than INTERIM_MAX_FRAME bytes, or a container of more than
        # INTERIM_MAX_ITEMS elements to encode, loads the codec first (the
        # pure codec decodes a million floats in about 0.4 s).
        floats = [float(i) for i in range(codec.INTERIM_MAX_ITEMS + 1)] * 8
        call = purecodec.packb([2, 1, "echo", [floats], None])
        self.assertGreater(len(call), codec.INTERIM_MAX_FRAME)
        context_call = purecodec.packb([2, 1, "echo", [floats], None, {"r": 1.0}])
        for loaded in self.loaded_codecs():
            for name, use in (
                ("decode_call", lambda d: d.decode_call(call)),
                ("decode_call_context", lambda d: d.decode_call_context(context_call)),
                ("unpackb", lambda d: d.unpackb(call)),
                ("packb", lambda d: d.packb(floats)),
                ("result_frame", lambda d: d.result_frame(1, floats)),
            ):
                with self.subTest(codec=loaded.name, entry=name):
                    d = self.fresh(loaded)
                    use(d)
                    self.assertIsNone(d.finish, "the codec was not loaded first")
            d = self.fresh(loaded)
            d.packb([1.5] * codec.INTERIM_MAX_ITEMS)
            d.decode_call(purecodec.packb([2, 1, "echo", ["x"], None]))
            self.assertIsNotNone(d.finish, "a small value loaded the codec")

    def test_a_few_calls_before_it_loads_at_most(self) -> None:
        # Whatever serve loop uses it (serve.py's loads it sooner, when idle):
        # the pure codec, slower than the C codec, does not stand in for long.
        body = purecodec.packb([2, 1, "echo", ["x"], None])
        for loaded in self.loaded_codecs():
            d = self.fresh(loaded)
            for _ in range(codec.INTERIM_CALLS):
                self.assertEqual(d.decode_call(body), (1, "echo", ["x"]))
            self.assertIsNotNone(d.finish)
            self.assertEqual(d.decode_call(body), (1, "echo", ["x"]))
            self.assertIsNone(d.finish)

    def test_packing_and_result_frames(self) -> None:
        cyclic: List[Any] = []
        cyclic.append(cyclic)
        bad = [{1}, object(), 2**64, -2**63 - 1, "\ud800", ["ok", "\udfff"], {"\ud800": 1}, ["x", {2}], cyclic]
        for loaded in self.loaded_codecs():
            values = value_corpus(loaded.ExtType) + bad + [b"x" * 70000, bytearray(b"y" * 70000), "z" * 70000, list(range(5000)), nested_lists(64)]
            for value in values:
                with self.subTest(codec=loaded.name, value=short(value, 60)):
                    expected = outcome(loaded.packb, value)
                    by_pure = outcome(codec.PURE.packb, value)[0] == "ok"
                    d = self.fresh(loaded)
                    self.assertEqual(outcome(d.packb, value), expected)
                    self.assertEqual(d.finish is None, not by_pure or codec._large(value), "loaded for what the pure codec refuses, or a large container, only")
                    d = self.fresh(loaded)
                    for call_id in (0, 200, 70000, 2**32):
                        self.assertEqual(outcome(lambda v: joined(d.result_frame(call_id, v)), value),
                                         outcome(lambda v: joined(loaded.result_frame(call_id, v)), value))  # fmt: skip
                    self.assertEqual(d.finish is None, outcome(lambda v: codec.PURE.result_frame(0, v), value)[0] != "ok" or codec._large(value))

    def test_unpacking(self) -> None:
        for loaded in self.loaded_codecs():
            blobs = encoded_corpus() + [purecodec.packb(v) for v in value_corpus(purecodec.ExtType) if not isinstance(v, memoryview)]
            for data in blobs:
                with self.subTest(codec=loaded.name, data=data[:30].hex()):
                    d = self.fresh(loaded)
                    got, expected = outcome(d.unpackb, data), outcome(loaded.unpackb, data)
                    self.assertEqual(got[0], expected[0], (got, expected))
                    if expected[0] == "ok":
                        SameValue.check(self, got[1], expected[1])
                        classes = self.ext_classes(got[1])
                        self.assertLessEqual(classes, {loaded.ExtType}, "the loaded codec's ExtType")
                        self.assertEqual(d.finish is None, bool(classes) or len(data) > codec.INTERIM_MAX_FRAME, "loaded for an unknown ext value, or a large frame, only")
                    else:
                        self.assertEqual(got, expected)
                        self.assertIsNone(d.finish, "an error comes from the loaded codec")

    def test_an_unknown_ext_value_is_the_loaded_codecs(self) -> None:
        for loaded in self.loaded_codecs():
            with self.subTest(codec=loaded.name):
                d = self.fresh(loaded)
                data = purecodec.packb(["plain", 1, None])
                self.assertEqual(d.unpackb(data), ["plain", 1, None])
                self.assertIsNotNone(d.finish, "the pure codec decodes it")
                value = d.unpackb(purecodec.packb(["x", purecodec.ExtType(5, b"data")]))
                self.assertIs(type(value[1]), loaded.ExtType)
                self.assertEqual(tuple(value[1]), (5, b"data"))
                self.assertIsNone(d.finish)
                # The pure codec decodes its own ExtType again, outside a deferred codec.
                self.assertIs(type(codec.PURE.unpackb(b"\xd4\x05\x00")), purecodec.ExtType)

    def test_other_threads_decode_as_they_asked(self) -> None:
        # While the pure codec decodes for a deferred codec in one thread,
        # another thread's own use of the pure codec gets its own ExtType.
        import threading

        def in_another_thread(data: bytes) -> Any:
            got: List[Any] = []
            thread = threading.Thread(target=lambda: got.append(codec.PURE.unpackb(data)))
            thread.start()
            thread.join()
            return got[0]

        value = codec._standing_in_for(in_another_thread, b"\xd4\x05\x00")
        self.assertIs(type(value), purecodec.ExtType)
        with self.assertRaises(codec._NeedsLoadedCodec):
            codec._standing_in_for(codec.PURE.unpackb, b"\xd4\x05\x00")
        self.assertEqual(codec._standing_in, {})

    def test_decode_call(self) -> None:
        rng = random.Random(21)
        args_values = [v for v in value_corpus(purecodec.ExtType) if not isinstance(v, (purecodec.ExtType, memoryview))]
        bodies = call_bodies(rng, args_values + ["s" * 70000, b"b" * 70000])
        bodies.append(purecodec.packb([2, 9, "echo", [purecodec.ExtType(5, b"x")], None]))
        corrupted = []
        for _ in range(1000):
            data = bytearray(rng.choice(bodies[:40]))
            data[rng.randrange(len(data))] = rng.getrandbits(8)
            corrupted.append(bytes(data[: rng.randint(1, len(data))] if rng.random() < 0.3 else data))
        for loaded in self.loaded_codecs():
            for body in bodies + corrupted + [purecodec.packb([2, 1, "echo", [], {"a": None}]), b""]:
                with self.subTest(codec=loaded.name, body=body[:30].hex()):
                    d = self.fresh(loaded)
                    got, expected = outcome(d.decode_call, body), outcome(loaded.decode_call, body)
                    self.assertEqual(got[0], expected[0])
                    if got == ("ok", None) and expected[1] is not None:
                        # Left to the general path (an unknown ext value among
                        # them, or a head the pure codec's hot path does not
                        # take): it decodes them as the loaded codec does.
                        message = d.unpackb(body)
                        got = ("ok", (message[1], message[2], message[3]))
                        classes = self.ext_classes(got[1])
                        self.assertLessEqual(classes, {loaded.ExtType})
                        self.assertEqual(d.finish is None, bool(classes) or len(body) > codec.INTERIM_MAX_FRAME)
                    SameValue.check(self, got[1] and list(got[1]), expected[1] and list(expected[1]))
        d = self.fresh(codec.PURE)
        self.assertEqual(d.decode_call(purecodec.packb([2, 7, "echo", ["x", 1, None, [1.5, {"k": b"v"}]], None])),
                         (7, "echo", ["x", 1, None, [1.5, {"k": b"v"}]]))  # fmt: skip
        self.assertIsNotNone(d.finish, "decoded by the pure codec")

    def test_finish_binds_the_loaded_codec(self) -> None:
        for loaded in self.loaded_codecs():
            d = self.fresh(loaded)
            self.assertEqual(d.name, loaded.name)
            self.assertIsNone(d.ExtType)
            packb = d.packb
            stamp = datetime.datetime(2020, 1, 1, tzinfo=UTC)
            self.assertEqual(packb(stamp), loaded.packb(stamp))
            self.assertIsNotNone(d.finish, "a timestamp: the pure codec's bytes are the codec's")
            d.finish()
            self.assertIsNone(d.finish)
            self.assertIs(d.ExtType, loaded.ExtType)
            self.assertIsNot(d.packb, packb, "the loaded codec's own entry point")
            self.assertEqual(packb("still works"), loaded.packb("still works"), "bound before: forwards")
            d = self.fresh(loaded)
            d.Unpacker()  # the loaded codec's incremental decoder
            self.assertIsNone(d.finish)

    def test_a_codec_that_does_not_load_leaves_the_pure_codec(self) -> None:
        import contextlib
        import io

        def broken() -> codec.Codec:
            raise ImportError("a broken extension")

        d = codec.deferred(codec.C_NAME, broken)
        self.assertEqual(d.packb([1, "x"]), b"\x92\x01\xa1x")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            value = d.unpackb(purecodec.packb(purecodec.ExtType(5, b"x")))
        self.assertIs(type(value), purecodec.ExtType)
        self.assertIsNone(d.finish)
        self.assertEqual(d.name, codec.PURE_NAME, "it does not claim the C codec any more")
        self.assertIs(d.packb, codec.PURE.packb)
        self.assertIn("the msgpack-c codec did not load (ImportError: a broken extension): the pure codec runs instead", err.getvalue())

    def test_the_pure_codec_is_not_deferred(self) -> None:
        self.assertIs(codec.load(codec.PURE_NAME, defer=True), codec.PURE)
        self.assertIsNone(codec.PURE.finish)

    def test_load_deferred_imports_the_pure_codec_only(self) -> None:
        # In a fresh interpreter: the name the worker's HELLO says, and only
        # the pure codec imported for it.
        try:
            from msgpack import _cmsgpack  # noqa: F401

            has_c = True
        except ImportError:
            has_c = False
        script = ("import sys; sys.path.insert(0, %r); from pypool_runtime import codec; "
                  "names = [codec.load(n, defer=True).name for n in ('auto', 'pure')]; "
                  "print(names, sorted(m for m in ('msgpack', 'pypool_runtime.purecodec', 'datetime') if m in sys.modules))"
                  % os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # fmt: skip
        out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True).stdout
        self.assertEqual(out.strip(), "%s ['pypool_runtime.purecodec']" % [codec.C_NAME if has_c else codec.PURE_NAME, codec.PURE_NAME])
