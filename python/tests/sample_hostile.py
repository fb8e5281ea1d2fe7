"""The module the hostile audit's tests load (test_audit_hostile.py): each
function is something a hostile (or careless) module does to the runtime."""

import os
import sys
import threading
import time


class Custom(BaseException):
    """A BaseException that is no Exception."""


def raise_base(kind):
    raise {"SystemExit": SystemExit(3), "KeyboardInterrupt": KeyboardInterrupt("mine"),
           "GeneratorExit": GeneratorExit("gen"), "Custom": Custom("custom")}[kind]  # fmt: skip


class StrRaises(Exception):
    def __init__(self, raised):
        super().__init__("x")
        self.raised = raised

    def __str__(self):
        raise self.raised


def raise_str_raises(kind):
    raise StrRaises({"ValueError": ValueError("in str"), "SystemExit": SystemExit(4),
                     "KeyboardInterrupt": KeyboardInterrupt(), "Custom": Custom("in str")}[kind])  # fmt: skip


class ReprRaises(Exception):
    def __repr__(self):
        raise SystemExit("in repr")


def raise_repr_raises():
    raise ReprRaises("repr")


def raise_cycle():
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    a.__context__, b.__context__ = b, a
    raise a


class BadName(ModuleNotFoundError):
    pass


def raise_module_not_found_bad_name():
    raise ModuleNotFoundError("no module", name=42)


class Lazy:
    """An object (a proxy, a lazy value) whose __getattr__ raises something other than AttributeError."""

    def __getattr__(self, name):
        raise RuntimeError("lazy: " + name)


def return_lazy():
    return Lazy()


class ClassRaises:
    @property
    def __class__(self):
        raise SystemExit("in __class__")


def return_class_raises():
    return ClassRaises()


class DelRaises:
    def __del__(self):
        raise SystemExit("in __del__")


def return_del_raises():
    return [DelRaises()]


def echo(value):
    return value


def stream_raise_base(kind):
    yield 1
    raise_base(kind)


def stream_str_raises(kind):
    yield 1
    raise_str_raises(kind)


def stream_lazy():
    yield 1
    yield Lazy()


def stream_class_raises():
    yield 1
    yield ClassRaises()


async def async_raise_base(kind):
    raise_base(kind)


async def async_str_raises(kind):
    raise_str_raises(kind)


async def async_lazy():
    return Lazy()


def call_go_lazy():
    from pypool import call_go

    return call_go("echo", Lazy())


def call_go_class_raises():
    from pypool import call_go

    return call_go("echo", ClassRaises())


class StrNeverEnds(Exception):
    def __str__(self):
        os.write(2, b"in __str__\n")
        while True:
            time.sleep(0.05)


def raise_str_never_ends():
    raise StrNeverEnds()


def ask(name):
    """call_go(name): Go's callback may make nested calls meanwhile."""
    from pypool import call_go

    return call_go(name)


def set_default_exit():
    """Make every value nothing else encodes a SystemExit of the hook's, and return one."""
    import pypool_runtime

    pypool_runtime.set_default(lambda value: sys.exit("from the hook"))
    return Plain()


class Plain:
    """An instance of a class no codec encodes."""
