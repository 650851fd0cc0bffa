# ruff: noqa: PTH111, PTH118
"""Where mlpack keeps its store, caches and containers: one answer for every command.

os.path only: the container start and no-op lock paths import this (BENCHMARKS B1, B4-noop).
"""

from __future__ import annotations

import os


def mlpack_home() -> str:
    """$MLPACK_HOME, else $XDG_DATA_HOME/mlpack, else ~/.local/share/mlpack."""
    home = os.environ.get("MLPACK_HOME")
    if home:
        return home
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(base, "mlpack")
