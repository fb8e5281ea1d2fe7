"""Interrupts: what SIGINT (Go's interrupt of a call) does, and when.

Go sends SIGINT when a call's deadline passes or its context ends. Where the
main thread is then decides what it does:

- in the user's code (a function Go called, a generator's next item, the
  wait for Go's answer in call_go): KeyboardInterrupt is raised there, and
  counted as between calls (below) until a reply "interrupted" goes to Go
  (answered_interrupted): one the code swallowed is late for Go too;
- in the runtime's own code for a call in progress (it sends a stream's
  items, it encodes a callback): the interrupt is kept (pending), and the
  runtime acts on it at its next safe point (take_pending, wait_readable);
  one the call ends without acting on (leave_runtime), and one that comes
  while another is pending, count as between calls (below);
- between calls (neither of the above): it is counted (idle). Such a
  SIGINT is either late, for the call just answered (Go's context ended as
  the reply came), or early, for the call whose frame Go has sent and
  Python not yet begun (a worker not scheduled in time on a busy host).
  Go tells them apart in the next call's frame: its context's "i" is the
  number of interrupts Go sent for calls that were answered without being
  interrupted since the last frame (protocol.go). At the call's begin,
  begins_interrupted compares the two: more idle SIGINTs than late ones,
  and the call is answered as interrupted without running. One that comes
  after the begin, before the call's function runs, is that call's
  (call_user); one pending when a call made in a callback begins is its
  (serve.Worker._interrupted_before).

STATE, the one Interrupts of the process, holds that state; its methods are
the only code that changes it, but for the serve loop's inline copy of
call_user on its hot path (serve.py). aio.py reads STATE.busy to decide
whether its own SIGINT handler hands an interrupt on to STATE.on_sigint.
"""

from __future__ import annotations

import _thread  # built in: without importing threading
from select import select  # bound before the user's module runs (as frames.py's os_write)

TYPE_CHECKING = False
if TYPE_CHECKING:  # Annotations only: importing typing would add milliseconds to every worker start.
    from typing import Any, Callable, Mapping, Sequence

# The main thread: the only one that receives signals, and the only one that
# may call_go.
MAIN_THREAD = _thread.get_ident()
# How long wait_readable blocks in select() before it looks again: the bound
# on how late an interrupt that raced the call to select() is handled.
WAIT_SLICE_SECONDS = 0.05
_NO_KWARGS: Mapping[str, Any] = {}  # never changed


class Interrupted(KeyboardInterrupt):
    """Go's interrupt of the call in progress (SIGINT, or CANCEL in the
    async mode), as it rises in the user's code. Go's drain reads the reply
    of an interrupted call and drops it, so it is sent without a traceback
    (serve.send_exception): formatting a worker's first traceback imports
    traceback, linecache and ast, which on a busy host took longer than
    Config.InterruptGrace, and the worker was killed for not answering."""


class Interrupts:
    """The interrupt state of the worker's main thread.

    in_user_code: True while user code runs; only then does SIGINT raise.
    busy: above 0 while the runtime works for a call in progress (streams its
    items, waits in call_go); a SIGINT then sets pending.
    pending: a SIGINT came while busy, for the runtime to act on.
    idle: SIGINTs that came between calls, not yet accounted for by a
    call's begin (begins_interrupted); and those raised in the user's code
    (raised) whose call's reply is not "interrupted" (swallowed, or ended
    in another exception): Go counts those as late too.
    raised: SIGINTs raised in the user's code since the call's begin that
    no reply "interrupted" accounted for (answered_interrupted); each is
    counted in idle meanwhile."""

    __slots__ = ("in_user_code", "busy", "pending", "idle", "raised")

    def __init__(self) -> None:
        self.in_user_code = False
        self.busy = 0
        self.pending = False
        self.idle = 0
        self.raised = 0

    def on_sigint(self, signum: int, frame: Any) -> None:
        """The SIGINT handler (serve_process installs it)."""
        if self.in_user_code:
            self.count_raised()
            raise Interrupted
        if self.busy and not self.pending:
            self.pending = True
        else:
            # Late for the last call, or early for the next; or, while one
            # is pending, the next call's early one (a worker not scheduled
            # in the runtime's tail of a call: Go sends one per call).
            self.idle += 1

    def begins_interrupted(self, late: int) -> bool:
        """Whether the call that begins now was interrupted before it began,
        given late, the interrupts Go counts as having come after their
        call's reply (the frame's "i"; 0 without it). The idle SIGINTs are
        accounted for either way: at most one call is answered for them.
        The serve loop calls it only when idle is above 0."""
        early = self.idle > late
        self.idle = self.raised = 0
        return early

    def count_raised(self) -> None:
        """Count a SIGINT raised in the call in progress, or taken for it by
        another handler (aio's, which cancels the awaited task): between
        calls (idle) until the call's reply says "interrupted"
        (answered_interrupted). Code that swallows it answers otherwise,
        and Go counts the SIGINT as late."""
        self.idle += 1
        self.raised += 1

    def answered_interrupted(self) -> None:
        """A reply "interrupted" goes to Go: a SIGINT raised in the user's
        code (raised) was not swallowed, and Go does not count it as late;
        neither does idle any more."""
        if self.raised:
            self.raised -= 1
            if self.idle:
                self.idle -= 1

    def call_user(self, function: Callable[..., Any], args: Sequence[Any] = (), kwargs: Mapping[str, Any] = _NO_KWARGS) -> Any:
        """function(*args, **kwargs), interruptible: the user's code. A
        SIGINT counted between calls that no raise accounts for (idle above
        raised) came after the call's begin (begins_interrupted): it is this
        call's, which is interrupted as its code starts. (Not so on serve's
        inline path, whose window between the two is a few bytecodes.)"""
        try:
            self.in_user_code = True
            if self.idle and self.idle > self.raised:  # one test when none came
                self.idle -= 1
                raise Interrupted
            return function(*args, **kwargs)
        finally:
            self.in_user_code = False

    def enter_runtime(self) -> bool:
        """The runtime starts work for the call in progress (a stream, a
        call_go) that an interrupt must not cut: a SIGINT is kept pending
        until leave_runtime. Returns whether user code was running, for
        leave_runtime to restore."""
        was_user = self.in_user_code
        self.in_user_code = False
        self.busy += 1
        return was_user

    def leave_runtime(self, was_user: bool, keep_pending: bool = False) -> None:
        """The end of the work enter_runtime began. When no such work is left,
        a pending interrupt is dropped (the call it was for is over), unless
        keep_pending: the call goes on, and its loop acts on it (take_pending).
        A dropped one is counted as idle: its call's reply is not
        "interrupted", so Go counts it as late, and the next call's frame
        says so ("i"); uncounted, that frame would take the next call's own
        early SIGINT for it. Back in the user's code (was_user: call_go,
        the answer read), the call goes on: it is raised there instead,
        counted as on_sigint's."""
        self.busy -= 1
        if not self.busy and not keep_pending and self.pending:
            self.pending = False
            if was_user:
                self.count_raised()
                self.in_user_code = True
                raise Interrupted
            self.idle += 1
        self.in_user_code = was_user

    def take_pending(self) -> bool:
        """Whether an interrupt is pending; it is not any more."""
        if self.pending:
            self.pending = False
            return True
        return False

    def wait_readable(self, fd: int) -> None:
        """Wait until fd can be read, interruptible: KeyboardInterrupt for a
        SIGINT that comes meanwhile or was pending."""
        try:
            self.in_user_code = True
            if self.take_pending():
                self.count_raised()
                raise Interrupted
            # In slices: a SIGINT that lands after the check above but before
            # select() enters the kernel does not interrupt select(); its
            # handler runs (and raises) when the slice ends.
            while not select([fd], [], [], WAIT_SLICE_SECONDS)[0]:
                pass
        finally:
            self.in_user_code = False


# The process's interrupt state.
STATE = Interrupts()
