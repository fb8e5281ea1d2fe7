"""For limits_async_test.go: a module that does not fit in
Config.Limits.AddressSpace in the way PYPOOL_ASLIMIT says:

- "import": its import allocates the whole limit (MemoryError);
- "map": its import loads an extension module when no room is left to map
  it (ImportError: failed to map segment from shared object), as an import
  under a limit of a few MiB does;
- "thread": it asks for thread stacks as large as the limit, so that no
  thread can start (RuntimeError: can't start new thread), as the async
  mode's loop thread cannot under a limit of a few tens of MiB;
- anything else: it fits.
"""

import importlib.util
import mmap
import os
import resource
import sys
import threading

LIMIT = resource.getrlimit(resource.RLIMIT_AS)[0]
WHAT = os.environ.get("PYPOOL_ASLIMIT", "")


def _mapped():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _import_without_room():
    """Import an extension module not loaded yet with 64 KiB of the
    address space left, then give the room back."""
    for name in ("_decimal", "_sqlite3", "_ctypes", "_hashlib", "_json"):
        spec = importlib.util.find_spec(name)
        if name not in sys.modules and spec is not None and str(spec.origin).endswith(".so"):
            break
    else:
        raise RuntimeError("no extension module left to import")
    hog = mmap.mmap(-1, LIMIT - _mapped() - (64 << 10))
    try:
        __import__(name)
    finally:
        hog.close()


if WHAT == "import":
    _block = bytearray(LIMIT)
elif WHAT == "map":
    _import_without_room()
elif WHAT == "thread":
    threading.stack_size(LIMIT)


async def echo(value):
    return value
