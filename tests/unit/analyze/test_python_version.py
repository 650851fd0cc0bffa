"""detect_python: every source format, the decision rule, conflicts and malformed input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mlpack.analyze.python_version import (
    DEFAULT_PYTHON,
    SUPPORTED_PYTHONS,
    detect_python,
    python_allowance,
)
from mlpack.errors import AnalyzeError

if TYPE_CHECKING:
    from pathlib import Path


def make(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_supported_versions_are_ordered_oldest_first_and_include_the_default() -> None:
    assert list(SUPPORTED_PYTHONS) == sorted(SUPPORTED_PYTHONS, key=lambda v: int(v.split(".")[1]))
    assert DEFAULT_PYTHON in SUPPORTED_PYTHONS


def test_no_source_gives_the_default_with_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    decision = detect_python(make(tmp_path, {"train.py": "print(1)\n"}), warnings=warnings)
    assert decision.version == DEFAULT_PYTHON
    assert decision.source == "rule: default"
    assert decision.constraints == ()
    assert any("no Python version declared" in w for w in warnings)


@pytest.mark.parametrize(
    ("files", "version", "source"),
    [
        ({".python-version": "3.10.4\n"}, "3.10", ".python-version:1"),
        ({".python-version": "# pyenv\n3.12\n3.11\n"}, "3.12", ".python-version:2"),
        ({"runtime.txt": "python-3.10.4\n"}, "3.10", "runtime.txt:1"),
        ({".tool-versions": "nodejs 20.1.0\npython 3.9.18\n"}, "3.9", ".tool-versions:2"),
        (
            {"pyproject.toml": '[project]\nname = "x"\nrequires-python = ">=3.9,<3.12"\n'},
            "3.11",
            "pyproject.toml:3",
        ),
        (
            {"pyproject.toml": '[tool.poetry.dependencies]\npython = "^3.10"\nnumpy = "*"\n'},
            "3.13",
            "pyproject.toml:2",
        ),
        ({"pyproject.toml": '[tool.poetry.dependencies]\npython = "~3.10"\n'}, "3.10", None),
        (
            {"pyproject.toml": '[tool.poetry.dependencies]\npython = ">=3.9,<3.10 || ^3.12"\n'},
            "3.13",
            None,
        ),
        (
            {"setup.cfg": "[metadata]\nname = x\n\n[options]\npython_requires = >=3.8, <3.11\n"},
            "3.10",
            "setup.cfg:5",
        ),
        (
            {
                "setup.py": 'from setuptools import setup\nsetup(\n    python_requires=">=3.10,<3.12",\n)\n'
            },
            "3.11",
            "setup.py:3",
        ),
        (
            {
                "setup.py": 'import setuptools\nPY = "~=3.9.0"\nsetuptools.setup(python_requires=PY)\n'
            },
            "3.9",
            "setup.py:2",
        ),
        (
            {"Pipfile": '[packages]\nnumpy = "*"\n\n[requires]\npython_version = "3.10"\n'},
            "3.10",
            "Pipfile:5",
        ),
        ({"Pipfile": '[requires]\npython_full_version = "3.12.1"\n'}, "3.12", "Pipfile:2"),
        (
            {"environment.yml": "name: x\ndependencies:\n  - numpy\n  - python=3.10\n"},
            "3.10",
            "environment.yml:4",
        ),
        (
            {"environment.yaml": "dependencies:\n  - python>=3.9,<3.11\n"},
            "3.10",
            "environment.yaml:2",
        ),
    ],
)
def test_each_source_format(
    tmp_path: Path, files: dict[str, str], version: str, source: str | None
) -> None:
    warnings: list[str] = []
    decision = detect_python(make(tmp_path, files), warnings=warnings)
    assert decision.version == version
    if source is not None:
        assert decision.source == source
    assert len(decision.constraints) == 1
    assert warnings == []


def test_newest_version_allowed_by_every_range_and_the_most_restrictive_source(
    tmp_path: Path,
) -> None:
    root = make(
        tmp_path,
        {
            "pyproject.toml": '[project]\nrequires-python = ">=3.9"\n',
            "setup.cfg": "[options]\npython_requires = <3.12\n",
            "environment.yml": "dependencies:\n  - python>=3.10\n",
        },
    )
    decision = detect_python(root, warnings=[])
    assert decision.version == "3.11"
    assert decision.source == "setup.cfg:2"  # allows 3.9-3.11 and so caps the choice
    assert set(decision.constraints) == {
        ("pyproject.toml:2", ">=3.9"),
        ("setup.cfg:2", "<3.12"),
        ("environment.yml:2", "python>=3.10"),
    }


def test_an_exact_pin_decides_when_the_ranges_allow_it(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            ".python-version": "3.10.4\n",
            "pyproject.toml": '[project]\nrequires-python = ">=3.9"\n',
        },
    )
    decision = detect_python(root, warnings=[])
    assert (decision.version, decision.source) == ("3.10", ".python-version:1")


def test_a_patch_level_lower_bound_still_allows_that_minor(tmp_path: Path) -> None:
    root = make(tmp_path, {"pyproject.toml": '[project]\nrequires-python = ">=3.10.4,<3.11"\n'})
    assert detect_python(root, warnings=[]).version == "3.10"


def test_a_pin_that_contradicts_a_range_names_both_files(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            ".python-version": "3.10\n",
            "pyproject.toml": '[project]\nname = "x"\nrequires-python = ">=3.11"\n',
        },
    )
    with pytest.raises(AnalyzeError) as info:
        detect_python(root, warnings=[])
    message = info.value.message
    assert ".python-version:1" in message
    assert "pyproject.toml:3" in message
    assert "'>=3.11'" in message
    assert "'3.10'" in message
    assert info.value.hint
    assert info.value.exit_code == 3


def test_two_different_pins_conflict(tmp_path: Path) -> None:
    root = make(tmp_path, {".python-version": "3.10.4\n", "runtime.txt": "python-3.11.2\n"})
    with pytest.raises(AnalyzeError, match=r"\.python-version:1.*runtime\.txt:1"):
        detect_python(root, warnings=[])


def test_two_disjoint_ranges_conflict(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            "pyproject.toml": '[project]\nrequires-python = "<3.11"\n',
            "Pipfile": '[requires]\npython_version = "3.12"\n',
        },
    )
    with pytest.raises(AnalyzeError, match="conflicting Python versions"):
        detect_python(root, warnings=[])


@pytest.mark.parametrize(
    ("pin", "nearest"), [("3.7.17", "3.9"), ("3.14.0", "3.13"), ("3.6", "3.9")]
)
def test_an_unsupported_pin_gets_the_nearest_supported_version(
    tmp_path: Path, pin: str, nearest: str
) -> None:
    """An old repository pinned to an end-of-life Python is still analysed (CompVis's
    stable-diffusion pins python=3.8.5); the warning says so and lists what is supported.
    """
    warnings: list[str] = []
    decision = detect_python(make(tmp_path, {".python-version": pin + "\n"}), warnings=warnings)
    assert (decision.version, decision.source) == (nearest, ".python-version:1")
    (said,) = warnings
    assert said.startswith(f".python-version:1 pins '{pin}'")
    assert f"using {nearest}, the nearest" in said
    for version in SUPPORTED_PYTHONS:
        assert version in said


def test_a_range_allowing_no_supported_version_gets_the_nearest(tmp_path: Path) -> None:
    warnings: list[str] = []
    root = make(tmp_path, {"setup.cfg": "[options]\npython_requires = <3.8\n"})
    assert detect_python(root, warnings=warnings).version == "3.9"
    assert any(w.startswith("setup.cfg:2") and "using 3.9" in w for w in warnings)
    root = make(tmp_path / "new", {"setup.cfg": "[options]\npython_requires = >=3.14\n"})
    assert detect_python(root, warnings=[]).version == "3.13"


def test_conda_pin_outside_the_supported_set_gets_the_nearest(tmp_path: Path) -> None:
    warnings: list[str] = []
    root = make(tmp_path, {"environment.yml": "dependencies:\n  - python=3.8.5\n"})
    assert detect_python(root, warnings=warnings).version == "3.9"
    assert warnings[0].startswith("environment.yml:2")


def test_a_nearest_pin_still_conflicts_with_a_range_that_excludes_it(tmp_path: Path) -> None:
    root = make(
        tmp_path,
        {
            ".python-version": "3.7\n",
            "pyproject.toml": '[project]\nname = "x"\nrequires-python = ">=3.11"\n',
        },
    )
    with pytest.raises(AnalyzeError, match="conflicting Python versions"):
        detect_python(root, warnings=[])


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"pyproject.toml": "[project\nrequires-python = '>=3.9'\n"},
            "pyproject.toml: invalid TOML",
        ),
        ({"pyproject.toml": '[project]\nrequires-python = "=>3.9"\n'}, "pyproject.toml:2: '=>3.9'"),
        (
            {"pyproject.toml": "[project]\nrequires-python = 39\n"},
            "pyproject.toml:2: requires-python",
        ),
        ({"pyproject.toml": '[tool.poetry.dependencies]\npython = "^three"\n'}, "pyproject.toml:2"),
        ({".python-version": "system\n"}, ".python-version:1: 'system'"),
        ({".python-version": "pypy3.10-7.3.12\n"}, ".python-version:1"),
        ({"runtime.txt": "ruby-3.2\n"}, "runtime.txt:1"),
        ({"Pipfile": "[requires]\npython_version = 3.1\n"}, "Pipfile:2"),
        ({"Pipfile": "not [toml\n"}, "Pipfile: invalid TOML"),
        (
            {"setup.py": "from setuptools import setup\nsetup(python_requires='>=3.9'\n"},
            "setup.py:",
        ),
        ({"setup.cfg": "[options\npython_requires = >=3.9\n"}, "setup.cfg: invalid"),
        ({"environment.yml": "dependencies: [python=3.10\n"}, "environment.yml"),
        ({"environment.yml": "dependencies:\n  - python 3.10|3.11\n"}, "environment.yml:2"),
    ],
)
def test_malformed_input_is_a_warning_naming_the_file(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    warnings: list[str] = []
    decision = detect_python(make(tmp_path, files), warnings=warnings)
    assert decision.version == DEFAULT_PYTHON
    assert any(w.startswith(expected) for w in warnings), warnings


def test_binary_and_non_utf8_sources_are_warnings(tmp_path: Path) -> None:
    (tmp_path / ".python-version").write_bytes(b"3.10\x00\x01")
    (tmp_path / "runtime.txt").write_bytes(b"python-3.\xff10\n")
    warnings: list[str] = []
    decision = detect_python(tmp_path, warnings=warnings)
    assert decision.version == DEFAULT_PYTHON
    assert any(w.startswith(".python-version: binary") for w in warnings)
    assert any(w.startswith("runtime.txt:1: not valid UTF-8") for w in warnings)


def test_a_directory_in_place_of_a_source_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / ".python-version").mkdir()
    warnings: list[str] = []
    assert detect_python(tmp_path, warnings=warnings).version == DEFAULT_PYTHON
    assert any("directory" in w and w.startswith(".python-version") for w in warnings)


def test_a_symlink_outside_the_repository_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pv").write_text("3.10\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".python-version").symlink_to(outside / "pv")
    warnings: list[str] = []
    assert detect_python(repo, warnings=warnings).version == DEFAULT_PYTHON
    assert any("outside the repository" in w for w in warnings)


def test_setup_py_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    make(
        tmp_path,
        {
            "setup.py": (
                f"open({str(marker)!r}, 'w').close()\n"
                "from setuptools import setup\n"
                "setup(python_requires='>=3.12')\n"
            )
        },
    )
    assert detect_python(tmp_path, warnings=[]).version == "3.13"
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("pyproject.toml", '[project]\nname = "p"\nrequires-python = ">=3.9"\n',
         "pyproject.toml:3 requires-python >=3.9"),
        ("setup.py", 'from setuptools import setup\nsetup(python_requires=">=3.8")\n',
         "setup.py:2 python_requires >=3.8"),
        ("pyproject.toml", '[tool.poetry.dependencies]\npython = "^3.10"\n',
         "pyproject.toml:2 python ^3.10"),
        ("environment.yml", "dependencies:\n  - python>=3.10\n", "environment.yml:2 python>=3.10"),
    ],
)  # fmt: skip
def test_the_allowance_names_the_file_and_setting_of_the_range(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    (tmp_path / name).write_text(text)
    assert python_allowance(tmp_path) == expected


def test_without_a_range_the_allowance_says_no_file_pins_python(tmp_path: Path) -> None:
    assert python_allowance(tmp_path) == "no file pins a Python version"


def test_a_subproject_declares_the_version_of_the_code_it_holds(tmp_path: Path) -> None:
    """full-stack-fastapi-template: the app and its Poetry file live in backend/."""
    root = make(
        tmp_path,
        {
            "backend/pyproject.toml": '[tool.poetry]\nname = "app"\n[tool.poetry.dependencies]\n'
            'python = ">=3.10,<3.13"\n',
            "backend/app/main.py": "import fastapi\n",
            # An example's own file is no subproject's: it does not decide the image's Python.
            "examples/demo/pyproject.toml": '[project]\nrequires-python = "==3.9.*"\n',
        },
    )
    warnings: list[str] = []
    decision = detect_python(root, warnings=warnings)
    assert (decision.version, decision.source) == ("3.12", "backend/pyproject.toml:4")
    assert not any("no Python version declared" in w for w in warnings)
    assert "backend/pyproject.toml:4 python" in python_allowance(root)


def test_a_subproject_that_disagrees_with_the_root_is_ignored_with_a_warning(
    tmp_path: Path,
) -> None:
    root = make(
        tmp_path,
        {
            ".python-version": "3.10\n",
            "backend/pyproject.toml": '[project]\nname = "b"\nrequires-python = ">=3.11"\n',
            "worker/setup.cfg": "[options]\npython_requires = <3.8\n",
        },
    )
    warnings: list[str] = []
    decision = detect_python(root, warnings=warnings)
    assert (decision.version, decision.source) == ("3.10", ".python-version:1")
    assert (
        "backend/pyproject.toml:3 requires '>=3.11': ignored, as .python-version:1 pins '3.10'"
        in warnings
    )
    assert any(w.startswith("worker/setup.cfg:2 requires '<3.8': ignored") for w in warnings)
