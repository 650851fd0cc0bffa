"""Warnings on a lock that resolved but may not be what the code needs.

The index accepts names static analysis guessed wrong (``paddle`` is a PyPI project, just not
PaddlePaddle), and a resolver may settle on a release that only installs by building it from
source. Neither fails a lock; both are worth one line before the build finds out.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from packaging.version import Version

from mlpack.lock.inputs import is_inferred
from mlpack.lock.soft import import_statement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from mlpack.lock.lockdata import LockedPackage
    from mlpack.vocabulary import PackageSpec

_TABLE: Final = Path(__file__).parent / "data" / "unrelated_projects.toml"


@cache
def unrelated_projects() -> tuple[dict[str, str], dict[str, str]]:
    """(name -> why the PyPI project is not the import's, name -> first Python it applies to)."""
    data = tomllib.loads(_TABLE.read_text(encoding="utf-8"))
    return dict(data.get("names", {})), dict(data.get("since", {}))


def wrong_project_warnings(
    requirements: tuple[PackageSpec, ...],
    packages: tuple[LockedPackage, ...],
    *,
    python: str,
    root: Path,
) -> tuple[str, ...]:
    """One line per locked package inferred from an import its PyPI namesake does not serve."""
    names, since = unrelated_projects()
    locked = {p.name for p in packages}
    out = []
    for spec in requirements:
        reason = names.get(spec.name)
        if reason is None or spec.name not in locked or not is_inferred(spec):
            continue
        first = since.get(spec.name)
        if first is not None and Version(python) < Version(first):
            continue
        statement = import_statement(root, spec.source)
        where = f"`{statement}` at {spec.source}" if statement else spec.source
        out.append(
            f"{spec.name!r} (inferred from {where}) is probably the wrong project: {reason}; "
            "declare the right distribution or list the import in [dependencies] ignore-imports"
        )
    return tuple(out)


def source_build_warning(packages: tuple[LockedPackage, ...], *, python: str) -> str | None:
    """One line naming the index packages that have no wheel for the target (built from source)."""
    built = sorted(
        f"{p.name} {p.version}" for p in packages if p.kind == "index" and p.build == "image"
    )
    if not built:
        return None
    return (
        f"{len(built)} package(s) have no wheel for Python {python} on this platform and will "
        f"be built from source in the image (slower, may need compilers): {', '.join(built)}"
    )
