"""The CLI's one output module: plain lines, tables and progress; rich only for a terminal.

Everything the commands print goes through here. Text is written verbatim (an image tag such
as ``repo:100:`` must never become an emoji, a ``[dim]`` in a path never markup). rich is
imported only when a terminal is there to show a table or progress bars; scripts and pipes
get plain, stable lines.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, TextIO

from mlpack.progress import using

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from rich.console import Console
    from rich.progress import Progress, TaskID

# ANSI styles for a terminal that has not asked for no colour (https://no-color.org).
STYLES: Final = {
    "error": "1;31",
    "hint": "33",
    "warning": "33",
    "ok": "32",
    "warn": "33",
    "fail": "1;31",
    "info": "2",
}


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _write(stream: TextIO, text: str, style: str | None) -> None:
    if style is not None and _is_terminal(stream) and "NO_COLOR" not in os.environ:
        text = f"\x1b[{STYLES[style]}m{text}\x1b[0m"
    stream.write(text + "\n")
    stream.flush()


def say(text: str, *, style: str | None = None) -> None:
    """One line of a command's result, on stdout."""
    _write(sys.stdout, text, style)


def note(text: str, *, style: str | None = None) -> None:
    """One line of diagnostics (notices, warnings, errors), on stderr."""
    _write(sys.stderr, text, style)


def human_bytes(size: int, *, binary: bool = False) -> str:
    """``size`` in B, kB, MB, GB (as ``docker images``), or with ``binary`` KiB, MiB, GiB."""
    base, units = (1024, ("B", "KiB", "MiB", "GiB")) if binary else (1000, ("B", "kB", "MB", "GB"))
    value = float(size)
    for unit in units[:-1]:
        if value < base:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= base
    return f"{value:.1f} {units[-1]}"


def _console(stream: TextIO) -> Console:
    from rich.console import Console

    return Console(file=stream, highlight=False, soft_wrap=True, emoji=False, markup=False)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, title: str = "") -> None:
    """Rows under a header: a rich table on a terminal, aligned columns for scripts.

    Scripts read the plain form: full values, never truncated to a terminal's width.
    """
    if _is_terminal(sys.stdout):
        from rich.table import Table

        grid = Table(*header, title=title or None, title_justify="left", box=None)
        for row in rows:
            grid.add_row(*row)
        _console(sys.stdout).print(grid)
        return
    if title:
        say(title)
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        say("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


class _LineReporter:
    """The library's notices as stderr lines; no bars without a terminal."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def notice(self, message: str) -> None:
        """Print one notice line."""
        note(f"{self._prefix}{message}")

    def start(self, task: str, total: int | None) -> None:
        """No bar."""

    def advance(self, task: str, amount: int) -> None:
        """No bar."""

    def finish(self, task: str) -> None:
        """No bar."""


class _BarReporter:
    """The library's reporter seam drawn as rich progress bars on stderr."""

    def __init__(self, progress: Progress, prefix: str) -> None:
        self._progress = progress
        self._prefix = prefix
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def notice(self, message: str) -> None:
        """Print one notice line above the bars."""
        self._progress.console.print(f"{self._prefix}{message}", style="cyan")

    def start(self, task: str, total: int | None) -> None:
        """Add a bar."""
        with self._lock:
            self._tasks[task] = self._progress.add_task(task, total=total)

    def advance(self, task: str, amount: int) -> None:
        """Move a bar."""
        with self._lock:
            task_id = self._tasks.get(task)
        if task_id is not None:
            self._progress.advance(task_id, amount)

    def finish(self, task: str) -> None:
        """Complete a bar."""
        with self._lock:
            task_id = self._tasks.pop(task, None)
        if task_id is not None:
            total = self._progress.tasks[task_id].total
            if total is not None:
                self._progress.update(task_id, completed=total)


@contextmanager
def progress(*, notice_prefix: str = "") -> Iterator[None]:
    """Show the library's progress for the block: bars on a terminal, notices only otherwise."""
    if not _is_terminal(sys.stderr):
        with using(_LineReporter(notice_prefix)):
            yield
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bars = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=_console(sys.stderr),
    )
    with bars, using(_BarReporter(bars, notice_prefix)):
        yield
