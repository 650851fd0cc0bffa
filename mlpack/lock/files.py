"""Which files of a pinned release exist and which one the target installs (wheel tags)."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING, Final

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from mlpack.errors import LockError
from mlpack.lock.indexes import IndexFile, list_files, strip_userinfo
from mlpack.oslib.fs import atomic_write
from mlpack.vocabulary import GLIBC_MINOR, MACHINES

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.lock.indexes import Indexes
    from mlpack.vocabulary import Platform

SDIST_SUFFIXES: Final = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


@cache
def target_tags(python: str, platform: Platform) -> tuple[Tag, ...]:
    """Wheel tags the target accepts, most preferred first (the base images' glibc and older)."""
    major, minor = (int(x) for x in python.split(".")[:2])
    arch = MACHINES[platform]
    platforms = [f"manylinux_2_{v}_{arch}" for v in range(GLIBC_MINOR, 16, -1)]
    platforms.append(f"manylinux2014_{arch}")
    if arch == "x86_64":
        platforms += [f"manylinux_2_{v}_{arch}" for v in range(16, 4, -1)]
        platforms += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    platforms.append(f"linux_{arch}")
    version = (major, minor)
    tags = list(cpython_tags(version, platforms=platforms))
    tags += list(compatible_tags(version, f"cp{major}{minor}", platforms))
    return tuple(dict.fromkeys(tags))


def is_sdist(filename: str) -> bool:
    """True for source distributions."""
    return filename.endswith(SDIST_SUFFIXES)


def choose_file(names: tuple[str, ...], python: str, platform: Platform) -> str | None:
    """The file the target installs: the best-tagged wheel, else an sdist, else None."""
    rank = {tag: i for i, tag in enumerate(target_tags(python, platform))}
    best: tuple[int, str] | None = None
    for name in names:
        if not name.endswith(".whl"):
            continue
        try:
            _, _, _, tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or (score, name) < best):
            best = (score, name)
    if best is not None:
        return best[1]
    sdists = sorted(n for n in names if is_sdist(n))
    return sdists[0] if sdists else None


def _cache_file(cache_root: Path, index: str, name: str, version: str) -> Path:
    key = hashlib.sha256(strip_userinfo(index).encode()).hexdigest()[:16]
    return cache_root / key / f"{name}-{version}.json"


def release_files(
    name: str,
    version: str,
    hashes: tuple[str, ...],
    *,
    indexes: Indexes,
    cache_root: Path,
    ca_cert: Path | None = None,
) -> tuple[str, tuple[IndexFile, ...]]:
    """(index URL, files) of ``name==version`` whose sha256 is in ``hashes``.

    Listings are cached per index and release; a cached listing that covers every hash is
    used without asking the index again (released files do not change).
    """
    wanted = set(hashes)
    for index in indexes.all:
        path = _cache_file(cache_root, index, name, version)
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            files = tuple(IndexFile(**f) for f in cached)
            if wanted and wanted <= {f.sha256 for f in files}:
                return index, files
        except (OSError, ValueError, TypeError):
            pass
    for index in indexes.all:
        listed = list_files(index, name, ca_cert=ca_cert)
        files = tuple(f for f in listed if f.sha256 in wanted)
        if files:
            path = _cache_file(cache_root, index, name, version)
            path.parent.mkdir(parents=True, exist_ok=True)
            doc = [{"filename": f.filename, "url": f.url, "sha256": f.sha256} for f in files]
            atomic_write(path, json.dumps(doc, sort_keys=True))
            return index, files
    return indexes.index_url, ()


def name_files(
    wanted: tuple[tuple[str, str, tuple[str, ...]], ...],
    *,
    indexes: Indexes,
    cache_root: Path,
    ca_cert: Path | None = None,
    workers: int = 16,
) -> dict[str, tuple[str, tuple[IndexFile, ...]]]:
    """``release_files`` for many (name, version, hashes) at once, in parallel threads."""

    def one(
        item: tuple[str, str, tuple[str, ...]],
    ) -> tuple[str, tuple[str, tuple[IndexFile, ...]]]:
        name, version, hashes = item
        try:
            return name, release_files(
                name,
                version,
                hashes,
                indexes=indexes,
                cache_root=cache_root,
                ca_cert=ca_cert,
            )
        except LockError:
            return name, (indexes.index_url, ())

    if not wanted:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(wanted))) as pool:
        return dict(pool.map(one, wanted))
