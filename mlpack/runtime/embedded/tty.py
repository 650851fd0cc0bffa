"""``-it``: relay the caller's terminal to the container's pty (raw mode, window size)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import termios
import threading
import tty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlpack.runtime.embedded.launcher import Helper


def copy_winsize(src: int, dst: int) -> None:
    """Give the pty the caller's terminal size (TIOCGWINSZ -> TIOCSWINSZ)."""
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def relay(master: int, helper: Helper) -> None:
    """Copy stdin to the pty and the pty to stdout until the container closes it."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    readers = [master, stdin]
    with _raw(stdin, master):
        while True:
            try:
                ready, _, _ = select.select(readers, [], [])
            except InterruptedError:
                continue
            if master in ready and not _pty_to(master, stdout):
                return
            if stdin in ready and not _stdin_to(stdin, master):
                readers.remove(stdin)
            if helper.proc.poll() is not None and master not in ready:
                return


@contextlib.contextmanager
def _raw(stdin: int, master: int) -> Iterator[None]:
    """A terminal on stdin in raw mode, its size given to the pty now and on every SIGWINCH
    (from the main thread); restored at the end. Nothing to do without a terminal.
    """
    if not os.isatty(stdin):
        yield
        return
    saved = termios.tcgetattr(stdin)
    copy_winsize(stdin, master)
    tty.setraw(stdin)
    old_winch = None
    if threading.current_thread() is threading.main_thread():
        old_winch = signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
    try:
        yield
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)


def _pty_to(master: int, stdout: int) -> bool:
    """Copy what the pty has to stdout; False once the container closed it."""
    try:
        data = os.read(master, 65536)
    except OSError:  # EIO: every slave end is closed, the container is gone
        data = b""
    if data:
        _write_all(stdout, data)
    return bool(data)


def _stdin_to(stdin: int, master: int) -> bool:
    """Copy what stdin has to the pty; at EOF send ^D to the container and return False."""
    data = os.read(stdin, 65536)
    _write_all(master, data or b"\x04")
    return bool(data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
