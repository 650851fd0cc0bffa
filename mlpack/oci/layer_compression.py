"""Layer compressors: tar bytes in, a compressed blob out, with diff_id, digest and size.

Three compressors, each a fixed identity (REPRODUCIBILITY.md §2): one gzip stream (the default
of ``write_layer``, the system's zlib), gzip deflated in parallel blocks as pigz does (what
``mlpack build`` writes, with the zlib-ng that the pinned ``zlib-ng`` package bundles), and zstd
(opt-in). The bytes of each depend only on the tar, its identity and the library versions,
never on the number of cores. The layer writer feeds a compressor tar bytes with
``write`` and file contents with ``read_from``, which reads straight into the compressor's
buffer where it has one (the parallel gzip one), so a 1 GB layer is not copied around in Python.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from mlpack.errors import ImageError
from mlpack.oci import mediatypes

if TYPE_CHECKING:
    from types import ModuleType

    from mlpack.vocabulary import Compression


# The parallel gzip block: pigz's default size. Part of the output's identity.
PARALLEL_BLOCK: Final = 128 * 1024
_WINDOW: Final = 32 * 1024  # deflate's window: what a block may refer back to
# pigz's memLevel (zlib's default). zlib-ng's hash table does not depend on it; its pending
# buffer (and so where a deflate block ends) does, so it is part of the identity.
_BLOCK_MEM_LEVEL: Final = 8
_STREAM_MEM_LEVEL: Final = 9  # the single stream's, as its golden digests were recorded
# Bytes per task handed to a worker thread: a batch of blocks, so the pool's bookkeeping (and
# the GIL) is paid per MiB, not per block. Not part of the identity: each block's bytes depend
# only on the block and the 32 KiB before it.
_TASK: Final = 8 * PARALLEL_BLOCK
_CHUNK: Final = 1 << 20

# zstd's settings, all pinned (REPRODUCIBILITY.md §2): level 3 (zstd's and containerd's
# default), a 2 MiB window, 8 MiB jobs, a content checksum, no content size (the stream's
# length is not known up front). Multithreaded zstd cuts jobs by size, not by worker count, so
# its bytes are the same for any number of workers >= 1 (tests check it).
ZSTD_LEVEL: Final = 3
_ZSTD_WINDOW_LOG: Final = 21
_ZSTD_JOB_SIZE: Final = 8 << 20
_ZSTD_MAX_WINDOW: Final = 1 << 27  # what a reader accepts: zstd's own default limit

MEDIA_TYPES: Final[dict[Compression, str]] = {
    "gzip": mediatypes.OCI_LAYER_GZIP,
    "zstd": mediatypes.OCI_LAYER_ZSTD,
}


class Output(Protocol):
    """Where a layer's compressed bytes go: a binary file, or a wrapper that counts them."""

    def write(self, data: bytes, /) -> object:
        """Write all of ``data``."""


@dataclass(frozen=True, kw_only=True)
class LayerDigests:
    """Identity of a written layer: diff_id (uncompressed), digest and size (compressed)."""

    diff_id: str
    digest: str
    size: int


# Reads a file's next bytes into the view and says how many (0 at its end).
Reader = Callable[[memoryview], int]


class Sink(Protocol):
    """What the layer writer feeds: tar bytes, file contents, then the end."""

    def write(self, data: bytes | memoryview, /) -> None:
        """Compress ``data``, the next bytes of the tar."""

    def read_from(self, read: Reader, size: int, /) -> int:
        """Compress up to ``size`` bytes that ``read`` gives; return how many there were."""

    def close(self) -> LayerDigests:
        """Finish the blob and return its digests."""

    def shutdown(self) -> None:
        """Release what the compressor holds (threads); after ``close`` or on an error."""


def zstandard() -> ModuleType:
    """The ``zstandard`` module, imported only when a zstd layer is written or read."""
    try:
        import zstandard as zstd  # a compiled module most runs never need
    except ImportError as exc:
        msg = "zstd layers need the 'zstandard' package, which is not installed"
        raise ImageError(msg, hint="reinstall mlpack (pip install mlpack-env) to get it") from exc
    return zstd


def zlib_ng() -> ModuleType:
    """The ``zlib_ng`` module: the parallel gzip writer's deflate, imported when it first runs.

    At level 6 zlib-ng deflates in about a third of zlib's CPU, and a torch-sized layer comes out
    0.8 % larger (bench/README.md, B9p). Its bytes differ from zlib's and between zlib-ng versions,
    so mlpack pins the package (which bundles its own zlib-ng, whatever the system has) and the
    identity names the version.
    """
    try:
        from zlib_ng import zlib_ng as module  # a compiled module small commands never need
    except ImportError as exc:
        msg = "gzip layers need the 'zlib-ng' package, which is not installed"
        raise ImageError(msg, hint="reinstall mlpack (pip install mlpack-env) to get it") from exc
    return module


def identity(compression: Compression, *, level: int = 6, blocks: bool = True) -> str:
    """The compressor's identity: what, besides the tar, decides a blob's bytes.

    It goes into build cache keys (a cached blob is reused only when a fresh build would write
    the same bytes) and the build record, never into the image config.
    """
    if compression == "zstd":
        zstd = zstandard()
        version = ".".join(str(n) for n in zstd.ZSTD_VERSION)
        return f"zstd-{ZSTD_LEVEL}-w{_ZSTD_WINDOW_LOG}-j{_ZSTD_JOB_SIZE}-mt-zstd{version}"
    if blocks:
        shape = f"blocks-{PARALLEL_BLOCK}-mem{_BLOCK_MEM_LEVEL}"
        return f"gzip-{level}-{shape}-zlibng{zlib_ng().ZLIBNG_RUNTIME_VERSION}"
    return f"gzip-{level}-stream-mem{_STREAM_MEM_LEVEL}-zlib{zlib.ZLIB_RUNTIME_VERSION}"


def open_sink(out: Output, compression: Compression, *, level: int | None, blocks: bool) -> Sink:
    """The compressor for ``compression``; ``level`` None is its default (gzip 6, zstd pinned)."""
    if compression == "zstd":
        if level not in (None, ZSTD_LEVEL):
            msg = f"zstd layers are written at level {ZSTD_LEVEL}, not {level}"
            raise ImageError(msg, hint="leave the level out for zstd (it is pinned)")
        return _ZstdSink(out, _workers())
    level = 6 if level is None else level
    if not 0 <= level <= 9:
        msg = f"gzip level {level} is out of range"
        raise ImageError(msg, hint="use a level from 0 to 9 (6 is the default)")
    return _BlockGzipSink(out, level, _workers()) if blocks else _GzipSink(out, level)


def _workers() -> int:
    """The cores this process may run on (its affinity mask, as pigz counts online CPUs)."""
    return len(os.sched_getaffinity(0)) or 1


def gzip_header(level: int) -> bytes:
    """Return the fixed 10-byte gzip header mlpack writes for ``level``.

    FLG 0 and MTIME 0 so nothing about the host or the time leaks in; XFL follows zlib's own
    rule for the level; OS is 255 ("unknown") whatever the platform (python/cpython#112346).
    """
    xfl = 2 if level == 9 else (4 if level < 2 else 0)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes((xfl, 255))


class _Blob:
    """The compressed side: written out, hashed (the digest) and counted (the size)."""

    def __init__(self, out: Output) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0

    def emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self._hash.update(data)
            self.size += len(data)

    def digests(self, diff: hashlib._Hash) -> LayerDigests:
        return LayerDigests(
            diff_id="sha256:" + diff.hexdigest(),
            digest="sha256:" + self._hash.hexdigest(),
            size=self.size,
        )


class _StreamSink:
    """A compressor fed through ``write``: ``read_from`` reads into a scratch buffer."""

    def __init__(self, out: Output) -> None:
        self._blob = _Blob(out)
        self._diff = hashlib.sha256()
        self._scratch = memoryview(bytearray(_CHUNK))

    def write(self, data: bytes | memoryview) -> None:
        self._diff.update(data)
        self._compress(data)

    def _compress(self, data: bytes | memoryview) -> None:
        raise NotImplementedError

    def read_from(self, read: Reader, size: int) -> int:
        done = 0
        while done < size:
            n = read(self._scratch[: min(_CHUNK, size - done)])
            if not n:
                break
            self.write(self._scratch[:n])
            done += n
        return done

    def shutdown(self) -> None:
        """Nothing to release: the stream compresses on the caller's thread."""


class _GzipSink(_StreamSink):
    """One gzip member from one deflate stream, on the calling thread."""

    def __init__(self, out: Output, level: int) -> None:
        super().__init__(out)
        self._compressor = zlib.compressobj(
            level, zlib.DEFLATED, -15, _STREAM_MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY
        )
        self._crc = 0
        self._isize = 0
        self._blob.emit(gzip_header(level))

    def _compress(self, data: bytes | memoryview) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._isize += len(data)
        self._blob.emit(self._compressor.compress(data))

    def close(self) -> LayerDigests:
        self._blob.emit(self._compressor.flush(zlib.Z_FINISH))
        self._blob.emit(_gzip_trailer(self._crc, self._isize))
        return self._blob.digests(self._diff)


def _gzip_trailer(crc: int, isize: int) -> bytes:
    return (crc & 0xFFFFFFFF).to_bytes(4, "little") + (isize & 0xFFFFFFFF).to_bytes(4, "little")


class _BlockGzipSink:
    """One gzip member deflated in parallel, as pigz does, with bytes that never depend on
    the number of threads.

    The tar stream is cut into fixed blocks of ``PARALLEL_BLOCK`` bytes. Each block is deflated
    on its own, with the previous block's last 32 KiB as its dictionary (so matches still reach
    back as far as one stream's would), and ends with a sync flush (byte-aligned, not final); the
    last one finishes the stream. Concatenated in order, they are one valid deflate stream.

    Tar bytes and file contents land directly in a task buffer of ``_TASK`` bytes (files are
    read into it, not copied through Python bytes). A full buffer is deflated, a block at a
    time, on a worker, while one ordered thread hashes the tar (diff_id, CRC32), then takes the
    deflated tasks in stream order, writes them out and hashes them (the digest). zlib-ng and
    hashlib release the GIL, so the workers use every core and this thread only reads files;
    at most two tasks per worker are in flight. Deflate and CRC32 are zlib-ng's (``zlib_ng``).
    """

    def __init__(self, out: Output, level: int, workers: int) -> None:
        self._blob = _Blob(out)
        self._diff = hashlib.sha256()
        self._crc = 0
        self._isize = 0
        self._level = level
        self._zlib = zlib_ng()
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mlpack-deflate")
        self._ordered = ThreadPoolExecutor(1, thread_name_prefix="mlpack-layer-out")
        # The output is written from that thread in the caller's context (its progress reporter).
        self._context = contextvars.copy_context()
        self._pending: deque[Future[None]] = deque()
        self._task = bytearray(_TASK)
        self._view = memoryview(self._task)
        self._fill = 0
        self._window = b""
        self._blob.emit(gzip_header(level))

    def write(self, data: bytes | memoryview) -> None:
        data = memoryview(data)
        while data:
            n = min(len(data), _TASK - self._fill)
            self._view[self._fill : self._fill + n] = data[:n]
            self._advance(n)
            data = data[n:]

    def read_from(self, read: Reader, size: int) -> int:
        done = 0
        while done < size:
            end = min(_TASK, self._fill + size - done)
            n = read(self._view[self._fill : end])
            if not n:
                break
            self._advance(n)
            done += n
        return done

    def _advance(self, n: int) -> None:
        self._fill += n
        if self._fill == _TASK:
            self._submit(final=False)

    def _submit(self, *, final: bool) -> None:
        task = self._task if self._fill == _TASK else bytes(self._view[: self._fill])
        window = self._window
        if len(task) >= _WINDOW:
            self._window = bytes(task[-_WINDOW:])
        deflated = self._pool.submit(_deflate_task, self._zlib, task, window, self._level, final)
        absorb = self._ordered.submit(self._context.run, self._absorb, task, deflated)
        self._pending.append(absorb)
        self._task = bytearray(_TASK)
        self._view = memoryview(self._task)
        self._fill = 0
        while len(self._pending) > 2 * self._workers:
            self._pending.popleft().result()  # re-raises a write error (a full disk)

    def _absorb(self, task: bytes | bytearray, deflated: Future[bytes]) -> None:
        """On the ordered thread: account for one task's tar bytes, then write its output."""
        self._crc = self._zlib.crc32(task, self._crc)  # 6x zlib's speed (PCLMULQDQ), same value
        self._isize += len(task)
        self._diff.update(task)
        self._blob.emit(deflated.result())

    def close(self) -> LayerDigests:
        self._submit(final=True)
        while self._pending:
            self._pending.popleft().result()
        self.shutdown()
        self._blob.emit(_gzip_trailer(self._crc, self._isize))
        return self._blob.digests(self._diff)

    def shutdown(self) -> None:
        """Stop the threads; work not yet started is dropped (the layer failed)."""
        self._pool.shutdown(cancel_futures=True)
        self._ordered.shutdown(cancel_futures=True)


def _deflate_task(
    deflate: ModuleType,
    task: bytes | bytearray,
    window: bytes | memoryview,
    level: int,
    final: bool,
) -> bytes:
    """Deflate the blocks of one task in order, each primed with the 32 KiB before it.

    The stream's last block is what follows its last full block, so a stream that ends on a
    block boundary ends with an empty final block, wherever the task boundaries fall.
    """
    view = memoryview(task)
    full = len(view) - len(view) % PARALLEL_BLOCK
    out = []
    for start in range(0, full, PARALLEL_BLOCK):
        block = view[start : start + PARALLEL_BLOCK]
        out.append(_deflate_block(deflate, block, window, level, final=False))
        window = block[-_WINDOW:]
    if final:
        out.append(_deflate_block(deflate, view[full:], window, level, final=True))
    return b"".join(out)


def _deflate_block(
    deflate: ModuleType,
    block: bytes | memoryview,
    window: bytes | memoryview,
    level: int,
    *,
    final: bool,
) -> bytes:
    """Raw deflate of one block primed with ``window``; sync-flushed, or finished if ``final``."""
    args = (level, deflate.DEFLATED, -15, _BLOCK_MEM_LEVEL, deflate.Z_DEFAULT_STRATEGY)
    compressor = deflate.compressobj(*args, window) if window else deflate.compressobj(*args)
    data: bytes = compressor.compress(block) + compressor.flush(
        deflate.Z_FINISH if final else deflate.Z_SYNC_FLUSH
    )
    return data


class _ZstdSink(_StreamSink):
    """One zstd frame, compressed by zstd's own worker threads with the pinned settings."""

    def __init__(self, out: Output, workers: int) -> None:
        super().__init__(out)
        zstd = zstandard()
        params = zstd.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL,
            window_log=_ZSTD_WINDOW_LOG,
            job_size=_ZSTD_JOB_SIZE,
            threads=max(1, workers),  # >= 1: the multithreaded format, whatever the count
            write_checksum=1,
            write_content_size=0,
            write_dict_id=0,
        )
        self._compressor = zstd.ZstdCompressor(compression_params=params).compressobj()

    def _compress(self, data: bytes | memoryview) -> None:
        self._blob.emit(self._compressor.compress(data))

    def close(self) -> LayerDigests:
        self._blob.emit(self._compressor.flush())
        return self._blob.digests(self._diff)


def zstd_reader_limits() -> dict[str, int]:
    """What a zstd reader accepts: no window past zstd's default limit (128 MiB of memory)."""
    return {"max_window_size": _ZSTD_MAX_WINDOW}
