"""Start uv on the base's remembered Python X.Y.Z while the base image itself is resolved.

Resolving the base (when the lock has none to keep) imports the registry client and may probe a
registry: ~0.2 s. uv needs only the base's Python X.Y.Z, so when an earlier lock remembered it
for the same settings, uv runs on that guess meanwhile; a wrong guess (the base moved to a new
patch release) just resolves again with the right version.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
from typing import TYPE_CHECKING

from mlpack.oslib.fs import atomic_write
from mlpack.paths import cache_folder

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mlpack.lock.inputs import LockInputs
    from mlpack.lock.resolvers import Pin


class EarlyResolve:
    """Runs a resolve in a thread (it mostly waits on uv) with the caller's context."""

    def __init__(self, work: Callable[[], tuple[Pin, ...]]) -> None:
        self._work = work
        self._context = contextvars.copy_context()
        self._value: tuple[Pin, ...] = ()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlpack-early-resolve")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._context.run(self._work)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def wait(self) -> None:
        """Wait for the thread; its outcome is not needed."""
        self._thread.join()

    def result(self) -> tuple[Pin, ...]:
        """The pins, or the resolve's exception raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def guess_file(home: Path, inputs: LockInputs) -> Path:
    """Where the base's Python X.Y.Z is remembered for these lock settings."""
    key = f"{inputs.python}|{inputs.platform}|{inputs.base or ''}"
    name = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_folder("lock-base-python", home=home) / name


def read_guess(path: Path) -> str | None:
    """The remembered X.Y.Z, or None."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text if text.count(".") == 2 and text.replace(".", "").isdigit() else None


def write_guess(path: Path, python_full: str) -> None:
    """Remember the base's Python X.Y.Z for the next lock with these settings (best effort)."""
    if read_guess(path) == python_full:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, python_full + "\n")
    except OSError:
        pass
