"""The helper's side of its protocol with the runtime: JSON lines on two pipes.

The parent sends the request (one line) and answers ("ok", or an error text) on CTL_FD; the
helper reports progress (``userns``, ``pid``, ``hooks``, ``created``), then the exit status, or
one ``error``, on STATUS_FD. The parent's side is ``launcher.Helper``.
"""

from __future__ import annotations

import os

from mlpack.oslib import jsoncodec
from mlpack.oslib.lines import LineReader


class Failure(Exception):
    """A setup step failed: reported to the parent as one ``error`` message."""


class Channel:
    """The two pipe ends, and whether a detached parent still listens."""

    def __init__(self, ctl: int, status: int) -> None:
        self.ctl = ctl
        self.status = status
        self.lines = LineReader(ctl)
        self.detached = False
        self.created = False  # "created" was sent: a detached parent no longer reads
        self.fifo = -1  # the exec fifo's write end, once `start` opened it: it reads errors

    def send(self, msg: dict[str, object]) -> None:
        """Write one JSON line to the parent; a parent that went away is not an error.

        A detached container's parent (``create``) is gone after setup: an error goes to the
        exec fifo (``start`` reports it) and to stderr too.
        """
        try:
            os.write(self.status, jsoncodec.dumps(msg).encode() + b"\n")
        except OSError:
            pass
        if not (self.detached and self.created and "error" in msg):
            return
        text = f"container setup failed: {msg['error']}"
        for fd, data in ((self.fifo, text), (2, f"mlpack: {text}\n")):
            if fd >= 0:
                try:
                    os.write(fd, data.encode())
                except OSError:
                    pass

    def read_line(self) -> bytes | None:
        """One message from the parent; None at end of file."""
        return self.lines.read_line()

    def ask(self, msg: dict[str, object]) -> None:
        """Send ``msg`` and wait for the parent's "ok"; its other answer is a Failure."""
        self.send(msg)
        answer = self.read_line()
        if answer != b"ok":
            raise Failure((answer or b"").decode(errors="replace") or "the runtime went away")


def describe(exc: BaseException) -> str:
    """One line for the parent: a Failure's text, an OSError's operation and reason."""
    if isinstance(exc, Failure):
        return str(exc)
    if isinstance(exc, OSError):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = f"{tb.tb_frame.f_code.co_name}:{tb.tb_lineno}" if tb else "setup"
        return f"{exc.filename or where}: {exc.strerror}"
    return f"helper bug: {exc!r}"
