"""A module that replaces, at import, the os and select functions the
runtime writes replies and waits with (audit_pyhostile_test.go,
python/tests/test_audit_hostile.py's TamperedIOTest): every one of them
raises once replaced. The module's own functions keep working."""

import os
import select


def _refused(*args, **kwargs):
    raise OSError("sample_hostile_io: this process's I/O functions were replaced")


os.write = _refused
os.writev = _refused
os.read = _refused
os.readv = _refused
select.select = _refused
select.poll = _refused


def pid():
    return os.getpid()


def duplicate_text(text):
    return text * 2


def echo(value):
    return value


def echo_bytes(data):
    return data


def stream_items(n):
    for i in range(n):
        yield i
