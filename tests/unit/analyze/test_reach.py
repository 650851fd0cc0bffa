"""Reachability from the entrypoints: the module graph and the usage group of each package."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mlpack.analyze import analyze
from mlpack.analyze.reach import area_of
from tests.unit.analyze.repo_helpers import make_repo, parse_mode  # noqa: F401  (fixture)

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.analyze.analysis import ProjectAnalysis


def run(root: Path, tmp_path: Path) -> ProjectAnalysis:
    return analyze(root, cache_dir=tmp_path / "cache")


def usage(result: ProjectAnalysis) -> dict[str, str]:
    return {p.name: p.usage for p in result.packages}


@pytest.mark.usefixtures("parse_mode")
def test_runtime_is_what_the_entrypoint_imports_through_own_modules(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "from model import Net\nimport numpy\n\nif __name__ == '__main__':\n"
            "    Net()\n",
            "model.py": "import torch\nfrom pkg import layers\n",
            "pkg/__init__.py": "import einops\n",
            "pkg/layers.py": "from .blocks import Block\n",
            "pkg/blocks.py": "import timm\n",
            "pkg/unused.py": "import xformers\n",
            "tests/test_model.py": "import pytest\n",
            "examples/demo.py": "import gradio\n",
            "docs/conf.py": "import sphinx_rtd_theme\n",
            "scripts/prep.py": "import pandas\nif __name__ == '__main__':\n    pass\n",
            "notebook.ipynb": '{"cells": [{"cell_type": "code", "source": "import seaborn"}]}',
            "setup.py": "import setuptools\n",
        },
    )
    result = run(root, tmp_path)
    assert usage(result) == {
        "numpy": "runtime",
        "torch": "runtime",
        "einops": "runtime",  # a package's __init__ runs when a submodule is imported
        "timm": "runtime",  # through a relative import
        "xformers": "optional",  # project code nothing runs
        "pytest": "test",
        "gradio": "examples",
        "sphinx-rtd-theme": "docs",
        "pandas": "script",
        "seaborn": "notebook",
        "setuptools": "dev",
    }
    timm = next(p for p in result.packages if p.name == "timm")
    assert timm.reached_from == ("train.py:1", "model.py:2", "pkg/layers.py:1", "pkg/blocks.py:1")


def test_an_undeclared_package_is_shown_where_the_entrypoint_imports_it(tmp_path: Path) -> None:
    """Not at the first file in path order (a notebook that sorts before the package)."""
    root = make_repo(
        tmp_path / "repo",
        {
            "notebooks/demo.ipynb": '{"cells": [{"cell_type": "code", "source": "import numpy"}]}',
            "train.py": "import sam.model\n\nif __name__ == '__main__':\n    pass\n",
            "sam/__init__.py": "",
            "sam/model.py": "import os\nimport numpy\n",
        },
    )
    result = run(root, tmp_path)
    numpy = next(p for p in result.packages if p.name == "numpy")
    assert (numpy.usage, numpy.source) == ("runtime", "sam/model.py:2")
    assert "undeclared: numpy (imported as numpy at sam/model.py:2)" in result.warnings


@pytest.mark.usefixtures("parse_mode")
def test_guarded_and_lazy_imports_are_optional(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "import model\nfrom pkg import lib\n\nif __name__ == '__main__':\n    pass\n",
            # a module beside the scripts: its lazy imports run (nanoGPT's from_pretrained)
            "model.py": "def from_pretrained():\n    from transformers import GPT2\n",
            "pkg/__init__.py": "",
            "pkg/lib.py": (
                "import importlib.util\n"
                "from extras import is_bnb_available\n"
                "try:\n    import apex\nexcept ImportError:\n    apex = None\n"
                "if is_bnb_available():\n    import bitsandbytes\n"
                "if importlib.util.find_spec('deepspeed'):\n    import deepspeed\n"
                "def export():\n    import onnx\n"  # a package's feature
                "import yaml\n"
            ),
            "extras.py": "def is_bnb_available():\n    return False\n",
        },
    )
    assert usage(run(root, tmp_path)) == {
        "transformers": "runtime",
        "apex": "optional",
        "bitsandbytes": "optional",
        "deepspeed": "optional",
        "onnx": "optional",
        "pyyaml": "runtime",
    }


def test_src_layout_sys_path_and_subprojects(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            # src/ layout, imported by its package name
            "train.py": (
                "import sys, os\n"
                "sys.path.insert(0, os.path.join(os.path.dirname(__file__), 'third_party'))\n"
                "from mypkg import core\nimport vendored\n"
                "if __name__ == '__main__':\n    core.run()\n"
            ),
            "src/mypkg/__init__.py": "",
            "src/mypkg/core.py": "import scipy\n",
            "third_party/vendored.py": "import numba\n",
            # a web app in backend/ importing app.* from there
            "backend/pyproject.toml": "[project]\nname = 'backend'\n",
            "backend/app/__init__.py": "",
            "backend/app/main.py": (
                "from fastapi import FastAPI\nfrom app.core import db\napp = FastAPI()\n"
            ),
            "backend/app/core/__init__.py": "",
            "backend/app/core/db.py": "import sqlmodel\n",
        },
    )
    result = run(root, tmp_path)
    found = usage(result)
    assert found["scipy"] == "runtime"
    assert found["numba"] == "runtime"  # found through the sys.path insertion
    assert found["fastapi"] == "runtime"
    assert found["sqlmodel"] == "runtime"  # app.core resolves in backend/, not at the root
    sqlmodel = next(p for p in result.packages if p.name == "sqlmodel")
    assert sqlmodel.reached_from[0] == "backend/app/main.py:2"


def test_a_library_without_entrypoints_runs_all_its_modules(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "src/lib/__init__.py": "",
            "src/lib/a.py": "import requests\n",
            "tests/test_a.py": "import pytest\n",
        },
    )
    assert usage(run(root, tmp_path)) == {"requests": "runtime", "pytest": "test"}


def test_json_has_group_and_reached_from(tmp_path: Path) -> None:
    from mlpack.analyze.report import to_json

    root = make_repo(
        tmp_path / "repo",
        {"train.py": "import m\nif __name__ == '__main__':\n    pass\n", "m.py": "import numpy\n"},
    )
    (package,) = to_json(run(root, tmp_path))["packages"]
    assert package["group"] == "runtime"
    assert package["reached_from"] == {"entrypoint": "train.py", "chain": ["train.py:1", "m.py:1"]}


@pytest.mark.parametrize(
    ("path", "group"),
    [
        ("tests/unit/test_x.py", "test"),
        ("pkg/x_test.py", "test"),
        ("a/conftest.py", "test"),
        ("docs/source/conf.py", "docs"),
        ("examples/nlp/run.py", "examples"),
        ("benchmarks/b.py", "benchmarks"),
        ("scripts/convert.py", "script"),
        ("analysis.ipynb", "notebook"),
        ("noxfile.py", "dev"),
        ("pkg/model.py", None),
    ],
)
def test_area_of(path: str, group: str | None) -> None:
    assert area_of(path) == group


def test_the_program_that_starts_the_app_is_runtime(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {"app/__init__.py": "", "app/main.py": "from fastapi import FastAPI\napp = FastAPI()\n"},
    )
    uvicorn = next(p for p in run(root, tmp_path).packages if p.name == "uvicorn")
    # No file imports uvicorn, but `uvicorn app.main:app` cannot start without it.
    assert (uvicorn.usage, uvicorn.declared, uvicorn.reached_from) == (
        "runtime",
        False,
        ("app/main.py:2",),
    )


def test_a_module_run_with_dash_m_runs_its_packages_init_first(tmp_path: Path) -> None:
    """denoising-diffusion-pytorch: ``python -m pkg.guided_diffusion`` imports ``pkg``, whose
    ``__init__`` imports the module that needs scipy."""
    root = make_repo(
        tmp_path / "repo",
        {
            "pkg/__init__.py": "from pkg.core import Model\n",
            "pkg/core.py": "import scipy\n",
            "pkg/guided.py": "import torch\n" + 'if __name__ == "__main__":\n    pass\n',
        },
    )
    result = run(root, tmp_path)
    assert [e.command for e in result.entrypoints][:1] == [("python", "-m", "pkg.guided")]
    scipy = next(p for p in result.packages if p.name == "scipy")
    assert (scipy.usage, scipy.reached_from) == ("runtime", ("pkg/__init__.py:1", "pkg/core.py:1"))
    assert usage(result)["torch"] == "runtime"


def test_data_preparation_scripts_are_roots(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "import torch\nwhile True:\n    break\n",
            "data/shakespeare/prepare.py": "import tiktoken\nprint(1)\n",
            "tools/convert.py": "import onnx\nprint(1)\n",
        },
    )
    assert usage(run(root, tmp_path)) == {
        "torch": "runtime",
        "tiktoken": "runtime",  # the training image prepares its data first
        "onnx": "script",
    }


def test_a_utility_is_no_root_beside_the_projects_programs(tmp_path: Path) -> None:
    """mlops-zoomcamp's web service: test.py, a client of the service, was the only
    training-kind entrypoint, so its requests became runtime; with nothing else to run, a
    utility is the root after all."""
    service = make_repo(
        tmp_path / "service",
        {
            "predict.py": "from flask import Flask\napp = Flask('p')\n",
            "test.py": "import requests\n" + 'if __name__ == "__main__":\n    requests.get("x")\n',
        },
    )
    assert usage(run(service, tmp_path)) == {
        "flask": "runtime",
        "requests": "script",
        "gunicorn": "runtime",
    }
    alone = make_repo(
        tmp_path / "alone",
        {"evaluate.py": "import numpy\n" + 'if __name__ == "__main__":\n    numpy.zeros(1)\n'},
    )
    assert usage(run(alone, tmp_path)) == {"numpy": "runtime"}


def test_modules_a_notebook_writes_are_its_own(tmp_path: Path) -> None:
    import json

    cells = [
        {"cell_type": "code", "source": "%%writefile model.py\nimport torch\nclass Net: ...\n"},
        {"cell_type": "code", "source": "import model\nimport pandas\n"},
    ]
    root = make_repo(tmp_path / "repo", {"walkthrough.ipynb": json.dumps({"cells": cells})})
    # model is the notebook's module, not a distribution; torch is what it imports.
    assert usage(run(root, tmp_path)) == {"torch": "notebook", "pandas": "notebook"}


@pytest.mark.usefixtures("parse_mode")
def test_modules_named_by_config_targets_are_runtime(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            # instantiate_from_config: the class comes from a YAML string, not an import
            "train.py": "import importlib\nimport yaml\n\nif __name__ == '__main__':\n    pass\n",
            "pkg/__init__.py": "",
            "pkg/sampling.py": "import scipy\nfrom .utils import helper\n",
            "pkg/utils.py": "import tqdm\n",
            "pkg/data.py": "import webdataset\n",
            "pkg/hydra_model.py": "import einops\n",
            "pkg/cli_model.py": "import timm\n",
            "pkg/unused.py": "import xformers\n",
            "pkg/examples_only.py": "import gradio\n",
            "configs/model.yaml": "model:\n  target: pkg.sampling.EulerSampler  # the sampler\n"
            "  params:\n    data:\n      - target: 'pkg.data.Loader'\n"
            "    other:\n      target: torch.nn.Identity\n",
            "configs/hydra.yaml": "_target_: pkg.hydra_model.Net\n",
            "configs/cli.yaml": "model: {class_path: pkg.cli_model.Net, init_args: {}}\n",
            "examples/demo.yaml": "target: pkg.examples_only.Demo\n",
            "tests/fakes.py": "import pytest\n",
            "configs/fake_model.yaml": "target: tests.fakes.FakeNet\n",
            "configs/deploy.yaml": "target: production\nversion: 1.2.3\n",  # not a module
        },
    )
    result = run(root, tmp_path)
    groups = usage(result)
    assert groups["scipy"] == groups["tqdm"] == groups["webdataset"] == "runtime"
    assert groups["einops"] == groups["timm"] == "runtime"
    assert groups["xformers"] == "optional"  # no config names it
    assert groups["gradio"] == "optional"  # only an example's config names it
    assert groups["pytest"] == "test"  # a config may name a test helper: still a test's
    tqdm = next(p for p in result.packages if p.name == "tqdm")
    assert tqdm.reached_from == ("configs/model.yaml:2", "pkg/sampling.py:2", "pkg/utils.py:1")


@pytest.mark.usefixtures("parse_mode")
def test_an_entrypoint_chain_wins_over_a_config_target(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "import app\n\nif __name__ == '__main__':\n    pass\n",
            "app.py": "from pkg import model\n",
            "pkg/__init__.py": "",
            "pkg/model.py": "import torch\n",
            "configs/model.yaml": "target: pkg.model.Net\n",
        },
    )
    torch = next(p for p in run(root, tmp_path).packages if p.name == "torch")
    assert torch.reached_from == ("train.py:1", "app.py:1", "pkg/model.py:1")
