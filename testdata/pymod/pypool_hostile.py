"""A hostile module (audit_pyhostile_test.go): exceptions whose __str__
raises a BaseException, values whose __getattr__ or __class__ raise."""

import os
import time


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


class StrNeverEnds(Exception):
    def __str__(self):
        while True:
            time.sleep(0.05)


def raise_str_never_ends():
    raise StrNeverEnds()


def stream_str_never_ends():
    yield 1
    raise StrNeverEnds()


class Stop(BaseException):
    """What the module's own SIGINT handler raises."""


def _raise_stop(signum, frame):
    raise Stop("the module's SIGINT handler")


def sleep_with_sigint(handler, seconds):
    """Replace the SIGINT handler (for good: the module never restores it),
    then sleep."""
    import signal

    signal.signal(signal.SIGINT, {"ignore": signal.SIG_IGN, "default": signal.SIG_DFL, "raise": _raise_stop}[handler])
    time.sleep(seconds)
