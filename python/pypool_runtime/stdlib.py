"""Standard modules that the runtime imports lazily, after the user's paths
are on sys.path (asyncio, at the first awaitable; traceback, at the first
exception: importing them at every start would cost milliseconds), found
among the interpreter's own sys.path entries only, never in a PythonPath
directory.

startup.fix_sys_path calls protect() with the interpreter's own entries
(standard library, site-packages) before it puts the user's paths first.
import_module(name) then imports name while, in the importing thread only,
a finder placed just before Python's PathFinder looks top-level modules up
in those entries alone: what the module imports in turn, at once, comes
from there too, and a name found nowhere there is missing (ImportError)
rather than taken from the user's paths. Submodules are found through their
package's __path__, as always. Other threads import as usual meanwhile.

A module of that name that the user's code imported first from outside
those entries is refused with an ImportError that names its file; or, by
own_module, which the error path uses, replaced for the runtime by a
private copy of the standard one (not in sys.modules); import_set_aside
sets such modules aside while it imports a module (the C codec's
msgpack, loaded after the user's module), so that it gets the standard
ones. run_protected runs a function with the same finder, so that what it imports at its first use
(the traceback module's ast, say) comes from those entries too. What such
a module imports itself, and what the standard module imports later, at
first use and from the user's code, is out of this module's reach.

Before protect() (the start, while sys.path holds the interpreter's own
entries only, and the runtime's functions used on their own, as in its
tests) these import as usual.
"""

from __future__ import annotations

import _thread
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, List, Optional

# The interpreter's own sys.path entries (absolute), as protect() got them.
_OWN_PATH: List[str] = []
# The idents of the threads inside import_module.
_protected: set = set()


class _OwnPathFinder:
    """On sys.meta_path just before the PathFinder: in a thread inside
    import_module, finds top-level modules among _OWN_PATH only, and
    declares missing those that are not there; elsewhere it finds nothing,
    and the PathFinder searches sys.path as usual."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        if path is not None or _thread.get_ident() not in _protected:
            return None
        spec = _path_finder().find_spec(name, _OWN_PATH, target)
        if spec is None:
            raise ModuleNotFoundError("No module named %r among the interpreter's own modules" % name, name=name)
        return spec

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


def _path_finder() -> Any:
    for finder in sys.meta_path:
        if getattr(finder, "__name__", "") == "PathFinder":
            return finder
    raise ImportError("no PathFinder on sys.meta_path")


def protect(own_path: List[str]) -> None:
    """Remember own_path, the interpreter's own sys.path entries, and put
    the finder on sys.meta_path (once)."""
    _OWN_PATH[:] = [os.path.abspath(p) for p in own_path]
    if _OwnPathFinder in sys.meta_path:
        return
    at = len(sys.meta_path)
    for i, finder in enumerate(sys.meta_path):
        if getattr(finder, "__name__", "") == "PathFinder":
            at = i
    sys.meta_path.insert(at, _OwnPathFinder)


def import_module(name: str) -> Any:
    """The standard module name, imported from the interpreter's own
    entries (with what it imports) if it is not imported yet; ImportError
    if the user's code imported a module of that name from elsewhere."""
    module = sys.modules.get(name)
    if module is not None:
        _check_origin(name, module)
        return module
    run_protected(__import__, name)
    return sys.modules[name]


def own_module(name: str) -> Any:
    """As import_module, but when the user's code imported a module of that
    name from elsewhere first, a private copy of the standard one, loaded
    from the interpreter's own entries and left out of sys.modules: the
    error path needs the real module whatever the user's code did."""
    try:
        return import_module(name)
    except ImportError:
        if not _OWN_PATH or name not in sys.modules:
            raise
    spec = _path_finder().find_spec(name, _OWN_PATH)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError("No module named %r among the interpreter's own modules" % name, name=name)
    import _frozen_importlib  # importlib's bootstrap, always loaded: module_from_spec without importing importlib.util

    module = _frozen_importlib.module_from_spec(spec)
    run_protected(spec.loader.exec_module, module)
    return module


def import_set_aside(name: str) -> Any:
    """As import_module, for a module the runtime loads after the user's
    code ran (msgpack, codec.deferred): the modules the user's code
    imported from outside the interpreter's own entries under a name those
    entries hold too (a datetime.py of a PythonPath directory, with its
    submodules) are out of sys.modules while name is imported, so that
    name gets the standard ones, and put back after: the user's code keeps
    its own."""
    if not _OWN_PATH or name in sys.modules:
        return import_module(name)
    aside = {}
    finder = _path_finder()
    shadowing: dict = {}
    for key, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path is None or any(os.path.abspath(path).startswith(entry + os.sep) for entry in _OWN_PATH):
            continue
        top = key.partition(".")[0]
        if top not in shadowing:
            shadowing[top] = finder.find_spec(top, _OWN_PATH) is not None
        if shadowing[top]:
            aside[key] = module
    for key in aside:
        del sys.modules[key]
    try:
        return import_module(name)
    finally:
        sys.modules.update(aside)


def run_protected(function: Any, *args: Any) -> Any:
    """function(*args), while this thread's imports of top-level modules not
    imported yet look among the interpreter's own entries only (as
    import_module's); as usual before protect()."""
    if not _OWN_PATH:
        return function(*args)
    ident = _thread.get_ident()
    nested = ident in _protected
    _protected.add(ident)
    try:
        return function(*args)
    finally:
        if not nested:
            _protected.discard(ident)


def runtime_module(name: str) -> Any:
    """The runtime's own module pypool_runtime.<name>, imported at its first
    use with run_protected: the standard modules it imports (the pure
    codec's datetime, say) come from the interpreter's own entries even
    after the user's paths are on sys.path."""
    full = __package__ + "." + name
    module = sys.modules.get(full)
    if module is None:
        run_protected(__import__, full)
        module = sys.modules[full]
    return module


def _check_origin(name: str, module: Any) -> None:
    path: Optional[str] = getattr(module, "__file__", None)
    if path is None or not _OWN_PATH:
        return  # built in, frozen, or not protected (the runtime run from a test)
    path = os.path.abspath(path)
    if any(path.startswith(entry + os.sep) for entry in _OWN_PATH):
        return
    raise ImportError(
        "pypool's runtime needs the standard module %r, but %s was imported under that name first: it shadows the"
        " standard one; rename it (no module in a PythonPath directory may be named like a standard one)" % (name, path),
        name=name,
        path=path,
    )
