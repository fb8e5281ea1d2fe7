"""A module after whose import the runtime's lazy import of its call
context module fails, as it does out of memory (Config.Limits.AddressSpace:
"failed to map segment from shared object") or of descriptors
(test_security.py's LazyRuntimeImportTest)."""

import sys

sys.modules["pypool_runtime.callctx"] = None  # importing it raises ImportError


def echo(value):
    return value
