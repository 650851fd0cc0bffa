"""What a failed resolve lets the lock do: drop an inferred name, or take an older Python.

Static analysis guesses a distribution from an import; the index is the judge. An inferred
name the index lacks, or one that makes the resolution unsatisfiable, is left out with a warning
(and recorded in the lock) instead of failing the lock. A declared one is the user's word: it
stays an error.
"""

from __future__ import annotations

import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mlpack.errors import LockError
from mlpack.lock.indexes import list_files
from mlpack.lock.inputs import is_inferred
from mlpack.lock.lockdata import DroppedPackage
from mlpack.paths import CONFIG_FILE

if TYPE_CHECKING:
    from mlpack.lock.failure import ResolveFailure
    from mlpack.lock.indexes import Indexes
    from mlpack.vocabulary import PackageSpec

_NO_SUCH_PROJECT: Final = "the package index has no project of this name"


def to_drop(
    failure: ResolveFailure, requirements: tuple[PackageSpec, ...]
) -> tuple[DroppedPackage, ...]:
    """The inferred requirements ``failure`` blames, as dropped entries; () when none may go.

    A missing name, or one whose build from source failed (or that pulled in a dependency whose
    build failed), goes when every requirement naming it is inferred. For a conflict, one name
    per try (the resolver named it first, or it has no wheel for the target), so a package that
    merely took part (torch beside functorch) stays.
    """
    if failure.kind == "missing" and failure.package is not None:
        return _inferred_only(requirements, failure.package, _NO_SUCH_PROJECT)
    if failure.kind == "build" and failure.package is not None:
        reason = "it has no wheel for the target and its build from source failed"
        gone = _inferred_only(requirements, failure.package, reason)
        if gone or failure.needed_by is None:
            return gone
        reason = f"it needs {failure.package}, which has no wheel and failed to build from source"
        return _inferred_only(requirements, failure.needed_by, reason)
    if failure.kind != "conflict":
        return ()
    no_wheels = {re.split(r"[ <>=!~]", entry, maxsplit=1)[0] for entry in failure.no_wheels}
    blamed = [n for n in failure.involved if n in no_wheels] + list(failure.involved)
    reason = ("it makes the resolution unsatisfiable: " + failure.message.splitlines()[0])[:300]
    for name in blamed:
        gone = _inferred_only(requirements, name, reason)
        if gone:
            return gone
    return ()


def also_missing(
    requirements: tuple[PackageSpec, ...],
    indexes: Indexes,
    *,
    ca_cert: Path | None,
    known_missing: frozenset[str],
) -> tuple[DroppedPackage, ...]:
    """The other inferred names no index has, found at once (one listing each, in parallel).

    The resolver stops at the first unknown name; asking the indexes for the rest saves a
    resolve per name. A name an index cannot be asked about counts as present.
    """
    names = sorted({r.name for r in requirements if is_inferred(r)} - known_missing)
    with ThreadPoolExecutor(max_workers=8) as pool:
        present = list(pool.map(lambda n: _on_some_index(n, indexes, ca_cert), names))
    return tuple(
        entry
        for name, found in zip(names, present, strict=True)
        if not found
        for entry in _inferred_only(requirements, name, _NO_SUCH_PROJECT)
    )


def _on_some_index(name: str, indexes: Indexes, ca_cert: Path | None) -> bool:
    for url in indexes.all:
        if url.startswith("file:"):
            if (Path(urllib.parse.urlsplit(url).path) / name).exists():
                return True
            continue
        try:
            if list_files(url, name, ca_cert=ca_cert, timeout=15):
                return True
        except LockError:
            return True
    return False


def _inferred_only(
    requirements: tuple[PackageSpec, ...], name: str, reason: str
) -> tuple[DroppedPackage, ...]:
    """``name``'s requirements as dropped entries when every one of them is inferred."""
    named = tuple(r for r in requirements if r.name == name)
    if named and all(is_inferred(r) for r in named):
        return tuple(_dropped(r, reason) for r in named)
    return ()


def _dropped(spec: PackageSpec, reason: str) -> DroppedPackage:
    return DroppedPackage(
        name=spec.name, requirement=spec.requirement, source=spec.source, reason=reason
    )


def drop_warning(dropped: DroppedPackage, *, root: Path) -> str:
    """One line naming the import and its file, and why its package is left out."""
    statement = import_statement(root, dropped.source)
    what = f"`{statement}` at {dropped.source}" if statement else f"an import at {dropped.source}"
    return (
        f"left out {dropped.name!r} (inferred from {what}): {dropped.reason}; declare the right "
        "distribution, or list the import in [dependencies] ignore-imports"
    )


def import_statement(root: Path, source: str) -> str | None:
    """The import line ``source`` (``path.py:N``) points at, stripped; None when unreadable."""
    path, _, line = source.removeprefix("import:").strip().rpartition(":")
    if not line.isdigit() or not path.endswith((".py", ".pyw")):
        return None
    try:
        with (root / path).open(encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, 1):
                if number == int(line):
                    return text.strip()[:120] or None
    except OSError:
        return None
    return None


def python_note(chosen: str, skipped: tuple[tuple[str, str], ...], allowed_by: str) -> str:
    """Which Python the lock chose among unpinned versions, what allowed it, and why not newer."""
    note = f"Python {chosen}: the newest supported version the packages resolve with wheels for"
    note += f"; {allowed_by}" if allowed_by else ""
    if not skipped:
        return note
    return f"{note} ({'; '.join(f'{python}: {why}' for python, why in skipped)})"


def why_not(failure: ResolveFailure) -> str:
    """Why a Python version did not resolve, in a few words."""
    if failure.no_wheels:
        return f"no wheels for {', '.join(failure.no_wheels)}"
    return failure.message.splitlines()[0].removeprefix("the requirements conflict: ")[:160]


def pinned_hint(python: str, failure: ResolveFailure, works: str | None, pinned_in: str) -> str:
    """The hint for a pinned Python that cannot resolve: which packages, what would work, and
    where to change the pin (mlpack.toml's ``python``, or the file that pins it).
    """
    lacking = f"no wheels for {', '.join(failure.no_wheels)} on Python {python}"
    if works is None:
        return f"{lacking}, nor does another supported Python resolve: pin versions that have them"
    if pinned_in and not pinned_in.startswith(("rule:", CONFIG_FILE)):
        return f"{lacking}; Python {works} resolves: pin {works} in {pinned_in}"
    return f'{lacking}; Python {works} resolves: set python = "{works}" in {CONFIG_FILE}'
