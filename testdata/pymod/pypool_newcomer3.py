"""audit_newcomer3_test.go's module: a batch job's functions, which read
records from a file, and render each into bytes."""


def records(path):
    """Yield one dict per non-empty line of path, "name,value"."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                name, _, value = line.partition(",")
                yield {"line": n, "name": name, "value": float(value)}


def render(n):
    """n bytes: a record rendered."""
    return b"r" * n


def rendered(n, count):
    """Yield count renders of n bytes each."""
    for _ in range(count):
        yield b"r" * n


def send_go(n):
    """Call Go's callback "take" with n bytes."""
    from pypool import call_go

    return call_go("take", b"g" * n)


def broken_set_up():
    """A Config.SetUp that fails, as a model's loader whose file is missing."""
    raise RuntimeError("the model file is missing")
