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
    from mlpack.runtime.embedded.launcher import Helper


def copy_winsize(src: int, dst: int) -> None:
    """Give the pty the caller's terminal size (TIOCGWINSZ -> TIOCSWINSZ)."""
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)


def relay(master: int, helper: Helper) -> None:
    """Copy stdin to the pty and the pty to stdout until the container closes it."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    interactive = os.isatty(stdin)
    saved = termios.tcgetattr(stdin) if interactive else None
    main = threading.current_thread() is threading.main_thread()
    old_winch = None
    if interactive:
        copy_winsize(stdin, master)
        tty.setraw(stdin)
        if main:
            old_winch = signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
    readers = [master, stdin]
    try:
        while True:
            try:
                ready, _, _ = select.select(readers, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave end is closed, the container is gone
                    data = b""
                if not data:
                    return
                _write_all(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 65536)
                if not data:
                    readers.remove(stdin)
                    _write_all(master, b"\x04")  # EOF on our stdin: ^D to the container
                else:
                    _write_all(master, data)
            if helper.proc.poll() is not None and master not in ready:
                return
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
