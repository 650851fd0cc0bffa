"""Where a build's epoch and revision come from: SOURCE_DATE_EPOCH, else the HEAD commit, else 1."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from mlpack.errors import BuildError
from mlpack.spec import Provenance

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def read_provenance(root: Path, environ: Mapping[str, str] | None = None) -> Provenance:
    """Return the tree's provenance (REPRODUCIBILITY.md "SDE"); the epoch is never the clock."""
    env = os.environ if environ is None else environ
    revision, commit_time = _head(root)
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if raw:
        if not raw.isdigit():
            msg = f"SOURCE_DATE_EPOCH={raw!r} is not a Unix time"
            raise BuildError(msg, hint="set it to whole seconds since 1970, or unset it")
        epoch = int(raw)
    else:
        epoch = commit_time if commit_time is not None else 1
    return Provenance(source_date_epoch=epoch, revision=revision)


def _head(root: Path) -> tuple[str | None, int | None]:
    """The HEAD commit and its committer time, when ``root`` is inside a git work tree."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%H %ct"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) != 2 or not parts[1].isdigit():
        return None, None
    return parts[0], int(parts[1])
