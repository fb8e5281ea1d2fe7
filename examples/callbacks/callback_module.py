"""The Python side of examples/callbacks: Python code that calls Go."""

from pypool import GoError, call_go


def greet(user_id):
    """Look the user up in Go (the Go side owns the database) and greet them."""
    try:
        user = call_go("lookup_user", user_id)
    except GoError as exc:  # the Go function returned an error
        return "Hello, stranger (%s)" % exc.message
    return "Hello, %s (%s)" % (user["name"], user["role"])


def countdown(n):
    """Go calls countdown(n), which asks Go for countdown(n-1) ... all on one worker."""
    if n == 0:
        return ["liftoff"]
    return [n] + call_go("again", n - 1)
