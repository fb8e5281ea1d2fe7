"""A module after whose import the runtime's own start runs out of memory:
its read buffer's allocation raises MemoryError, as it does under a
Config.Limits.AddressSpace below what the interpreter has mapped by then
(test_security.py's RuntimeStartOutOfMemoryTest)."""

from pypool_runtime import frames


def _no_memory(self, *args, **kwargs):
    raise MemoryError


frames.FrameReader.__init__ = _no_memory


def echo(value):
    return value
