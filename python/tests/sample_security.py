"""A module for the security tests: what a worker sees of its process."""

import os
import sys


def fail(message):
    raise ValueError(message)


def echo(value):
    return value


def path():
    return list(sys.path)


def open_files(count):
    files = []
    try:
        for _ in range(count):
            files.append(os.open(os.devnull, os.O_RDONLY))
    finally:
        for fd in files:
            os.close(fd)
    return count


def allocate(size):
    """Allocate size bytes: a MemoryError under RLIMIT_AS."""
    return len(bytearray(size))


def limits():
    import resource

    return {name: list(resource.getrlimit(getattr(resource, name))) for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_NOFILE")}


def shadow_modules_loaded():
    """The loaded modules that come from the test's shadow directories."""
    return sorted(name for name, m in list(sys.modules.items()) if "pypool-shadow" in (getattr(m, "__file__", None) or ""))


def descriptors(probe):
    """The worker's descriptors (number -> what /proc/self/fd says), and
    what reading descriptor probe gives: its first bytes, or the error."""
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass  # the listing's own descriptor, closed since
    try:
        read = os.pread(probe, 100, 0)
    except OSError as exc:
        read = str(exc)
    return [fds, read]


async def async_echo(value):
    """An async function of a module that never imports asyncio."""
    return value


def loaded_from(name):
    """Where the module name that is loaded now comes from."""
    module = sys.modules.get(name)
    return getattr(module, "__file__", None)


def imported_by(module, name):
    """Where the module that the loaded module refers to as name comes from."""
    return getattr(getattr(sys.modules.get(module), name, None), "__file__", None)


def import_shadow(name):
    """Import name as the user's code would (from a PythonPath directory first)."""
    __import__(name)
    return sys.modules[name].__file__


def fail_subscript(table):
    """A KeyError on a line whose traceback has carets (3.11+: the ast module's work)."""
    return table["missing"] + 1


def modules_loaded(names):
    """Which of names are in sys.modules."""
    return [name for name in names if name in sys.modules]


def class_of(value):
    """The module and name of value's class."""
    return "%s.%s" % (type(value).__module__, type(value).__qualname__)


def msgpack_ext(code, data):
    """A msgpack.ExtType of the user's own import of msgpack (site-packages)."""
    import msgpack

    return msgpack.ExtType(code, data)
