"""Image tarballs: deterministic OCI + docker-archive export, and import of both kinds."""

from __future__ import annotations

import bz2
import calendar
import contextlib
import errno
import gzip
import io
import lzma
import os
import posixpath
import secrets
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

from mlpack.errors import ImageError
from mlpack.oci import jsonc, mediatypes
from mlpack.oci.documents import (
    Descriptor,
    Index,
    Manifest,
    Platform,
    check_digest,
    parse_manifest_or_index,
)
from mlpack.oci.layer_stream import ExpansionLimit
from mlpack.oci.reference import parse as parse_reference
from mlpack.oci.store import OCI_LAYOUT
from mlpack.oci.tar_reader import Readable, TarMember, TarReader

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mlpack.oci.store import Store

ArchiveFormat = Literal["oci", "docker", "both"]
_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class ImportedImage:
    """One image read from an archive: its name (if the archive named it) and manifest digest."""

    reference: str | None
    digest: str


def _epoch(created: str) -> int:
    """The config's ``created`` as an integer epoch (the tar's mtime), 1 when absent."""
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        return int(os.environ["SOURCE_DATE_EPOCH"])
    with contextlib.suppress(ValueError):
        return calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    return 1


def _info(name: str, *, size: int = 0, mtime: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def export_image(
    store: Store,
    image: str,
    out: Path,
    *,
    fmt: ArchiveFormat = "both",
    tag: str | None = None,
) -> str:
    """Write ``image`` as a tarball; return its manifest digest.

    ``both`` is an OCI image layout that also carries Docker's ``manifest.json`` (the format of
    ``docker save`` since Docker 25), so docker, podman, skopeo and containerd all load it.
    The outer tar is deterministic: fixed entry order, mtime from the image, uid 0.
    """
    stored = store.image(image)
    name_text = tag or (stored.references[0] if stored.references else None)
    name = parse_reference(name_text) if name_text else None
    mtime = _epoch(stored.config.created)
    blobs = sorted(
        {stored.digest, stored.manifest.config.digest, *(x.digest for x in stored.manifest.layers)}
    )
    members: list[tuple[str, bytes | Path | None]] = []
    if fmt in ("oci", "both"):
        annotations: tuple[tuple[str, str], ...] = ()
        if name is not None:
            annotations = (
                (mediatypes.CONTAINERD_NAME_ANNOTATION, str(name)),
                (mediatypes.REF_NAME_ANNOTATION, name.tag or "latest"),
            )
        entry = Descriptor(
            media_type=stored.manifest.media_type,
            digest=stored.digest,
            size=stored.manifest_size,
            annotations=annotations,
        )
        index = Index(media_type=mediatypes.OCI_INDEX, manifests=(entry,))
        members += [("oci-layout", OCI_LAYOUT), ("index.json", jsonc.dumps(index.to_json()))]
    if fmt in ("docker", "both"):
        legacy = [
            {
                "Config": f"blobs/sha256/{stored.manifest.config.digest[7:]}",
                "RepoTags": [name.familiar()] if name is not None and name.tag else [],
                "Layers": [f"blobs/sha256/{x.digest[7:]}" for x in stored.manifest.layers],
            }
        ]
        members.append(("manifest.json", jsonc.dumps(legacy)))
    members += [("blobs/", None), ("blobs/sha256/", None)]
    members += [(f"blobs/sha256/{d[7:]}", store.blob_path(d)) for d in blobs]
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        with (
            tmp.open("wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar,
        ):
            for arcname, content in members:
                if content is None:
                    tar.addfile(_info(arcname, mtime=mtime, directory=True))
                elif isinstance(content, bytes):
                    tar.addfile(_info(arcname, size=len(content), mtime=mtime), io.BytesIO(content))
                else:
                    with content.open("rb") as fh:
                        size = os.fstat(fh.fileno()).st_size
                        tar.addfile(_info(arcname, size=size, mtime=mtime), fh)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        tmp.replace(out)
    except OSError as exc:
        msg = f"cannot write {out}: {exc.strerror or exc}"
        raise ImageError(msg, hint="check the output path and free disk space") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return stored.digest


_HOSTILE = "the archive is malformed or hostile"
_NOT_AN_ARCHIVE = "pass an OCI layout directory or a tarball from export or docker save"
# ``docker save | gzip`` and the like: the compressions tarfile's ``r:*`` read before.
_DECOMPRESS: dict[bytes, Callable[[Path], contextlib.AbstractContextManager[Readable]]] = {
    b"\x1f\x8b": gzip.GzipFile,
    b"BZh": bz2.BZ2File,
    b"\xfd7zXZ": lzma.LZMAFile,
}
_MAX_LINK_HOPS = 32


def _member_name(path: Path, raw: str) -> str:
    """The archive-relative name of a member; an absolute name or a ``..`` is refused."""
    norm = _Source.norm(raw)
    if raw.startswith("/") or ".." in PurePosixPath(norm).parts:
        msg = f"{path}: the member {raw!r} would lie outside the archive"
        raise ImageError(msg, hint=_HOSTILE)
    return norm


def _create(stage_fd: int, norm: str) -> int:
    """Create ``norm`` under ``stage_fd`` for writing: new (O_EXCL), never through a symlink."""
    *parents, leaf = norm.split("/")
    fd = os.dup(stage_fd)
    try:
        for part in parents:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            step = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            fd, old = os.open(part, step, dir_fd=fd), fd
            os.close(old)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(leaf, flags, 0o600, dir_fd=fd)
    finally:
        os.close(fd)


def _link_target(path: Path, norm: str, member: TarMember) -> str:
    """The member a link names: a symlink relative to its folder, a hardlink to the root."""
    base = posixpath.dirname(norm) if member.type == "symlink" else ""
    target = posixpath.normpath(posixpath.join(base, member.linkname))
    if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
        msg = f"{path}: {norm} links to {member.linkname}, which is not in the archive"
        raise ImageError(msg, hint=_HOSTILE)
    return target


def _resolve(path: Path, links: dict[str, str], files: set[str]) -> dict[str, str]:
    """Each link's final regular-file member (links are never materialised, only aliased)."""
    out: dict[str, str] = {}
    for name, first in links.items():
        target = first
        for _ in range(_MAX_LINK_HOPS):
            if target not in links:
                break
            target = links[target]
        if target not in files:
            msg = f"{path}: {name} links to {first}, which is not in the archive"
            raise ImageError(msg, hint=_HOSTILE)
        out[name] = target
    return out


class _Unpacker:
    """Stage a tarball's members under a directory fd: files only; links are kept as aliases.

    The files' bytes are capped at ``MLPACK_MAX_LAYER_EXPANSION`` times the tarball's size (plus
    its floor), so a compressed bomb stops here instead of filling the store's disk.
    """

    def __init__(self, path: Path, stage_fd: int, reader: TarReader) -> None:
        self.path = path
        self._fd = stage_fd
        self._reader = reader
        self.links: dict[str, str] = {}
        self.files: set[str] = set()
        limit = ExpansionLimit.from_env()
        self._left = limit.floor + limit.ratio * path.stat().st_size

    def stage(self, member: TarMember) -> None:
        norm = _member_name(self.path, member.name)
        if norm in self.files or norm in self.links:
            msg = f"{self.path}: the member {norm} appears twice"
            raise ImageError(msg, hint=_HOSTILE)
        if member.type == "dir":
            return  # folders are made as their files need them
        if member.type in ("symlink", "hardlink"):
            self.links[norm] = _link_target(self.path, norm, member)
            return
        if member.type != "file":
            msg = f"{self.path}: {norm} is a {member.type}; an image archive holds only files"
            raise ImageError(msg, hint=_HOSTILE)
        self._left -= member.size
        if self._left < 0:
            msg = f"{self.path} expands to more than its size allows (decompression bomb?)"
            raise ImageError(msg, hint="raise MLPACK_MAX_LAYER_EXPANSION only for files you trust")
        with os.fdopen(_create(self._fd, norm), "wb") as out:
            for chunk in self._reader.read_data():
                out.write(chunk)
        self.files.add(norm)


def _unpack(path: Path, stage: Path) -> dict[str, str]:
    """Read the tarball ``path`` once, as a stream, into ``stage``; return its link aliases.

    mlpack's own header parser reads it (``tarfile`` parses no archive, SECURITY-AND-ISOLATION.md
    §8); only regular files and folders are written, each created new under the staging
    directory's fd without following a symlink.
    """
    stage_fd = os.open(stage, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with path.open("rb") as raw:
            head = raw.read(8)
        opener = next((f for m, f in _DECOMPRESS.items() if head.startswith(m)), None)
        with opener(path) if opener else path.open("rb") as stream:
            reader = TarReader(stream)
            unpacker = _Unpacker(path, stage_fd, reader)
            for member in reader:
                unpacker.stage(member)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        msg = f"cannot read the archive {path}: {exc}"
        raise ImageError(msg, hint=_NOT_AN_ARCHIVE) from exc
    except ImageError as exc:
        if not exc.message.startswith("layer tar"):
            raise
        msg = f"cannot read the archive {path}: {exc.message.removeprefix('layer ')}"
        raise ImageError(msg, hint=_NOT_AN_ARCHIVE) from exc
    finally:
        os.close(stage_fd)
    return _resolve(path, unpacker.links, unpacker.files)


class _Source:
    """Read access to an OCI layout or docker-save directory (a tarball is first staged as one).

    Files are opened under the directory's fd, one component at a time, none of them followed
    if it is a symlink: a symlink named like a blob or a layer would otherwise turn a host file
    into an image blob, and ``mlpack push`` would upload it (issue 10 item 5).
    """

    def __init__(
        self, root: Path, *, shown: Path | None = None, aliases: dict[str, str] | None = None
    ) -> None:
        self.path = shown or root
        self._aliases = aliases or {}
        self._dirfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    @staticmethod
    def norm(name: str) -> str:
        return str(PurePosixPath(name.lstrip("/")).as_posix()).removeprefix("./")

    def _inside(self, name: str) -> str:
        norm = self.norm(name)
        if ".." in PurePosixPath(norm).parts:
            msg = f"the archive refers to {name!r}, outside itself"
            raise ImageError(msg, hint=_HOSTILE)
        return self._aliases.get(norm, norm)

    def _open_fd(self, dirfd: int, norm: str) -> int:
        """Open ``norm`` under ``dirfd`` read-only, refusing a symlink or a non-file anywhere."""
        *parents, leaf = norm.split("/")
        fd = os.dup(dirfd)
        try:
            for part in parents:
                step = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                fd, old = os.open(part, step, dir_fd=fd), fd
                os.close(old)
            leaf_fd = os.open(leaf, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise self._refusal(norm, exc) from exc
        finally:
            os.close(fd)
        if not stat.S_ISREG(os.fstat(leaf_fd).st_mode):
            os.close(leaf_fd)
            msg = f"{self.path}: {norm} is not a regular file"
            raise ImageError(msg, hint="an image directory holds only files and directories")
        return leaf_fd

    def _refusal(self, norm: str, exc: OSError) -> ImageError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            msg = f"{self.path}: {norm} is, or lies under, a symlink; mlpack does not follow it"
            return ImageError(
                msg,
                hint="an imported directory may not link out of itself; copy the files in "
                "(cp -rL) or import a tarball",
            )
        msg = f"{self.path} has no {norm}"
        return ImageError(msg, hint="the layout is incomplete")

    def has(self, name: str) -> bool:
        try:
            os.close(self._open_fd(self._dirfd, self._inside(name)))
        except ImageError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return False
            raise
        return True

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        with os.fdopen(self._open_fd(self._dirfd, self._inside(name)), "rb") as fh:
            yield fh

    def read(self, name: str, *, limit: int = 16 << 20) -> bytes:
        with self.open(name) as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            msg = f"{name} in {self.path} is too large for a JSON document"
            raise ImageError(msg, hint="the archive is malformed")
        return data

    def close(self) -> None:
        os.close(self._dirfd)


def _copy_blob(src: _Source, store: Store, desc: Descriptor) -> None:
    if store.has_blob(desc.digest):
        return
    name = f"blobs/sha256/{desc.digest[7:]}"

    def chunks() -> Iterator[bytes]:
        with src.open(name) as fh:
            while block := fh.read(_CHUNK):
                yield block

    store.ingest(chunks(), digest=desc.digest, size=desc.size)


def _import_oci(
    src: _Source, store: Store, platform: Platform, only: str | None
) -> list[ImportedImage]:
    index = Index.parse(src.read("index.json"))
    entries = [e for e in index.manifests if only is None or e.digest == only]
    if not entries:
        msg = f"{src.path} holds no image {only}"
        raise ImageError(msg, hint="export the image there again (mlpack slurm render --image-dir)")
    legacy_tags: list[str] = []
    if src.has("manifest.json"):
        with contextlib.suppress(ImageError, TypeError, AttributeError):
            doc = jsonc.loads(src.read("manifest.json"), what="manifest.json")
            legacy_tags = [t for entry in doc for t in (entry.get("RepoTags") or [])]
    out: list[ImportedImage] = []
    for entry in entries:
        desc = entry
        _copy_blob(src, store, desc)
        document = parse_manifest_or_index(store.read_blob(desc.digest), desc.media_type)
        if isinstance(document, Index):
            desc = document.select(platform)
            _copy_blob(src, store, desc)
            document = parse_manifest_or_index(store.read_blob(desc.digest), desc.media_type)
        if not isinstance(document, Manifest):
            msg = f"{src.path}: nested indexes are not supported"
            raise ImageError(msg, hint="export a single-platform image")
        for blob in (document.config, *document.layers):
            _copy_blob(src, store, blob)
        name = entry.annotation(mediatypes.CONTAINERD_NAME_ANNOTATION)
        ref_name = entry.annotation(mediatypes.REF_NAME_ANNOTATION)
        if name is None and ref_name and "/" in ref_name:
            name = ref_name
        if name is None and len(index.manifests) == 1 and legacy_tags:
            name = legacy_tags[0]
        out.append(_register(store, name, desc.digest))
    return out


def _register(store: Store, name: str | None, digest: str) -> ImportedImage:
    if name:
        ref = parse_reference(name)
        store.tag(str(ref), digest)
        return ImportedImage(reference=ref.familiar(), digest=digest)
    store.add_untagged(digest)
    return ImportedImage(reference=None, digest=digest)


def _import_docker(src: _Source, store: Store) -> list[ImportedImage]:
    doc: Any = jsonc.loads(src.read("manifest.json"), what="manifest.json")
    if not isinstance(doc, list):
        msg = f"{src.path}: manifest.json is not a list"
        raise ImageError(msg, hint="the archive is not a docker save tarball")
    out: list[ImportedImage] = []
    for entry in doc:
        try:
            config_name, layer_names = str(entry["Config"]), [str(x) for x in entry["Layers"]]
            tags = [str(t) for t in entry.get("RepoTags") or []]
        except (KeyError, TypeError) as exc:
            msg = f"{src.path}: manifest.json entry lacks Config or Layers"
            raise ImageError(msg, hint="the archive is not a docker save tarball") from exc
        config_bytes = src.read(config_name)
        config_digest = store.put_bytes(config_bytes)
        layers = []
        for layer_name in layer_names:
            with src.open(layer_name) as fh:
                magic = fh.read(4)
            kind = mediatypes.OCI_LAYER_GZIP if magic[:2] == b"\x1f\x8b" else mediatypes.OCI_LAYER
            if magic == b"\x28\xb5\x2f\xfd":
                kind = mediatypes.OCI_LAYER_ZSTD
            with store.staging("import") as stage:
                tmp = stage / "layer"
                with src.open(layer_name) as fh, tmp.open("wb") as dst:
                    while block := fh.read(_CHUNK):
                        dst.write(block)
                digest = store.put_file(tmp)
            layers.append(
                Descriptor(
                    media_type=kind, digest=digest, size=store.blob_path(digest).stat().st_size
                )
            )
        config_desc = Descriptor(
            media_type=mediatypes.OCI_CONFIG, digest=config_digest, size=len(config_bytes)
        )
        manifest = Manifest(
            media_type=mediatypes.OCI_MANIFEST, config=config_desc, layers=tuple(layers)
        )
        digest = store.put_bytes(jsonc.dumps(manifest.to_json()))
        if tags:
            out.extend(_register(store, t, digest) for t in tags)
        else:
            out.append(_register(store, None, digest))
    return out


def import_archive(
    store: Store, path: Path, *, platform: Platform | None = None, digest: str | None = None
) -> tuple[ImportedImage, ...]:
    """Import every image in an OCI layout (directory or tar) or a ``docker save`` tarball.

    ``digest``: only the manifest of that digest, from an OCI layout (a shared folder of many
    images, as Slurm nodes read them); each blob is verified against its digest on the way in.
    """
    if not path.exists():
        msg = f"{path} does not exist"
        raise ImageError(msg, hint="pass the path of an image tarball or OCI layout directory")
    with contextlib.ExitStack() as stack:
        stack.enter_context(store.writing())
        if path.is_dir():
            src = _Source(path)
        else:
            stage = stack.enter_context(store.staging("archive"))
            src = _Source(stage, shown=path, aliases=_unpack(path, stage))
        stack.callback(src.close)
        if src.has("index.json"):
            default = Platform(os="linux", architecture="amd64")
            images = _import_oci(src, store, platform or default, digest)
        elif digest is not None:
            msg = f"{path} is not an OCI layout: an image cannot be picked from it by digest"
            raise ImageError(msg, hint="import it without --digest")
        elif src.has("manifest.json"):
            images = _import_docker(src, store)
        else:
            msg = f"{path} is neither an OCI layout nor a docker save archive"
            raise ImageError(msg, hint="expected index.json or manifest.json at the top level")
    for image in images:
        check_digest(image.digest)
    return tuple(images)
