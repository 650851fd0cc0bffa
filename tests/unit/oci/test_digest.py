"""Digest helpers: formatting, strict parsing, hashing while streaming."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlpack.errors import ImageError
from mlpack.oci.digest import file_digest, parse_digest, sha256_digest

HEX = hashlib.sha256(b"abc").hexdigest()


def test_sha256_digest() -> None:
    assert sha256_digest(b"abc") == "sha256:" + HEX


def test_file_digest_reads_past_one_block(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8193  # over 2 MiB: several reads
    (tmp_path / "f").write_bytes(data)
    assert file_digest(tmp_path / "f") == sha256_digest(data)


def test_parse_valid() -> None:
    assert parse_digest("sha256:" + HEX) == ("sha256", HEX)
    assert parse_digest("sha512:" + "a" * 128) == ("sha512", "a" * 128)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256",
        "sha256:",
        HEX,
        "sha256:" + HEX[:-1],
        "sha256:" + HEX.upper(),
        "sha256:" + HEX + "0",
        "sha256:../../etc/passwd",
        "md5:" + "0" * 32,
        "SHA256:" + HEX,
    ],
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ImageError) as info:
        parse_digest(bad)
    assert info.value.hint
