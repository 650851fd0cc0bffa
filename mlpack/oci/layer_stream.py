"""Verified, bounded layer bytes: the blob hashed and size-checked, decompressed (gzip or
zstd), the tar hashed.

The compressed side never reads past its descriptor's size; the uncompressed side is hashed
(the diff_id) and budgeted (max bytes, expansion ratio, free disk space) while a helper thread
decompresses ahead of the applier. Nothing here touches the unpack root but ``statvfs``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Final

from mlpack.errors import ImageError
from mlpack.oci.layer_compression import zstandard, zstd_reader_limits
from mlpack.oci.tar_reader import TarReader

if TYPE_CHECKING:
    from pathlib import Path

_CHUNK: Final = 1 << 20
_GZIP_MAGIC: Final = b"\x1f\x8b"
_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_SKIPPABLE_MAGIC: Final = 0x184D2A50  # to 0x184D2A5F (RFC 8878 §3.1.2)
_HINT_HOSTILE: Final = "the layer is malformed or hostile; re-pull it or rebuild the image"


@dataclass(frozen=True, kw_only=True)
class ExpansionLimit:
    """How far a layer may expand: ``ratio`` times its compressed size plus ``floor`` bytes.

    A gzip bomb (2 MB that inflate to 2 GiB) stops here instead of filling the disk. Ordinary
    layers expand 2-5x; the floor lets a small layer carry a large, very compressible file.
    ``MLPACK_MAX_LAYER_EXPANSION`` sets the ratio (default 100).
    """

    ratio: int = 100
    floor: int = 1 << 30

    @classmethod
    def from_env(cls) -> ExpansionLimit:
        """The limit ``MLPACK_MAX_LAYER_EXPANSION`` (a whole ratio) sets, else the default."""
        text = os.environ.get("MLPACK_MAX_LAYER_EXPANSION", "").strip()
        if not text:
            return cls()
        if not text.isdigit() or int(text) < 1:
            msg = f"MLPACK_MAX_LAYER_EXPANSION={text!r} is not a whole number of 1 or more"
            raise ImageError(msg, hint="set it to a ratio such as 100, or unset it")
        return cls(ratio=int(text))


def verify(
    compressed: BlobReader,
    tar_stream: TarStream,
    expected_digest: str | None,
    expected_size: int | None,
    expected_diff_id: str | None,
) -> None:
    """Raise ImageError unless the whole blob matched its descriptor and config."""
    if expected_size is not None and compressed.count != expected_size:
        msg = f"layer blob has {compressed.count} bytes, its descriptor says {expected_size}"
        raise ImageError(msg, hint="the blob is truncated; re-pull it")
    if expected_digest is not None and compressed.digest() != expected_digest:
        msg = f"layer digest mismatch: expected {expected_digest}, got {compressed.digest()}"
        raise ImageError(msg, hint="the blob is corrupt or was tampered with; re-pull it")
    if expected_diff_id is not None and tar_stream.digest() != expected_diff_id:
        msg = f"layer diff_id mismatch: expected {expected_diff_id}, got {tar_stream.digest()}"
        raise ImageError(msg, hint="the image config does not match this layer; re-pull it")


class BlobReader:
    """The compressed side: hash and count, and never read past ``expected_size + 1`` bytes."""

    def __init__(self, raw: BinaryIO, *, expected_size: int | None, algorithm: str) -> None:
        self._raw = raw
        self.expected = expected_size
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.count = 0

    def read(self, size: int) -> bytes:
        """Return up to ``size`` bytes of the blob, hashed and counted."""
        if self.expected is not None:
            size = min(size, self.expected + 1 - self.count)
            if size <= 0:
                return b""
        data = self._raw.read(size)
        if data:
            self._hash.update(data)
            self.count += len(data)
            if self.expected is not None and self.count > self.expected:
                msg = f"layer blob is larger than its descriptor's size ({self.expected} bytes)"
                raise ImageError(msg, hint="the blob does not match the manifest; re-pull it")
        return data

    def drain(self) -> None:
        """Read the rest of the blob, so its digest and size cover every byte."""
        while self.read(_CHUNK):
            pass

    def digest(self) -> str:
        """The digest of the bytes read so far."""
        return f"{self._algorithm}:{self._hash.hexdigest()}"


class _Source:
    """Uncompressed bytes for the tar parser: ``read(n)`` gives at most ``n``, ``b""`` at end."""

    def read(self, size: int) -> bytes:
        raise NotImplementedError


class _Plain(_Source):
    def __init__(self, raw: BlobReader, head: bytes) -> None:
        self._raw = raw
        self._head = head

    def read(self, size: int) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._raw.read(size)


class _Gunzip(_Source):
    """Multi-member gzip, decompressed with a bound on every output chunk (no bomb in memory)."""

    def __init__(self, raw: BlobReader, head: bytes) -> None:
        self._raw = raw
        self._d = zlib.decompressobj(31)
        self._input = head

    def read(self, size: int) -> bytes:
        while True:
            if self._d.eof:
                rest = self._d.unused_data + self._input
                self._input = b""
                if not rest:
                    rest = self._raw.read(_CHUNK)
                    if not rest:
                        return b""
                if len(rest) < 2:
                    rest += self._raw.read(1)
                if rest[:2] != _GZIP_MAGIC:
                    msg = "layer blob has trailing data after its gzip stream"
                    raise ImageError(msg, hint=_HINT_HOSTILE)
                self._d = zlib.decompressobj(31)
                self._input = rest
            data = self._d.unconsumed_tail or self._input
            self._input = b""
            if not data:
                data = self._raw.read(_CHUNK)
                if not data:
                    msg = "layer blob ends inside its gzip stream (truncated)"
                    raise ImageError(msg, hint="re-pull the layer")
            try:
                out = self._d.decompress(data, size)
            except zlib.error as exc:
                msg = f"layer blob is not valid gzip: {exc}"
                raise ImageError(msg, hint=_HINT_HOSTILE) from exc
            if out:
                return out


class _Unzstd(_Source):
    """zstd frames, one after another, read a bounded chunk at a time (no bomb in memory).

    zstd's reader never returns more than asked for, and refuses windows past 128 MiB (the
    memory one stream may take). It takes a stream cut short inside a frame for a clean end,
    so the frame headers are followed on the way in (``_ZstdFrames``) to tell the two apart.
    """

    def __init__(self, raw: BlobReader, head: bytes) -> None:
        zstd = zstandard()
        self._error: type[Exception] = zstd.ZstdError
        self._frames = _ZstdFrames()
        self._reader = zstd.ZstdDecompressor(**zstd_reader_limits()).stream_reader(
            _Observed(_Plain(raw, head), self._frames), read_size=_CHUNK, read_across_frames=True
        )

    def read(self, size: int) -> bytes:
        try:
            data: bytes = self._reader.read(size)
        except self._error as exc:
            msg = f"layer blob is not valid zstd: {exc}"
            raise ImageError(msg, hint=_HINT_HOSTILE) from exc
        if not data and not self._frames.complete:
            msg = "layer blob ends inside its zstd stream (truncated)"
            raise ImageError(msg, hint="re-pull the layer")
        return data


class _Observed(_Source):
    """Compressed bytes on their way to zstd's reader, shown to the frame follower."""

    def __init__(self, source: _Source, frames: _ZstdFrames) -> None:
        self._source = source
        self._frames = frames

    def read(self, size: int) -> bytes:
        data = self._source.read(size)
        self._frames.feed(data)
        return data


class _ZstdFrames:
    """Follows zstd's frame and block headers (RFC 8878 §3.1) without decoding the blocks, so
    the end of the stream can be checked to fall between two frames.
    """

    def __init__(self) -> None:
        self._state = "magic"
        self._want = 4  # bytes of the header being read
        self._header = bytearray()
        self._skip = 0  # bytes of block content (or a skippable frame) still to pass over
        self._checksum = False
        self.frames = 0

    @property
    def complete(self) -> bool:
        """Whether what was fed so far is whole frames, at least one."""
        return self.frames > 0 and self._state == "magic" and not self._header and not self._skip

    def feed(self, data: bytes) -> None:
        """Follow the headers in the next compressed bytes."""
        pos = 0
        while pos < len(data):
            if self._skip:
                step = min(self._skip, len(data) - pos)
                self._skip -= step
                pos += step
                continue
            step = min(self._want - len(self._header), len(data) - pos)
            self._header += data[pos : pos + step]
            pos += step
            if len(self._header) == self._want:
                header = bytes(self._header)
                self._header.clear()
                self._parse(header)

    def _parse(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        if self._state == "magic":
            if header == _ZSTD_MAGIC:
                self._state, self._want = "descriptor", 1
            elif value >> 4 == _SKIPPABLE_MAGIC >> 4:
                self._state, self._want = "skippable", 4
            else:
                msg = "layer blob is not valid zstd: data after its frames is not a zstd frame"
                raise ImageError(msg, hint=_HINT_HOSTILE)
        elif self._state == "descriptor":
            single = bool(value & 0x20)
            self._checksum = bool(value & 0x04)
            size_bytes = (1 if single else 0, 2, 4, 8)[value >> 6]
            rest = (0 if single else 1) + (0, 1, 2, 4)[value & 0x03] + size_bytes
            self._state, self._want = ("header", rest) if rest else ("block", 3)
        elif self._state == "header":
            self._state, self._want = "block", 3
        elif self._state == "block":
            kind, size = (value >> 1) & 0x03, value >> 3
            self._skip = 1 if kind == 1 else size  # an RLE block stores one byte
            if value & 1:  # the frame's last block
                self._end_frame(checksum=self._checksum)
        elif self._state == "checksum":
            self._end_frame(checksum=False)
        else:  # skippable: the frame's length, then that many bytes
            self._skip = value
            self._end_frame(checksum=False)

    def _end_frame(self, *, checksum: bool) -> None:
        if checksum:
            self._state, self._want = "checksum", 4
            return
        self.frames += 1
        self._state, self._want = "magic", 4


def decompressor(raw: BlobReader) -> _Source:
    """Pick the decompressor from the stream's magic, as containerd does."""
    head = b""
    while len(head) < 4:
        data = raw.read(4 - len(head))
        if not data:
            break
        head += data
    if head.startswith(_GZIP_MAGIC):
        return _Gunzip(raw, head)
    if head == _ZSTD_MAGIC or int.from_bytes(head, "little") >> 4 == _SKIPPABLE_MAGIC >> 4:
        return _Unzstd(raw, head)
    return _Plain(raw, head)


def stored_layer(raw: BinaryIO) -> TarReader:
    """A tar reader over a stored layer blob (gzip, zstd or plain), to list or read it without unpacking.

    The blob is already verified in the store, so it is not hashed against a descriptor here, and
    nothing is written, so no disk budget applies; the reader's caps still bound each header.
    """
    return TarReader(decompressor(BlobReader(raw, expected_size=None, algorithm="sha256")))


class Budget:
    """Bound the uncompressed bytes: max_bytes, the expansion ratio, and the disk's free space.

    Free space is read before the first byte and again every ``_SPACE_CHECK`` bytes, so layers
    unpacked side by side (or another writer) cannot fill the store's filesystem either.
    """

    _SPACE_CHECK: Final = 64 << 20
    _RESERVE: Final = 8 << 20  # left free for the store's own small writes

    def __init__(
        self, root: Path, compressed: BlobReader, *, max_bytes: int, expansion: ExpansionLimit
    ) -> None:
        self._root = root
        self._compressed = compressed
        self._max = max_bytes
        self._expansion = expansion
        self._room = self._free() - self._RESERVE
        self._next_check = self._SPACE_CHECK

    def _free(self) -> int:
        st = os.statvfs(self._root)
        return st.f_bavail * st.f_frsize

    def charge(self, total: int) -> None:
        """Raise ImageError once ``total`` uncompressed bytes are more than the layer may take."""
        if total > self._max:
            msg = f"layer expands to more than {self._max} bytes (decompression bomb?)"
            raise ImageError(msg, hint="raise max_bytes only for layers you trust")
        limit = self._expansion
        compressed = self._compressed.expected or self._compressed.count
        if total > limit.floor + limit.ratio * compressed:
            msg = (
                f"layer expands to more than {limit.ratio}x its {compressed} compressed bytes "
                f"plus {limit.floor} (decompression bomb?)"
            )
            raise ImageError(msg, hint="raise MLPACK_MAX_LAYER_EXPANSION only for images you trust")
        if total >= self._next_check:
            self._next_check = total + self._SPACE_CHECK
            self._room = min(self._room, total + self._free() - self._RESERVE)
        if total > self._room:
            msg = f"layer does not fit in the free space of the filesystem holding {self._root}"
            raise ImageError(
                msg, hint="free disk space (mlpack prune) or set MLPACK_HOME to a larger disk"
            )


class TarStream:
    """Hash (diff_id) and count the uncompressed tar; stop when it outgrows its budget.

    A helper thread reads, hashes and decompresses the blob a chunk at a time (zlib and
    hashlib release the GIL) while the caller creates files; a bounded queue caps the memory.
    The tar parser's 512-byte header reads are served from the current chunk.
    """

    _DEPTH: Final = 8  # chunks decompressed ahead of the applier

    def __init__(self, source: _Source, *, algorithm: str, budget: Budget) -> None:
        self._src = source
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self._budget = budget
        self._buf = b""
        self._pos = 0
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False
        self.count = 0

    def _produce(self) -> None:
        item: bytes | BaseException
        while not self._stop.is_set():
            try:
                data = self._src.read(_CHUNK)
                if data:
                    self.count += len(data)
                    self._budget.charge(self.count)
                    self._hash.update(data)
                item = data
            except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not isinstance(item, bytes) or not item:
                return

    def _fill(self) -> bool:
        if self._done:
            return False
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="layer-gunzip", daemon=True)
            self._thread.start()
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if not item:
            self._done = True
            self.close()  # the producer has finished: its hash and count are final
            return False
        self._buf = item
        self._pos = 0
        return True

    def close(self) -> None:
        """Stop the helper thread (on success it has already ended) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def read(self, size: int, /) -> bytes:
        """Return up to ``size`` uncompressed bytes, ``b""`` at the end."""
        pos = self._pos
        if pos >= len(self._buf):
            if not self._fill():
                return b""
            pos = 0
        buf = self._buf
        if pos == 0 and size >= len(buf):
            self._pos = len(buf)
            return buf
        end = min(pos + size, len(buf))
        self._pos = end
        return buf[pos:end]

    def drain(self) -> None:
        """Read the padding after the end-of-archive blocks: the diff_id covers it."""
        self._pos = len(self._buf)
        while self._fill():
            self._pos = len(self._buf)

    def digest(self) -> str:
        """The digest of the bytes read so far."""
        return f"{self._algorithm}:{self._hash.hexdigest()}"
