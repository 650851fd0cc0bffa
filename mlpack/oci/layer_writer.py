"""Deterministic layer writer: a directory tree to tar+gzip (or zstd) bytes that depend only on
its content.

The rules are REPRODUCIBILITY.md §1-§2: mlpack writes its own tar headers and its own gzip member
(``layer_compression``), so host metadata (owners, umask, mtimes, readdir order, the time of day)
never reaches a layer.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from mlpack.errors import ImageError
from mlpack.oci.layer_compression import open_sink
from mlpack.progress import reporter

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from mlpack.oci.layer_compression import LayerDigests, Output, Sink
    from mlpack.vocabulary import Compression

BLOCK: Final = 512
_PAX_NAME: Final = b"././@PaxHeader"  # constant, like CPython; never a PID (dotnet/sdk#55689)
_MAX_OCTAL_SIZE: Final = 8**11 - 1  # what the 12-byte ustar size field holds
_MAX_OCTAL_ID: Final = 8**7 - 1  # what the 8-byte uid/gid fields hold
WHITEOUT_PREFIX: Final = ".wh."
OPAQUE_MARKER: Final = ".wh..wh..opq"
# Sort rank of an entry among its siblings: the opaque marker, then whiteouts, then the rest
# (image-spec layer.md: whiteouts SHOULD come before their siblings).
_RANK_OPAQUE: Final = 0
_RANK_WHITEOUT: Final = 1
_RANK_ENTRY: Final = 2

_Kind = Literal["dir", "file", "symlink", "hardlink"]


@dataclass(frozen=True, kw_only=True)
class _Entry:
    path: str  # relative, "/"-separated, no trailing slash
    kind: _Kind
    mode: int
    mtime: int
    uid: int = 0
    gid: int = 0
    size: int = 0
    linkname: str = ""
    source: Path | None = None  # host path of a regular file's data


def write_layer(  # noqa: PLR0913  one keyword-only knob per layer option, each with a default
    tree: Path,
    out: Output,
    *,
    source_date_epoch: int,
    clamp_mtime: bool = False,
    level: int | None = None,
    whiteouts: Iterable[str] = (),
    opaque_dirs: Iterable[str] = (),
    modes: Mapping[str, int] | None = None,
    on_special: Literal["error", "skip"] = "error",
    preserve_metadata: bool = False,
    blocks: bool = False,
    compression: Compression = "gzip",
) -> LayerDigests:
    """Write ``tree`` as a compressed layer to ``out`` and return its digests.

    The bytes depend only on the tree's names, contents, link targets and exec bits, on
    ``source_date_epoch`` (and with ``clamp_mtime`` the files' mtimes, clamped to it), the
    compressor, its level and its library's version. ``whiteouts`` are relative paths deleted from lower layers
    (written as ``.wh.<name>``); ``opaque_dirs`` get a ``.wh..wh..opq`` marker; ``modes`` maps
    relative paths to exact modes (the only way to get setuid/setgid/sticky bits);
    ``on_special`` decides what a device, FIFO or socket in the tree does.
    ``compression`` is gzip (``level`` 0-9, default 6) or zstd (level pinned; opt-in, for
    registries and engines that take ``tar+zstd`` layers).
    ``preserve_metadata`` keeps each entry's exact permission bits and numeric uid/gid: only
    for re-packing a base rootfs (``/tmp`` 1777, setuid ``su``, ``/etc/shadow`` 0640 root:42),
    whose metadata then becomes an input of the layer.
    ``blocks`` deflates gzip in parallel, pigz's way (``layer_compression``): other bytes than
    the single stream's, the same for any number of cores; a different compressor identity.
    zstd always compresses on every core, with the same bytes for any number of them.
    """
    if source_date_epoch < 0 or source_date_epoch > _MAX_OCTAL_SIZE:
        msg = f"SOURCE_DATE_EPOCH {source_date_epoch} cannot be stored in a tar header"
        raise ImageError(msg, hint="set SOURCE_DATE_EPOCH to a non-negative Unix time")
    entries = _collect(
        tree,
        sde=source_date_epoch,
        clamp=clamp_mtime,
        whiteouts=tuple(whiteouts),
        opaque_dirs=tuple(opaque_dirs),
        modes=dict(modes or {}),
        on_special=on_special,
        preserve=preserve_metadata,
    )
    sink = open_sink(out, compression, level=level, blocks=blocks)
    try:
        for entry in entries:
            _write_entry(sink, entry)
        sink.write(b"\0" * (2 * BLOCK))
        return sink.close()
    finally:
        sink.shutdown()


def _collect(
    tree: Path,
    *,
    sde: int,
    clamp: bool,
    whiteouts: tuple[str, ...],
    opaque_dirs: tuple[str, ...],
    modes: dict[str, int],
    on_special: Literal["error", "skip"],
    preserve: bool,
) -> list[_Entry]:
    """Walk ``tree`` and return every entry, sorted, with normalised metadata."""
    try:
        top = os.lstat(tree)
    except OSError as exc:
        msg = f"cannot read layer tree {tree}: {exc.strerror}"
        raise ImageError(msg, hint="check that the staging directory exists") from exc
    if not stat.S_ISDIR(top.st_mode):
        msg = f"layer tree {tree} is not a directory"
        raise ImageError(msg, hint="pass the staging directory whose contents form the layer")
    entries = _TreeEntries(tree, sde=sde, clamp=clamp, modes=modes, preserve=preserve)
    keyed: dict[tuple[tuple[int, bytes], ...], _Entry] = {}
    skipped: list[str] = []
    walked: list[tuple[str, os.stat_result]] = list(_walk(str(tree), ""))
    # Hard links: the first path in sort order carries the data, so sort before deciding.
    walked.sort(key=lambda item: _sort_key(item[0]))
    for rel, st in walked:
        entry = entries.entry(rel, st)
        if entry is None:
            what = _special_kind(st.st_mode)
            if on_special == "skip":
                skipped.append(rel)
                continue
            msg = f"layer tree {tree} contains {rel!r}, a {what}; layers hold no {what}s"
            raise ImageError(
                msg, hint="remove it from the staging tree (or pass on_special='skip')"
            )
        keyed[_sort_key(rel)] = entry
    if skipped:
        reporter().notice(
            f"layer: skipped {len(skipped)} device/FIFO/socket entries: {', '.join(skipped[:5])}"
        )
    unknown = sorted(set(modes) - {e.path for e in keyed.values()})
    if unknown:
        msg = f"mode overrides name paths that are not in the layer tree: {', '.join(unknown)}"
        raise ImageError(msg, hint="modes keys are paths relative to the tree, e.g. 'tmp'")
    _add_whiteouts(keyed, whiteouts, opaque_dirs, sde=sde)
    return [keyed[k] for k in sorted(keyed)]


class _TreeEntries:
    """Turns what the walk saw into tar entries: normalised metadata, hard links detected."""

    def __init__(
        self, tree: Path, *, sde: int, clamp: bool, modes: dict[str, int], preserve: bool
    ) -> None:
        self._tree = tree
        self._sde = sde
        self._clamp = clamp
        self._modes = modes
        self._preserve = preserve
        self._first_link: dict[tuple[int, int], str] = {}

    def _mtime(self, st: os.stat_result) -> int:
        return max(0, min(int(st.st_mtime), self._sde)) if self._clamp else self._sde

    def entry(self, rel: str, st: os.stat_result) -> _Entry | None:
        """The entry for ``rel``; None for a device, FIFO or socket (the caller decides)."""
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(WHITEOUT_PREFIX):
            msg = f"layer tree {self._tree} contains {rel!r}, a name reserved for whiteouts"
            raise ImageError(msg, hint="rename the file; '.wh.' names delete files in images")
        override = self._modes.get(rel)
        if self._preserve and override is None and not stat.S_ISLNK(st.st_mode):
            override = stat.S_IMODE(st.st_mode)
        uid, gid = (st.st_uid, st.st_gid) if self._preserve else (0, 0)
        mtime = self._mtime(st)
        if stat.S_ISDIR(st.st_mode):
            mode = _mode(override, 0o755)
            return _Entry(path=rel, kind="dir", mode=mode, mtime=mtime, uid=uid, gid=gid)
        if stat.S_ISLNK(st.st_mode):
            # Path.readlink() would normalise the target; it must stay verbatim.
            target = os.readlink(self._tree / rel)  # noqa: PTH115
            _check_utf8(target, self._tree)
            return _Entry(
                path=rel, kind="symlink", mode=0o777, mtime=mtime, linkname=target, uid=uid, gid=gid
            )
        if stat.S_ISREG(st.st_mode):
            mode = _mode(override, 0o755 if st.st_mode & 0o111 else 0o644)
            return self._file(rel, st, mode=mode, mtime=mtime, owner=(uid, gid))
        return None

    def _file(
        self, rel: str, st: os.stat_result, *, mode: int, mtime: int, owner: tuple[int, int]
    ) -> _Entry:
        """A regular file, or a hard link to the first path (in sort order) of the same inode."""
        uid, gid = owner
        ident = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and ident in self._first_link:
            link = self._first_link[ident]
            return _Entry(
                path=rel, kind="hardlink", mode=mode, mtime=mtime, linkname=link, uid=uid, gid=gid
            )
        if st.st_nlink > 1:
            self._first_link[ident] = rel
        source = self._tree / rel
        return _Entry(
            path=rel,
            kind="file",
            mode=mode,
            mtime=mtime,
            size=st.st_size,
            source=source,
            uid=uid,
            gid=gid,
        )


def _add_whiteouts(
    keyed: dict[tuple[tuple[int, bytes], ...], _Entry],
    whiteouts: tuple[str, ...],
    opaque_dirs: tuple[str, ...],
    *,
    sde: int,
) -> None:
    """Add ``.wh.`` and opaque markers to ``keyed``, with explicit entries for their parents."""
    for raw, marker in [(w, None) for w in whiteouts] + [(d, OPAQUE_MARKER) for d in opaque_dirs]:
        rel = _clean_rel(raw)
        parent, _, base = rel.rpartition("/")
        if marker is None:
            wh_name, rank = WHITEOUT_PREFIX + base, _RANK_WHITEOUT
        else:
            parent, wh_name, rank = rel, marker, _RANK_OPAQUE
        wh_path = f"{parent}/{wh_name}" if parent else wh_name
        key = (_sort_key(parent) if parent else ()) + ((rank, wh_name.encode()),)
        keyed[key] = _Entry(path=wh_path, kind="file", mode=0o644, mtime=sde)
        # Parents of a whiteout must exist in the layer too (explicit parent entries).
        parts = wh_path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dir_rel = "/".join(parts[:i])
            dkey = _sort_key(dir_rel)
            if dkey not in keyed:
                keyed[dkey] = _Entry(path=dir_rel, kind="dir", mode=0o755, mtime=sde)
            elif keyed[dkey].kind != "dir":
                msg = f"whiteout {raw!r} needs {dir_rel!r} to be a directory in the layer"
                raise ImageError(msg, hint="a whiteout's parent cannot be a file of the same layer")


def _walk(root: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(relative path, lstat)`` for everything under ``root``, never following links."""
    stack = [prefix]
    while stack:
        rel = stack.pop()
        with os.scandir(f"{root}/{rel}" if rel else root) as it:
            children = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        for name, st in children:
            _check_utf8(name, Path(root))
            child = f"{rel}/{name}" if rel else name
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)


def _sort_key(rel: str) -> tuple[tuple[int, bytes], ...]:
    """Order by UTF-8 path components, so parents precede children whatever the locale."""
    return tuple((_RANK_ENTRY, part.encode()) for part in rel.split("/"))


def _clean_rel(raw: str) -> str:
    """Validate a whiteout path given by the caller; return it normalised."""
    parts = [p for p in raw.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\0" in raw:
        msg = f"invalid whiteout path {raw!r}"
        raise ImageError(msg, hint="whiteouts are relative paths inside the image, without '..'")
    if parts[-1].startswith(WHITEOUT_PREFIX):
        msg = f"whiteout path {raw!r} already starts with '.wh.'"
        raise ImageError(msg, hint="pass the path to delete; the writer adds the '.wh.' prefix")
    return "/".join(parts)


def _check_utf8(name: str, tree: Path) -> None:
    try:
        name.encode()
    except UnicodeEncodeError as exc:
        shown = name.encode("utf-8", "backslashreplace").decode()
        msg = f"layer tree {tree} has a name that is not UTF-8: {shown!r}"
        raise ImageError(msg, hint="rename it; image layers carry UTF-8 names") from exc


def _mode(override: int | None, default: int) -> int:
    if override is None:
        return default
    if not 0 <= override <= 0o7777:
        msg = f"mode override {override:o} is not a permission mode"
        raise ImageError(msg, hint="give modes as e.g. 0o1777")
    return override


def _special_kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device node"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    return "socket"


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def _header(
    name: bytes,
    *,
    mode: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes,
    uid: int = 0,
    gid: int = 0,
) -> bytes:
    fields = (
        name.ljust(100, b"\0"),
        _octal(mode, 8),
        _octal(uid if uid <= _MAX_OCTAL_ID else 0, 8),
        _octal(gid if gid <= _MAX_OCTAL_ID else 0, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # checksum placeholder
        typeflag,
        linkname.ljust(100, b"\0"),
        b"ustar\x0000",
        b"\0" * 32,  # uname: empty, never the host's passwd
        b"\0" * 32,  # gname
        _octal(0, 8),  # devmajor
        _octal(0, 8),  # devminor
        b"\0" * 155,  # prefix: unused; long names go to PAX
        b"\0" * 12,
    )
    block = bytearray(b"".join(fields))
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def _fits_ustar(value: bytes) -> bool:
    return len(value) <= 100 and value.isascii()


def _write_entry(sink: Sink, entry: _Entry) -> None:
    name = entry.path + "/" if entry.kind == "dir" else entry.path
    name_b = name.encode()
    link_b = entry.linkname.encode()
    records = b""
    # PAX only when needed, keys always in this order.
    if not _fits_ustar(name_b):
        records += _pax_record("path", name_b)
    if not _fits_ustar(link_b):
        records += _pax_record("linkpath", link_b)
    if entry.size > _MAX_OCTAL_SIZE:
        records += _pax_record("size", str(entry.size).encode())
    if entry.uid > _MAX_OCTAL_ID:
        records += _pax_record("uid", str(entry.uid).encode())
    if entry.gid > _MAX_OCTAL_ID:
        records += _pax_record("gid", str(entry.gid).encode())
    if records:
        sink.write(
            _header(_PAX_NAME, mode=0o644, size=len(records), mtime=0, typeflag=b"x", linkname=b"")
        )
        sink.write(_pad(records))
    typeflag = {"dir": b"5", "file": b"0", "symlink": b"2", "hardlink": b"1"}[entry.kind]
    sink.write(
        _header(
            _ascii_stub(name_b),
            mode=entry.mode,
            size=entry.size if entry.size <= _MAX_OCTAL_SIZE else 0,
            mtime=entry.mtime,
            typeflag=typeflag,
            linkname=_ascii_stub(link_b),
            uid=entry.uid,
            gid=entry.gid,
        )
    )
    if entry.source is not None:
        _copy_file(sink, entry)


def _ascii_stub(value: bytes) -> bytes:
    """Return what goes into a 100-byte ustar field: the value, or a fixed stub beside PAX."""
    if _fits_ustar(value):
        return value
    return value.decode().encode("ascii", "replace")[:100]


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def _copy_file(sink: Sink, entry: _Entry) -> None:
    """The file's bytes, exactly ``entry.size`` of them (a file that changed size is an error)."""
    assert entry.source is not None  # only files have a source
    try:
        fd = os.open(entry.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        msg = f"cannot read {entry.path} for the layer: {exc.strerror}"
        raise ImageError(msg, hint="the staging tree changed while the layer was written") from exc

    def read(view: memoryview) -> int:
        try:
            return os.readv(fd, [view])
        except OSError as exc:
            msg = f"cannot read {entry.path} for the layer: {exc.strerror}"
            raise ImageError(msg, hint="check the staging tree's permissions") from exc

    try:
        # A write error (a full disk) is the caller's to report.
        copied = sink.read_from(read, entry.size)
        grew = copied == entry.size and bool(read(memoryview(bytearray(1))))
    finally:
        os.close(fd)
    if copied != entry.size or grew:
        msg = f"{entry.path} changed size while the layer was written"
        raise ImageError(msg, hint="do not modify the staging tree while a layer is written")
    sink.write(b"\0" * (-entry.size % BLOCK))
