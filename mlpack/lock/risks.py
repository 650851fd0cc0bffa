"""Warnings on a lock that resolved but may not be what the code needs.

The index accepts names static analysis guessed wrong (``paddle`` is a PyPI project, just not
PaddlePaddle), and a resolver may settle on a release that only installs by building it from
source. Neither fails a lock; both are worth one line before the build finds out.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from mlpack.errors import LockError
from mlpack.lock.indexes import list_files
from mlpack.lock.inputs import is_inferred
from mlpack.lock.soft import import_statement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from mlpack.lock.lockdata import LockedPackage
    from mlpack.lock.resolvers import Pin
    from mlpack.vocabulary import PackageSpec

_TABLE: Final = Path(__file__).parent / "data" / "unrelated_projects.toml"
# A pin this much older than the project's newest release is held back by something.
_STALE: Final = timedelta(days=2 * 365)


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


def old_pin_warnings(
    pins: tuple[Pin, ...],
    requirements: tuple[PackageSpec, ...],
    *,
    index_url: str,
    ca_cert: Path | None,
    now: datetime | None = None,
) -> tuple[str, ...]:
    """One line per direct input the resolver settled years behind its project's newest release.

    Only inputs the project left open above (``mxnet``, ``numpy>=1.20``: not ``bcrypt==4.0.1``
    or ``fastapi<0.110``, which ask for the old release) and pins already two years old are
    looked up on the index (one listing each, in parallel); an index that does not answer, or
    lists no upload times, gives no warning.
    """
    today = now or datetime.now(timezone.utc)
    capped = {r.name for r in requirements if _capped(r.requirement)}
    old = [
        (pin, _when(pin.uploaded))
        for pin in pins
        if "-r" in pin.via
        and pin.name not in capped
        and pin.uploaded
        and today - _when(pin.uploaded) > _STALE
    ]
    if not old:
        return ()
    with ThreadPoolExecutor(max_workers=8) as pool:
        newest = list(pool.map(lambda item: _newest(index_url, item[0].name, ca_cert), old))
    out = []
    for (pin, pinned), latest in zip(old, newest, strict=True):
        if latest is not None and latest - pinned > _STALE:
            out.append(
                f"{pin.name} {pin.version} is from {pinned.year}, "
                f"{(latest - pinned).days // 365} years older than its newest release "
                f"({latest.year}): a constraint or the Python version holds it back, or it is "
                "not the project the code means"
            )
    return tuple(out)


def _capped(requirement: str) -> bool:
    """True when ``requirement`` bounds the version from above (or is a URL)."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        return True
    return parsed.url is not None or any(
        s.operator in ("==", "===", "<", "<=", "~=") for s in parsed.specifier
    )


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _newest(index_url: str, project: str, ca_cert: Path | None) -> datetime | None:
    try:
        files = list_files(index_url, project, ca_cert=ca_cert, timeout=15)
    except LockError:
        return None
    return max((_when(f.upload_time) for f in files if f.upload_time), default=None)
