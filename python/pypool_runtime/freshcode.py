"""Fresh code: a worker imports the user's modules as their files are now.

Python's own bytecode cache (__pycache__/*.pyc) is trusted when its
source's modification time, in whole seconds, and size match the ones it
recorded: a module file rewritten within the same second with the same
length (a deploy, then Pool.Reload) would be served from the stale cache.
For the directories on the worker's --path (Config.PythonPath, and
Config.Dir when listed), install() makes the import system use checked
hash-based .pyc files (PEP 552) instead: a cached module is used only when
the hash of its source file's bytes is the one it was compiled from, and
a stale or timestamp-based cache is replaced by a checked one. Reading and
hashing the source is the cost, a few microseconds per kilobyte; the
interpreter's own modules (standard library, site-packages) keep Python's
usual caches.

Only the frozen import machinery is used (no importlib.util), so that
this costs no import at start-up.
"""

from __future__ import annotations

import _imp
import marshal
import os
import sys

import _frozen_importlib_external as _bx  # importlib._bootstrap_external, always loaded

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only.
    from typing import Any, Callable, List, Optional

# A checked hash-based .pyc's flags (PEP 552): hash-based, check the source.
_CHECKED = (0b11).to_bytes(4, "little")


class FreshSourceLoader(_bx.SourceFileLoader):
    """SourceFileLoader whose bytecode cache is checked against the hash of
    the source, whatever the source's mtime and size."""

    def get_code(self, fullname: str) -> Any:
        source_path = self.get_filename(fullname)
        source = self.get_data(source_path)
        digest = _imp.source_hash(_bx._RAW_MAGIC_NUMBER, source)
        try:
            bytecode_path: Optional[str] = _bx.cache_from_source(source_path)
        except NotImplementedError:  # sys.implementation.cache_tag is None
            bytecode_path = None
        if bytecode_path is not None:
            try:
                data = self.get_data(bytecode_path)
            except OSError:
                data = b""
            if len(data) > 16 and data[:4] == _bx.MAGIC_NUMBER and data[4:8] == _CHECKED and data[8:16] == digest:
                try:
                    return marshal.loads(memoryview(data)[16:])
                except (EOFError, ValueError, TypeError):
                    pass  # a damaged cache: compile again
        code = self.source_to_code(source, source_path)
        if bytecode_path is not None and not sys.dont_write_bytecode:
            try:
                self.set_data(bytecode_path, _bx.MAGIC_NUMBER + _CHECKED + digest + marshal.dumps(code))
            except (OSError, NotImplementedError):
                pass  # a read-only directory: no cache
        return code


def _under(path: str, roots: List[str]) -> bool:
    full = os.path.join(os.path.abspath(path or "."), "")
    return any(full.startswith(root) for root in roots)


def install(paths: List[str]) -> None:
    """Import the modules below the directories paths with FreshSourceLoader:
    a path hook ahead of the standard one for those directories (and the
    packages' directories below them), the cached finders of which are
    dropped."""
    roots = [os.path.join(os.path.abspath(p), "") for p in paths]
    if not roots:
        return
    make: Callable[[str], Any] = _bx.FileFinder.path_hook(
        (_bx.ExtensionFileLoader, _imp.extension_suffixes()),
        (FreshSourceLoader, _bx.SOURCE_SUFFIXES),
        (_bx.SourcelessFileLoader, _bx.BYTECODE_SUFFIXES),
    )

    def fresh_hook(path: str) -> Any:
        if not _under(path, roots) or not os.path.isdir(path or "."):
            raise ImportError("not a directory of the user's code", path=path)
        return make(path)

    sys.path_hooks.insert(0, fresh_hook)
    for path in list(sys.path_importer_cache):
        if _under(path, roots):
            del sys.path_importer_cache[path]
