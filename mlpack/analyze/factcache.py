"""The facts cache: each file's facts keyed by content hash, with a stat index to skip hashing.

One JSON file per analysed root under the cache folder (default ``<mlpack home>/cache/analyze``,
like every mlpack cache: ``mlpack.paths``) maps each relative path to its (size, mtime_ns, inode,
content hash) and each content hash to its facts. A warm run with unchanged files reads no source
at all; a touched but unchanged file is re-hashed, not re-parsed. The extractor's own source is
part of the key, so a new mlpack never reuses stale facts. The file is replaced atomically (not
fsynced); a corrupt or foreign cache file is ignored (and rewritten). Only the 64 most recently
analysed repositories keep a cache file. A root seen for the first time (a moved copy, a fresh
clone) starts from the file of another root with the same source files (``_Cache``).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlpack.analyze import chunks, pyexpr, pyextract, pyfacts, triggers
from mlpack.analyze.pyfacts import FileFacts
from mlpack.oslib.fs import atomic_write
from mlpack.paths import cache_folder
from mlpack.progress import reporter

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlpack.analyze.walk import FileEntry, RepoTree

CACHE_FORMAT: Final = 1
SOURCE_SUFFIXES: Final = (".py", ".ipynb")
# Helper processes cost some start-up and result transfer; below this many bytes to parse,
# one process is faster. Above it, parsing spreads over up to MAX_WORKERS cores (this process
# and MAX_WORKERS - 1 forked helpers).
PARALLEL_MIN_BYTES: Final = 4 * 2**20
MAX_WORKERS: Final = 4
MAX_REPOSITORIES: Final = 64  # cache files kept, one per analysed repository path


def _extractor_version() -> str:
    """Key the cache on the extractor's code and the parser's version."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}:{sys.version_info[:2]}".encode())
    for module in (pyfacts, pyextract, pyexpr, chunks, triggers):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:32]


def collect_facts(
    tree: RepoTree, *, cache_dir: Path | None, warnings: list[str]
) -> dict[str, FileFacts]:
    """Return the facts of every ``.py`` and ``.ipynb`` file of ``tree``, from cache when valid.

    Files that cannot be read or parsed get facts with ``error`` set and a warning
    ``"path: why"``; analysis always goes on. When many bytes need parsing and the machine has
    several cores, forked helper processes share the parsing with this one (see
    ``PARALLEL_MIN_BYTES``).
    """
    sources = tree.with_suffix(*SOURCE_SUFFIXES)
    cache = _Cache(cache_dir or cache_folder("analyze"), tree.root, _shape(sources))
    rep = reporter()
    rep.start("analyze: reading code", len(sources))
    result: dict[str, FileFacts] = {}
    to_parse: list[tuple[FileEntry, str | None, bytes | None]] = []
    for entry in sources:
        found = cache.lookup(entry)
        if isinstance(found, FileFacts):
            result[entry.path] = found
        elif found is None:
            to_parse.append((entry, None, None))  # read and hashed where it is parsed
        else:
            digest, data = found
            to_parse.append((entry, digest, data))
    # The syntax trees are acyclic and short-lived: the cycle collector's passes over the growing
    # set of facts only cost time (about 5 % of a cold run).
    collecting = gc.isenabled()
    gc.disable()
    try:
        parsed = _parse_all(tree.root, to_parse)
    finally:
        if collecting:
            gc.enable()
    for (entry, _, _), (key, facts) in zip(to_parse, parsed, strict=True):
        if key is not None:  # None: unreadable, nothing to cache
            cache.remember(entry, key, facts)
        result[entry.path] = facts
    rep.advance("analyze: reading code", len(sources))
    rep.finish("analyze: reading code")
    for entry in sources:
        error = result[entry.path].error
        if error:
            warnings.append(f"{entry.path}: {error}")
    cache.save(warnings)
    return result


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return min(cores, MAX_WORKERS)


Job = tuple[str, str, int, bytes | None]  # path, absolute path, size, bytes if read already
Parsed = tuple[str | None, FileFacts]  # content hash (None: unreadable), facts


def _parse_all(root: Path, items: list[tuple[FileEntry, str | None, bytes | None]]) -> list[Parsed]:
    """Parse in this process, or share the work with forked helpers when it pays for them."""
    jobs: list[Job] = [(e.path, str(root / e.path), e.size, data) for e, _, data in items]
    workers = _workers()
    if workers < 2 or sum(e.size for e, _, _ in items) < PARALLEL_MIN_BYTES:
        return [_parse_job(job) for job in jobs]
    import multiprocessing  # only here: its import costs more than a small warm run

    # fork copies only the calling thread: with other threads alive (a progress display, a
    # server) a lock they hold could stay locked in the child. spawn/forkserver would re-import
    # the caller's __main__, which breaks unguarded scripts that call analyze().
    if threading.active_count() > 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_parse_job(job) for job in jobs]
    # Largest files first, dealt round-robin, so that batches take about the same time.
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][2])
    batches = [order[k :: workers * 8] for k in range(workers * 8)]
    results: list[Parsed | None] = [None] * len(jobs)
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    _FORKED_JOBS[:] = jobs  # forked helpers inherit them: no pipe carries file contents
    try:
        context = multiprocessing.get_context("fork")
        # This process parses too, beside workers - 1 helpers: from the last batch down, it
        # takes every batch that no helper has started yet.
        with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
            futures = [pool.submit(_parse_batch, batch) for batch in batches]
            for batch, future in zip(reversed(batches), reversed(futures), strict=True):
                if future.cancel():
                    for i in batch:
                        results[i] = _parse_job(jobs[i])
            for batch, future in zip(batches, futures, strict=True):
                if not future.cancelled():
                    for i, (digest, raw) in zip(batch, future.result(), strict=True):
                        results[i] = (digest, FileFacts.from_json(raw))
    except (OSError, BrokenProcessPool, ValueError, IndexError):
        # No worker processes here (limits, no /dev/shm...): parse in this process.
        return [_parse_job(job) for job in jobs]
    finally:
        _FORKED_JOBS.clear()
    return [r if r is not None else _parse_job(jobs[i]) for i, r in enumerate(results)]


# The jobs of the parse under way, which forked helpers inherit.
_FORKED_JOBS: list[Job] = []


def _parse_batch(batch: list[int]) -> list[tuple[str | None, list[Any]]]:
    """Helper entry point: (hash, facts in JSON form) of the inherited jobs at these indices."""
    out = []
    for i in batch:
        digest, facts = _parse_job(_FORKED_JOBS[i])
        out.append((digest, facts.to_json()))
    return out


def _parse_job(job: Job) -> Parsed:
    """Read (unless read already), hash and parse one file."""
    path, full, size, data = job
    if data is None:
        try:
            data = read_source(Path(full), size)
        except OSError as exc:
            return None, FileFacts(error=f"unreadable, skipped ({exc.strerror or exc})")
    return content_hash(data), pyfacts.facts_for(path, data)


def content_hash(data: bytes) -> str:
    """The cache key of a file's bytes (SHA-256 runs on SHA-NI: faster than blake2b here)."""
    return hashlib.sha256(data).hexdigest()[:32]


def read_source(path: Path, size: int = 0) -> bytes:
    """Read a file without following a symlink swapped in since the walk.

    ``size`` (from the walk) lets one ``read`` call do, without a buffered file object.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        parts = [data]  # grown since the walk: read on to the end
        while more := os.read(fd, 2**20):
            parts.append(more)
        return b"".join(parts)
    finally:
        os.close(fd)


def _shape(sources: Sequence[FileEntry]) -> str:
    """The repository's source files by relative path: the same in a moved or fresh clone."""
    names = "\0".join(sorted(e.path for e in sources))
    return hashlib.sha256(names.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class _Cache:
    """One file per repository, ``facts-<path key>-<shape>.json``: the index of its files by
    (size, mtime, inode) and their facts by content hash.

    A repository analysed first at this path borrows the file of another path with the same
    source files (a moved copy, a fresh clone of the same tree): its files are then read and
    hashed, not parsed, since facts are found by content.
    """

    def __init__(self, folder: Path, root: Path, shape: str) -> None:
        self.folder = folder
        self.key = hashlib.sha256(os.fsencode(root)).hexdigest()[:24]
        self.path = folder / f"facts-{self.key}-{shape}.json"
        self.shape = shape
        self.root = root
        self.version = _extractor_version()
        self.index: dict[str, list[Any]] = {}  # path -> [size, mtime_ns, inode, hash]
        self.store: dict[str, Any] = {}  # hash -> facts (JSON form)
        self.seen: dict[str, list[Any]] = {}
        self.dirty = False
        self._load()

    def _load(self) -> None:
        for path in self._candidates():
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or data.get("version") != self.version:
                continue
            index, store = data.get("index"), data.get("facts")
            if isinstance(index, dict) and isinstance(store, dict):
                self.index, self.store = index, store
                return

    def _candidates(self) -> list[Path]:
        """The cache file of this path; else (its source files changed) its file from before;
        else the newest file of another path with the same source files.
        """
        if self.path.exists():
            return [self.path]
        return _newest(self.folder, f"facts-{self.key}-*.json") + _newest(
            self.folder, f"facts-*-{self.shape}.json"
        )

    def lookup(self, entry: FileEntry) -> FileFacts | tuple[str, bytes] | None:
        """Return cached (or error) facts, else the file's (digest, bytes) to parse.

        None: no stored facts could match (an empty store, a cold run), so the file is best read
        and hashed by whoever parses it.
        """
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
        notebook = entry.path.endswith(".ipynb")
        cap = pyfacts.MAX_NOTEBOOK_BYTES if notebook else pyfacts.MAX_SOURCE_BYTES
        if entry.size > cap:
            return FileFacts(error=f"larger than {cap // 2**20} MiB, not parsed")
        if not self.store:
            return None
        try:
            data = read_source(self.root / entry.path, entry.size)
        except OSError as exc:
            return FileFacts(error=f"unreadable, skipped ({exc.strerror or exc})")
        digest = content_hash(data)
        self.seen[entry.path] = [entry.size, entry.mtime_ns, entry.inode, digest]
        self.dirty = True
        cached = self._cached(digest)
        if cached is not None:
            return cached
        return digest, data

    def remember(self, entry: FileEntry, digest: str, facts: FileFacts) -> None:
        """Store freshly extracted facts under their content hash, and index the file."""
        self.store[digest] = facts.to_json()
        self.seen[entry.path] = [entry.size, entry.mtime_ns, entry.inode, digest]
        self.dirty = True

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
            # Not fsynced (a tenth of a cold run on a 1 M-line tree): a cache file that a crash
            # leaves torn is ignored and rewritten.
            atomic_write(self.path, json.dumps(data, separators=(",", ":")), durable=False)
        except OSError as exc:
            # A cache that cannot be written only costs speed next time.
            warnings.append(f"facts cache {self.folder}: not written ({exc.strerror or exc})")
            return
        for old in _newest(self.folder, f"facts-{self.key}-*.json"):  # this path's other shapes
            if old != self.path:
                old.unlink(missing_ok=True)
        _prune(self.folder, keep=self.path)


def _newest(folder: Path, pattern: str) -> list[Path]:
    """The files of ``folder`` that match ``pattern``, newest first (none when unreadable)."""
    found = []
    try:
        for path in folder.glob(pattern):
            with contextlib.suppress(OSError):
                found.append((path.stat().st_mtime_ns, path))
    except OSError:
        return []
    return [path for _, path in sorted(found, reverse=True)]


def _prune(folder: Path, *, keep: Path) -> None:
    """Drop the least recently written repositories' files beyond ``MAX_REPOSITORIES``."""
    others = [p for p in _newest(folder, "facts-*.json") if p != keep]
    for stale in others[MAX_REPOSITORIES - 1 :]:
        stale.unlink(missing_ok=True)
