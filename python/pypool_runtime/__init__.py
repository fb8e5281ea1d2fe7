"""The Python side of pypool: a worker that runs functions of one module for Go.

Go starts ``python3 -E -c ... RUNTIME_DIR --module NAME ...`` and talks to
pypool_runtime.worker.main over length-prefixed msgpack frames on stdin/stdout.
"""

__version__ = "0.1.0"

# The wire protocol version announced in the HELLO frame; Go refuses others.
PROTOCOL_VERSION = 1

# Message kinds: the first element of every frame's msgpack array.
HELLO, CALL, RESULT, ERROR = 1, 2, 3, 4
