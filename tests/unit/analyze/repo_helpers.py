"""Helpers that build small repositories on disk for the analyze tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlpack.analyze import pyfacts


def make_repo(root: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (relative path -> text or bytes) under ``root`` and return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content), encoding="utf-8")
    return root


# Both extraction paths must agree: the whole-file parse (small files) and the chunked parse
# (large files). Tests that take the ``parse_mode`` fixture run under each.
@pytest.fixture(params=["whole", "chunked"])
def parse_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    threshold = 10**12 if request.param == "whole" else 0
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", threshold)
    return str(request.param)
