"""A module whose own import is fine but which imports a missing module."""

import pypool_no_such_dependency  # noqa: F401
