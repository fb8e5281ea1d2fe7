"""A package that tests embed in the Go test binary (Config.PythonFS)."""

import importlib.resources
import os

_DATA = os.path.join(os.path.dirname(__file__), "data", "words.txt")


def words_by_file():
    """The data file, opened relative to __file__."""
    with open(_DATA, encoding="utf-8") as f:
        return f.read().split()


def words_by_resources():
    """The data file, read through importlib.resources."""
    return importlib.resources.files("embpkg").joinpath("data/words.txt").read_text(encoding="utf-8").split()


def deep_name():
    """A function of a subpackage, imported relatively."""
    from .sub import deep

    return deep.where()


def where():
    return __file__


def _private():
    return "private"
