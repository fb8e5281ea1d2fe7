"""The codec audit's module (audit_codec_test.go): values sent back as they
came, and what Python made of them."""

from pypool import call_go


def echo(value):
    return value


def describe(values):
    """For each value: its Python type's name and, for str and bytes, its
    length (what the worker decoded, before it encodes anything back)."""
    out = []
    for value in values:
        size = len(value) if isinstance(value, (str, bytes, list, dict)) else -1
        out.append([type(value).__name__, size])
    return out


def ask(name):
    """What the Go callback name answers, described as describe does."""
    value = call_go(name)
    return [type(value).__name__, str(value)]
