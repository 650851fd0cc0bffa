"""Debian packages: which ones the distributions load at run time, and their names by release.

One table (``data/system_libs.toml``) serves the analysis and the lock. The analysis names
packages as Debian 13 (trixie), the release of the default base (``python:X.Y-slim``), does.
Debian 13 renamed libraries for 64-bit ``time_t`` (``libglib2.0-0`` -> ``libglib2.0-0t64``) and
moved others to new sonames (``libldap-2.5-0`` -> ``libldap2``); the table's ``[debian12]`` part
gives Debian 12's (bookworm) name for each, and the lock asks apt in the actual base for the
spelling its release has (``spellings``), so a Debian 12 base and either spelling in mlpack.toml
both work.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mlpack.analyze.analysis import Package, SystemPackage


@cache
def _table() -> dict[str, Any]:
    text = (Path(__file__).parent / "data" / "system_libs.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def system_libs() -> dict[str, tuple[str, ...]]:
    """Return distribution -> the Debian 13 runtime packages it needs."""
    return {k: tuple(v) for k, v in _table()["packages"].items()}


def analyze_system_packages(packages: Iterable[Package]) -> tuple[SystemPackage, ...]:
    """Return the Debian packages the given distributions need, one per name, sorted."""
    # Imported here: the lock reads this module's names without the analysis's types.
    from mlpack.analyze.analysis import SystemPackage

    table = system_libs()
    chosen: dict[str, str] = {}
    for package in sorted(packages, key=lambda p: p.name):
        for deb in table.get(package.name, ()):
            chosen.setdefault(deb, package.name)
    return tuple(SystemPackage(name=n, required_by=chosen[n]) for n in sorted(chosen))


@cache
def _other_spelling() -> dict[str, str]:
    """Each renamed package's name in the other release, both ways."""
    debian12: dict[str, str] = _table()["debian12"]
    return {**debian12, **{old: new for new, old in debian12.items()}}


def spellings(name: str) -> tuple[str, ...]:
    """``name``, then its name in the other Debian release when that differs."""
    other = _other_spelling().get(name)
    return (name,) if other is None else (name, other)


def debian13_name(name: str) -> str:
    """The Debian 13 name of a package given by either release's name (to compare names)."""
    debian12: dict[str, str] = _table()["debian12"]
    return _other_spelling()[name] if name in debian12.values() else name


def same_names(pinned: Iterable[str], wanted: Iterable[str]) -> bool:
    """True when the pinned requested packages are the wanted ones, in either release's names."""
    return sorted({debian13_name(n) for n in pinned}) == sorted({debian13_name(n) for n in wanted})
