"""The reload example's Python side. Edit GREETING (or greet) and send the
Go program SIGHUP: the new code serves the next requests, and no request
fails while the workers are replaced."""

GREETING = "Hello"


def setup():
    """Runs in every new worker before it serves: where a model file would
    be loaded. A reload runs it again, with the data as it is now."""


def greet(name: str) -> str:
    return f"{GREETING}, {name}!"
