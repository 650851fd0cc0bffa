"""Against the real index: inferred names the index lacks are dropped; the Python follows wheels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.lock.failure import ResolveFailure
from mlpack.lock.indexes import Indexes
from mlpack.lock.inputs import LockInputs
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import read_lock
from mlpack.progress import RecordingReporter, using
from mlpack.vocabulary import PackageSpec
from tests.conftest import require
from tests.unit.lock.fakes import FakeBase, pypi_reachable

pytestmark = pytest.mark.network


@pytest.fixture(autouse=True)
def _only_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(key, raising=False)
    require(pypi_reachable(), "the Python package index")


def run(
    tmp_path: Path, *reqs: tuple[str, str], python: str, fallback: tuple[str, ...] = ()
) -> RecordingReporter:
    rep = RecordingReporter()
    with using(rep):
        lock(
            LockInputs(
                requirements=tuple(PackageSpec(requirement=r, source=s) for r, s in reqs),
                python=python,
                fallback_pythons=fallback,
                platform="linux/amd64",
                indexes=Indexes(),
            ),
            tmp_path / "mlpack.lock",
            root=tmp_path,
            base_resolver=FakeBase(),
            home=tmp_path / "home",
        )
    return rep


def test_an_inferred_name_pypi_lacks_is_dropped_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "hpu.py").write_text("import os\nimport habana_frameworks.torch\n")
    rep = run(
        tmp_path,
        ("six", "requirements.txt:1"),
        ("habana-frameworks", "examples/hpu.py:2"),
        python="3.11",
    )
    written = read_lock(tmp_path / "mlpack.lock")
    assert [p.name for p in written.packages] == ["six"]
    assert [(d.name, d.source) for d in written.dropped] == [
        ("habana-frameworks", "examples/hpu.py:2")
    ]
    assert any("import habana_frameworks.torch" in n for n in rep.notices)


def test_an_open_python_falls_back_to_the_newest_with_wheels(tmp_path: Path) -> None:
    # torch 2.0.1 has wheels for CPython 3.8 to 3.11 only.
    rep = run(
        tmp_path,
        ("torch==2.0.1", "requirements.txt:1"),
        python="3.13",
        fallback=("3.12", "3.11", "3.10"),
    )
    written = read_lock(tmp_path / "mlpack.lock")
    assert written.target.python_minor == "3.11"
    line = next(n for n in rep.notices if n.startswith("Python 3.11"))
    assert "torch 2.0.1" in line


def test_a_pinned_python_without_wheels_names_the_python_that_works(tmp_path: Path) -> None:
    with pytest.raises(ResolveFailure) as caught:
        run(tmp_path, ("torch==2.0.1", "requirements.txt:1"), python="3.13")
    assert "torch 2.0.1" in caught.value.hint
    assert 'python = "3.11"' in caught.value.hint
    assert "relax" not in caught.value.hint
    assert not (tmp_path / "mlpack.lock").exists()
