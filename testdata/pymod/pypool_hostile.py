"""A hostile module (audit_pyhostile_test.go): exceptions whose __str__
raises a BaseException, values whose __getattr__ or __class__ raise."""

import os


class StrExits(Exception):
    def __str__(self):
        raise SystemExit("in __str__")


class Lazy:
    """A proxy or lazy value: its __getattr__ raises, and not AttributeError."""

    def __getattr__(self, name):
        raise RuntimeError("lazy: " + name)


class ClassExits:
    @property
    def __class__(self):
        raise SystemExit("in __class__")


def pid():
    return os.getpid()


def raise_str_exits():
    raise StrExits()


def return_lazy():
    return Lazy()


async def async_lazy():
    return Lazy()


def stream_class_exits():
    yield 1
    yield ClassExits()
