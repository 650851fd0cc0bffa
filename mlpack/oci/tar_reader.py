"""A strict streaming tar header parser with caps, so a hostile layer cannot exhaust memory.

It only parses: ustar, PAX (``x``; a global ``g`` header is read and ignored, as moby's and Go's
readers do) and GNU long names (``L``/``K``), nothing is written here. ``tarfile`` is not used: its stream mode reads a PAX header of any declared size into
memory, and its extraction paths have a long CVE history (SECURITY-AND-ISOLATION.md §8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

from mlpack.errors import ImageError

if TYPE_CHECKING:
    from collections.abc import Iterator

BLOCK: Final = 512
_CHUNK: Final = 1 << 20

MemberType = Literal["file", "hardlink", "symlink", "chardev", "blockdev", "dir", "fifo"]
_TYPES: Final[dict[bytes, MemberType]] = {
    b"0": "file",
    b"\0": "file",
    b"7": "file",  # contiguous file: a regular file everywhere that matters
    b"1": "hardlink",
    b"2": "symlink",
    b"3": "chardev",
    b"4": "blockdev",
    b"5": "dir",
    b"6": "fifo",
}
_HIGH_BYTES: Final = bytes(range(128, 256))
# Owner ids a layer may carry: runc's range (uid_t -1 means "unchanged" to the kernel).
MAX_ID: Final = 2**31 - 1
# Modification times that fit a nanosecond timestamp (utimensat's signed 64-bit ns).
_MAX_MTIME: Final = (2**63 - 1) // 10**9
_MAX_DEV: Final = 2**32 - 1
_HINT: Final = "the layer blob is corrupt or hostile; re-pull it or rebuild the image"


@dataclass(kw_only=True)
class _Extensions:
    """The extended headers read so far for the next member, and their bytes all together."""

    pax: dict[str, bytes] = field(default_factory=dict)
    size: int = 0
    long_name: bytes | None = None
    long_link: bytes | None = None


class Readable(Protocol):
    """A byte source: ``read(n)`` returns at most ``n`` bytes, ``b""`` only at the end."""

    def read(self, size: int, /) -> bytes:
        """Return up to ``size`` bytes."""
        ...


@dataclass(frozen=True, kw_only=True)
class TarMember:
    """One archive entry as its headers describe it (names still raw, not yet validated)."""

    name: str  # UTF-8 decoded with surrogateescape, so non-UTF-8 bytes survive
    type: MemberType
    mode: int
    uid: int
    gid: int
    size: int  # data bytes that follow (0 for everything but regular files)
    mtime: int  # whole seconds
    linkname: str
    devmajor: int
    devminor: int
    xattrs: tuple[tuple[str, bytes], ...]


class TarReader:
    """Iterate over a tar stream's members; read each file's data before the next ``next()``."""

    def __init__(
        self, source: Readable, *, max_header_bytes: int = 64 << 10, max_path_bytes: int = 4096
    ) -> None:
        self._src = source
        self._max_header = max_header_bytes
        self._max_path = max_path_bytes
        self._offset = 0  # bytes consumed from the stream
        self._pending = 0  # data + padding of the current member still unread
        self._data_left = 0
        self._global_bytes = 0
        # One PAX header plus a GNU long name and long link: the most one member needs.
        self._max_ext = max_header_bytes + 2 * (max_path_bytes + 1)
        self.ended = False

    def _read_exact(self, n: int, what: str) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n:
            data = self._src.read(n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        self._offset += got
        buf = b"".join(parts)
        if got != n:
            msg = f"layer tar is truncated: {what} at offset {self._offset - got} is cut short"
            raise ImageError(msg, hint=_HINT)
        return buf

    def _skip(self, n: int) -> None:
        while n:
            step = min(n, _CHUNK)
            self._read_exact(step, "member data")
            n -= step

    def read_data(self) -> Iterator[bytes]:
        """Yield the current member's data in chunks."""
        while self._data_left:
            data = self._src.read(min(self._data_left, _CHUNK))
            if not data:
                msg = f"layer tar is truncated inside member data at offset {self._offset}"
                raise ImageError(msg, hint=_HINT)
            self._offset += len(data)
            self._data_left -= len(data)
            self._pending -= len(data)
            yield data

    def __iter__(self) -> Iterator[TarMember]:
        while True:
            member = self.next()
            if member is None:
                return
            yield member

    def next(self) -> TarMember | None:
        """Return the next member, or None at the end of the archive."""
        if self.ended:
            return None
        self._skip(self._pending)
        self._pending = self._data_left = 0
        ext = _Extensions()
        while True:
            start = self._offset
            block = self._header_block()
            if not block or block == b"\0" * BLOCK:
                # End of archive (two zero blocks; a bare EOF is tolerated like Go and tarfile).
                if ext.pax or ext.long_name is not None or ext.long_link is not None:
                    msg = f"layer tar ends after an extended header at offset {start}"
                    raise ImageError(msg, hint=_HINT)
                self.ended = True
                return None
            _verify_checksum(block, start)
            typeflag = block[156:157]
            size = _number(block[124:136], "size", start)
            if typeflag in (b"x", b"g", b"L", b"K"):
                self._read_extension(ext, typeflag, size, start)
                continue
            kind = _TYPES.get(typeflag)
            if kind is None:
                msg = (
                    f"layer tar has an unsupported entry type {typeflag!r} at offset {start} "
                    f"({_field(block[0:100])!r})"
                )
                raise ImageError(msg, hint="only files, dirs, links and devices can be applied")
            return self._member(
                block,
                kind=kind,
                size=size,
                pax=ext.pax,
                long_name=ext.long_name,
                long_link=ext.long_link,
            )

    def _header_block(self) -> bytes:
        """The next 512-byte header, or ``b""`` at a bare end of file (a partial one is an error)."""
        first = self._src.read(BLOCK)
        if not first:
            return b""
        rest = self._read_exact(BLOCK - len(first), "a header")
        self._offset += len(first)
        return first + rest

    def _read_extension(self, ext: _Extensions, typeflag: bytes, size: int, start: int) -> None:
        """Read one PAX or GNU extended header into ``ext``, within the caps on header bytes."""
        cap = self._max_header if typeflag in (b"x", b"g") else self._max_path + 1
        if size > cap:
            msg = f"layer tar has a {size}-byte extended header at offset {start} (limit {cap})"
            raise ImageError(msg, hint="raise max_header_bytes only for trusted layers")
        ext.size += size
        if typeflag == b"g":
            self._global_bytes += size
        if ext.size > self._max_ext or self._global_bytes > self._max_header:
            msg = f"layer tar has too many extended headers before offset {start}"
            raise ImageError(msg, hint="raise max_header_bytes only for trusted layers")
        body = self._read_exact(size, "an extended header")
        self._skip(-size % BLOCK)
        if typeflag == b"x":
            ext.pax.update(_parse_pax(body, start))
        elif typeflag == b"g":
            # Validated as Go's reader does, then ignored as moby's applier does: a global
            # ``path`` must not rename later entries (the layer would unpack differently here
            # than under Docker).
            _parse_pax(body, start)
        elif typeflag == b"L":
            ext.long_name = body.split(b"\0", 1)[0]
        else:
            ext.long_link = body.split(b"\0", 1)[0]

    def _member(
        self,
        block: bytes,
        *,
        kind: MemberType,
        size: int,
        pax: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> TarMember:
        start = self._offset - BLOCK
        name = _field(block[0:100])
        if block[257:263] == b"ustar\0":  # POSIX ustar: the prefix field extends the name
            prefix = _field(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        name = pax.get("path", long_name if long_name is not None else name)
        link = pax.get("linkpath", long_link if long_link is not None else _field(block[157:257]))
        for what, value in (("name", name), ("link target", link)):
            if b"\0" in value:
                msg = f"layer tar entry at offset {start} has a NUL byte in its {what}"
                raise ImageError(msg, hint=_HINT)
            if len(value) > self._max_path:
                msg = f"layer tar entry at offset {start} has a {len(value)}-byte {what}"
                raise ImageError(msg, hint=f"paths are limited to {self._max_path} bytes")
        if "size" in pax:
            size = _pax_int(pax["size"], "size", start)
        if any(key.startswith("GNU.sparse") for key in pax):
            msg = f"layer tar entry {name!r} at offset {start} is a sparse file"
            raise ImageError(msg, hint="sparse tar entries are not supported in layers")
        uid = _pax_int(pax["uid"], "uid", start) if "uid" in pax else _number(block[108:116], "", 0)
        gid = _pax_int(pax["gid"], "gid", start) if "gid" in pax else _number(block[116:124], "", 0)
        mtime = _number(block[136:148], "mtime", start, signed=True)
        if "mtime" in pax:
            mtime = _pax_int(pax["mtime"].split(b".", 1)[0], "mtime", start, signed=True)
        _in_range("uid", uid, 0, MAX_ID, start)
        _in_range("gid", gid, 0, MAX_ID, start)
        _in_range("mtime", mtime, -_MAX_MTIME, _MAX_MTIME, start)
        devmajor = _number(block[329:337], "devmajor", start) if block[329] else 0
        devminor = _number(block[337:345], "devminor", start) if block[337] else 0
        _in_range("devmajor", devmajor, 0, _MAX_DEV, start)
        _in_range("devminor", devminor, 0, _MAX_DEV, start)
        xattrs = tuple(
            sorted(
                (key.removeprefix("SCHILY.xattr."), value)
                for key, value in pax.items()
                if key.startswith("SCHILY.xattr.")
            )
        )
        data = size if kind == "file" else 0  # header-only types carry no data (Go, tarfile)
        self._data_left = data
        self._pending = data + (-data % BLOCK)
        return TarMember(
            name=name.decode("utf-8", "surrogateescape"),
            type=kind,
            mode=_number(block[100:108], "mode", start) & 0o7777,
            uid=uid,
            gid=gid,
            size=data,
            mtime=mtime,
            linkname=link.decode("utf-8", "surrogateescape"),
            devmajor=devmajor,
            devminor=devminor,
            xattrs=xattrs,
        )


def _field(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _verify_checksum(block: bytes, start: int) -> None:
    stored = _number(block[148:156], "checksum", start)
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32  # sum() of bytes runs in C
    if stored == unsigned:
        return
    # Old tars summed signed chars: each byte above 127 counts 256 less.
    outside = block[:148] + block[156:]
    high = len(outside) - len(outside.translate(None, _HIGH_BYTES))
    if stored != unsigned - 256 * high:
        msg = f"layer tar header at offset {start} has a bad checksum (not a tar stream?)"
        raise ImageError(msg, hint=_HINT)


def _number(raw: bytes, what: str, start: int, *, signed: bool = False) -> int:
    """Decode a numeric header field: octal text, or GNU base-256 when the top bit is set."""
    if raw and raw[0] & 0x80:
        # The bits after the marker bit are a two's complement number (Go's parseNumeric).
        value = int.from_bytes(raw[1:], "big") | ((raw[0] & 0x7F) << (8 * (len(raw) - 1)))
        if raw[0] & 0x40:
            value -= 1 << (8 * len(raw) - 1)
    else:
        text = raw.split(b"\0", 1)[0].strip(b" ")
        try:
            value = int(text, 8) if text else 0
        except ValueError:
            msg = f"layer tar header at offset {start} has a malformed {what} field {raw!r}"
            raise ImageError(msg, hint=_HINT) from None
    if value < 0 and not signed:
        msg = f"layer tar header at offset {start} has a negative {what} ({value})"
        raise ImageError(msg, hint=_HINT)
    return value


def _in_range(what: str, value: int, low: int, high: int, start: int) -> None:
    """Refuse a number the kernel cannot take (it would end in OverflowError, not a message)."""
    if not low <= value <= high:
        msg = f"layer tar entry at offset {start} has an out-of-range {what} ({value})"
        raise ImageError(msg, hint=f"{what} must lie in {low}..{high}; {_HINT}")


def _pax_int(raw: bytes, what: str, start: int, *, signed: bool = False) -> int:
    text = raw.decode("ascii", "replace")
    body = text[1:] if signed and text.startswith("-") else text
    if not body.isdigit() or len(body) > 20:
        msg = f"layer tar PAX record {what}={text!r} at offset {start} is not a valid number"
        raise ImageError(msg, hint=_HINT)
    return int(text)


def _parse_pax(body: bytes, start: int) -> dict[str, bytes]:
    """Parse ``<len> <key>=<value>`` records; malformed lengths reject the layer."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(body):
        if body[pos] == 0:  # NUL padding after the last record
            break
        space = body.find(b" ", pos, pos + 21)
        length_text = body[pos:space] if space > 0 else b""
        if not length_text.isdigit():
            msg = f"layer tar PAX header at offset {start} has a malformed record"
            raise ImageError(msg, hint=_HINT)
        end = pos + int(length_text)
        record = body[space + 1 : end]
        if end > len(body) or end <= space + 1 or not record.endswith(b"\n") or b"=" not in record:
            msg = f"layer tar PAX header at offset {start} has a record of a wrong length"
            raise ImageError(msg, hint=_HINT)
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records
