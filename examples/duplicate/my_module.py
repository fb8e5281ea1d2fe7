"""The example module: its public functions are callable from Go."""


def duplicate_text(text: str) -> str:
    """Return text twice."""
    return text * 2
