"""A module two levels down."""


def where():
    return __name__
