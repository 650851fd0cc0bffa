from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib

from mlpack.analyze import imports
from mlpack.analyze.analysis import DeclaredRequirement
from mlpack.analyze.factcache import collect_facts
from mlpack.analyze.imports import (
    ImportAnalysis,
    analyze_imports,
    import_map,
    is_runtime_only,
    stdlib_modules,
)
from mlpack.analyze.installed import InstalledEvidence, installed_evidence, repo_environments
from mlpack.analyze.walk import walk_repo
from tests.unit.analyze.repo_helpers import make_repo

NOTHING_INSTALLED = InstalledEvidence(provides={}, top_levels={})


def run(
    root: Path,
    *,
    declared: tuple[DeclaredRequirement, ...] = (),
    installed: InstalledEvidence = NOTHING_INSTALLED,
    python: str = "3.11",
) -> tuple[ImportAnalysis, list[str]]:
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    facts = collect_facts(tree, cache_dir=root.parent / "cache", warnings=warnings)
    result = analyze_imports(
        tree,
        facts,
        python_version=python,
        declared=declared,
        installed=installed,
        warnings=warnings,
    )
    return result, warnings


def req(
    name: str,
    source: str = "requirements.txt:1",
    *,
    specifier: str = "",
    group: str | None = None,
    editable: bool = False,
    url: str | None = None,
) -> DeclaredRequirement:
    return DeclaredRequirement(
        name=name, specifier=specifier, source=source, group=group, editable=editable, url=url
    )


def names(result: ImportAnalysis) -> list[str]:
    return [p.name for p in result.packages]


def test_stdlib_own_modules_future_and_relative_are_left_out(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": """
                from __future__ import annotations
                import os, sys, json, tomllib
                import mypkg.sub
                import helpers
                import srcpkg
                import nspkg.thing
                import scriptlib
                import yaml
                from . import rel
                import requests
            """,
            "helpers.py": "",
            "mypkg/__init__.py": "",
            "mypkg/sub.py": "",
            "src/srcpkg/__init__.py": "",
            "nspkg/thing.py": "",  # a namespace folder nobody else provides
            "scripts/run.py": "import scriptlib\nimport numpy\nimport yaml\n",
            "scripts/scriptlib.py": "",
            "scripts/yaml.py": "",
        },
    )
    result, _ = run(root)
    # scripts/yaml.py shadows PyYAML only for its sibling scripts/run.py (a script folder);
    # an unknown name defined anywhere in the repository is taken as local.
    assert names(result) == ["numpy", "pyyaml", "requests"]
    yaml = next(p for p in result.packages if p.name == "pyyaml")
    assert yaml.source == "train.py:9"


def test_sibling_of_a_package_module_is_not_own(tmp_path: Path) -> None:
    # In a package, `import datasets` is absolute: Hugging Face datasets, not pkg/datasets.py.
    root = make_repo(
        tmp_path / "repo",
        {"pkg/__init__.py": "", "pkg/datasets.py": "", "pkg/train.py": "import datasets\n"},
    )
    result, _ = run(root)
    assert names(result) == ["datasets"]


def test_namespace_folder_loses_to_a_known_distribution(tmp_path: Path) -> None:
    # A regular package from site-packages wins over a namespace portion at the root.
    root = make_repo(
        tmp_path / "repo", {"datasets/prepare.py": "", "train.py": "import datasets\n"}
    )
    result, _ = run(root)
    assert names(result) == ["datasets"]


def test_stdlib_depends_on_the_target_python(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "import tomllib\nimport asyncore\n"})
    assert names(run(root, python="3.10")[0]) == ["tomllib"]
    assert names(run(root, python="3.11")[0]) == []
    assert names(run(root, python="3.12")[0]) == ["asyncore"]
    assert "distutils" in stdlib_modules("3.11")
    assert "distutils" not in stdlib_modules("3.12")
    assert "telnetlib" not in stdlib_modules("3.13")
    assert stdlib_modules("3.9") == stdlib_modules("3.10")
    assert stdlib_modules("3.8") == stdlib_modules("3.9")  # nearest listed version


def test_curated_mapping(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "a.py": """
                import sklearn, PIL.Image, yaml, bs4, attr, dateutil.parser, dotenv, jwt
                import hydra, kafka, Crypto.Cipher, OpenSSL, serial, magic, git, zmq, fitz
                import google.protobuf.message
                from google.cloud import storage
                import google.cloud.storage
            """
        },
    )
    result, warnings = run(root)
    assert names(result) == sorted(
        [
            "scikit-learn",
            "pillow",
            "pyyaml",
            "beautifulsoup4",
            "attrs",
            "python-dateutil",
            "python-dotenv",
            "pyjwt",
            "hydra-core",
            "kafka-python",
            "pycryptodome",
            "pyopenssl",
            "pyserial",
            "python-magic",
            "gitpython",
            "pyzmq",
            "pymupdf",
            "protobuf",
            "google-cloud-storage",
        ]
    )
    assert not [w for w in warnings if w.startswith("unknown")], warnings
    assert len(import_map()) >= 150


@pytest.mark.parametrize(
    ("code", "python", "expected"),
    [
        ("import open_clip\nimport imwatermark\nimport st_keyup\n", "3.11",
         ["invisible-watermark", "open-clip-torch", "streamlit-keyup"]),
        ("import paddle\n", "3.11", ["paddlepaddle"]),  # PyPI's "paddle" is another project
        ("import functorch\n", "3.11", ["torch"]),  # ships inside torch
        ("import distutils.core\n", "3.12", ["setuptools"]),  # stdlib until 3.11
        ("import distutils.core\n", "3.11", []),
    ],
)  # fmt: skip
def test_names_the_index_gets_wrong(
    tmp_path: Path, code: str, python: str, expected: list[str]
) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": code})
    result, _ = run(root, python=python)
    assert names(result) == expected


def test_ambiguity_is_reported_unless_declared_or_installed(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "import cv2\n"})
    result, warnings = run(root)
    assert names(result) == ["opencv-python"]
    assert len(result.ambiguous) == 1
    amb = result.ambiguous[0]
    assert amb.module == "cv2"
    assert "opencv-python-headless" in amb.candidates
    assert amb.locations == ("a.py:1",)
    assert any(w.startswith("ambiguous: import cv2 is provided by") for w in warnings)

    declared, _ = run(root, declared=(req("opencv-python-headless"),))
    assert names(declared) == ["opencv-python-headless"]
    assert declared.ambiguous == ()
    assert declared.packages[0].used
    assert declared.packages[0].imports == ("cv2",)

    installed = InstalledEvidence(
        provides={"cv2": ("opencv-contrib-python",)},
        top_levels={"opencv-contrib-python": frozenset({"cv2"})},
    )
    chosen, _ = run(root, installed=installed)
    assert names(chosen) == ["opencv-contrib-python"]
    assert chosen.ambiguous == ()


def test_installed_evidence_first_and_curated_wins_when_it_is_ambiguous(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "import foo_lib\nimport yaml\nimport multi\n"})
    installed = InstalledEvidence(
        provides={
            "foo_lib": ("foo-distribution",),
            "yaml": ("pyyaml", "types-pyyaml-shim"),
            "multi": ("one", "two"),
        },
        top_levels={},
    )
    result, _ = run(root, installed=installed)
    assert names(result) == ["foo-distribution", "one", "pyyaml"]
    assert [a.module for a in result.ambiguous] == ["multi"]


def test_declared_beats_inferred_and_unused_declarations_warn(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "a.py": "import yaml\nimport numpy\ntry:\n    import rich\nexcept ImportError:\n    pass\n"
        },
    )
    declared = (
        req("PyYAML", "requirements.txt:1", specifier=">=6"),
        req("requests", "requirements.txt:2"),
        req("uvicorn", "requirements.txt:3"),
        req("nvidia-cudnn-cu12", "requirements.txt:4"),
        req("pytest", "pyproject.toml:9", group="test"),
        req("mylib", "requirements.txt:5", editable=True, url="file:./mylib"),
    )
    result, warnings = run(root, declared=declared)
    by_name = {p.name: p for p in result.packages}
    assert list(by_name) == sorted(by_name)
    yaml = by_name["pyyaml"]
    assert (yaml.declared, yaml.used, yaml.specifier, yaml.source, yaml.imports) == (
        True,
        True,
        ">=6",
        "requirements.txt:1",
        ("yaml",),
    )
    numpy = by_name["numpy"]
    assert (numpy.declared, numpy.used, numpy.source, numpy.optional) == (
        False,
        True,
        "a.py:2",
        False,
    )
    assert by_name["rich"].optional is True
    assert by_name["requests"].used is False
    assert (by_name["pytest"].group, by_name["pytest"].usage) == ("test", "dev")
    assert "undeclared: numpy (imported as numpy at a.py:2)" in warnings
    assert "undeclared: rich (optional, imported as rich at a.py:4)" in warnings
    assert "declared but never imported: requests (requirements.txt:2)" in warnings
    # servers, CUDA wheels, dev groups and local packages are used without an import
    assert not [w for w in warnings if "never imported" in w and "requests" not in w]
    assert is_runtime_only("uvicorn")
    assert is_runtime_only("nvidia-cublas-cu12")
    assert not is_runtime_only("requests")


def test_test_only_imports_get_the_test_group(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {"tests/test_a.py": "import pytest\nimport numpy\n", "a.py": "import numpy\n"},
    )
    result, _ = run(root)
    groups = {p.name: p.usage for p in result.packages}
    assert groups == {"numpy": "runtime", "pytest": "test"}


def test_suspicious_guesses_warn(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "import utils\nimport somelib\nimport _priv\n"})
    result, warnings = run(root)
    assert names(result) == ["priv", "somelib", "utils"]
    guessed = [w for w in warnings if w.startswith("guessed:")]
    assert len(guessed) == 2
    assert "import utils" in guessed[1]
    assert "is it a local module?" in guessed[1]


def test_installed_evidence_reads_metadata_only(tmp_path: Path) -> None:
    site = make_repo(
        tmp_path / "site",
        {
            "PyYAML-6.0.dist-info/top_level.txt": "_yaml\nyaml\n",
            "PyYAML-6.0.dist-info/RECORD": "yaml/__init__.py,,\n",
            "opencv_python_headless-4.9.dist-info/RECORD": "cv2/__init__.py,sha256=x,1\n"
            "opencv_python_headless-4.9.dist-info/METADATA,,\n",
            "protobuf-4.0.dist-info/RECORD": "google/protobuf/__init__.py,,\n",
            "google_auth-2.0.dist-info/RECORD": "google/auth/__init__.py,,\n",
            "single_mod-1.0.dist-info/RECORD": "single_mod.py,,\nbin/tool,,\n",
            "old_egg-1.0-py3.11.egg-info/installed-files.txt": "../old_egg/__init__.py\n",
            "junk-1.0.dist-info/top_level.txt": "tests\n",
        },
    )
    evidence = installed_evidence([site])
    assert evidence.provides["yaml"] == ("pyyaml",)
    assert evidence.provides["cv2"] == ("opencv-python-headless",)
    assert evidence.provides["google.protobuf"] == ("protobuf",)
    assert evidence.provides["google"] == ("google-auth", "protobuf")
    assert evidence.provides["single_mod"] == ("single-mod",)
    assert "tests" not in evidence.provides
    assert evidence.top_levels["pyyaml"] == frozenset({"_yaml", "yaml"})


def test_repo_environment_is_found(tmp_path: Path) -> None:
    make_repo(
        tmp_path,
        {
            ".venv/pyvenv.cfg": "home = /usr/bin\n",
            ".venv/lib/python3.11/site-packages/x.py": "",
            "notenv/lib/python3.11/site-packages/y.py": "",
        },
    )
    assert repo_environments(tmp_path) == (tmp_path / ".venv/lib/python3.11/site-packages",)


def test_the_running_version_uses_its_own_list_which_the_table_agrees_with() -> None:
    """The shortcut for the running Python changes nothing: its table entry is the same list."""
    running = f"{sys.version_info[0]}.{sys.version_info[1]}"
    table = tomllib.loads((Path(imports.__file__).parent / "data" / "stdlib.toml").read_text())
    assert frozenset(table[running]["modules"]) == frozenset(sys.stdlib_module_names)
    assert stdlib_modules(running) == frozenset(sys.stdlib_module_names)


@pytest.mark.parametrize("python", ["3.9", "3.13", "3.14"])
def test_every_listed_version_has_a_stdlib(python: str) -> None:
    assert {"os", "sys", "json"} <= stdlib_modules(python)


def test_unknown_namespace_module_is_not_guessed(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "import google.mystery\nimport azure\n"})
    result, warnings = run(root)
    assert names(result) == []
    unknown = [w for w in warnings if w.startswith("unknown:")]
    assert len(unknown) == 2
    assert "provides google.mystery (a namespace package; declare it) at a.py:1" in unknown[1]


def test_deep_local_names_unless_a_distribution_is_known(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "lib/__init__.py": "",
            "lib/models/__init__.py": "",
            "lib/models/align/__init__.py": "",
            "lib/models/align/convert.py": "import align\n",  # the original repo, not on PyPI
            "lib/integrations/__init__.py": "",
            "lib/integrations/wandb.py": "import wandb\nimport obscure_tool\n",
            "lib/obscure_tool_helpers.py": "",
        },
    )
    result, _ = run(root)
    assert names(result) == ["obscure-tool", "wandb"]


def test_a_declared_namespace_package_does_not_take_its_siblings(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo", {"a.py": "import google.protobuf\nfrom google.cloud import storage\n"}
    )
    installed = InstalledEvidence(
        provides={"google": ("protobuf",), "google.protobuf": ("protobuf",)},
        top_levels={"protobuf": frozenset({"google", "google.protobuf"})},
    )
    result, _ = run(root, declared=(req("protobuf"),), installed=installed)
    assert [(p.name, p.declared, p.imports) for p in result.packages] == [
        ("google-cloud-storage", False, ("google.cloud.storage",)),
        ("protobuf", True, ("google.protobuf",)),
    ]
