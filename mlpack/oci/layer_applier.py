"""Safe layer applier: unpack a layer blob onto a root directory without ever writing outside it.

The rules are SECURITY-AND-ISOLATION.md §8-§9: every write is fd-relative under a root dirfd,
parents resolve in-root (``mlpack.oslib.inroot``, the helper's resolver too), leaves never
follow symlinks, and digest, size and diff_id are checked while the blob streams by.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final, Literal

from mlpack.errors import ImageError
from mlpack.oci import mediatypes
from mlpack.oci.digest import parse_digest
from mlpack.oci.layer_stream import (
    BlobReader,
    Budget,
    ExpansionLimit,
    TarStream,
    decompressor,
    verify,
)
from mlpack.oci.tar_reader import TarMember, TarReader
from mlpack.oslib import inroot
from mlpack.oslib.fs import remove_tree
from mlpack.progress import reporter

if TYPE_CHECKING:
    from pathlib import Path

_MAX_CACHED_DIRS: Final = 64  # parent dirfds kept open while a layer applies
WHITEOUT_PREFIX: Final = ".wh."
OPAQUE_MARKER: Final = ".wh..wh..opq"
_HINT_HOSTILE: Final = "the layer is malformed or hostile; re-pull it or rebuild the image"
# xattrs an image may set. Never trusted.* (host privilege), never *.overlay.* (an image could
# fake whiteouts or redirects in an overlay mount), never security.selinux (host labels).
_XATTR_NAMES: Final = frozenset({"system.posix_acl_access", "system.posix_acl_default"})
_XATTR_DENY_PREFIXES: Final = ("user.overlay.", "user.rootlesscontainers")


@dataclass(frozen=True, kw_only=True)
class ApplyResult:
    """What an apply did: the verified identities and what was applied or skipped."""

    diff_id: str
    digest: str
    size: int
    entries: int
    bytes_written: int
    skipped: tuple[str, ...]


def apply_layer(  # noqa: PLR0913  one keyword-only knob per policy, each with a safe default
    blob: BinaryIO,
    root: Path,
    *,
    media_type: str,
    expected_digest: str | None = None,
    expected_size: int | None = None,
    expected_diff_id: str | None = None,
    rootless: bool | None = None,
    whiteout_mode: Literal["apply", "overlay"] = "apply",
    max_bytes: int = 64 << 30,
    expansion: ExpansionLimit | None = None,
    max_entries: int = 2_000_000,
    keep_setid: bool = False,
    keep_file_caps: bool = False,
    keep_devices: bool = False,
    max_path_bytes: int = 4096,
    max_header_bytes: int = 64 << 10,
) -> ApplyResult:
    """Apply the layer in ``blob`` onto the existing directory ``root``.

    Raises ImageError on any rejection; the root may then hold part of the layer, so callers
    apply into a staging directory and rename it into place only on success.
    ``rootless`` (default: euid != 0) skips chown and device nodes; ``whiteout_mode="overlay"``
    writes overlayfs whiteouts instead of deleting (for per-layer lower directories). The
    uncompressed stream may not exceed ``max_bytes``, the ``expansion`` limit (default
    ``ExpansionLimit()``) or the free space of the root's filesystem.
    """
    if not media_type:
        msg = "layer descriptor has no mediaType"
        raise ImageError(msg, hint="the manifest is invalid (CVE-2021-41190); re-pull the image")
    if media_type not in mediatypes.LAYERS:
        msg = f"unsupported layer media type {media_type!r}"
        raise ImageError(
            msg,
            hint="mlpack applies OCI/Docker tar, tar+gzip and tar+zstd layers (no foreign layers)",
        )
    if expected_size is not None and expected_size < 0:
        msg = f"layer descriptor has a negative size ({expected_size})"
        raise ImageError(msg, hint=_HINT_HOSTILE)
    blob_algo = parse_digest(expected_digest)[0] if expected_digest else "sha256"
    diff_algo = parse_digest(expected_diff_id)[0] if expected_diff_id else "sha256"
    if rootless is None:
        rootless = os.geteuid() != 0
    compressed = BlobReader(blob, expected_size=expected_size, algorithm=blob_algo)
    budget = Budget(root, compressed, max_bytes=max_bytes, expansion=expansion or ExpansionLimit())
    tar_stream = TarStream(decompressor(compressed), algorithm=diff_algo, budget=budget)
    reader = TarReader(tar_stream, max_header_bytes=max_header_bytes, max_path_bytes=max_path_bytes)
    applier = _Applier(
        root,
        rootless=rootless,
        whiteout_mode=whiteout_mode,
        keep_setid=keep_setid,
        keep_file_caps=keep_file_caps,
        keep_devices=keep_devices and not rootless,
    )
    try:
        for member in reader:
            applier.entries += 1
            if applier.entries > max_entries:
                msg = f"layer has more than {max_entries} entries"
                raise ImageError(msg, hint="raise max_entries only for layers you trust")
            applier.apply(member, reader)
        tar_stream.drain()
        compressed.drain()
        verify(compressed, tar_stream, expected_digest, expected_size, expected_diff_id)
        applier.finalize()
    except OSError as exc:  # reading the blob, or finishing directories
        msg = f"cannot apply layer onto {root}: {exc.strerror or exc}"
        raise ImageError(
            msg, hint="check the blob file, free disk space and the unpack root"
        ) from exc
    finally:
        tar_stream.close()
        applier.close()
    if applier.skipped:
        reporter().notice(
            f"layer: skipped {len(applier.skipped)} device/FIFO entries "
            f"({', '.join(applier.skipped[:3])}{', ...' if len(applier.skipped) > 3 else ''})"
        )
    return ApplyResult(
        diff_id=tar_stream.digest(),
        digest=compressed.digest(),
        size=compressed.count,
        entries=applier.entries,
        bytes_written=applier.bytes_written,
        skipped=tuple(applier.skipped),
    )


class _Resolver:
    """Directories under the unpack root, resolved in-root by ``oslib.inroot`` (one rule)."""

    def __init__(self, root: Path) -> None:
        try:
            self.fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            msg = f"cannot open the unpack root {root}: {exc.strerror}"
            raise ImageError(msg, hint="the root must be an existing directory") from exc

    def close(self) -> None:
        os.close(self.fd)

    def open_dir(self, parts: tuple[str, ...], *, create: bool) -> int:
        """Return an O_PATH fd of the directory ``parts`` (created as needed when ``create``).

        ``xdev=False``: a layer never reaches across a mount point inside its root.
        """
        path = "/".join(parts)
        if create:
            return inroot.mkdirs(self.fd, path, xdev=False)
        fd = inroot.resolve(self.fd, path, xdev=False)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        return fd


def _lstat(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        return None


def _clean(name: str, what: str, member: TarMember) -> tuple[str, ...]:
    """Normalise an archive path; strip leading ``/`` and ``./``; reject ``..``."""
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        msg = f"layer entry {member.name!r} has a {what} with '..' ({name!r})"
        raise ImageError(msg, hint=_HINT_HOSTILE)
    return parts


class _Applier:
    """Apply members one by one; keep what must be finished after the whole stream."""

    def __init__(
        self,
        root: Path,
        *,
        rootless: bool,
        whiteout_mode: Literal["apply", "overlay"],
        keep_setid: bool,
        keep_file_caps: bool,
        keep_devices: bool,
    ) -> None:
        self._resolver = _Resolver(root)
        self._rootless = rootless
        self._overlay = whiteout_mode == "overlay"
        self._keep_setid = keep_setid
        self._keep_caps = keep_file_caps
        self._keep_devices = keep_devices
        self._created: set[tuple[str, ...]] = set()  # this layer's paths and their ancestors
        self._dirs: dict[tuple[str, ...], tuple[int, int]] = {}  # deferred (mode, mtime)
        self._restore: dict[tuple[str, ...], int] = {}  # lower dirs opened up for writing
        # Parent dirfds by in-layer path: tar order keeps siblings together, so most entries
        # skip the in-root resolution. Any removal clears the cache: a removed or replaced
        # directory or symlink must be resolved afresh. Values: (fd, parent is setgid).
        self._parents: dict[tuple[str, ...], tuple[int, bool]] = {}
        self._retired: list[int] = []  # fds dropped from the cache, closed after the entry
        self._ids = (os.geteuid(), os.getegid())
        self.entries = 0
        self.bytes_written = 0
        self.skipped: list[str] = []

    def close(self) -> None:
        self._invalidate()
        self._release()
        self._resolver.close()

    def _invalidate(self) -> None:
        self._retired.extend(fd for fd, _ in self._parents.values())
        self._parents.clear()

    def _release(self) -> None:
        while self._retired:
            os.close(self._retired.pop())

    def _remove(self, parent: int, name: str) -> None:
        remove_tree(name, dir_fd=parent)
        self._invalidate()

    def _parent(self, parts: tuple[str, ...]) -> tuple[int, bool]:
        """The (cached) O_PATH fd of the directory ``parts``, created and writable."""
        hit = self._parents.get(parts)
        if hit is not None:
            return hit
        fd = self._resolver.open_dir(parts, create=True)
        try:
            mode = os.fstat(fd).st_mode
            if self._rootless:
                self._ensure_writable(fd, parts, mode)
        except BaseException:
            os.close(fd)
            raise
        if len(self._parents) >= _MAX_CACHED_DIRS:
            oldest = next(iter(self._parents))
            self._retired.append(self._parents.pop(oldest)[0])
        entry = (fd, bool(mode & stat.S_ISGID))
        self._parents[parts] = entry
        return entry

    def apply(self, member: TarMember, reader: TarReader) -> None:
        parts = _clean(member.name, "path", member)
        if not parts:
            if member.type != "dir":  # e.g. an empty-named symlink (python/cpython#149486)
                msg = f"layer entry {member.name!r} names the root but is a {member.type}"
                raise ImageError(msg, hint=_HINT_HOSTILE)
            return  # the root itself ("./"): its metadata is the caller's, not the layer's
        shown = "/".join(parts)
        try:
            pfd, setgid = self._parent(parts[:-1])
        except OSError as exc:
            msg = f"cannot apply layer entry {shown!r}: parent: {exc.strerror}"
            raise ImageError(msg, hint=_HINT_HOSTILE) from exc
        # A new inode takes the applier's ids unless the parent is setgid: chown only if needed.
        owned = not setgid and (member.uid, member.gid) == self._ids
        try:
            self._apply_leaf(member, parts, pfd, reader, owned=owned)
        except OSError as exc:
            msg = f"cannot apply layer entry {shown!r}: {exc.strerror or exc}"
            raise ImageError(msg, hint="check free disk space and the unpack root") from exc
        finally:
            self._release()

    def _ensure_writable(self, pfd: int, parent: tuple[str, ...], mode: int) -> None:
        if mode & 0o300 == 0o300:
            return
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        try:
            os.fchmod(fd, stat.S_IMODE(mode) | 0o700)
        finally:
            os.close(fd)
        self._restore.setdefault(parent, stat.S_IMODE(mode))

    def _mark(self, parts: tuple[str, ...]) -> None:
        for i in range(len(parts), 0, -1):
            if parts[:i] in self._created:
                return
            self._created.add(parts[:i])

    def _apply_leaf(
        self,
        member: TarMember,
        parts: tuple[str, ...],
        pfd: int,
        reader: TarReader,
        *,
        owned: bool,
    ) -> None:
        """Apply one entry under its parent ``pfd``; ``owned``: a new inode needs no chown."""
        name = parts[-1]
        if name.startswith(WHITEOUT_PREFIX):
            self._whiteout(member, parts, pfd)
            return
        if member.type in ("chardev", "blockdev", "fifo") and not self._keep_devices:
            self.skipped.append("/".join(parts))
            return
        if member.type == "hardlink":
            self._hardlink(member, parts, pfd, _lstat(pfd, name))
            return
        # Create first and look at what is there only when the name is taken (EEXIST): in a
        # fresh tree that saves an lstat per entry. Nothing here follows a symlink at the leaf.
        if member.type == "dir":
            self._dir(member, parts, pfd, owned=owned)
            return
        self._mark(parts)
        if member.type == "file":
            self._file(member, name, pfd, reader, owned=owned)
        elif member.type == "symlink":
            self._symlink(member, parts, pfd, owned=owned)
        else:  # devices and FIFOs, rootful with keep_devices
            self._clear(pfd, name)
            kind = {"chardev": stat.S_IFCHR, "blockdev": stat.S_IFBLK}.get(
                member.type, stat.S_IFIFO
            )
            dev = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | self._mode(member), dev, dir_fd=pfd)
            self._chown(pfd, name, member)
            self._utime(pfd, name, member.mtime)

    def _dir(self, member: TarMember, parts: tuple[str, ...], pfd: int, *, owned: bool) -> None:
        """Create (or keep) a directory at 0700: ``finalize`` sets its mode and mtime last."""
        name = parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            existing = _lstat(pfd, name)
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                owned = False  # a lower layer's directory: its owner may differ
            else:
                self._remove(pfd, name)
                os.mkdir(name, 0o700, dir_fd=pfd)
        if not owned:
            self._chown(pfd, name, member)
        self._dirs[parts] = (self._mode(member), member.mtime)
        self._mark(parts)

    def _symlink(self, member: TarMember, parts: tuple[str, ...], pfd: int, *, owned: bool) -> None:
        """Create a symlink with its target verbatim: it is resolved only inside the container."""
        name = parts[-1]
        if not member.linkname or "\0" in member.linkname:
            msg = f"layer entry {'/'.join(parts)!r} is a symlink with an empty target"
            raise ImageError(msg, hint=_HINT_HOSTILE)
        try:
            os.symlink(member.linkname, name, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, name)
            os.symlink(member.linkname, name, dir_fd=pfd)
        if not owned:
            self._chown(pfd, name, member)
        self._utime(pfd, name, member.mtime)

    def _clear(self, pfd: int, name: str) -> None:
        if _lstat(pfd, name) is not None:
            self._remove(pfd, name)

    def _file(
        self, member: TarMember, name: str, pfd: int, reader: TarReader, *, owned: bool
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._clear(pfd, name)
            fd = os.open(name, flags, 0o600, dir_fd=pfd)
        try:
            for chunk in reader.read_data():
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                self.bytes_written += len(chunk)
            if not self._rootless and not owned:
                os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, self._mode(member))  # after chown, which clears setuid bits
            self._xattrs(fd, member)
            os.utime(fd, ns=(member.mtime * 10**9, member.mtime * 10**9))
        finally:
            os.close(fd)

    def _hardlink(
        self,
        member: TarMember,
        parts: tuple[str, ...],
        pfd: int,
        existing: os.stat_result | None,
    ) -> None:
        shown = "/".join(parts)
        target = _clean(member.linkname, "hard link target", member)
        if not target:
            msg = f"layer entry {shown!r} is a hard link to the root directory"
            raise ImageError(msg, hint=_HINT_HOSTILE)
        try:
            tfd = self._resolver.open_dir(target[:-1], create=False)
        except OSError as exc:
            msg = f"layer entry {shown!r} is a hard link to {member.linkname!r}: {exc.strerror}"
            raise ImageError(msg, hint=_HINT_HOSTILE) from exc
        try:
            tst = _lstat(tfd, target[-1])
            if tst is None or not stat.S_ISREG(tst.st_mode):
                what = "a missing path" if tst is None else "something that is not a file"
                msg = f"layer entry {shown!r} is a hard link to {member.linkname!r}, {what}"
                raise ImageError(
                    msg, hint="hard links may only point at regular files already in the layer"
                )
            if existing is not None:
                if (existing.st_dev, existing.st_ino) == (tst.st_dev, tst.st_ino):
                    return
                self._remove(pfd, parts[-1])
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            self._mark(parts)
        finally:
            os.close(tfd)

    def _whiteout(self, member: TarMember, parts: tuple[str, ...], pfd: int) -> None:
        name = parts[-1]
        shown = "/".join(parts)
        if name == OPAQUE_MARKER:
            self._opaque(parts[:-1], pfd)
            return
        target = name[len(WHITEOUT_PREFIX) :]
        if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX) or target in ("", ".", ".."):
            msg = f"layer has an invalid whiteout entry {shown!r}"
            raise ImageError(msg, hint=_HINT_HOSTILE)
        if member.type != "file":
            msg = f"layer whiteout {shown!r} is a {member.type}, not an empty file"
            raise ImageError(msg, hint=_HINT_HOSTILE)
        victim = (*parts[:-1], target)
        if victim in self._created:
            return  # a whiteout only hides lower layers' files, never this layer's own
        if _lstat(pfd, target) is not None:
            self._remove(pfd, target)
        if self._overlay:
            self._overlay_whiteout(pfd, target)

    def _opaque(self, parent: tuple[str, ...], pfd: int) -> None:
        if self._overlay:
            key = "user.overlay.opaque" if self._rootless else "trusted.overlay.opaque"
            self._set_dir_xattr(pfd, key, b"y")
            return
        # Applied as if it came before its siblings: this layer's entries survive.
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        try:
            with os.scandir(fd) as it:
                names = [entry.name for entry in it]
            for child in names:
                if (*parent, child) not in self._created:
                    self._remove(fd, child)
        finally:
            os.close(fd)

    def _overlay_whiteout(self, pfd: int, target: str) -> None:
        """Write an overlayfs whiteout: char 0:0, or (no mknod rights) the xattr form."""
        try:
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
            return
        except PermissionError:
            pass
        # Linux >= 6.8 (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque
        # directories"): an empty file with overlay.whiteout, its parent marked opaque "x".
        key = "user.overlay" if self._rootless else "trusted.overlay"
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=pfd
        )
        try:
            os.setxattr(fd, f"{key}.whiteout", b"y")
        finally:
            os.close(fd)
        self._set_dir_xattr(pfd, f"{key}.opaque", b"x", keep=b"y")

    def _set_dir_xattr(self, pfd: int, key: str, value: bytes, keep: bytes | None = None) -> None:
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        try:
            if keep is not None:
                try:
                    if os.getxattr(fd, key) == keep:
                        return
                except OSError:
                    pass
            os.setxattr(fd, key, value)
        finally:
            os.close(fd)

    def _mode(self, member: TarMember) -> int:
        mode = member.mode & 0o7777
        if not self._keep_setid:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        return mode

    def _chown(self, pfd: int, name: str, member: TarMember) -> None:
        if not self._rootless:
            os.chown(name, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)

    @staticmethod
    def _utime(pfd: int, name: str, mtime: int) -> None:
        os.utime(name, ns=(mtime * 10**9, mtime * 10**9), dir_fd=pfd, follow_symlinks=False)

    def _xattrs(self, fd: int, member: TarMember) -> None:
        for key, value in member.xattrs:
            allowed = key in _XATTR_NAMES or (
                key.startswith("user.") and not key.startswith(_XATTR_DENY_PREFIXES)
            )
            if key == "security.capability":
                allowed = self._keep_caps
            if not allowed:
                continue
            try:
                os.setxattr(fd, key, value)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL):
                    raise

    def finalize(self) -> None:
        """Set directory modes and mtimes last, deepest first: adding children changes them."""
        restore = {k: (m, None) for k, m in self._restore.items() if k not in self._dirs}
        todo = {**restore, **{k: (m, t) for k, (m, t) in self._dirs.items()}}
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        for parts in sorted(todo, key=len, reverse=True):
            mode, mtime = todo[parts]
            cached = self._parents.get(parts[:-1])
            try:
                pfd = cached[0] if cached else self._resolver.open_dir(parts[:-1], create=False)
            except OSError:
                continue  # replaced or removed later in the layer
            try:
                fd = os.open(parts[-1] if parts else ".", flags, dir_fd=pfd)
            except OSError:
                continue
            finally:
                if not cached:
                    os.close(pfd)
            try:
                os.fchmod(fd, mode)
                if mtime is not None:
                    os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))
            finally:
                os.close(fd)
