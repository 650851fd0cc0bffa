"""Digest helpers: formatting, strict parsing, hashing while streaming."""

from __future__ import annotations

import hashlib
import io

import pytest

from mlpack.errors import ImageError
from mlpack.oci.digest import HashingReader, HashingWriter, parse_digest, sha256_digest

HEX = hashlib.sha256(b"abc").hexdigest()


def test_sha256_digest() -> None:
    assert sha256_digest(b"abc") == "sha256:" + HEX


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


def test_hashing_reader_counts_and_hashes() -> None:
    reader = HashingReader(io.BytesIO(b"abcdef"))
    assert reader.read(2) == b"ab"
    buf = bytearray(10)
    assert reader.readinto(buf) == 4
    assert bytes(buf[:4]) == b"cdef"
    assert reader.read() == b""
    assert reader.count == 6
    assert reader.digest() == sha256_digest(b"abcdef")


def test_hashing_writer_passes_through() -> None:
    sink = io.BytesIO()
    writer = HashingWriter(sink)
    writer.write(b"abc")
    writer.write(memoryview(b"def"))
    writer.flush()
    assert sink.getvalue() == b"abcdef"
    assert (writer.count, writer.digest()) == (6, sha256_digest(b"abcdef"))
    assert HashingWriter().write(b"x") == 1  # hash-only, no sink
