"""A lock made on this host (Python 3.11) for another Python is right for that Python."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.lock.inputs import LockInputs
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import read_lock
from mlpack.vocabulary import PackageSpec
from tests.conftest import require
from tests.unit.lock.fakes import FakeBase, pypi_reachable

pytestmark = pytest.mark.network


@pytest.fixture(autouse=True)
def _only_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(key, raising=False)


def lock_for(python: str, platform: str, tmp_path: Path) -> set[str]:
    inputs = LockInputs(
        requirements=(
            PackageSpec(requirement="anyio", source="requirements.txt:1"),
            PackageSpec(requirement="pytest", source="requirements-dev.txt:1"),
        ),
        python=python,
        platform=platform,  # type: ignore[arg-type]
    )
    out = tmp_path / f"{python}-{platform.replace('/', '-')}" / "mlpack.lock"
    out.parent.mkdir()
    lock(inputs, out, root=tmp_path, base_resolver=FakeBase(), home=tmp_path / "home")
    lock_file = read_lock(out)
    assert lock_file.target.python.startswith(python + ".")
    assert lock_file.target.platform == platform
    return {p.name for p in lock_file.packages}


def test_backports_only_below_3_11(tmp_path: Path) -> None:
    require(pypi_reachable(), "the Python package index")
    old = lock_for("3.9", "linux/amd64", tmp_path)
    new = lock_for("3.11", "linux/amd64", tmp_path)
    # anyio and pytest need exceptiongroup and tomli only on Python < 3.11
    assert {"exceptiongroup", "tomli"} <= old
    assert not {"exceptiongroup", "tomli"} & new
    arm = lock_for("3.12", "linux/arm64", tmp_path)
    assert "tomli" not in arm
    assert "anyio" in arm
