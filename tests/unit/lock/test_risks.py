"""Wrong-project names and source builds are warned, from the data table, never failed."""

from __future__ import annotations

from pathlib import Path

from mlpack.lock.lockdata import LockedPackage
from mlpack.lock.lockfile import read_lock
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
