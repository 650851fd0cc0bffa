"""``mlpack fetch``: every pinned file for the target, hash-verified, in a content-addressed cache.

Layout: ``$MLPACK_HOME/wheelhouse/sha256/<hex>/<filename>``. A download goes to a
``.partial`` file, is verified against the locked sha256, fsynced, then renamed: an
interrupted fetch leaves nothing that passes as complete.
"""

from __future__ import annotations

import errno
import hashlib
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mlpack.errors import LockError
from mlpack.lock.files import choose_file, is_sdist, release_files
from mlpack.lock.indexes import Indexes, make_request, redact, ssl_context, strip_userinfo
from mlpack.oslib.fs import NO_SPACE
from mlpack.paths import cache_folder, wheelhouse_folder
from mlpack.progress import reporter

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from mlpack.lock.lockdata import Lock, LockedPackage

_CHUNK: Final = 1 << 20
# A write that failed for the disk, not the network: said as such, with its own hint.
_DISK_ERRORS: Final = NO_SPACE | {errno.EROFS}


@dataclass(frozen=True, kw_only=True)
class FetchedFile:
    """One verified file in the wheelhouse."""

    package: str
    version: str
    filename: str
    sha256: str
    path: Path


@dataclass(frozen=True, kw_only=True)
class Wheelhouse:
    """The result of a fetch: the files, and what must be built inside the image."""

    root: Path
    files: tuple[FetchedFile, ...]
    to_build: tuple[str, ...]  # packages from VCS, a path or a URL: built from source in the image
    downloaded: int  # how many files were downloaded now (0: everything was cached)


def wheelhouse_root(home: Path) -> Path:
    """The content-addressed cache under the mlpack home."""
    return wheelhouse_folder(home) / "sha256"


def cached_path(home: Path, sha256: str, filename: str) -> Path:
    """Where a verified file lives."""
    return wheelhouse_root(home) / sha256 / filename


def _pick(files: Iterable[tuple[str, str | None]], lock: Lock) -> tuple[str, str] | None:
    """(file name, sha256) of the file the target installs among ``files`` (name, sha256)."""
    known = {name: sha for name, sha in files if sha}
    chosen = choose_file(tuple(known), lock.target.python, lock.target.platform)
    return None if chosen is None else (chosen, known[chosen])


def fetch(
    lock: Lock,
    *,
    home: Path,
    indexes: Indexes | None = None,
    ca_cert: Path | None = None,
    workers: int = 8,
) -> Wheelhouse:
    """Download the target's file of every pinned index package into the wheelhouse.

    ``indexes`` may carry credentials (the lock never does); by default the lock's URLs.
    Files already in the cache are not downloaded again, so a second fetch needs no network.
    """
    indexes = indexes or Indexes(index_url=lock.index_url, extra_index_urls=lock.extra_index_urls)
    cache_root = cache_folder("index-files", home=home)
    plan: list[tuple[LockedPackage, str, str]] = []
    to_build: list[str] = []
    for pkg in lock.packages:
        if pkg.kind != "index":
            to_build.append(pkg.name)
            continue
        picked = _pick(((f.name, f.sha256) for f in pkg.files), lock)
        if picked is None:
            # The lock did not list the files (index unreachable then): ask the index now.
            _, listed = release_files(
                pkg.name, pkg.version, pkg.hashes, indexes=indexes, cache_root=cache_root,
                ca_cert=ca_cert,
            )  # fmt: skip
            picked = _pick(((f.filename, f.sha256) for f in listed), lock)
        if picked is None:
            msg = f"{pkg.name}=={pkg.version} has no file for {lock.target.platform} "
            msg += f"Python {lock.target.python} on the index"
            raise LockError(msg, hint="re-run `mlpack lock --upgrade-package " + pkg.name + "`")
        plan.append((pkg, *picked))

    missing = [item for item in plan if not cached_path(home, item[2], item[1]).exists()]
    rep = reporter()
    rep.start("fetch", len(missing))

    def one(item: tuple[LockedPackage, str, str]) -> None:
        pkg, filename, sha = item
        _, listed = release_files(
            pkg.name, pkg.version, pkg.hashes, indexes=indexes, cache_root=cache_root,
            ca_cert=ca_cert,
        )  # fmt: skip
        url = next((f.url for f in listed if f.sha256 == sha), None)
        if url is None:
            msg = (
                f"{filename} ({pkg.name}=={pkg.version}) has left the index: no index lists it now"
            )
            raise LockError(
                msg,
                hint=f"re-lock it: `mlpack lock --upgrade-package {pkg.name}`, then build again",
            )
        index = next((i for i in indexes.all if _same_host(i, url)), None)
        download(url, cached_path(home, sha, filename), sha256=sha, auth_from=index,
                 ca_cert=ca_cert)  # fmt: skip
        rep.advance("fetch", 1)

    if missing:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(missing)))) as pool:
            for future in [pool.submit(one, item) for item in missing]:
                future.result()
    rep.finish("fetch")
    files = tuple(
        FetchedFile(
            package=pkg.name,
            version=pkg.version,
            filename=filename,
            sha256=sha,
            path=cached_path(home, sha, filename),
        )
        for pkg, filename, sha in plan
    )
    to_build += [f.package for f in files if is_sdist(f.filename)]
    return Wheelhouse(
        root=wheelhouse_root(home),
        files=files,
        to_build=tuple(sorted(set(to_build))),
        downloaded=len(missing),
    )


def _same_host(index: str, url: str) -> bool:
    from urllib.parse import urlsplit

    return urlsplit(strip_userinfo(index)).hostname == urlsplit(url).hostname


def download(
    url: str,
    dest: Path,
    *,
    sha256: str,
    auth_from: str | None = None,
    ca_cert: Path | None = None,
) -> None:
    """Stream ``url`` to ``dest`` through a ``.partial`` file; rename only after the hash matched."""
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{id(dest)}")
    digest = hashlib.sha256()
    request = make_request(url, auth_from=auth_from)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with (
            urllib.request.urlopen(request, timeout=120, context=ssl_context(ca_cert)) as response,
            partial.open("wb") as out,
        ):
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            msg = (
                f"{dest.name} from {strip_userinfo(url)} has sha256 {digest.hexdigest()}, "
                f"but the lock says {sha256}"
            )
            raise LockError(
                msg, hint="the index served different bytes; check it or re-lock deliberately"
            )
        partial.replace(dest)
    except OSError as exc:
        if exc.errno in _DISK_ERRORS:
            msg = f"cannot write {dest.name} to {dest.parent}: {exc.strerror}"
            raise LockError(
                msg, hint="free space on that disk (or set MLPACK_HOME elsewhere), then retry"
            ) from exc
        reason = getattr(exc, "reason", exc)
        msg = f"cannot download {dest.name} from {strip_userinfo(url)}: {redact(str(reason))}"
        raise LockError(msg, hint="check the network and re-run `mlpack fetch`") from exc
    finally:
        partial.unlink(missing_ok=True)
