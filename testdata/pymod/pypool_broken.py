"""A module that fails half-way through its import."""

VALUE = 1
raise RuntimeError("pypool_broken is broken on purpose")
