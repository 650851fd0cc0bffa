"""Bad input ends in one clear LockError and never in a partial mlpack.lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.errors import LockError
from mlpack.lock.indexes import Indexes
from mlpack.lock.inputs import LockInputs
from mlpack.lock.locker import lock
from mlpack.vocabulary import PackageSpec
from tests.conftest import require
from tests.unit.lock.fakes import FakeBase, free_port, pypi_reachable


@pytest.fixture(autouse=True)
def _only_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(key, raising=False)


def attempt(tmp_path: Path, *reqs: tuple[str, str], indexes: Indexes | None = None) -> LockError:
    inputs = LockInputs(
        requirements=tuple(PackageSpec(requirement=r, source=s) for r, s in reqs),
        python="3.11",
        platform="linux/amd64",
        indexes=indexes or Indexes(),
    )
    with pytest.raises(LockError) as info:
        lock(
            inputs,
            tmp_path / "mlpack.lock",
            root=tmp_path,
            base_resolver=FakeBase(),
            home=tmp_path / "home",
        )
    assert not (tmp_path / "mlpack.lock").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name != "home"] == []
    return info.value


def test_unreachable_index(tmp_path: Path) -> None:
    dead = f"http://user:hunter2@127.0.0.1:{free_port()}/simple"
    err = attempt(tmp_path, ("numpy", "requirements.txt:1"), indexes=Indexes(index_url=dead))
    assert "could not reach the package index" in err.message
    assert "hunter2" not in err.message
    assert "hunter2" not in err.hint


@pytest.mark.network
def test_a_declared_import_name_suggests_the_distribution(tmp_path: Path) -> None:
    require(pypi_reachable(), "the Python package index")
    err = attempt(tmp_path, ("cv2", "requirements.txt:4"))
    assert "'cv2'" in err.message
    assert "requirements.txt:4" in err.message
    assert "opencv-python" in err.hint


@pytest.mark.network
def test_conflict_names_both_inputs(tmp_path: Path) -> None:
    require(pypi_reachable(), "the Python package index")
    # fastapi 0.110.0 requires starlette>=0.36.3,<0.37.0
    err = attempt(
        tmp_path,
        ("fastapi==0.110.0", "pyproject.toml:8"),
        ("starlette==0.40.0", "requirements.txt:2"),
    )
    assert "conflict" in err.message
    assert "fastapi==0.110.0 (pyproject.toml:8)" in err.message
    assert "starlette==0.40.0 (requirements.txt:2)" in err.message


def test_malformed_line(tmp_path: Path) -> None:
    err = attempt(tmp_path, ("numpy", "requirements.txt:1"), ("scipy>=>1", "requirements.txt:2"))
    assert "requirements.txt:2" in err.message


def test_python_no_base_provides(tmp_path: Path) -> None:
    inputs = LockInputs(requirements=(), python="3.7", platform="linux/amd64")
    with pytest.raises(LockError, match=r"no base image for Python 3\.7"):
        lock(
            inputs,
            tmp_path / "mlpack.lock",
            root=tmp_path,
            base_resolver=FakeBase(),
            home=tmp_path / "home",
        )
    assert not (tmp_path / "mlpack.lock").exists()
