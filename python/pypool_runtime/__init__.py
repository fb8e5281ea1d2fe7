"""The Python side of pypool: a worker that runs functions of one module for Go.

Go starts ``python3 -I -c ... RUNTIME_DIR --module NAME ...`` and talks to
pypool_runtime.worker.main over length-prefixed msgpack frames on stdin/stdout.

The user's module may import this package to extend what crosses:
Array (an n-dimensional array received while numpy is not importable),
register_ext / ext_type (classes that cross as msgpack ext types, both ways)
and set_default (a hook for results of other types). See ext.py.
"""

__version__ = "0.1.0"

# The wire protocol version announced in the HELLO frame; Go refuses others.
PROTOCOL_VERSION = 1

# Message kinds: the first element of every frame's msgpack array.
HELLO, CALL, RESULT, ERROR = 1, 2, 3, 4

# Imported last, so that the names above exist for the submodules.
from .ext import Array, ext_type, register_ext, set_default  # noqa: E402

__all__ = ["Array", "ext_type", "register_ext", "set_default"]
