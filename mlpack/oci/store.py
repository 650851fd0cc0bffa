"""The local image store: an OCI image layout of verified blobs and tags, its GC and check.

Every write goes to ``tmp/`` first, is verified against its digest, then renamed into place, so a
killed process leaves at most a ``*.partial`` file (resumable) and never a blob that passes as
whole. ``fcntl.flock`` locks serialise writers of the same entry across processes; a shared
``gc`` lock keeps ``prune`` from collecting blobs a concurrent pull has not tagged yet. A staging
directory is held by an flock on itself, so the next command clears what a killed one left.
The store's folders are private to its owner, as Docker keeps its storage 0700/0710: a blob, an
unpacked layer or a container's writable layer is no business of another host user.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpack.errors import ImageError
from mlpack.oci import jsonc, mediatypes
from mlpack.oci.digest import file_digest, sha256_digest
from mlpack.oci.documents import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    chain_id,
    check_digest,
)
from mlpack.oci.reference import parse as parse_reference
from mlpack.oslib.fs import NO_SPACE, atomic_write, remove_tree

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from mlpack.oci.layer_stream import ExpansionLimit

_CHUNK = 1 << 20
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
# Folders only the store's owner may enter; ``containers`` holds the runtime's writable layers.
_PRIVATE = ("blobs", "blobs/sha256", "layers", "rootfs", "tmp", "locks", "containers")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, kw_only=True)
class StoredImage:
    """An image in the store: its manifest and config, parsed."""

    digest: str
    manifest: Manifest
    config: ImageConfig
    manifest_size: int
    references: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Bytes of manifest, config and compressed layers."""
        return (
            self.manifest_size
            + self.manifest.config.size
            + sum(x.size for x in self.manifest.layers)
        )


@dataclass(frozen=True, kw_only=True)
class ImageSummary:
    """One row of ``mlpack images``."""

    reference: str
    digest: str
    size: int
    created: str


@dataclass(frozen=True, kw_only=True)
class PruneResult:
    """What ``prune`` removed."""

    blobs: int
    layers: int
    bytes_freed: int
    failures: tuple[str, ...] = ()  # steps that failed (each reported, none stops the others)


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    """What ``store check`` found: blobs whose bytes do not hash to their name, or are missing."""

    checked: int
    corrupt: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the store is consistent."""
        return not self.corrupt and not self.missing


def _hex(digest: str) -> str:
    return check_digest(digest).removeprefix("sha256:")


def disk_error(exc: OSError, where: Path) -> ImageError:
    """The ImageError for a failed write under ``where``: a full disk (or quota), or permissions."""
    if exc.errno in NO_SPACE:
        msg = f"no space left on the device holding {where}"
        return ImageError(
            msg, hint="free disk space (mlpack prune) or set MLPACK_HOME to a larger disk"
        )
    msg = f"cannot write to the image store at {where}: {exc.strerror or exc}"
    return ImageError(msg, hint="check the permissions of MLPACK_HOME")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tree_size(path: Path) -> int:
    """Apparent bytes of the regular files under ``path``, however deep (an image sets it).

    One directory fd is open at a time and the walk climbs back through ``..`` (checking that it
    lands where it came from), as ``oslib.fs.remove_tree`` does: no recursion, no fd per level.
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except NotADirectoryError:
        st = os.lstat(path)
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    except OSError:
        return 0
    try:
        total, pending = _scan(fd)
        stack: list[tuple[tuple[int, int], list[str]]] = []
        while pending or stack:
            if pending:
                try:
                    child = os.open(pending.pop(), _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                here = os.fstat(fd)
                stack.append(((here.st_dev, here.st_ino), pending))
                os.close(fd)
                fd = child
                size, pending = _scan(fd)
                total += size
                continue
            identity, pending = stack.pop()
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            here = os.fstat(fd)
            if (here.st_dev, here.st_ino) != identity:  # moved while we walked: stop counting
                break
        return total
    finally:
        os.close(fd)


def _scan(fd: int) -> tuple[int, list[str]]:
    """Bytes of the regular files directly in ``fd``, and its subdirectories' names."""
    size = 0
    subdirs: list[str] = []
    with contextlib.suppress(OSError), os.scandir(fd) as entries:  # unreadable: counts 0
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            elif entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):  # removed meanwhile
                    size += entry.stat(follow_symlinks=False).st_size
    return size, subdirs


def _private_dir(path: Path) -> None:
    """Create ``path`` 0700 whatever the umask, or take group/other access off an existing one."""
    with contextlib.suppress(FileExistsError):  # another process may open a new store too
        path.mkdir(mode=0o700)
    mode = path.stat().st_mode
    if stat.S_IMODE(mode) != 0o700:
        path.chmod(0o700)


class Store:
    """Content-addressed blobs and named references under one root directory."""

    def __init__(self, root: Path, *, expansion: ExpansionLimit | None = None) -> None:
        self.root = Path(root)
        self._ready = False
        # How far a layer may expand when unpacked here; None: MLPACK_MAX_LAYER_EXPANSION.
        self.expansion = expansion

    @classmethod
    def default(cls) -> Store:
        """The store in mlpack's home (mlpack.home: $MLPACK_HOME, else XDG_DATA_HOME/mlpack...)."""
        from mlpack.home import mlpack_home

        return cls(mlpack_home())

    # -- layout and locks -------------------------------------------------------------------

    def prepare(self) -> None:
        """Lay out the store once per instance (oci-layout, index.json, private blobs/, tmp/,
        ...) where it is missing, and clear stale staging.
        """
        if self._ready:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for sub in _PRIVATE:
                _private_dir(self.root / sub)
            for path in self._staged(partials=False):
                with contextlib.suppress(OSError):  # prune reports what cannot be removed
                    _remove_if_stale(path)
            layout = self.root / "oci-layout"
            if not layout.exists():
                self._atomic_write(layout, OCI_LAYOUT)
            index = self.root / "index.json"
            if not index.exists():
                self._atomic_write(index, jsonc.dumps(self._index_doc(())))
        except OSError as exc:
            raise disk_error(exc, self.root) from exc
        self._ready = True

    @contextlib.contextmanager
    def staging(self, kind: str) -> Iterator[Path]:
        """A fresh private directory under ``tmp/``, held by an flock while in use, then removed.

        A process killed while it stages (kill -9 during an unpack) releases the flock with its
        fds, so the next command that opens the store sees the directory as stale and removes it.
        """
        self.prepare()
        while True:
            path = self.root / "tmp" / f"{kind}-{secrets.token_hex(8)}"
            try:
                path.mkdir(mode=0o700)
                fd = os.open(path, _DIR_FLAGS)
            except OSError as exc:
                raise disk_error(exc, self.root) from exc
            if _try_lock(fd) and _same_inode(fd, path):
                break
            os.close(fd)  # a cleaner took it between mkdir and flock: try another name
        try:
            yield path
        finally:
            try:
                remove_tree(path)
            finally:
                os.close(fd)

    def _staged(self, *, partials: bool) -> list[Path]:
        """What lies in ``tmp/``: staging, and with ``partials`` (for prune) kept downloads.

        A ``*.partial`` file resumes an interrupted pull, so opening the store leaves it.
        """
        entries = sorted((self.root / "tmp").iterdir())
        return [p for p in entries if partials or not p.name.endswith(".partial")]

    @contextlib.contextmanager
    def lock(self, name: str, *, shared: bool = False) -> Iterator[None]:
        """Hold the inter-process lock ``locks/<name>.lock`` for the block."""
        self.prepare()
        fd = os.open(self.root / "locks" / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Hold off ``prune`` while adding blobs that are not referenced yet (a pull, a build)."""
        return self.lock("gc", shared=True)

    def _atomic_write(self, path: Path, data: bytes, *, folder: bool = False) -> None:
        """Write ``path`` atomically (``folder``: creating its folder first); ImageError else."""
        try:
            if folder:
                path.parent.mkdir(exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise disk_error(exc, path) from exc

    # -- blobs ------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (whether or not it is present)."""
        return self.root / "blobs" / "sha256" / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        """Whether the blob is present (it was verified when it was written)."""
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        """Return a (small) blob's bytes, re-verified, for manifests and configs."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError as exc:
            msg = f"blob {digest} is missing from the store"
            raise ImageError(msg, hint="pull or build the image again") from exc
        if sha256_digest(data) != digest:
            msg = f"blob {digest} in the store is corrupt"
            raise ImageError(msg, hint="run `mlpack store check`, then `mlpack rmi` and pull again")
        return data

    def partial_path(self, digest: str) -> Path:
        """Where an interrupted download of ``digest`` is kept for resuming."""
        return self.root / "tmp" / f"{_hex(digest)}.partial"

    def ingest(self, chunks: Iterable[bytes], *, digest: str, size: int | None) -> Path:
        """Write a blob from ``chunks``: verify size and digest, then rename it into place."""
        return self.ingest_resumable(lambda _offset: (0, chunks), digest=digest, size=size)

    def ingest_resumable(
        self,
        fetch: Callable[[int], tuple[int, Iterable[bytes]]],
        *,
        digest: str,
        size: int | None,
        max_size: int | None = None,
    ) -> Path:
        """Write a blob, resuming a kept ``.partial``: ``fetch(offset)`` returns (start, chunks).

        ``start`` is where the returned chunks begin: ``offset`` when the source honoured the
        range, 0 when it restarted. The byte count never goes past ``size`` (or ``max_size``).
        """
        final = self.blob_path(digest)
        if final.is_file():
            return final
        self.prepare()
        cap = size if size is not None else max_size
        with self.lock(f"blob-{_hex(digest)}"):
            if final.is_file():  # another process finished it while we waited
                return final
            partial = self.partial_path(digest)
            for attempt in range(2):
                written, got, resumed = self._fill_partial(fetch, partial, digest, cap)
                if (size is None or written == size) and got == digest:
                    break
                partial.unlink(missing_ok=True)
                if resumed and attempt == 0:
                    continue  # the kept prefix was bad: start over once from byte 0
                what = f"{written} bytes, expected {size}" if written != size else f"digest {got}"
                msg = f"blob {digest} failed verification ({what})"
                raise ImageError(msg, hint="the data was truncated or corrupted; try again")
            partial.replace(final)
            _fsync_dir(final.parent)
        return final

    def _fill_partial(
        self,
        fetch: Callable[[int], tuple[int, Iterable[bytes]]],
        partial: Path,
        digest: str,
        cap: int | None,
    ) -> tuple[int, str, bool]:
        """Append to (or restart) ``partial``; return (bytes, digest, whether it resumed)."""
        hasher = hashlib.sha256()
        offset = partial.stat().st_size if partial.exists() else 0
        if cap is not None and offset > cap:
            partial.unlink()
            offset = 0
        try:
            start, chunks = fetch(offset)
            if start != offset:
                offset = 0
            with partial.open("r+b" if offset else "wb") as fh:
                if offset:
                    while block := fh.read(_CHUNK):
                        hasher.update(block)
                    fh.truncate(offset)
                written = offset
                for chunk in chunks:
                    written += len(chunk)
                    if cap is not None and written > cap:
                        partial.unlink(missing_ok=True)
                        msg = f"blob {digest} is larger than the {cap} bytes declared for it"
                        raise ImageError(msg, hint="the registry or archive served bad data")
                    hasher.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            if exc.errno in NO_SPACE:
                partial.unlink(missing_ok=True)
            raise disk_error(exc, self.root) from exc
        return written, "sha256:" + hasher.hexdigest(), offset > 0

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` as a blob and return its digest."""
        digest = sha256_digest(data)
        self.ingest((data,), digest=digest, size=len(data))
        return digest

    def put_file(self, path: Path, *, digest: str | None = None) -> str:
        """Store a file's bytes as a blob (hashing it first when ``digest`` is not known)."""
        digest = digest or file_digest(path)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while block := fh.read(_CHUNK):
                    yield block

        self.ingest(chunks(), digest=digest, size=path.stat().st_size)
        return digest

    # -- references ---------------------------------------------------------------------------

    @staticmethod
    def _index_doc(entries: Iterable[Descriptor]) -> dict[str, Any]:
        return Index(media_type=mediatypes.OCI_INDEX, manifests=tuple(entries)).to_json()

    def _entries(self) -> tuple[Descriptor, ...]:
        self.prepare()
        data = (self.root / "index.json").read_bytes()
        return Index.parse(data).manifests

    def _write_entries(self, entries: Iterable[Descriptor]) -> None:
        ordered = sorted(
            entries, key=lambda d: (d.annotation(mediatypes.REF_NAME_ANNOTATION) or "", d.digest)
        )
        self._atomic_write(self.root / "index.json", jsonc.dumps(self._index_doc(ordered)))

    def manifest_descriptor(self, digest: str) -> Descriptor:
        """A descriptor for a stored manifest or index (media type read from the blob)."""
        data = self.read_blob(digest)
        kind = jsonc.loads(data, what="manifest").get("mediaType") or mediatypes.OCI_MANIFEST
        return Descriptor(media_type=kind, digest=digest, size=len(data))

    def tag(self, ref: str, manifest_digest: str) -> None:
        """Point the name ``ref`` at a stored manifest (replacing what it pointed at)."""
        name = str(parse_reference(ref).with_tag(parse_reference(ref).tag))
        desc = self.manifest_descriptor(manifest_digest)
        desc = Descriptor(
            media_type=desc.media_type,
            digest=desc.digest,
            size=desc.size,
            annotations=((mediatypes.REF_NAME_ANNOTATION, name),),
        )
        with self.lock("index"):
            keep = [
                e
                for e in self._entries()
                if (ref_name := e.annotation(mediatypes.REF_NAME_ANNOTATION)) != name
                and not (ref_name is None and e.digest == manifest_digest)
            ]
            self._write_entries([*keep, desc])

    def add_image(
        self, *, config: dict[str, Any], layers: Sequence[Descriptor], ref: str | None = None
    ) -> str:
        """Store config and manifest for layers already in the store; tag it; return its digest."""
        for layer in layers:
            if not self.has_blob(layer.digest):
                msg = f"layer {layer.digest} is not in the store"
                raise ImageError(msg, hint="put the layer blob first (put_file)")
        config_bytes = jsonc.dumps(config)
        config_desc = Descriptor(
            media_type=mediatypes.OCI_CONFIG,
            digest=self.put_bytes(config_bytes),
            size=len(config_bytes),
        )
        manifest = Manifest(
            media_type=mediatypes.OCI_MANIFEST, config=config_desc, layers=tuple(layers)
        )
        digest = self.put_bytes(jsonc.dumps(manifest.to_json()))
        if ref is not None:
            self.tag(ref, digest)
        else:
            self.add_untagged(digest)
        return digest

    def add_untagged(self, manifest_digest: str) -> None:
        """Keep a manifest pulled by digest alone (no name) from being pruned."""
        with self.lock("index"):
            entries = self._entries()
            if any(e.digest == manifest_digest for e in entries):
                return
            self._write_entries([*entries, self.manifest_descriptor(manifest_digest)])

    def _referrers_file(self, subject: str) -> Path:
        return self.root / "referrers" / _hex(subject)

    def add_referrer(self, subject: str, artifact: str) -> None:
        """Keep the stored manifest ``artifact`` (an SBOM, a signature) as ``subject``'s referrer.

        It lives as long as the image does, and stays out of ``images``' listing.
        """
        path = self._referrers_file(subject)
        with self.lock("index"):
            known = self.referrers(subject)
            if artifact in known:
                return
            text = "".join(f"{d}\n" for d in sorted({*known, artifact}))
            self._atomic_write(path, text.encode(), folder=True)

    def referrers(self, subject: str) -> tuple[str, ...]:
        """The stored manifests that refer to ``subject`` (see ``add_referrer``)."""
        try:
            text = self._referrers_file(subject).read_text()
        except OSError:
            return ()
        return tuple(d for d in text.split() if self.has_blob(d))

    def _index_map(self, index_digest: str) -> Path:
        return self.root / "indexes" / _hex(index_digest)

    def record_index(self, index_digest: str, manifest_digest: str) -> None:
        """Remember which manifest a pull chose from the (stored) index ``index_digest``.

        Lookups by the index digest (``repo@sha256:<index>``, the digest ``pull`` prints as
        ``index:``) then find that image; the last pull of an index wins.
        """
        self._atomic_write(self._index_map(index_digest), manifest_digest.encode(), folder=True)

    def _manifest_of(self, digest: str) -> str | None:
        """``digest`` itself for a stored manifest, the recorded choice for a stored index."""
        if not self.has_blob(digest):
            return None
        try:
            chosen = self._index_map(digest).read_text().strip()
        except OSError:
            return digest
        return chosen if chosen and self.has_blob(chosen) else None

    def resolve(self, ref_or_digest: str) -> str:
        """Return the manifest digest a reference or digest names; ImageError if unknown."""
        text = ref_or_digest.strip()
        if text.startswith("sha256:"):
            found = self._manifest_of(check_digest(text))
            if found is not None:
                return found
            msg = f"no image with digest {text} in the store"
            raise ImageError(msg, hint="see `mlpack images`, or `mlpack pull` it")
        ref = parse_reference(text)
        if ref.digest is not None:
            found = self._manifest_of(ref.digest)
            if found is not None:
                return found
            msg = f"no image {text} in the store"
            raise ImageError(msg, hint=f"pull it first: mlpack pull {text}")
        name = str(ref)
        for entry in self._entries():
            if entry.annotation(mediatypes.REF_NAME_ANNOTATION) == name:
                return entry.digest
        msg = f"no image named {text} in the store"
        raise ImageError(msg, hint=f"see `mlpack images`, or pull it first: mlpack pull {text}")

    def image(self, ref_or_digest: str) -> StoredImage:
        """Return the stored image (manifest and config parsed)."""
        digest = self.resolve(ref_or_digest)
        data = self.read_blob(digest)
        manifest = Manifest.parse(data)
        config = ImageConfig.parse(self.read_blob(manifest.config.digest))
        if len(config.diff_ids) != len(manifest.layers):
            msg = f"image {ref_or_digest}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
            raise ImageError(msg, hint="the image is malformed; rebuild or re-pull it")
        refs = tuple(
            name
            for e in self._entries()
            if e.digest == digest and (name := e.annotation(mediatypes.REF_NAME_ANNOTATION))
        )
        return StoredImage(
            digest=digest,
            manifest=manifest,
            config=config,
            manifest_size=len(data),
            references=refs,
        )

    def images(self) -> tuple[ImageSummary, ...]:
        """One row per name (and per unnamed image), sorted by reference."""
        rows = []
        for entry in self._entries():
            try:
                img = self.image(entry.digest)
            except ImageError:
                size, created = 0, "(damaged)"
            else:
                size, created = img.size, img.config.created
            name = entry.annotation(mediatypes.REF_NAME_ANNOTATION)
            shown = parse_reference(name).familiar() if name else "<none>"
            rows.append(
                ImageSummary(reference=shown, digest=entry.digest, size=size, created=created)
            )
        return tuple(sorted(rows, key=lambda r: (r.reference, r.digest)))

    def remove(self, ref: str) -> None:
        """Remove a name (or, given a digest, every name of that image); blobs go at prune."""
        digest = ref if ref.startswith("sha256:") else None
        name = None if digest else str(parse_reference(ref))
        if digest is None and name is not None and "@" in name:
            digest = parse_reference(ref).digest
            name = None
        if digest is not None:
            digest = self._manifest_of(digest) or digest
        with self.lock("index"):
            entries = self._entries()
            keep = [
                e
                for e in entries
                if not (
                    (name is not None and e.annotation(mediatypes.REF_NAME_ANNOTATION) == name)
                    or (digest is not None and e.digest == digest)
                )
            ]
            if len(keep) == len(entries):
                msg = f"no image named {ref} in the store"
                raise ImageError(msg, hint="see `mlpack images` for the names in the store")
            self._write_entries(keep)

    # -- garbage collection and checking ------------------------------------------------------

    def _reachable(self) -> tuple[set[str], set[str], set[str]]:
        """Blobs, layer diff_ids and rootfs chain ids reachable from the named images."""
        blobs: set[str] = set()
        diff_ids: set[str] = set()
        chains: set[str] = set()
        pending = [e.digest for e in self._entries()]
        while pending:
            digest = pending.pop()
            if digest in blobs or not self.has_blob(digest):
                continue
            blobs.add(digest)
            pending.extend(self.referrers(digest))
            try:
                data = self.read_blob(digest)
                doc = jsonc.loads(data, what="manifest")
                if "manifests" in doc:
                    pending.extend(m.digest for m in Index.parse(data).manifests)
                    continue
                if doc.get("artifactType"):  # a referrer (an SBOM): its blobs, no image config
                    parts = (doc.get("config"), *(doc.get("layers") or ()))
                    blobs.update(str(d.get("digest")) for d in parts if isinstance(d, dict))
                    continue
                manifest = Manifest.parse(data)
            except ImageError:
                continue
            blobs.add(manifest.config.digest)
            blobs.update(x.digest for x in manifest.layers)
            with contextlib.suppress(ImageError):
                config = ImageConfig.parse(self.read_blob(manifest.config.digest))
                diff_ids.update(config.diff_ids)
                chains.update(
                    chain_id(config.diff_ids[: i + 1]) for i in range(len(config.diff_ids))
                )
        return blobs, diff_ids, chains

    def _records(self, sub: str) -> list[Path]:
        """The per-digest record files of ``sub`` (index maps, origins, referrers), sorted."""
        folder = self.root / sub
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def prune(self) -> PruneResult:
        """Remove blobs, unpacked layers and merged trees no named image uses; leftovers in tmp.

        Each step runs whatever the others did: one that fails (a tree that cannot be removed)
        is reported in ``failures`` and the rest of the cleanup still happens.
        """
        self.prepare()
        tally = _Tally()
        with self.lock("gc"), self.lock("index"):
            keep_blobs, keep_layers, keep_chains = self._reachable()
            maps = self._records("indexes")
            for path in maps:
                with contextlib.suppress(OSError):
                    if path.read_text().strip() in keep_blobs:
                        keep_blobs.add(f"sha256:{path.name}")
            for path in sorted((self.root / "blobs" / "sha256").iterdir()):
                if f"sha256:{path.name}" not in keep_blobs:
                    tally.run("blob", path, _unlink_counted, count="blobs")
            for sub, keep in (("layers", keep_layers), ("rootfs", keep_chains)):
                for path in sorted((self.root / sub).iterdir()):
                    if f"sha256:{path.name}" not in keep:
                        tally.run("unpacked tree", path, _remove_counted, count="layers")
            for path in self._staged(partials=True):
                tally.run("staging", path, _remove_if_stale)
            # Per-entry lock files are only taken under the shared gc lock, which we hold
            # exclusively, so removing them cannot split a lock between two holders.
            for path in (self.root / "locks").glob("*-*.lock"):
                tally.run("lock file", path, _unlink_counted)
            for path in [*maps, *self._records("origins"), *self._records("referrers")]:
                if f"sha256:{path.name}" not in keep_blobs:
                    tally.run("record", path, _unlink_counted)
        return PruneResult(
            blobs=tally.counts.get("blobs", 0),
            layers=tally.counts.get("layers", 0),
            bytes_freed=tally.freed,
            failures=tuple(tally.failures),
        )

    def check(self) -> CheckResult:
        """Re-hash every blob; report those whose bytes differ from their name, and missing ones."""
        self.prepare()
        corrupt = []
        checked = 0
        for path in sorted((self.root / "blobs" / "sha256").iterdir()):
            checked += 1
            if file_digest(path) != f"sha256:{path.name}":
                corrupt.append(f"sha256:{path.name}")
        missing = set()
        for entry in self._entries():
            if not self.has_blob(entry.digest):
                missing.add(entry.digest)
                continue
            with contextlib.suppress(ImageError):
                manifest = Manifest.parse(self.read_blob(entry.digest))
                missing.update(
                    d.digest
                    for d in (manifest.config, *manifest.layers)
                    if not self.has_blob(d.digest)
                )
        return CheckResult(checked=checked, corrupt=tuple(corrupt), missing=tuple(sorted(missing)))


class _Tally:
    """Run prune's steps one by one: count what each freed, record (not raise) what failed."""

    def __init__(self) -> None:
        self.freed = 0
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []

    def run(
        self, what: str, path: Path, step: Callable[[Path], int], *, count: str | None = None
    ) -> None:
        try:
            self.freed += step(path)
        except OSError as exc:
            self.failures.append(f"cannot remove {what} {path}: {exc.strerror or exc}")
            return
        if count is not None:
            self.counts[count] = self.counts.get(count, 0) + 1


def _unlink_counted(path: Path) -> int:
    size = path.lstat().st_size
    path.unlink(missing_ok=True)
    return size


def _remove_counted(path: Path) -> int:
    size = tree_size(path)
    remove_tree(path)
    return size


def _remove_if_stale(path: Path) -> int:
    """Remove ``path`` unless a live process holds its flock; return the bytes freed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0  # another process cleared it first
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENXIO):
            raise
        path.unlink()  # a symlink or a socket: nothing mlpack stages
        return 0
    try:
        if not _try_lock(fd):
            return 0
        size = tree_size(path)
        remove_tree(path)
        return size
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_inode(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the directory open as ``fd`` (a cleaner did not remove it)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)
