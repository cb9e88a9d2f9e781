"""Ctrl-C and SIGTERM before a run's event loop takes them over (engine/shutdown.py).

The CLI installs this guard first thing, before the Agents SDK, openai and tau2 are
imported and tasks are planned. A KeyboardInterrupt raised at an arbitrary point is not
enough: code that calls back into Python from C and treats every exception as a "no"
loses it (pydantic-core's `isinstance` checks while tau2's tasks are validated did, and the
whole run went ahead). So the guard records the signal, and the CLI asks at safe points.

While `eager` (start-up), the handler also raises KeyboardInterrupt at once, so a signal
during a long import stops it promptly; `defer()` turns that off before the CLI creates
what must be closed (the events file), after which a signal is only recorded until the run's
own handling reads it (`received()`).

The raised KeyboardInterrupt can come back as another exception: C code that calls into
Python may wrap it (pydantic-core building a serializer while litellm, imported by tau2,
defines its types turned it into a SchemaError). `raised_on()` tells the CLI that an
exception escaping start-up had a signal raised under it, so it exits as the signal asks.

Only the CLI's entry point installs the guard: importing the library changes no handler.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_SIGINT = 130
EXIT_SIGTERM = 143
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM asked the CLI to stop; `exit_code` is 130 or 143."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def exit_code_of(signum: int) -> int:
    return EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM


class _Guard:
    def __init__(self) -> None:
        self.eager = True
        self.signum: int | None = None
        self.raised = False

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self.eager:
            self.raised = True
            raise Interrupted(exit_code_of(self.signum))


_guard = _Guard()


def install() -> None:
    """Take SIGINT and SIGTERM over for the rest of the process (call from the main thread)."""
    for signum in SIGNALS:
        signal.signal(signum, _guard.handle)


def defer() -> None:
    """From now on only record a signal (no KeyboardInterrupt at an arbitrary point)."""
    _guard.eager = False


def received() -> int | None:
    """The exit code the first signal since `install()` asks for (None: no signal)."""
    return None if _guard.signum is None else exit_code_of(_guard.signum)


def raised_on() -> int | None:
    """The exit code when the guard raised at an arbitrary point (None: it never did).

    Any exception escaping start-up after that is the signal's doing, whatever its type.
    """
    return received() if _guard.raised else None


def check() -> None:
    """A safe point: raise Interrupted if a signal has arrived."""
    code = received()
    if code is not None:
        raise Interrupted(code)
