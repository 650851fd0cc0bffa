"""Base-image selection pieces that need no network: suites, apt mirrors, explicit bases."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mlpack.base.debian import base_reference, configured_mirror, suite_for
from mlpack.base.registry import official_reference, python_version
from mlpack.base.resolve import resolve_base
from mlpack.errors import ImageError
from mlpack.oci.store import Store
from mlpack.progress import RecordingReporter, using
from tests.oci_fixtures import busybox_image

if TYPE_CHECKING:
    from pathlib import Path


def test_suites() -> None:
    assert suite_for("3.11") == "bookworm"
    assert suite_for("3.13") == "trixie"
    with pytest.raises(ImageError, match=r"no Debian suite ships Python 3\.12") as info:
        suite_for("3.12")
    assert "base =" in info.value.hint
    assert base_reference("3.11") == "localhost/mlpack-base/python:3.11-bookworm"
    assert official_reference("3.12") == "docker.io/library/python:3.12-slim"


def test_mirror_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    assert configured_mirror(etc) == "http://deb.debian.org/debian"
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert configured_mirror(etc) == "http://mirror.example/debian"
    (etc / "sources.list").write_text(
        "deb [arch=amd64] https://other.example/debian bookworm main\n"
    )
    assert configured_mirror(etc) == "https://other.example/debian"


def test_python_version_from_env() -> None:
    assert python_version(("PATH=/bin", "PYTHON_VERSION=3.11.9"), "3.11") == "3.11.9"
    assert python_version(("PATH=/bin",), "3.11") == "3.11"


def test_explicit_base_wins_and_is_pinned(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    digest = busybox_image(store, tmp_path, "my/base:1")
    chosen = resolve_base("3.11", explicit="my/base:1", store=store, platform="linux/amd64")
    assert chosen.provider == "explicit"
    assert chosen.digest == digest
    assert chosen.reference == "docker.io/my/base:1"


def test_explicit_base_without_python_version_uses_the_projects_and_says_so(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "s")
    busybox_image(store, tmp_path, "my/base:1")  # its config has no PYTHON_VERSION
    rep = RecordingReporter()
    with using(rep):
        chosen = resolve_base("3.12", explicit="my/base:1", store=store, platform="linux/amd64")
    assert chosen.python_full == "3.12"
    assert any("does not declare PYTHON_VERSION" in n for n in rep.notices)
