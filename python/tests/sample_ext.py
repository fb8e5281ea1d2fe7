"""A module the worker tests load: it extends what crosses, as a user would,
with an ext type (decimal.Decimal, code 5; Fraction, code 6, through the
decorator on a subclass) and a default hook (dates, dataclasses)."""

import dataclasses
import datetime
import decimal
import fractions

import pypool_runtime

pypool_runtime.register_ext(decimal.Decimal, 5, lambda d: str(d).encode(), lambda b: decimal.Decimal(b.decode()))


@pypool_runtime.ext_type(6, encode=lambda f: str(f).encode(), decode=lambda b: Ratio(b.decode()))
class Ratio(fractions.Fraction):
    pass


def _default(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    raise TypeError("sample_ext cannot encode %s" % type(obj).__name__)


pypool_runtime.set_default(_default)


@dataclasses.dataclass
class Item:
    name: str
    price: decimal.Decimal
    when: datetime.date


def echo(value):
    return value


def total(prices):
    """The sum of Decimals sent by Go, and what they arrived as."""
    return {"types": sorted({type(p).__name__ for p in prices}), "total": sum(prices, decimal.Decimal(0))}


def half(ratio):
    return {"type": type(ratio).__name__, "half": Ratio(ratio / 2)}


def items():
    return [Item("tea", decimal.Decimal("2.50"), datetime.date(2024, 5, 6)), {"on": datetime.date(2024, 1, 2)}]


def refused():
    return {"ok": 1, "bad": [object()]}
