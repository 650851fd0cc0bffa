"""Where mlpack's files are: the names of a project's files and the folders under mlpack's home.

Every cache lives under ``$MLPACK_HOME`` (``mlpack.home.mlpack_home``), so one variable moves or
isolates all of mlpack's state, and removing that folder resets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from mlpack.home import mlpack_home

if TYPE_CHECKING:
    from pathlib import Path

CONFIG_FILE: Final = "mlpack.toml"
PYPROJECT_FILE: Final = "pyproject.toml"
LOCK_FILE: Final = "mlpack.lock"

# The caches under <home>/cache, one folder each; deleting any of them only costs time.
Cache = Literal[
    "analyze",  # per-file facts of analysed repositories (analyze.factcache)
    "debs",  # the lock's Debian packages by sha256, verified (build.system)
    "index-files",  # package index listings of pinned releases (lock.files)
    "lock-base-python",  # the last base Python X.Y.Z per lock setting (lock.speculate)
    "lock-ok",  # the no-op re-lock memo (lock.stamp)
]


def cache_folder(name: Cache, *, home: Path | None = None) -> Path:
    """The folder of cache ``name`` under ``home`` (default: mlpack's home)."""
    return (home or mlpack_home()) / "cache" / name


def tools_folder(home: Path) -> Path:
    """Pinned tool environments (the pip-tools venvs of each target Python)."""
    return home / "tools"


def wheelhouse_folder(home: Path) -> Path:
    """The hash-verified download cache of pinned files (``mlpack fetch``)."""
    return home / "wheelhouse"
