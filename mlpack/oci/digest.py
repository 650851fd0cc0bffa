"""Content digests: ``sha256:<hex>`` strings and their validation."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Final

from mlpack.errors import ImageError

if TYPE_CHECKING:
    from pathlib import Path

# OCI image-spec descriptor.md: algorithm ":" encoded; only sha256 and sha512 are registered,
# and their encodings are lowercase hex of a fixed length.
_HEX_LEN: Final = {"sha256": 64, "sha512": 128}
_DIGEST_RE: Final = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


def sha256_digest(data: bytes) -> str:
    """Return the OCI digest (``sha256:<hex>``) of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """Return the OCI digest (``sha256:<hex>``) of a file's bytes, read in 1 MiB blocks."""
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            hasher.update(block)
    return "sha256:" + hasher.hexdigest()


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
