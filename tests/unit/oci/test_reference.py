"""Image reference parsing: Docker Hub defaults, local registries, digests, bad input."""

from __future__ import annotations

import pytest

from mlpack.errors import ImageError
from mlpack.oci.reference import parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repo", "tag", "digest"),
    [
        ("python", "docker.io", "library/python", "latest", None),
        ("python:3.11-slim", "docker.io", "library/python", "3.11-slim", None),
        ("index.docker.io/user/app:1", "docker.io", "user/app", "1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b:c", "localhost:5000", "a/b", "c", None),
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", "1", None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("ghcr.io/o/r@" + D, "ghcr.io", "o/r", None, D),
        ("ghcr.io/o/r:t@" + D, "ghcr.io", "o/r", "t", D),
    ],
)
def test_parse(text: str, registry: str, repo: str, tag: str | None, digest: str | None) -> None:
    ref = parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repo, tag, digest)


def test_familiar_and_full_forms() -> None:
    assert str(parse("python:3.11")) == "docker.io/library/python:3.11"
    assert parse("python:3.11").familiar() == "python:3.11"
    assert parse("127.0.0.1:5000/app:1").familiar() == "127.0.0.1:5000/app:1"
    assert parse("docker.io/library/python").api_host == "registry-1.docker.io"
    assert parse("127.0.0.1:5000/app").is_loopback
    assert not parse("ghcr.io/app").is_loopback


@pytest.mark.parametrize(
    "text", ["", "UPPER/case", "app:", "app@sha256:xyz", "a b", "app:-bad", "a//b", "ex.com/"]
)
def test_bad_references(text: str) -> None:
    with pytest.raises(ImageError) as info:
        parse(text)
    assert info.value.hint
