"""Where mlpack keeps its store, caches and containers: one answer for every command."""

from __future__ import annotations

import os
from pathlib import Path


def mlpack_home() -> Path:
    """$MLPACK_HOME, else $XDG_DATA_HOME/mlpack, else ~/.local/share/mlpack."""
    home = os.environ.get("MLPACK_HOME")
    if home:
        return Path(home)
    data = os.environ.get("XDG_DATA_HOME")
    return (Path(data) if data else Path.home() / ".local" / "share") / "mlpack"
