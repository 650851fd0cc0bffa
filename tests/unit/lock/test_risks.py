"""Wrong-project names and source builds are warned, from the data table, never failed."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from mlpack.lock import risks
from mlpack.lock.indexes import IndexFile
from mlpack.lock.lockdata import LockedPackage
from mlpack.lock.lockfile import read_lock
from mlpack.lock.resolvers import Pin
from mlpack.lock.risks import source_build_warning, unrelated_projects, wrong_project_warnings
from mlpack.vocabulary import PackageSpec
from tests.unit.lock.test_soft import ScriptedResolver, inputs, run


def pkg(name: str, build: str = "wheel") -> LockedPackage:
    return LockedPackage(name=name, version="1.0", build=build)  # type: ignore[arg-type]


def test_the_table_is_data_and_names_the_known_cases() -> None:
    names, since = unrelated_projects()
    for name in ("paddle", "apex", "megatron", "caffe2", "vision", "imwatermark", "functorch"):
        assert name in names
    assert "paddlepaddle" in names["paddle"]
    assert since["distutils"] == "3.12"


def test_an_inferred_namesake_is_warned_with_its_import(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import paddle\n")
    specs = (
        PackageSpec(requirement="paddle", source="train.py:1"),
        PackageSpec(requirement="apex", source="requirements.txt:3"),  # declared: the user's word
        PackageSpec(requirement="numpy", source="train.py:2"),
    )
    lines = wrong_project_warnings(
        specs, (pkg("paddle"), pkg("apex"), pkg("numpy")), python="3.11", root=tmp_path
    )
    assert len(lines) == 1
    assert "'paddle' (inferred from `import paddle` at train.py:1)" in lines[0]
    assert "paddlepaddle" in lines[0]


def test_distutils_is_warned_only_where_python_lacks_it(tmp_path: Path) -> None:
    specs = (PackageSpec(requirement="distutils", source="setup_helpers.py:1"),)
    packages = (pkg("distutils"),)
    assert wrong_project_warnings(specs, packages, python="3.11", root=tmp_path) == ()
    assert wrong_project_warnings(specs, packages, python="3.12", root=tmp_path)


def test_source_builds_are_named_in_one_line() -> None:
    line = source_build_warning((pkg("numpy"), pkg("pycocotools", "image")), python="3.13")
    assert line is not None
    assert "pycocotools 1.0" in line
    assert "numpy" not in line
    assert source_build_warning((pkg("numpy"),), python="3.13") is None


def test_the_lock_records_the_warnings_in_its_notes(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import apex\n")
    rep = run(tmp_path, inputs(("apex", "train.py:1"), python="3.11"), ScriptedResolver())
    notes = read_lock(tmp_path / "mlpack.lock").notes
    assert any("NVIDIA apex is not on PyPI" in n for n in notes)
    assert any("NVIDIA apex is not on PyPI" in n for n in rep.notices)


def test_a_direct_pin_years_behind_its_newest_release_is_warned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    listed: list[str] = []

    def fake_list(index_url: str, project: str, **_kw: object) -> tuple[IndexFile, ...]:
        listed.append(project)
        return (
            IndexFile(filename="a", url="u", sha256=None, upload_time="2017-12-04T23:47:36Z"),
            IndexFile(filename="b", url="u", sha256=None, upload_time="2022-05-10T08:00:00Z"),
        )

    monkeypatch.setattr(risks, "list_files", fake_list)
    now = datetime(2026, 12, 7, tzinfo=timezone.utc)
    pins: tuple[Pin, ...] = (
        Pin(name="mxnet", version="1.0.0.post1", via=("-r",), uploaded="2017-12-04T23:47:36+00:00"),
        Pin(name="numpy", version="2.3.0", via=("-r",), uploaded="2026-06-01T00:00:00+00:00"),
        Pin(name="six", version="1.0", via=("mxnet",), uploaded="2010-01-01T00:00:00+00:00"),
    )
    asked = (
        PackageSpec(requirement="mxnet", source="train.py:1"),
        PackageSpec(requirement="numpy", source="requirements.txt:1"),
        PackageSpec(requirement="bcrypt==4.0.1", source="requirements.txt:2"),
    )
    pins = (
        *pins,
        Pin(name="bcrypt", version="4.0.1", via=("-r",), uploaded="2022-01-01T00:00:00+00:00"),
    )
    lines = risks.old_pin_warnings(
        pins, asked, index_url="https://index/simple", ca_cert=None, now=now
    )
    # Recent pins, dependencies and releases the project asked for are never looked up.
    assert listed == ["mxnet"]
    assert len(lines) == 1
    assert lines[0].startswith("mxnet 1.0.0.post1 is from 2017, 4 years older than its newest")


def test_the_release_time_comes_from_uvs_pylock(tmp_path: Path) -> None:
    from mlpack.lock.indexes import Indexes
    from mlpack.lock.resolvers import ResolveRequest
    from mlpack.lock.uv import attach_files, pylock_files

    (tmp_path / "pylock.toml").write_text(
        'lock-version = "1.0"\n[[packages]]\nname = "graphviz"\nversion = "0.8.4"\n'
        'sdist = { url = "https://files/graphviz-0.8.4.zip", upload-time = 2018-07-01T13:46:00Z,'
        ' hashes = { sha256 = "' + "a" * 64 + '" } }\n'
    )
    request = ResolveRequest(
        requirements=(), python="3.11.2", platform="linux/amd64", indexes=Indexes(),
        workdir=tmp_path,
    )  # fmt: skip
    pin = Pin(name="graphviz", version="0.8.4", hashes=("a" * 64,), via=("-r",))
    (attached,) = attach_files((pin,), pylock_files(request))
    assert attached.files == (("graphviz-0.8.4.zip", "a" * 64),)
    assert attached.uploaded is not None
    assert attached.uploaded.startswith("2018-07-01T13:46:00")
