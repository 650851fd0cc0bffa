"""Installed evidence: which import names the distributions installed in an environment provide.

``top_level.txt``/``RECORD`` of the distributions in the repository's own virtual environment if
it has one, else of the interpreter running mlpack (``imports`` rule 3). Only metadata files are
read; nothing is imported or executed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from packaging.utils import canonicalize_name

from mlpack.analyze.pyfacts import NAMESPACE_ROOTS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# Top-level names that broken distributions install; never evidence of anything.
_JUNK_TOP_LEVELS: Final = frozenset(
    {"tests", "test", "docs", "doc", "examples", "example", "src", "scripts", "benchmarks"}
)


@dataclass(frozen=True, kw_only=True)
class InstalledEvidence:
    """Import names -> distributions that provide them, from installed metadata."""

    provides: Mapping[str, tuple[str, ...]]  # "yaml" -> ("pyyaml",); dotted for namespaces
    top_levels: Mapping[str, frozenset[str]]  # dist -> its import names
    where: str = ""  # which environment this came from


def installed_evidence(paths: Iterable[Path] | None = None) -> InstalledEvidence:
    """Read top_level.txt / RECORD of the distributions in ``paths`` (default: ``sys.path``).

    Only metadata files are read, straight from the ``*.dist-info``/``*.egg-info`` folders;
    nothing is imported or executed. The first distribution of a name on the path wins.
    """
    provides: dict[str, set[str]] = {}
    top_levels: dict[str, set[str]] = {}
    folders = [str(p) for p in paths] if paths is not None else [p for p in sys.path if p]
    for folder in folders:
        try:
            with os.scandir(folder) as it:
                entries = [e for e in it if e.name.endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            name = canonicalize_name(entry.name.split("-", 1)[0].removesuffix(".egg"))
            if name in top_levels or not entry.is_dir():
                continue
            names = _dist_import_names(Path(entry.path))
            top_levels[name] = names
            for imp in names:
                provides.setdefault(imp, set()).add(name)
    return InstalledEvidence(
        provides={k: tuple(sorted(v)) for k, v in provides.items()},
        top_levels={k: frozenset(v) for k, v in top_levels.items()},
        where="" if paths is None else ", ".join(folders),
    )


def _dist_import_names(meta: Path) -> set[str]:
    """Top-level import names of one distribution, with 2-level names for namespace roots."""
    names: set[str] = set()
    top = _read_meta(meta / "top_level.txt")
    if top:
        names.update(line.strip().replace("/", ".") for line in top.splitlines() if line.strip())
    tops = {n.split(".", 1)[0] for n in names}
    if names and not tops & NAMESPACE_ROOTS:
        return _clean(names)  # top_level.txt says it all; RECORD only refines namespaces
    record = _read_meta(meta / "RECORD") or _read_meta(meta / "installed-files.txt")
    for row in record.splitlines():
        parts = row.split(",", 1)[0].strip('"').split("/")
        first = parts[0]
        if (
            not first
            or first.endswith((".dist-info", ".egg-info", ".data", ".pth"))
            or first
            in {
                "..",
                "__pycache__",
                "bin",
            }
        ):
            continue
        if len(parts) == 1:
            if first.endswith(".py"):
                names.add(first[:-3])
            elif first.endswith((".so", ".pyd")):
                names.add(first.split(".", 1)[0])
            continue
        if not first.isidentifier():
            continue
        if not top:
            names.add(first)
        if first in NAMESPACE_ROOTS:
            second = parts[1].removesuffix(".py")
            if second.isidentifier() and second != "__init__":
                names.add(f"{first}.{second}")
    return _clean(names)


def _clean(names: set[str]) -> set[str]:
    return {
        n
        for n in names
        if n.split(".")[0] not in _JUNK_TOP_LEVELS
        and n.isascii()
        and n.split(".")[0].isidentifier()
        and not n.startswith("__editable__")
    }


def _read_meta(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def repo_environments(root: Path) -> tuple[Path, ...]:
    """Return the site-packages folders of virtual environments kept inside the repository."""
    found: list[Path] = []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return ()
    for child in children:
        if not (child / "pyvenv.cfg").is_file():
            continue
        found.extend(sorted(child.glob("lib/python*/site-packages")))
        found.extend(sorted(child.glob("Lib/site-packages")))
    return tuple(found)
