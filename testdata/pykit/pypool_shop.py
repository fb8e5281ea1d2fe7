"""A sample module for the Python test kit (docs/testing-python.md): it
calls Go, registers an extension, and has one function whose result cannot
cross (tag_set returns a set), which its unit tests catch without Go."""

import pypool
from pypool import GoError, call_go, register_ext


class Money:
    """Cents, sent to Go as msgpack extension 5 (a decimal string)."""

    def __init__(self, cents):
        self.cents = cents

    def __eq__(self, other):
        return isinstance(other, Money) and other.cents == self.cents


register_ext(
    Money,
    5,
    encode=lambda m: ("%d.%02d" % divmod(m.cents, 100)).encode(),
    decode=lambda b: Money(int(b.decode().replace(".", ""))),
)


class Basket:
    """Not registered: cannot cross."""


def greet(user_id):
    try:
        user = call_go("lookup_user", user_id)
    except GoError:
        return "Hello, stranger"
    return "Hello, " + user["name"]


def price(sku):
    return Money(call_go("price_cents", sku))


def tags(item):
    return sorted(set(item["tags"]))


def tag_set(item):
    return set(item["tags"])  # a bug: a set cannot cross to Go


def basket():
    return {"items": [Basket()]}  # a bug: Basket has no extension


def quote(sku):
    """A quote for the caller's tenant (the call's metadata); refused when
    less than 50 ms of the Go caller's deadline is left."""
    left = pypool.remaining()  # None without a deadline
    if left is not None and left < 0.05:
        raise TimeoutError("no time left to quote %s" % sku)
    tenant = pypool.current_call().metadata.get("tenant", "public")
    return {"sku": sku, "tenant": tenant, "cents": call_go("price_cents", sku)}
