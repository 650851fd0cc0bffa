"""Atomic file replacement: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The mode is kept from an existing file, else ``mode`` or 0o644 (never the umask's choice).
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        keep = path.stat().st_mode & 0o777 if path.exists() else None
        tmp.chmod(keep if keep is not None else (0o644 if mode is None else mode))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
