"""The library's only output seam: a context-local reporter that the CLI replaces with rich.

The library never prints; long operations report here, and tests get a silent default.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator


class Reporter(Protocol):
    """Receives notices and per-task progress from long-running library calls."""

    def notice(self, message: str) -> None:
        """One informational line (e.g. 'using the debian base provider')."""

    def start(self, task: str, total: int | None) -> None:
        """A task (a layer pull, an upload) begins; ``total`` is bytes or items when known."""

    def advance(self, task: str, amount: int) -> None:
        """A task made progress."""

    def finish(self, task: str) -> None:
        """A task ended."""


class SilentReporter:
    """Drops everything; the default outside the CLI."""

    def notice(self, message: str) -> None:
        """Ignore the notice."""

    def start(self, task: str, total: int | None) -> None:
        """Ignore the start."""

    def advance(self, task: str, amount: int) -> None:
        """Ignore the progress."""

    def finish(self, task: str) -> None:
        """Ignore the end."""


class RecordingReporter(SilentReporter):
    """Keeps notices; handy for tests and for callers that show notices later."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def notice(self, message: str) -> None:
        """Record the notice."""
        self.notices.append(message)


_SILENT = SilentReporter()
_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar(
    "mlpack_reporter", default=None
)


def reporter() -> Reporter:
    """Return the reporter in force for this context."""
    return _current.get() or _SILENT


@contextmanager
def using(rep: Reporter) -> Iterator[Reporter]:
    """Install ``rep`` for the duration of the block."""
    token = _current.set(rep)
    try:
        yield rep
    finally:
        _current.reset(token)
