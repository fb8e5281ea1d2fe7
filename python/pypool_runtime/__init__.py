"""The Python side of pypool: a worker that runs functions of one module for Go.

Go starts ``python3 -I -c ... --module NAME ...`` (giving it RUNTIME_DIR on
stdin: runtime.go's bootstrap) and talks to
pypool_runtime.worker.main over length-prefixed msgpack frames on stdin/stdout.

The user's module may import this package to extend what crosses:
Array (an n-dimensional array received while numpy is not importable),
register_ext / ext_type (classes that cross as msgpack ext types, both ways)
and set_default (a hook for results of other types). See ext.py.
call_go(name, *args) calls a Go function of Config.Callbacks during a call
and GoError is what it raises (callback.py). current_call(), remaining()
and trace_context() tell the call's context: the Go caller's deadline,
metadata, attempt and trace context (callctx.py). The worker registers this
package as ``pypool`` too, so that user code writes
``from pypool import call_go``.
"""

__version__ = "0.1.0"

# The wire protocol version announced in the HELLO frame; Go refuses others.
PROTOCOL_VERSION = 1

# Message kinds: the first element of every frame's msgpack array.
HELLO, CALL, RESULT, ERROR = 1, 2, 3, 4
# The messages that flow while a call runs (see worker.py's docstring).
STREAM, ITEMS, CREDIT, CLOSE, CALLBACK, CB_RESULT, CB_ERROR = 5, 6, 7, 8, 9, 10, 11

# Imported last, so that the names above exist for the submodules.
from .ext import Array, ext_type, register_ext, set_default  # noqa: E402

__all__ = [
    "Array",
    "CallContext",
    "GoError",
    "call_go",
    "current_call",
    "ext_type",
    "register_ext",
    "remaining",
    "set_default",
    "trace_context",
]


def __getattr__(name: str) -> object:
    # call_go and GoError are imported on first use (PEP 562): a worker
    # whose module never calls Go does not pay for them at start.
    if name in ("call_go", "GoError"):
        from . import callback

        return getattr(callback, name)
    if name in ("current_call", "remaining", "trace_context", "CallContext"):
        # As call_go: imported on first use.
        from . import callctx

        return getattr(callctx, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
