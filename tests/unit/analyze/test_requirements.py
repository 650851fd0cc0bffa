"""declarations: every declaration format, includes, merging, and hostile input."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet

from mlpack.analyze._constraints import (
    ConstraintError,
    conda_specifier,
    poetry_specifier,
    split_conda,
)
from mlpack.analyze._declfile import MAX_BYTES
from mlpack.analyze.analysis import DeclaredRequirement
from mlpack.analyze.python_version import detect_python
from mlpack.analyze.requirements import (
    DEV_GROUPS,
    declarations,
    requirements_group,
)
from mlpack.errors import AnalyzeError

if TYPE_CHECKING:
    from collections.abc import Iterator


def make(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def declared(root: Path) -> tuple[dict[tuple[str, str | None], DeclaredRequirement], list[str]]:
    warnings: list[str] = []
    reqs = declarations(root, warnings=warnings)[0]
    return {(r.name, r.group): r for r in reqs}, warnings


# -- requirements*.txt ---------------------------------------------------------------------------


def test_requirements_txt_lines(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": (
                "# a comment line\n"
                "NumPy>=1.24 \\\n"
                "    ,<2  # trailing comment\n"
                "torch==2.1.0 --hash=sha256:0123 --hash=sha256:4567\n"
                "requests[security,SOCKS] ; python_version < '3.12'\n"
                "--index-url https://pypi.example/simple\n"
                "--extra-index-url https://extra.example/simple\n"
                "-f ./wheels\n"
                "--prefer-binary\n"
                "--trusted-host pypi.example\n"
                "-e git+https://github.com/acme/tool.git@v1.2#egg=acme_tool[cli]\n"
                "mylib @ git+https://github.com/acme/mylib@abc123\n"
                "https://files.example/pkgs/Fancy_Pkg-2.0-py3-none-any.whl\n"
                "scikit_learn~=1.3\n"
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert reqs["numpy", None] == DeclaredRequirement(
        name="numpy", specifier="<2,>=1.24", source="requirements.txt:2"
    )
    assert reqs["torch", None].specifier == "==2.1.0"
    assert reqs["torch", None].source == "requirements.txt:4"
    requests = reqs["requests", None]
    assert requests.extras == ("security", "socks")
    assert requests.marker == 'python_version < "3.12"'
    tool = reqs["acme-tool", None]
    assert tool.editable
    assert tool.extras == ("cli",)
    assert tool.url == "git+https://github.com/acme/tool.git@v1.2#egg=acme_tool[cli]"
    assert reqs["mylib", None].url == "git+https://github.com/acme/mylib@abc123"
    assert reqs["fancy-pkg", None].url is not None
    assert reqs["scikit-learn", None].specifier == "~=1.3"
    assert [(i.url, i.primary) for i in declarations(tmp_path, warnings=[])[1]] == [
        ("https://pypi.example/simple", True),
        ("https://extra.example/simple", False),
    ]


def test_a_malformed_line_is_a_warning_and_parsing_continues(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": (
                "numpy\n"
                "pandas==\n"
                "git+https://github.com/acme/noname.git\n"
                "--no-such-option\n"
                "-r\n"
                "flask; python_version <<< '3'\n"
                "scipy\n"
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert set(reqs) == {("numpy", None), ("scipy", None)}
    assert any(w.startswith("requirements.txt:2: invalid requirement 'pandas=='") for w in warnings)
    assert any(w.startswith("requirements.txt:3: cannot tell the package name") for w in warnings)
    assert any(w.startswith("requirements.txt:4: unknown option") for w in warnings)
    assert any(w.startswith("requirements.txt:5: option '-r' needs a value") for w in warnings)
    assert any(w.startswith("requirements.txt:6:") for w in warnings)


@pytest.mark.parametrize(
    ("filename", "folder", "group"),
    [
        ("requirements.txt", False, None),
        ("requirements-dev.txt", False, "dev"),
        ("requirements_test.txt", False, "test"),
        ("requirements-gpu.txt", False, "gpu"),
        ("requirements-prod.txt", False, None),
        ("base.txt", True, None),
        ("main.txt", True, None),
        ("prod.txt", True, None),
        ("production.txt", True, None),
        ("prod-gpu.txt", True, None),
        ("docs.txt", True, "docs"),
        ("Test_Extra.txt", True, "test-extra"),
    ],
)
def test_requirements_file_groups(filename: str, folder: bool, group: str | None) -> None:
    assert requirements_group(filename, folder=folder) == group


def test_dev_groups() -> None:
    assert {"dev", "test", "tests", "docs", "lint", "typing"} <= DEV_GROUPS
    assert "gpu" not in DEV_GROUPS


def test_requirement_files_at_the_root_and_in_the_folder(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": "numpy\n",
            "requirements-dev.txt": "-r requirements.txt\npytest\n",
            "requirements/base.txt": "pandas\n",
            "requirements/prod-gpu.txt": "-r base.txt\ntorch\n",
            "requirements/docs.txt": "-r ./base.txt\nsphinx\n",
            "requirements/README.md": "not a requirements file\n",
            "requirements.in": "ignored\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    # A -r to a file that is read on its own does not copy its packages into the other group.
    assert set(reqs) == {
        ("numpy", None),
        ("pandas", None),
        ("torch", None),
        ("pytest", "dev"),
        ("sphinx", "docs"),
    }
    assert reqs["pandas", None].source == "requirements/base.txt:1"


def test_singular_requirement_file_and_a_lone_file_in_the_folder(tmp_path: Path) -> None:
    make(
        tmp_path,
        {"requirement.txt": "numpy\n", "requirements/pt2.txt": "torch>=2\nomegaconf\n"},
    )
    reqs, _ = declared(tmp_path)
    # requirement.txt is the main file; a lone requirements/pt2.txt is too, not a group "pt2".
    assert set(reqs) == {("numpy", None), ("torch", None), ("omegaconf", None)}
    assert reqs["torch", None].source == "requirements/pt2.txt:1"


def test_conda_yaml_is_an_environment_file(tmp_path: Path) -> None:
    make(
        tmp_path,
        {"conda.yaml": "name: x\ndependencies:\n  - python=3.10\n  - pip:\n    - mlflow>=2\n"},
    )
    reqs, _ = declared(tmp_path)
    assert reqs["mlflow", None].source == "conda.yaml:5"


def test_subproject_declarations_keep_their_folder(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "backend/pyproject.toml": (
                '[project]\nname = "app"\ndependencies = ["fastapi>=0.110", "uvicorn"]\n'
                '[dependency-groups]\ndev = ["pytest"]\n'
            ),
            "examples/demo/setup.py": "from setuptools import setup\nsetup(install_requires=['x'])\n",
            "requirements.txt": "numpy\n",
        },
    )
    reqs, _ = declared(tmp_path)
    assert set(reqs) == {("numpy", None), ("fastapi", None), ("uvicorn", None), ("pytest", "dev")}
    assert reqs["fastapi", None].source == "backend/pyproject.toml:3"


def test_a_lone_folder_with_requirements_is_the_project(tmp_path: Path) -> None:
    """Nothing declared at the root, one folder with a requirements file: the app's folder."""
    make(
        tmp_path,
        {
            "app/requirements.txt": "fastapi\n",
            "app/main.py": "import fastapi\n",
            "docs/requirements.txt": "sphinx\n",  # docs are never the project
        },
    )
    reqs, warnings = declared(tmp_path)
    assert set(reqs) == {("fastapi", None)}
    assert reqs["fastapi", None].source == "app/requirements.txt:1"
    assert warnings == []


def test_folders_of_independent_projects_are_named_not_merged(tmp_path: Path) -> None:
    """pytorch/examples: each example has its own requirements, which may conflict."""
    make(
        tmp_path,
        {
            "mnist/requirements.txt": "torch\ntorchvision\n",
            "time_sequence_prediction/requirements.txt": "torch<2.6\nmatplotlib\n",
            "word_language_model/requirements.txt": "torch>=2.6\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert reqs == {}
    assert warnings == [
        (
            "3 folders hold projects of their own (mnist/, time_sequence_prediction/, "
            "word_language_model/), each with its own requirements file; none is read: analyse "
            "one of them (`mlpack analyze mnist`)"
        )
    ]


def test_folder_requirements_are_not_read_when_the_root_declares(tmp_path: Path) -> None:
    """guided-diffusion: evaluations/ is a tool of its own beside the declared project."""
    make(
        tmp_path,
        {
            "requirements.txt": "torch\n",
            "evaluations/requirements.txt": "tensorflow-gpu>=2.0\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert set(reqs) == {("torch", None)}
    assert warnings == []


def test_output_is_sorted_by_group_then_name(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": "zlib-ng-py\nalpha\n",
            "requirements-test.txt": "pytest\nhypothesis\n",
            "requirements-dev.txt": "ruff\n",
        },
    )
    reqs = declarations(tmp_path, warnings=[])[0]
    assert [(r.group, r.name) for r in reqs] == [
        (None, "alpha"),
        (None, "zlib-ng-py"),
        ("dev", "ruff"),
        ("test", "hypothesis"),
        ("test", "pytest"),
    ]


def test_includes_are_relative_to_the_including_file(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": "-r deps/common.in\n--requirement=deps/extra/more.in\n",
            "deps/common.in": "numpy\n-r extra/more.in\n",
            "deps/extra/more.in": "-r ../../other.in\nscipy\n",
            "other.in": "pandas\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {("numpy", None), ("scipy", None), ("pandas", None)}
    assert reqs["pandas", None].source == "other.in:1"


def test_constraint_files_narrow_but_never_add(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": "-c constraints.txt\ntorch\nnumpy>=1.20\n",
            "constraints.txt": "numpy==1.26.4\ntorch==2.1.0\nnot-declared==1.0\n-c more.txt\n",
            "more.txt": "torch>=2\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {("numpy", None), ("torch", None)}
    assert reqs["numpy", None].specifier == "==1.26.4,>=1.20"
    assert reqs["torch", None].specifier == "==2.1.0,>=2"
    assert reqs["torch", None].source == "requirements.txt:2"


def test_an_include_cycle_is_detected(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": "-r a.in\nnumpy\n",
            "a.in": "-r b.in\nscipy\n",
            "b.in": "-r a.in\npandas\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert set(reqs) == {("numpy", None), ("scipy", None), ("pandas", None)}
    assert any("b.in:1: include cycle" in w and "a.in -> b.in -> a.in" in w for w in warnings)


def test_a_diamond_of_includes_is_read_once_without_warning(tmp_path: Path) -> None:
    lines = "".join(f"-r f{i}.in\n" for i in range(30))
    files = {"requirements.txt": lines}
    for i in range(30):
        files[f"f{i}.in"] = "".join(f"-r f{j}.in\n" for j in range(i + 1, 30)) + f"pkg{i}\n"
    reqs, warnings = declared(make(tmp_path, files))
    assert warnings == []
    assert len(reqs) == 30


def test_includes_escaping_the_repository_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("leaked-package\n")
    repo = make(
        tmp_path / "repo",
        {
            "requirements.txt": (
                "-r ../secret.txt\n"
                f"-r {tmp_path / 'secret.txt'}\n"
                "-c ../secret.txt\n"
                "-r https://example.com/requirements.txt\n"
                "-e ../\n"
                "numpy\n"
            )
        },
    )
    reqs, warnings = declared(repo)
    assert set(reqs) == {("numpy", None)}
    for line in (1, 2, 3):
        assert any(
            w.startswith(f"requirements.txt:{line}: include") and "escapes the repository" in w
            for w in warnings
        ), warnings
    assert any(w.startswith("requirements.txt:4: remote include") for w in warnings)
    assert any(w.startswith("requirements.txt:5:") and "outside" in w for w in warnings)


def test_editable_local_projects_and_archives(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": (
                "-e .\n"
                "-e ./libs/core[fast]\n"
                "./libs/legacy\n"
                "./dist/my_tool-1.0-py3-none-any.whl\n"
                "./libs/unnamed\n"
            ),
            "pyproject.toml": '[project]\nname = "My.Project"\n',
            "libs/core/setup.cfg": "[metadata]\nname = core-lib\n",
            "libs/legacy/setup.py": "from setuptools import setup\nsetup(name='legacy_lib')\n",
            "libs/unnamed/README": "no metadata\n",
        },
    )
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist/my_tool-1.0-py3-none-any.whl").write_bytes(b"PK")
    reqs, warnings = declared(tmp_path)
    assert reqs["my-project", None].url == "."
    assert reqs["my-project", None].editable
    assert reqs["core-lib", None].url == "./libs/core"
    assert reqs["core-lib", None].extras == ("fast",)
    assert reqs["legacy-lib", None].url == "./libs/legacy"
    assert not reqs["legacy-lib", None].editable
    assert reqs["my-tool", None].url == "./dist/my_tool-1.0-py3-none-any.whl"
    assert any(w.startswith("requirements.txt:5: cannot tell the name") for w in warnings)


def test_index_credentials_are_not_recorded(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": (
                "-i https://user:s3cret@private.example/simple\n"
                "--extra-index-url=https://${PIP_USER}:${PIP_TOKEN}@other.example/simple\n"
            ),
            "Pipfile": '[[source]]\nurl = "https://pypi.org/simple"\n[[source]]\nurl = "https://mirror.example/simple"\n',
        },
    )
    warnings: list[str] = []
    _, indexes = declarations(tmp_path, warnings=warnings)
    # No credentials, literal or ${VAR}, reach the analysis (mlpack expands no variables in
    # index URLs: a repository's config could otherwise send one to a host it names).
    assert [(i.url, i.primary, i.source) for i in indexes] == [
        ("https://private.example/simple", True, "requirements.txt:1"),
        ("https://other.example/simple", False, "requirements.txt:2"),
        ("https://mirror.example/simple", False, "Pipfile:4"),
    ]
    assert not any("s3cret" in w or "PIP_TOKEN" in w for w in warnings)
    assert sum("credentials in the index URL are not recorded" in w for w in warnings) == 2


# -- pyproject.toml ------------------------------------------------------------------------------


def test_pyproject_pep621_extras_and_dependency_groups(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "pyproject.toml": (
                "[project]\n"
                'name = "trainer"\n'
                "dependencies = [\n"
                '    "torch>=2.1",\n'
                "    \"numpy; python_version >= '3.10'\",\n"
                "]\n"
                "\n"
                "[project.optional-dependencies]\n"
                'serve = ["fastapi>=0.110", "uvicorn[standard]"]\n'
                'all = ["trainer[serve]"]\n'
                "\n"
                "[dependency-groups]\n"
                'test = ["pytest>=8", {include-group = "lint"}]\n'
                'lint = ["ruff"]\n'
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {
        ("numpy", None),
        ("torch", None),
        ("ruff", "lint"),
        ("fastapi", "serve"),
        ("uvicorn", "serve"),
        ("pytest", "test"),
    }
    assert reqs["torch", None].source == "pyproject.toml:4"
    assert reqs["numpy", None].marker == 'python_version >= "3.10"'
    assert reqs["fastapi", "serve"].source == "pyproject.toml:9"
    assert reqs["uvicorn", "serve"].extras == ("standard",)
    assert reqs["pytest", "test"].source == "pyproject.toml:13"


def test_pyproject_poetry(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "pyproject.toml": (
                "[tool.poetry]\n"
                'name = "poetry-proj"\n'
                "\n"
                "[tool.poetry.dependencies]\n"
                'python = "^3.10"\n'
                'numpy = "^1.24.2"\n'
                'pandas = "~2.1"\n'
                'scipy = "*"\n'
                'rich = "13.7.0"\n'
                'requests = { version = ">=2.31,<3", extras = ["socks"] }\n'
                'mylib = { git = "https://github.com/acme/mylib.git", tag = "v1.0" }\n'
                'local = { path = "libs/local", develop = true }\n'
                'uvloop = { version = "^0.19", platform = "linux", python = ">=3.10" }\n'
                'cupy = { version = "^13", optional = true }\n'
                'lonely = { version = "^1", optional = true }\n'
                "\n"
                "[tool.poetry.extras]\n"
                'gpu = ["cupy"]\n'
                "\n"
                "[tool.poetry.group.test.dependencies]\n"
                'pytest = "^8.0"\n'
                "\n"
                "[tool.poetry.dev-dependencies]\n"
                'black = "^24"\n'
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert ("python", None) not in reqs
    assert ("lonely", None) not in reqs  # optional and in no extra: Poetry never installs it
    assert reqs["numpy", None].specifier == "<2,>=1.24.2"
    assert reqs["numpy", None].source == "pyproject.toml:6"
    assert reqs["pandas", None].specifier == "<2.2,>=2.1"
    assert reqs["scipy", None].specifier == ""
    assert reqs["rich", None].specifier == "==13.7.0"
    assert reqs["requests", None].extras == ("socks",)
    assert reqs["requests", None].specifier == "<3,>=2.31"
    assert reqs["mylib", None].url == "git+https://github.com/acme/mylib.git@v1.0"
    assert reqs["local", None].url == "./libs/local"
    assert reqs["local", None].editable
    assert reqs["uvloop", None].marker == 'python_version >= "3.10" and sys_platform == "linux"'
    assert reqs["cupy", "gpu"].specifier == "<14,>=13"
    assert reqs["pytest", "test"].specifier == "<9,>=8.0"
    assert reqs["black", "dev"].source == "pyproject.toml:24"


def test_pyproject_pdm_and_uv_dev_dependencies(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "pyproject.toml": (
                "[tool.pdm.dev-dependencies]\n"
                'test = ["pytest>=8", "-e ./plugins/helper"]\n'
                "[tool.uv]\n"
                'dev-dependencies = ["ruff"]\n'
            ),
            "plugins/helper/pyproject.toml": '[project]\nname = "helper"\n',
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {("pytest", "test"), ("helper", "test"), ("ruff", "dev")}
    assert reqs["helper", "test"].editable
    assert reqs["pytest", "test"].source == "pyproject.toml:2"


def test_pyproject_bad_values_are_warnings(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "pyproject.toml": (
                "[project]\n"
                'dependencies = "numpy"\n'
                'optional-dependencies = { x = ["ok", 3, "bad=="] }\n'
                "[tool.poetry.dependencies]\n"
                'weird = "^x"\n'
                'multi = [{ version = "^1", python = "<3.11" }, { version = "^2", python = ">=3.11" }]\n'
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert ("ok", "x") in reqs
    assert reqs["weird", None].specifier == ""
    assert reqs["multi", None].specifier == "<2,>=1"
    assert any("project.dependencies is not an array" in w for w in warnings)
    assert any("3 is not a string" in w for w in warnings)
    assert any("invalid requirement 'bad=='" in w for w in warnings)
    assert any("weird" in w for w in warnings)
    assert any("several constraints" in w for w in warnings)


# -- Pipfile, environment.yml, setup.cfg, setup.py -----------------------------------------------


def test_pipfile(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "Pipfile": (
                "[[source]]\n"
                'url = "https://pypi.org/simple"\n'
                'name = "pypi"\n'
                "\n"
                "[packages]\n"
                'numpy = "*"\n'
                'pandas = "==2.1.0"\n'
                'requests = {version = ">=2.31", extras = ["socks"]}\n'
                'pywin = {version = "*", sys_platform = "== \'win32\'"}\n'
                'tool = {git = "https://github.com/acme/tool.git", ref = "main", editable = true}\n'
                'plain = "1.2"\n'
                "\n"
                "[dev-packages]\n"
                'pytest = ">=8"\n'
                "\n"
                "[docs]\n"
                'sphinx = "*"\n'
                "\n"
                "[requires]\n"
                'python_version = "3.11"\n'
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {
        ("numpy", None),
        ("pandas", None),
        ("plain", None),
        ("pywin", None),
        ("requests", None),
        ("tool", None),
        ("pytest", "dev"),
        ("sphinx", "docs"),
    }
    assert reqs["numpy", None].specifier == ""
    assert reqs["numpy", None].source == "Pipfile:6"
    assert reqs["pandas", None].specifier == "==2.1.0"
    assert reqs["plain", None].specifier == "==1.2"
    assert reqs["requests", None].extras == ("socks",)
    assert reqs["pywin", None].marker == 'sys_platform == "win32"'
    assert reqs["tool", None].url == "git+https://github.com/acme/tool.git@main"
    assert reqs["tool", None].editable
    assert reqs["pytest", "dev"].source == "Pipfile:14"


def test_environment_yml(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "environment.yml": (
                "name: ml\n"
                "channels: [pytorch, conda-forge]\n"
                "dependencies:\n"
                "  - python=3.10\n"
                "  - pip\n"
                "  - numpy=1.24\n"
                "  - pytorch::pytorch>=2.0\n"
                "  - pytorch-cuda=12.1\n"
                "  - cudatoolkit\n"
                "  - py-opencv\n"
                "  - scipy 1.11.*\n"
                "  - pandas>=2.0,<3\n"
                "  - msgpack-python=1.0.5=py310h_0\n"
                "  - pip:\n"
                "      - transformers==4.38.0\n"
                "      - --extra-index-url https://download.example/whl\n"
                "      - -r requirements-extra.in\n"
            ),
            "requirements-extra.in": "einops\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {
        ("einops", None),
        ("msgpack", None),
        ("numpy", None),
        ("opencv-python", None),
        ("pandas", None),
        ("scipy", None),
        ("torch", None),
        ("transformers", None),
    }
    assert reqs["numpy", None].specifier == "==1.24.*"
    assert reqs["numpy", None].source == "environment.yml:6"
    assert reqs["torch", None].specifier == ">=2.0"
    assert reqs["scipy", None].specifier == "==1.11.*"
    assert reqs["pandas", None].specifier == "<3,>=2.0"
    assert reqs["msgpack", None].specifier == "==1.0.5.*"
    assert reqs["transformers", None].source == "environment.yml:15"
    assert reqs["einops", None].source == "requirements-extra.in:1"
    assert [i.url for i in declarations(tmp_path, warnings=[])[1]] == [
        "https://download.example/whl"
    ]


def test_environment_yml_bad_entries(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "environment.yml": (
                "dependencies:\n  - numpy 1.2|1.3\n  - bad[spec\n  - {other: thing}\n  - scipy\n"
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert reqs["numpy", None].specifier == ""
    assert ("scipy", None) in reqs
    assert any(w.startswith("environment.yml:2:") for w in warnings)
    assert any(w.startswith("environment.yml:3:") for w in warnings)
    assert any(w.startswith("environment.yml:4:") for w in warnings)


def test_environment_yml_that_is_not_a_mapping_or_yaml(tmp_path: Path) -> None:
    (tmp_path / "environment.yml").write_text("- just\n- a list\n")
    (tmp_path / "environment.yaml").write_text("dependencies: [\n")
    _, warnings = declared(tmp_path)
    assert any(w.startswith("environment.yml: not a conda environment") for w in warnings)
    assert any(w.startswith("environment.yaml") and "invalid YAML" in w for w in warnings)


def test_setup_cfg(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "setup.cfg": (
                "[metadata]\n"
                "name = cfgproj\n"
                "\n"
                "[options]\n"
                "install_requires =\n"
                "    numpy>=1.20\n"
                "    # a comment\n"
                "    requests; python_version < '3.12'\n"
                "\n"
                "[options.extras_require]\n"
                "test =\n"
                "    pytest\n"
                "all = cfgproj[test]\n"
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {("numpy", None), ("requests", None), ("pytest", "test")}
    assert reqs["numpy", None].source == "setup.cfg:6"
    assert reqs["requests", None].source == "setup.cfg:8"
    assert reqs["pytest", "test"].source == "setup.cfg:12"


def test_setup_py_static_literals(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "setup.py": (
                "from setuptools import setup, find_packages\n"
                'BASE = ["numpy>=1.20", "scipy"]\n'
                'EXTRA: list[str] = ["rich"]\n'
                'DOCS = ("sphinx",)\n'
                "setup(\n"
                '    name="pyproj",\n'
                "    packages=find_packages(),\n"
                '    install_requires=BASE + EXTRA + ["pandas"],\n'
                '    extras_require={"docs": DOCS, "gpu:platform_system == \'Linux\'": ["cupy"]},\n'
                ")\n"
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {
        ("numpy", None),
        ("pandas", None),
        ("rich", None),
        ("scipy", None),
        ("sphinx", "docs"),
        ("cupy", "gpu"),
    }
    assert reqs["numpy", None].source == "setup.py:2"
    assert reqs["pandas", None].source == "setup.py:8"
    assert reqs["cupy", "gpu"].marker == 'platform_system == "Linux"'


def test_setup_py_kwargs_dict_and_dict_call(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "setup.py": (
                "import setuptools\n"
                'KW = dict(install_requires=["numpy"], extras_require=dict(test=["pytest"]))\n'
                "setuptools.setup(**KW)\n"
            )
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert set(reqs) == {("numpy", None), ("pytest", "test")}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "from setuptools import setup\nsetup(install_requires=open('r.txt').read().split())\n",
            "setup.py:2: install_requires is not a literal",
        ),
        (
            "from setuptools import setup\nREQ = ['a']\nREQ = ['b']\nsetup(install_requires=REQ)\n",
            "setup.py:4: install_requires is not a literal",
        ),
        (
            "from setuptools import setup\nREQ = ['a']\nREQ += ['b']\nsetup(install_requires=REQ)\n",
            "setup.py:4: install_requires is not a literal",
        ),
        (
            "from setuptools import setup\nA = B + []\nB = A + []\nsetup(install_requires=A)\n",
            "setup.py:",
        ),
        (
            "from setuptools import setup\nX = X\nsetup(install_requires=X)\n",
            "setup.py:",
        ),
        (
            "from setuptools import setup\nsetup(extras_require={k: ['a'] for k in 'xy'})\n",
            "setup.py:2: extras_require is not a literal",
        ),
        ("def broken(:\n    pass\n", "setup.py:1: syntax error"),
        ("x = (" * 300 + ")" * 300 + "\n", "setup.py:"),
    ],
)
def test_setup_py_that_is_not_static_is_a_warning(tmp_path: Path, code: str, expected: str) -> None:
    (tmp_path / "setup.py").write_text(code)
    reqs, warnings = declared(tmp_path)
    assert reqs == {}
    assert any(w.startswith(expected) for w in warnings), warnings


def test_setup_cfg_invalid_and_file_directive(tmp_path: Path) -> None:
    (tmp_path / "setup.cfg").write_text("[options]\ninstall_requires = file: reqs.in\n")
    _, warnings = declared(tmp_path)
    assert any(w.startswith("setup.cfg:2: install_requires = file:") for w in warnings)
    (tmp_path / "setup.cfg").write_text("[options]\nkey = 1\nkey = 2\n")
    _, warnings = declared(tmp_path)
    assert any(w.startswith("setup.cfg: invalid setup.cfg") for w in warnings)


# -- merging -------------------------------------------------------------------------------------


def test_one_entry_per_name_and_group_with_first_source_and_intersected_specifiers(
    tmp_path: Path,
) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": "numpy>=1.22\nTorch\n",
            "pyproject.toml": (
                '[project]\ndependencies = ["numpy<2", "torch[opt]>=2"]\n'
                '[project.optional-dependencies]\ndev = ["numpy"]\n'
            ),
            "setup.cfg": "[options]\ninstall_requires =\n    numpy!=1.23.0\n",
        },
    )
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert reqs["numpy", None].source == "requirements.txt:1"
    assert reqs["numpy", None].specifier == "!=1.23.0,<2,>=1.22"
    assert reqs["torch", None].extras == ("opt",)
    assert reqs["torch", None].specifier == ">=2"
    assert reqs["numpy", "dev"].source == "pyproject.toml:4"


def test_contradicting_pins_are_reported(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "requirements.txt": "numpy==1.26.4\n",
            "pyproject.toml": '[project]\ndependencies = ["numpy>=2"]\n',
        },
    )
    reqs, warnings = declared(tmp_path)
    assert reqs["numpy", None].specifier == "==1.26.4,>=2"
    assert any("conflicts with requirements.txt:1" in w for w in warnings)


def test_a_root_that_is_not_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AnalyzeError, match="not a directory"):
        declarations(tmp_path / "missing", warnings=[])[0]


# -- hostile and broken files --------------------------------------------------------------------


def test_non_utf8_file_is_skipped_with_the_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_bytes(b"numpy\ncaf\xe9-lib\n")
    (tmp_path / "requirements-dev.txt").write_text("pytest\n")
    reqs, warnings = declared(tmp_path)
    assert set(reqs) == {("pytest", "dev")}
    assert any(w.startswith("requirements.txt:2: not valid UTF-8 (byte 0xe9)") for w in warnings)


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    # What `pip freeze > requirements.txt` writes in Windows PowerShell.
    (tmp_path / "requirements.txt").write_bytes("numpy==1.26.4\r\nscipy\r\n".encode("utf-16"))
    reqs, warnings = declared(tmp_path)
    assert warnings == []
    assert reqs["numpy", None].specifier == "==1.26.4"
    assert ("scipy", None) in reqs


def test_binary_file_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00numpy\n")
    reqs, warnings = declared(tmp_path)
    assert reqs == {}
    assert any(w.startswith("requirements.txt: binary content") for w in warnings)


def test_huge_file_is_skipped(tmp_path: Path) -> None:
    with (tmp_path / "requirements.txt").open("wb") as f:
        f.write(b"numpy\n")
        f.truncate(MAX_BYTES + 1)  # sparse: cheap to make
    (tmp_path / "requirements-dev.txt").write_text("pytest\n")
    reqs, warnings = declared(tmp_path)
    assert set(reqs) == {("pytest", "dev")}
    assert any(w.startswith("requirements.txt:") and "byte limit" in w for w in warnings)


def test_unreadable_entries_directory_fifo_and_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").mkdir()  # root can read anything, but not a directory
    os.mkfifo(tmp_path / "requirements-dev.txt")  # opening it for reading would block forever
    (tmp_path / "requirements-test.txt").symlink_to(tmp_path / "nowhere.txt")
    (tmp_path / "pyproject.toml").mkdir()
    (tmp_path / "requirements-gpu.txt").write_text("-r missing.in\ncupy\n")
    reqs, warnings = declared(tmp_path)
    assert set(reqs) == {("cupy", "gpu")}
    assert any(w.startswith("requirements.txt: is a directory") for w in warnings)
    assert any(w.startswith("requirements-dev.txt: is a named pipe") for w in warnings)
    assert any(w.startswith("requirements-test.txt: not found") for w in warnings)
    assert any(w.startswith("pyproject.toml: is a directory") for w in warnings)
    assert any(w.startswith("requirements-gpu.txt:1: missing.in: not found") for w in warnings)


def test_symlinks_leading_outside_are_not_followed(tmp_path: Path) -> None:
    outside = make(
        tmp_path / "outside",
        {"reqs.txt": "leaked\n", "folder/base.txt": "leaked-too\n", "py.toml": "[project]\n"},
    )
    repo = make(tmp_path / "repo", {"local.in": "inside-pkg\n"})
    (repo / "requirements.txt").symlink_to(outside / "reqs.txt")
    (repo / "requirements").symlink_to(outside / "folder")
    (repo / "pyproject.toml").symlink_to(outside / "py.toml")
    (repo / "requirements-ok.txt").symlink_to(repo / "local.in")  # inside: fine
    reqs, warnings = declared(repo)
    assert set(reqs) == {("inside-pkg", "ok")}
    assert any(w.startswith("requirements.txt: a symlink leading outside") for w in warnings)
    assert any(w.startswith("requirements: a symlink leading outside") for w in warnings)
    assert any(w.startswith("pyproject.toml: a symlink leading outside") for w in warnings)


@pytest.fixture
def opened_paths() -> Iterator[list[str]]:
    """Record every path opened and every process or code execution attempted."""
    seen: list[str] = []
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not active[0]:
            return
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            seen.append(os.fsdecode(args[0]))
        elif event in {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "exec"}:
            seen.append(f"EXECUTED:{event}")

    sys.addaudithook(hook)  # audit hooks cannot be removed; the flag switches this one off
    try:
        yield seen
    finally:
        active[0] = False


def test_nothing_is_executed_and_nothing_outside_or_dotenv_is_opened(
    tmp_path: Path, opened_paths: list[str]
) -> None:
    marker = tmp_path / "setup-ran"
    (tmp_path / "outside.txt").write_text("outside\n")
    repo = make(
        tmp_path / "repo",
        {
            ".env": "SECRET=1\n",
            "sub/.env": "SECRET=2\n",
            "requirements.txt": "-r ../outside.txt\n-r sub/.env\nnumpy\n",
            "setup.py": (
                f"import subprocess; subprocess.run(['touch', {str(marker)!r}])\n"
                "from setuptools import setup\n"
                "setup(install_requires=['scipy'], python_requires='>=3.10')\n"
            ),
            "environment.yml": "dependencies:\n  - !!python/object/apply:os.system ['touch x']\n",
            "pyproject.toml": '[project]\ndependencies = ["-e ."]\n',
        },
    )
    opened_paths.clear()  # what the test itself wrote
    warnings: list[str] = []
    reqs = declarations(repo, warnings=warnings)[0]
    detect_python(repo, warnings=warnings)
    assert {r.name for r in reqs} >= {"numpy", "scipy"}
    assert not marker.exists()
    assert not any(p.startswith("EXECUTED") for p in opened_paths), opened_paths
    resolved_repo = repo.resolve()
    for path in opened_paths:
        if Path(path).is_absolute() and Path(path).is_relative_to(tmp_path):
            assert Path(path).resolve().is_relative_to(resolved_repo), path
        assert Path(path).name != ".env", path
    assert any(w.startswith("requirements.txt:2: sub/.env: .env files") for w in warnings)


# -- constraint translation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("poetry", "pep440"),
    [
        ("^1.2.3", ">=1.2.3,<2"),
        ("^0.2.3", ">=0.2.3,<0.3"),
        ("^0.0.3", ">=0.0.3,<0.0.4"),
        ("^0", ">=0,<1"),
        ("^0.0", ">=0.0,<0.1"),
        ("~1.2.3", ">=1.2.3,<1.3"),
        ("~1.2", ">=1.2,<1.3"),
        ("~1", ">=1,<2"),
        ("~=1.4", "~=1.4"),
        ("*", ""),
        ("1.2.3", "==1.2.3"),
        ("=1.0", "==1.0"),
        ("1.2.*", "==1.2.*"),
        (">=1.2 <2", ">=1.2,<2"),
        (">= 1.2, < 2", ">=1.2,<2"),
        ("!=1.5", "!=1.5"),
    ],
)
def test_poetry_constraints(poetry: str, pep440: str) -> None:
    assert SpecifierSet(poetry_specifier(poetry)) == SpecifierSet(pep440)


@pytest.mark.parametrize("bad", ["^x", "1.0 || 2.0", "~~1", ">=foo bar"])
def test_poetry_constraints_that_cannot_be_translated(bad: str) -> None:
    with pytest.raises(ConstraintError):
        poetry_specifier(bad)


@pytest.mark.parametrize(
    ("spec", "name", "pep440"),
    [
        ("numpy=1.24", "numpy", "==1.24.*"),
        ("numpy==1.24", "numpy", "==1.24"),
        ("numpy 1.24", "numpy", "==1.24"),
        ("numpy 1.24.* py310_0", "numpy", "==1.24.*"),
        ("numpy=1.24=py310h_0", "numpy", "==1.24.*"),
        ("conda-forge::numpy>=1.2,<2", "numpy", ">=1.2,<2"),
        ("numpy >=1.2", "numpy", ">=1.2"),
        ("numpy 1.8*", "numpy", "==1.8.*"),
        ("numpy", "numpy", ""),
        ("numpy *", "numpy", ""),
    ],
)
def test_conda_specs(spec: str, name: str, pep440: str) -> None:
    got_name, version = split_conda(spec)
    assert got_name == name
    assert SpecifierSet(conda_specifier(version) if version else "") == SpecifierSet(pep440)


# -- robustness ----------------------------------------------------------------------------------

_FILES = (
    "requirements.txt",
    "pyproject.toml",
    "Pipfile",
    "environment.yml",
    "setup.py",
    "setup.cfg",
    ".python-version",
)
_ALPHABET = "abcnpy0123.=<>~^*[]{}()'\",;:#@/\\-_ \n\tegitr"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    filename=st.sampled_from(_FILES),
    content=st.one_of(st.text(alphabet=_ALPHABET, max_size=200), st.binary(max_size=200)),
)
def test_arbitrary_content_never_crashes(
    tmp_path: Path, filename: str, content: str | bytes
) -> None:
    path = tmp_path / filename
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    warnings: list[str] = []
    for req in declarations(tmp_path, warnings=warnings)[0]:
        SpecifierSet(req.specifier)  # always a valid specifier string
    # A conflict or an unsupported pin is a user error, reported as such.
    with contextlib.suppress(AnalyzeError):
        detect_python(tmp_path, warnings=warnings)
    assert all(warnings)  # no empty warning lines


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("pyproject.toml", "x = " + "[" * 50_000 + "]" * 50_000 + "\n"),
        ("environment.yml", "dependencies: " + "[" * 50_000 + "]" * 50_000 + "\n"),
        ("setup.py", "x = " + "[" * 50_000 + "]" * 50_000 + "\n"),
        ("Pipfile", "a = " + "{b = " * 20_000 + "1" + "}" * 20_000 + "\n"),
    ],
)
def test_deeply_nested_files_are_warnings(tmp_path: Path, filename: str, content: str) -> None:
    (tmp_path / filename).write_text(content)
    warnings: list[str] = []
    assert declarations(tmp_path, warnings=warnings)[0] == ()
    assert any(w.startswith(filename) for w in warnings), warnings


@pytest.mark.parametrize(
    ("pyproject", "expected"),
    [
        pytest.param(
            '[[tool.uv.index]]\nname = "cpu"\nurl = "https://download.pytorch.org/whl/cpu"\n'
            "explicit = true\n"
            '[[tool.uv.index]]\nurl = "https://mirror.example/simple"\ndefault = true\n'
            '[tool.uv.sources]\ntorch = [{ index = "cpu" }]\n',
            [
                ("https://download.pytorch.org/whl/cpu", False, "pyproject.toml:3"),
                ("https://mirror.example/simple", True, "pyproject.toml:6"),
            ],
            id="uv-index",
        ),
        pytest.param(
            '[tool.uv]\nindex-url = "https://mirror.example/simple"\n'
            'extra-index-url = ["https://download.pytorch.org/whl/cu124"]\n',
            [
                ("https://mirror.example/simple", True, "pyproject.toml:2"),
                ("https://download.pytorch.org/whl/cu124", False, "pyproject.toml:3"),
            ],
            id="uv-legacy-keys",
        ),
        pytest.param(
            # A primary source (the default priority) disables Poetry's implicit PyPI.
            '[[tool.poetry.source]]\nname = "corp"\nurl = "https://corp.example/simple"\n'
            '[[tool.poetry.source]]\nname = "cpu"\nurl = "https://download.pytorch.org/whl/cpu"\n'
            'priority = "explicit"\n',
            [
                ("https://corp.example/simple", True, "pyproject.toml:3"),
                ("https://download.pytorch.org/whl/cpu", False, "pyproject.toml:6"),
            ],
            id="poetry-primary",
        ),
        pytest.param(
            # ... unless PyPI is listed by name; a supplemental source never replaces it.
            '[[tool.poetry.source]]\nname = "PyPI"\npriority = "primary"\n'
            '[[tool.poetry.source]]\nname = "corp"\nurl = "https://corp.example/simple"\n'
            '[[tool.poetry.source]]\nname = "s"\nurl = "https://s.example/simple"\n'
            'priority = "supplemental"\n',
            [
                ("https://corp.example/simple", False, "pyproject.toml:6"),
                ("https://s.example/simple", False, "pyproject.toml:9"),
            ],
            id="poetry-pypi-listed",
        ),
        pytest.param(
            '[[tool.pdm.source]]\nname = "pypi"\nurl = "https://mirror.example/simple"\n'
            '[[tool.pdm.source]]\nname = "links"\nurl = "https://links.example/"\n'
            'type = "find_links"\n'
            '[[tool.pdm.source]]\nname = "cpu"\nurl = "https://download.pytorch.org/whl/cpu"\n',
            [
                ("https://mirror.example/simple", True, "pyproject.toml:3"),
                ("https://download.pytorch.org/whl/cpu", False, "pyproject.toml:10"),
            ],
            id="pdm",
        ),
    ],
)
def test_pyproject_tool_indexes(
    tmp_path: Path, pyproject: str, expected: list[tuple[str, bool, str]]
) -> None:
    """uv's, Poetry's and PDM's own index tables, in pip's terms: which replaces PyPI."""
    make(tmp_path, {"pyproject.toml": pyproject})
    _, indexes = declarations(tmp_path, warnings=[])
    assert [(i.url, i.primary, i.source) for i in indexes] == expected


def test_pipfile_first_source_is_the_default_index(tmp_path: Path) -> None:
    """Pipenv installs from its first source; PyPI itself is no declared index."""
    make(
        tmp_path,
        {
            "Pipfile": '[[source]]\nurl = "https://corp.example/simple"\n'
            '[[source]]\nurl = "https://pypi.org/simple"\n'
            '[packages]\nnumpy = "*"\n'
        },
    )
    _, indexes = declarations(tmp_path, warnings=[])
    assert [(i.url, i.primary, i.source) for i in indexes] == [
        ("https://corp.example/simple", True, "Pipfile:2")
    ]


def test_indexes_of_the_main_requirements_only_with_their_sources(tmp_path: Path) -> None:
    """A dev file's index serves the dev tools, not the image; a subproject's keeps its folder."""
    make(
        tmp_path,
        {
            "requirements.txt": "--extra-index-url https://download.pytorch.org/whl/cpu\ntorch\n",
            "requirements-dev.txt": "--index-url https://dev.example/simple\npytest\n",
            "backend/pyproject.toml": '[project]\nname = "app"\ndependencies = ["fastapi"]\n',
            "backend/requirements.txt": (
                "-i https://mirror.example/simple\n"
                "--extra-index-url https://download.pytorch.org/whl/cpu\nuvicorn\n"
            ),
        },
    )
    _, indexes = declarations(tmp_path, warnings=[])
    assert [(i.url, i.primary, i.source) for i in indexes] == [
        ("https://download.pytorch.org/whl/cpu", False, "requirements.txt:1"),
        ("https://mirror.example/simple", True, "backend/requirements.txt:1"),
    ]
