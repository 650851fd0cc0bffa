"""Content digests: ``sha256:<hex>`` strings, their validation, and hashing while streaming."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO, Final

from mlpack.errors import ImageError

Bytes = bytes | bytearray | memoryview

# OCI image-spec descriptor.md: algorithm ":" encoded; only sha256 and sha512 are registered,
# and their encodings are lowercase hex of a fixed length.
_HEX_LEN: Final = {"sha256": 64, "sha512": 128}
_DIGEST_RE: Final = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def sha256_digest(data: bytes) -> str:
    """Return the OCI digest (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_digest(digest: str) -> tuple[str, str]:
    """Split and validate an OCI digest into ``(algorithm, hex)``.

    Only the registered algorithms are accepted, with lowercase hex of the right length, so a
    digest can safely become a file name under ``blobs/<algo>/``.
    """
    match = _DIGEST_RE.match(digest)
    if match is None:
        msg = f"malformed digest {digest!r}"
        raise ImageError(msg, hint="expected 'sha256:<64 lowercase hex digits>'")
    algo, hexpart = match.group(1), match.group(2)
    want = _HEX_LEN.get(algo)
    if want is None:
        msg = f"unsupported digest algorithm {algo!r} in {digest!r}"
        raise ImageError(msg, hint="mlpack supports sha256 and sha512 digests")
    if len(hexpart) != want or not all(c in "0123456789abcdef" for c in hexpart):
        msg = f"malformed {algo} digest {digest!r}: expected {want} lowercase hex digits"
        raise ImageError(msg, hint="check the manifest or the digest given on the command line")
    return algo, hexpart


class HashingReader:
    """Wrap a binary stream; hash and count every byte read through it."""

    def __init__(self, raw: BinaryIO, *, algorithm: str = "sha256") -> None:
        self._raw = raw
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (all when negative), hashing them."""
        data = self._raw.read(size)
        if data:
            self._hash.update(data)
            self.count += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Read into ``buffer``, hashing what was read."""
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        n = len(data)
        view[:n] = data
        if n:
            self._hash.update(data)
            self.count += n
        return n

    def readable(self) -> bool:
        """Report that the wrapper can be read."""
        return True

    def digest(self) -> str:
        """Return ``<algo>:<hex>`` of the bytes read so far."""
        return f"{self._algorithm}:{self._hash.hexdigest()}"


class HashingWriter:
    """Wrap a binary sink; hash and count every byte written through it."""

    def __init__(self, raw: BinaryIO | None = None, *, algorithm: str = "sha256") -> None:
        self._raw = raw
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.count = 0

    def write(self, data: Bytes) -> int:
        """Write ``data`` to the sink (if any) and hash it."""
        view = memoryview(data).cast("B")
        if self._raw is not None:
            written = 0
            while written < len(view):
                # An unbuffered (raw) file may write less than asked.
                written += self._raw.write(view[written:])
        self._hash.update(view)
        self.count += len(view)
        return len(view)

    def writable(self) -> bool:
        """Report that the wrapper can be written."""
        return True

    def flush(self) -> None:
        """Flush the sink."""
        if self._raw is not None:
            self._raw.flush()

    def digest(self) -> str:
        """Return ``<algo>:<hex>`` of the bytes written so far."""
        return f"{self._algorithm}:{self._hash.hexdigest()}"
