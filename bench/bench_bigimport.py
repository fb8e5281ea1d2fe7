"""A module that allocates 100 MB at import, as a model or a table loaded
at import does (go run ./bench -scenario forkmemory): one bytes object
whose every page is written, so resident."""

DATA = bytes(range(256)) * (100_000_000 // 256)


def duplicate_text(text):
    return text * 2


def size():
    return len(DATA)
