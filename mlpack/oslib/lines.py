"""Newline-terminated messages on a pipe: the framing of the runtime's protocol with its helper.

Both ends read with this one reader: a chunk per ``read`` (not a byte), the bytes after a
message's newline kept for the next one.
"""

from __future__ import annotations

import os


class LineReader:
    """Reads the lines that arrive on ``fd`` (which the caller owns and closes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = bytearray()

    def read_line(self) -> bytes | None:
        """The next line, without its newline; None at end of file (a last line that has no
        newline was cut off by a writer that died: it is no message).
        """
        while (end := self._pending.find(b"\n")) < 0:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self._pending.clear()
                return None
            self._pending += chunk
        line = bytes(self._pending[:end])
        del self._pending[: end + 1]
        return line
