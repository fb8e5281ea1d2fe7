"""pypool outside a worker, for unit tests of a module that imports it
(docs/testing-python.md): with this directory (the repository's python/)
on sys.path, ``import pypool`` gives the runtime package pypool_runtime, as
in a worker, and ``pypool.testing`` its test kit. A worker never imports
this file: it registers the package as pypool itself (startup.prepare).
"""

import sys

import pypool_runtime
from pypool_runtime import testing  # noqa: F401  # also registers pypool.testing

sys.modules[__name__] = pypool_runtime
