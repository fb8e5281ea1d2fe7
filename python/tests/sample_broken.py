"""A module that fails half-way through its import."""

VALUE = 1


def _helper():
    raise RuntimeError("sample_broken is broken on purpose")


_helper()
