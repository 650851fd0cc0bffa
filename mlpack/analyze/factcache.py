"""The facts cache: each file's facts keyed by content hash, with a stat index to skip hashing.

One JSON file per analysed root under the cache folder (default
``$XDG_CACHE_HOME/mlpack/analyze``, else ``~/.cache/mlpack/analyze``) maps each relative path
to its (size, mtime_ns, inode, content hash) and each content hash to its facts. A warm run with
unchanged files reads no source at all; a touched but unchanged file is re-hashed, not re-parsed.
The extractor's own source is part of the key, so a new mlpack never reuses stale facts. The file
is replaced atomically; a corrupt or foreign cache file is ignored (and rewritten).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlpack.analyze import chunks, pyfacts
from mlpack.analyze.pyfacts import FileFacts
from mlpack.progress import reporter

if TYPE_CHECKING:
    from mlpack.analyze.walk import FileEntry, RepoTree

CACHE_FORMAT: Final = 1
SOURCE_SUFFIXES: Final = (".py", ".ipynb")


def default_cache_dir() -> Path:
    """Return ``$XDG_CACHE_HOME/mlpack/analyze`` (``~/.cache`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlpack" / "analyze"


def _extractor_version() -> str:
    """Key the cache on the extractor's code and the parser's version."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{sys.version_info[:2]}".encode())
    for module in (pyfacts, chunks):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:32]


def collect_facts(
    tree: RepoTree, *, cache_dir: Path | None, warnings: list[str]
) -> dict[str, FileFacts]:
    """Return the facts of every ``.py`` and ``.ipynb`` file of ``tree``, from cache when valid.

    Files that cannot be read or parsed get facts with ``error`` set and a warning
    ``"path: why"``; analysis always goes on.
    """
    cache = _Cache(cache_dir or default_cache_dir(), tree.root)
    sources = tree.with_suffix(*SOURCE_SUFFIXES)
    result: dict[str, FileFacts] = {}
    rep = reporter()
    rep.start("analyze: reading code", len(sources))
    for done, entry in enumerate(sources, 1):
        facts = cache.facts_for(entry)
        if facts.error:
            warnings.append(f"{entry.path}: {facts.error}")
        result[entry.path] = facts
        if done % 256 == 0:
            rep.advance("analyze: reading code", 256)
    rep.finish("analyze: reading code")
    cache.save(warnings)
    return result


def read_source(path: Path) -> bytes:
    """Read a file without following a symlink swapped in since the walk."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


class _Cache:
    def __init__(self, folder: Path, root: Path) -> None:
        self.folder = folder
        key = hashlib.sha256(os.fsencode(root)).hexdigest()[:24]
        self.path = folder / f"facts-{key}.json"
        self.root = root
        self.version = _extractor_version()
        self.index: dict[str, list[Any]] = {}  # path -> [size, mtime_ns, inode, hash]
        self.store: dict[str, Any] = {}  # hash -> facts (JSON form)
        self.seen: dict[str, list[Any]] = {}
        self.dirty = False
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return
        if not isinstance(data, dict) or data.get("version") != self.version:
            return
        index, store = data.get("index"), data.get("facts")
        if isinstance(index, dict) and isinstance(store, dict):
            self.index, self.store = index, store

    def facts_for(self, entry: FileEntry) -> FileFacts:
        known = self.index.get(entry.path)
        if (
            isinstance(known, list)
            and len(known) == 4
            and known[:3] == [entry.size, entry.mtime_ns, entry.inode]
        ):
            cached = self._cached(known[3])
            if cached is not None:
                self.seen[entry.path] = known
                return cached
        cap = (
            pyfacts.MAX_NOTEBOOK_BYTES
            if entry.path.endswith(".ipynb")
            else pyfacts.MAX_SOURCE_BYTES
        )
        if entry.size > cap:
            return FileFacts(error=f"larger than {cap // 2**20} MiB, not parsed")
        try:
            data = read_source(self.root / entry.path)
        except OSError as exc:
            return FileFacts(error=f"unreadable, skipped ({exc.strerror or exc})")
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        self.seen[entry.path] = [entry.size, entry.mtime_ns, entry.inode, digest]
        self.dirty = True
        cached = self._cached(digest)
        if cached is not None:
            return cached
        facts = pyfacts.facts_for(entry.path, data)
        self.store[digest] = facts.to_json()
        return facts

    def _cached(self, digest: Any) -> FileFacts | None:
        raw = self.store.get(digest) if isinstance(digest, str) else None
        if raw is None:
            return None
        try:
            return FileFacts.from_json(raw)
        except ValueError:
            return None

    def save(self, warnings: list[str]) -> None:
        """Write the index of this walk's files (and only their facts) atomically."""
        if not self.dirty and len(self.seen) == len(self.index):
            return
        hashes = {known[3] for known in self.seen.values()}
        data = {
            "version": self.version,
            "root": str(self.root),
            "index": self.seen,
            "facts": {h: f for h, f in self.store.items() if h in hashes},
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".facts-", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(json.dumps(data, separators=(",", ":")))
                    handle.flush()
                    os.fsync(handle.fileno())
                Path(tmp).replace(self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            # A cache that cannot be written only costs speed next time.
            warnings.append(f"facts cache {self.folder}: not written ({exc.strerror or exc})")
