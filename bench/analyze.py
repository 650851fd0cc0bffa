"""B3/B3a/B3c: ``mlpack analyze`` against pipreqs, speed (cold and warm) and accuracy, side by side.

Run: ``.venv/bin/python bench/analyze.py [--quick]``; the corpus of real repositories (B3c):
``.venv/bin/python bench/analyze.py --corpus DIR``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import ast
import cProfile
import email.parser
import importlib.metadata
import json
import os
import platform
import pstats
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from bench._stats import Comparison, compare, format_line, format_seconds, interleave, median

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Pinned so that ground truth and timings stay comparable from run to run.
SDISTS: tuple[tuple[str, str], ...] = (
    ("transformers", "4.46.3"),
    ("diffusers", "0.31.0"),
    ("timm", "1.0.12"),
    ("sentence-transformers", "3.3.1"),
    ("accelerate", "1.2.0"),
)
LARGE_TREE = "transformers"

GOAL_COLD = 0.25  # on the large tree, mlpack cold / pipreqs --use-local
GOAL_WARM = 0.05  # warm re-run, unchanged files

# The analyzer must infer, not read: every declared-dependency file is removed from its copy.
HIDDEN = (
    "PKG-INFO",
    "setup.py",
    "setup.cfg",
    "pyproject.toml",
    "requirements*.txt",
    "requirements*.in",
    "*.egg-info",
    "Pipfile",
    "Pipfile.lock",
    "environment.yml",
    "environment.yaml",
    "poetry.lock",
    "uv.lock",
    "mlpack.toml",
    "mlpack.lock",
)
NOT_LIBRARY = frozenset({"tests", "test", "docs", "examples", "benchmarks", "scripts", "utils"})

# pipreqs walks every sys.path entry for top_level.txt files; the editable install puts the
# repo root (with its .venv) on sys.path, which would charge pipreqs for walking site-packages
# twice. Drop that entry so pipreqs sees the plain venv, as in a user's project.
PIPREQS_LAUNCH = (
    "import sys; root = sys.argv.pop(1); sys.path[:] = [p for p in sys.path if p != root]; "
    "sys.argv[0] = 'pipreqs'; from pipreqs.pipreqs import main; main()"
)

Verdict = Literal["PASS", "FAIL", "TIE", "n/a"]


# ---------------------------------------------------------------------------------------------
# Running the tools


@dataclass(frozen=True, kw_only=True)
class Run:
    """One tool invocation: wall time, CPU time (its helpers' too), exit status, output, peak RSS.

    On a shared machine the wall time measures the neighbours as well; the CPU time does not.
    """

    seconds: float
    cpu_seconds: float
    returncode: int
    stdout: str
    stderr: str
    max_rss_mib: float

    @property
    def failure(self) -> str | None:
        """The last meaningful stderr line when the tool aborted, else None."""
        if self.returncode == 0:
            return None
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        failed_on = [line for line in lines if "Failed on file" in line or "error:" in line]
        return " | ".join([*failed_on[:1], *(lines[-1:] or [f"exit {self.returncode}"])])


def _netns_prefix() -> tuple[str, ...]:
    """``unshare -n`` when it works: both tools then provably make zero network requests."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, check=False)
    return (unshare, "-n") if probe.returncode == 0 else ()


NETNS: tuple[str, ...] = ()  # set by main(), so importing this module runs nothing


def run_cmd(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path) -> Run:
    """Run ``argv`` to completion; ``os.wait4`` gives this child's own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        # Both tools run as installed copies do, with their bytecode: PYTHONDONTWRITEBYTECODE
        # (set in some dev shells) would make every run recompile the modules it imports.
        child_env = {k: v for k, v in (env or os.environ).items() if k != "PYTHONDONTWRITEBYTECODE"}
        proc = subprocess.Popen([*NETNS, *argv], stdout=out, stderr=err, cwd=cwd, env=child_env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            seconds=seconds,
            cpu_seconds=usage.ru_utime + usage.ru_stime,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            max_rss_mib=usage.ru_maxrss / 1024,
        )


def run_pipreqs(tree: Path, *, debug: bool = False) -> Run:
    """``pipreqs --use-local --print --mode no-pin`` with this interpreter, never the network."""
    argv = [sys.executable, "-c", PIPREQS_LAUNCH, str(REPO), "--use-local", "--print"]
    argv += ["--mode", "no-pin", *(["--debug"] if debug else []), str(tree)]
    return run_cmd(argv, cwd=tree)


def run_mlpack(tree: Path, cache_home: Path, *, source: Path | None = None) -> Run:
    """``mlpack analyze TREE --json`` as a fresh process, its cache under ``cache_home``.

    ``source``: a folder whose ``mlpack`` package is run instead of this checkout's (an older
    commit's, from ``git archive``), with this venv's dependencies.
    """
    env = {**os.environ, "MLPACK_HOME": str(cache_home)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return run_cmd([str(BIN / "mlpack"), "analyze", str(tree), "--json"], env=env, cwd=tree)


def mlpack_available() -> str | None:
    """None when ``mlpack analyze --json`` exists, else why not."""
    probe = run_cmd([str(BIN / "mlpack"), "analyze", "--help"], cwd=REPO)
    if probe.returncode != 0:
        return f"`mlpack analyze --help` exited {probe.returncode}: {probe.failure}"
    if "--json" not in probe.stdout:
        return "`mlpack analyze` has no --json option yet"
    return None


def pipreqs_packages(run: Run) -> frozenset[str]:
    """The canonical names pipreqs printed (one per line, no pins)."""
    names = set()
    for line in run.stdout.splitlines():
        text = line.strip()
        if text and not text.startswith(("#", "INFO", "WARNING", "ERROR", "DEBUG")):
            names.add(canonicalize_name(re.split(r"[=<>~! ;\[]", text, maxsplit=1)[0]))
    return frozenset(names)


def pipreqs_mapped(run: Run) -> frozenset[str]:
    """pipreqs's own import scan and mapping table, before its installed-packages filter.

    ``--use-local`` drops every import not installed in the running interpreter, so its recall
    says more about the bench venv than about pipreqs. This is what pipreqs would ask the index
    for in network mode: a fairer, stronger baseline (printed as ``pipreqs-map``).
    """
    for line in run.stderr.splitlines():
        if "Found imports:" in line:
            found = line.split("Found imports:", 1)[1]
            return frozenset(canonicalize_name(n.strip()) for n in found.split(",") if n.strip())
    return frozenset()


def mlpack_packages(run: Run) -> tuple[frozenset[str], tuple[str, ...]]:
    """Every package ``mlpack analyze --json`` lists, and those of them no import maps to.

    Declared files are hidden from the analyzer, so every package it lists was inferred from
    the code; the second item names any that were not (they still count).
    """
    packages = json.loads(run.stdout)["packages"]
    names = frozenset(canonicalize_name(p["name"]) for p in packages)
    unused = tuple(sorted(canonicalize_name(p["name"]) for p in packages if not p.get("imports")))
    return names, unused


def parse_clean_copy(tree: Path, dest: Path) -> tuple[Path, tuple[str, ...]]:
    """Copy ``tree`` without the .py files ``ast.parse`` rejects (what aborts pipreqs)."""
    dropped = []
    for path in sorted(tree.rglob("*.py")):
        try:
            ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            dropped.append(str(path.relative_to(tree)))
    shutil.copytree(
        tree,
        dest,
        ignore=lambda d, names: [
            n for n in names if str((Path(d) / n).relative_to(tree)) in dropped
        ],
    )
    return dest, tuple(dropped)


# ---------------------------------------------------------------------------------------------
# Trees and ground truth


@dataclass(frozen=True, kw_only=True)
class Truth:
    """Expected distributions; each entry lists the names that are all acceptable for it."""

    core: tuple[frozenset[str], ...]
    full: tuple[frozenset[str], ...]  # core plus every extra (the code imports optional deps)
    forbidden: frozenset[str] = frozenset()  # must never appear (.venv content, type-only)


@dataclass(frozen=True, kw_only=True)
class Tree:
    """A bench copy of a source tree, with its hidden declared files' truth."""

    name: str
    path: Path
    truth: Truth
    scope: str  # what both tools scan, in words


def _single(names: Iterable[str]) -> tuple[frozenset[str], ...]:
    return tuple(frozenset({n}) for n in sorted(set(names)))


def _requirements(lines: Iterable[str], project: str) -> tuple[set[str], set[str]]:
    """Split requirement strings into (core, extras) canonical names, without the project."""
    core: set[str] = set()
    extra: set[str] = set()
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project):
            continue
        (extra if req.marker is not None and "extra" in str(req.marker) else core).add(name)
    return core, extra - core


def _egg_requires(path: Path, project: str) -> tuple[set[str], set[str]]:
    """``*.egg-info/requires.txt``: lines before the first ``[section]`` are core."""
    core: list[str] = []
    extra: list[str] = []
    target = core
    for line in path.read_text().splitlines():
        if line.startswith("["):
            # "[:python_version < '3.9']" is a marker on core deps; "[extra...]" is an extra.
            target = core if line.startswith("[:") else extra
            continue
        target.append(line)
    core_names, _ = _requirements(core, project)
    extra_names, _ = _requirements(extra, project)
    return core_names, extra_names - core_names


def sdist_truth(root: Path, project: str) -> Truth:
    """The sdist's own declared requirements: PKG-INFO, else ``*.egg-info/requires.txt``."""
    meta = email.parser.Parser().parsestr((root / "PKG-INFO").read_text())
    requires = meta.get_all("Requires-Dist") or []
    if requires:
        core, extra = _requirements(requires, project)
    else:
        found = sorted(root.glob("*.egg-info/requires.txt")) + sorted(
            root.glob("src/*.egg-info/requires.txt")
        )
        if not found:
            msg = f"{root.name}: no Requires-Dist in PKG-INFO and no egg-info/requires.txt"
            raise SystemExit(msg)
        core, extra = _egg_requires(found[0], project)
    return Truth(core=_single(core), full=_single(core | extra))


def declared_truth(root: Path) -> Truth:
    """An example project's declared requirements: requirements*.txt and pyproject.toml."""
    core: set[str] = set()
    extra: set[str] = set()
    for req_file in sorted(root.glob("requirements*.txt")):
        names, _ = _requirements(req_file.read_text().splitlines(), root.name)
        (core if req_file.name == "requirements.txt" else extra).update(names)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        names, _ = _requirements(project.get("dependencies", []), project.get("name", ""))
        core |= names
        for group in project.get("optional-dependencies", {}).values():
            names, _ = _requirements(group, project.get("name", ""))
            extra |= names
    return Truth(core=_single(core), full=_single(core | extra))


def copy_hidden(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` without any declared-dependency file or VCS/bytecode litter."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*HIDDEN, ".git", "__pycache__"))


def fetch_sdist(cache: Path, name: str, version: str) -> Path:
    """The cached sdist archive, downloaded once with pip (``--no-binary :all:``)."""
    slot = cache / f"{canonicalize_name(name)}-{version}"
    found = sorted(slot.glob("*.tar.gz")) if slot.is_dir() else []
    if found:
        return found[0]
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    argv += ["--no-binary", ":all:", "--dest", str(staging), f"{name}=={version}"]
    subprocess.run(argv, check=True)
    if slot.exists():
        shutil.rmtree(slot)
    staging.rename(slot)  # atomic: a half-finished download never looks cached
    return min(slot.glob("*.tar.gz"))


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack an sdist into ``dest`` and return its single top-level folder."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.11.4; the archives are pinned pip downloads
            tar.extractall(dest)
    (top,) = [p for p in dest.iterdir() if p.is_dir()]
    return top


def library_dirs(sdist_root: Path) -> tuple[Path, ...]:
    """The sdist's import packages: ``src/*`` or top-level packages that are not tests/docs."""
    base = sdist_root / "src" if (sdist_root / "src").is_dir() else sdist_root
    return tuple(
        p
        for p in sorted(base.iterdir())
        if p.is_dir() and (p / "__init__.py").is_file() and p.name not in NOT_LIBRARY
    )


def sdist_tree(cache: Path, work: Path, name: str, version: str) -> Tree:
    """A fresh bench copy of the sdist's library source, with truth from its PKG-INFO."""
    sdist_root = unpack(fetch_sdist(cache, name, version), work / f"unpacked-{name}")
    tree = work / "trees" / name
    tree.mkdir(parents=True)
    packages = library_dirs(sdist_root)
    for package in packages:
        copy_hidden(package, tree / package.name)
    scope = "library source only: " + ", ".join(str(p.relative_to(sdist_root)) for p in packages)
    return Tree(
        name=f"{name}-{version}", path=tree, truth=sdist_truth(sdist_root, name), scope=scope
    )


def example_trees(work: Path) -> list[Tree]:
    """examples/training and examples/inference, when present, with their declared deps hidden."""
    trees = []
    for name in ("training", "inference"):
        src = REPO / "examples" / name
        if not src.is_dir():
            continue
        dest = work / "trees" / f"example-{name}"
        copy_hidden(src, dest)
        trees.append(
            Tree(name=f"examples/{name}", path=dest, truth=declared_truth(src), scope="whole tree")
        )
    return trees


# ---------------------------------------------------------------------------------------------
# The synthetic tricky repo (BENCHMARKS.md §2 fixtures)

# (import statement, acceptable distributions). Import names that differ from the
# distribution's name are the classic mapping errors (pipreqs #5, #138, #244, #329, #360).
TRICKY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("import numpy as np", ("numpy",)),
    ("import pandas as pd", ("pandas",)),
    ("import scipy.stats", ("scipy",)),
    ("import torch\nimport torch.nn as nn", ("torch",)),
    ("import torchvision", ("torchvision",)),
    ("from sklearn.model_selection import train_test_split", ("scikit-learn",)),
    ("import cv2", ("opencv-python", "opencv-python-headless", "opencv-contrib-python")),
    ("from PIL import Image", ("pillow",)),
    ("import yaml", ("pyyaml",)),
    ("from bs4 import BeautifulSoup", ("beautifulsoup4",)),
    ("import attr", ("attrs",)),
    ("import hydra", ("hydra-core",)),
    ("from omegaconf import OmegaConf", ("omegaconf",)),
    ("from kafka import KafkaConsumer", ("kafka-python", "kafka-python-ng")),
    ("from google.protobuf import json_format", ("protobuf",)),
    ("from google.cloud import storage", ("google-cloud-storage",)),
    ("import google.auth", ("google-auth",)),
    ("import googleapiclient.discovery", ("google-api-python-client",)),
    ("import dateutil.parser", ("python-dateutil",)),
    ("from dotenv import load_dotenv", ("python-dotenv",)),
    ("import jwt", ("pyjwt",)),
    ("import serial", ("pyserial",)),
    ("from Crypto.Cipher import AES", ("pycryptodome", "pycryptodomex", "pycrypto")),
    ("from skimage import io", ("scikit-image",)),
    ("import zmq", ("pyzmq",)),
    ("import git", ("gitpython",)),
    ("import magic", ("python-magic",)),
    ("from docx import Document", ("python-docx",)),
    ("import psycopg2", ("psycopg2", "psycopg2-binary")),
    ("import MySQLdb", ("mysqlclient",)),
    ("import OpenSSL", ("pyopenssl",)),
    ("import nacl.secret", ("pynacl",)),
    ("import websocket", ("websocket-client",)),
    ("from absl import flags", ("absl-py",)),
    ("from tensorboardX import SummaryWriter", ("tensorboardx",)),
    ("import pytorch_lightning as pl", ("pytorch-lightning",)),
    ("from ruamel.yaml import YAML", ("ruamel-yaml",)),
    ("import pkg_resources", ("setuptools",)),
    ("from typing_extensions import Literal", ("typing-extensions",)),
    ("import tqdm", ("tqdm",)),
    ("import requests", ("requests",)),
    ("import matplotlib.pyplot as plt\nfrom mpl_toolkits.mplot3d import Axes3D", ("matplotlib",)),
    ("import transformers", ("transformers",)),
    ("import datasets", ("datasets",)),
    ("from accelerate import Accelerator", ("accelerate",)),
    ("import faiss", ("faiss-cpu", "faiss-gpu")),
    ("from jose import jwt as jose_jwt", ("python-jose",)),
    ("import slugify", ("python-slugify",)),
    ("import sentencepiece", ("sentencepiece",)),
    ("import lightgbm", ("lightgbm",)),
    ("import xgboost", ("xgboost",)),
    ("import wandb", ("wandb",)),
    ("import mlflow", ("mlflow",)),
    ("import Levenshtein", ("levenshtein", "python-levenshtein")),
    ("import usb.core", ("pyusb",)),
    ("import socks", ("pysocks",)),
    ("import tensorflow as tf\nfrom keras import layers", ("tensorflow",)),
    ("from keras import ops", ("keras",)),
)
SERVE_IMPORTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("from fastapi import FastAPI", ("fastapi",)),
    ("from pydantic import BaseModel", ("pydantic",)),
    ("import uvicorn", ("uvicorn",)),
    ("import multipart", ("python-multipart",)),
    ("import jinja2", ("jinja2",)),
)
# Optional imports are still needed by the code paths that use them.
OPTIONAL = (
    ("try:\n    import ujson as fast_json\nexcept ImportError:\n    fast_json = None", ("ujson",)),
    ("try:\n    import orjson\nexcept ModuleNotFoundError:\n    orjson = None", ("orjson",)),
)
NOTEBOOK = (("seaborn",), ("plotly",))
# Never installable requirements of this repo: type-only imports and a virtualenv's content.
FORBIDDEN = frozenset({"mypy-boto3-s3", "leaked-dependency-xyz", "requests-toolbelt", "config"})


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def synthetic_tree(work: Path) -> Tree:
    """A repo of ~60 tricky imports with a golden package set (see TRICKY and FORBIDDEN)."""
    root = work / "trees" / "synthetic"
    stdlib = (
        "import os, sys, json, argparse, logging, dataclasses, asyncio\nimport importlib.metadata"
    )
    _write(
        root / "train.py",
        "from __future__ import annotations\n"
        + stdlib
        + "\n"
        + "\n".join(stmt for stmt, _ in TRICKY)
        + "\n"
        + "\n".join(stmt for stmt, _ in OPTIONAL)
        + "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from mypy_boto3_s3 import S3Client\n"
        "import config  # the local config.py, not PyPI's 'config'\n"
        "import utils\nfrom models import net\n\n"
        "if __name__ == '__main__':\n    print(net.build(config.LR), utils.seed())\n",
    )
    _write(
        root / "serve.py",
        "\n".join(stmt for stmt, _ in SERVE_IMPORTS)
        + "\nfrom models.net import build\napp = FastAPI()\n",
    )
    _write(root / "config.py", "LR = 0.1\n")
    _write(
        root / "utils.py", "import random\n\ndef seed() -> int:\n    return random.randint(0, 9)\n"
    )
    _write(root / "models" / "__init__.py", "from . import net\nfrom .net import build\n")
    _write(
        root / "models" / "net.py",
        "import torch\nfrom .layers import block\n\ndef build(lr):\n    return block(lr)\n",
    )
    _write(root / "models" / "layers.py", "import torch.nn\n\ndef block(x):\n    return x\n")
    cells: list[dict[str, object]] = [
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": ["!pip install seaborn plotly\n", "%matplotlib inline\n"],
        },
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": ["import seaborn as sns\n", "import plotly.express as px\n", "import pandas"],
        },
    ]
    notebook = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    _write(root / "explore.ipynb", json.dumps(notebook, indent=1))
    # A virtualenv inside the repo: pipreqs skips `venv` and `env` but not `.venv` (#420, #214),
    # and a venv under any other name is only recognisable by its pyvenv.cfg.
    for venv in (".venv", "pyenv-3.11"):
        _write(root / venv / "pyvenv.cfg", "home = /usr/bin\nversion = 3.11.2\n")
        site = root / venv / "lib" / "python3.11" / "site-packages"
        _write(site / "leakypkg" / "__init__.py", "import leaked_dependency_xyz\n")
        _write(site / "toolbelt_user.py", "import requests_toolbelt\n")
    # Python 2 syntax: one such file aborts a whole pipreqs run.
    _write(root / "legacy" / "py2_report.py", 'import os\nprint "report for", os.getcwd()\n')
    golden = [frozenset(names) for _, names in (*TRICKY, *SERVE_IMPORTS, *OPTIONAL)]
    golden += [frozenset(names) for names in NOTEBOOK]
    truth = Truth(core=tuple(golden), full=tuple(golden), forbidden=FORBIDDEN)
    return Tree(name="synthetic-tricky", path=root, truth=truth, scope="whole tree")


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True, kw_only=True)
class Score:
    """Precision, recall and F1 of a predicted package set against one truth."""

    precision: float
    recall: float
    f1: float
    missed: tuple[str, ...]
    extra: tuple[str, ...]
    forbidden: tuple[str, ...]


def score(
    predicted: frozenset[str],
    expected: Sequence[frozenset[str]],
    forbidden: frozenset[str] = frozenset(),
) -> Score:
    """Match each expected entry (any acceptable name) once; unmatched predictions are extra."""
    matched = [entry for entry in expected if entry & predicted]
    covered = frozenset().union(*matched) if matched else frozenset()
    extra = sorted(predicted - covered)
    tp = len(matched)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(expected) if expected else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(
        precision=precision,
        recall=recall,
        f1=f1,
        missed=tuple(sorted("|".join(sorted(e)) for e in expected if not e & predicted)),
        extra=tuple(extra),
        forbidden=tuple(sorted(predicted & forbidden)),
    )


# ---------------------------------------------------------------------------------------------
# The benchmark


@dataclass(frozen=True, kw_only=True)
class TreeResult:
    """Everything printed for one tree, kept for the summary table."""

    tree: Tree
    files: int
    lines: int
    comparisons: tuple[Comparison, ...]
    aborts: Mapping[str, str | None]  # tool -> failure message or None
    scores: Mapping[str, tuple[Score, Score] | None]  # tool -> (core, full)
    f1_verdict: Verdict


def _count(tree: Path) -> tuple[int, int]:
    files = [p for p in tree.rglob("*.py") if p.is_file()]
    lines = sum(p.read_bytes().count(b"\n") for p in files)
    return len(files), lines


def _short(names: Sequence[str], limit: int = 14) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit})" if len(names) > limit else "") or "-"


def _print_scores(
    truth: Truth, predicted: Mapping[str, frozenset[str] | None]
) -> dict[str, tuple[Score, Score] | None]:
    """Print and return (core, all-extras) scores per tool."""
    scores: dict[str, tuple[Score, Score] | None] = {}
    print(f"  truth: {len(truth.core)} core, {len(truth.full)} with all extras")
    for tool, names in predicted.items():
        if names is None:
            scores[tool] = None
            print(f"  {tool:<12} aborted: no package set")
            continue
        core = score(names, truth.core, truth.forbidden)
        full = score(names, truth.full, truth.forbidden)
        scores[tool] = (core, full)
        print(
            f"  {tool:<12} {len(names):3d} pkgs  core P {core.precision:.2f} R {core.recall:.2f} "
            f"F1 {core.f1:.2f}  | all extras P {full.precision:.2f} R {full.recall:.2f} "
            f"F1 {full.f1:.2f}"
        )
        print(f"      extra (vs all extras): {_short(full.extra)}")
        print(f"      missed (vs core): {_short(core.missed)}")
        if full.forbidden:
            print(f"      FORBIDDEN (venv content / type-only): {', '.join(full.forbidden)}")
    return scores


def _print_mapping_errors(scores: Mapping[str, tuple[Score, Score] | None]) -> None:
    """On a golden tree every import is expected, so each extra name is a mapping error."""
    errors = {t: len(s[1].extra) for t, s in scores.items() if s is not None}
    leaks = {t: len(s[1].forbidden) for t, s in scores.items() if s is not None}
    ours = errors.pop("mlpack")
    peer = max(errors, key=lambda t: errors[t]) if errors else None
    if peer is not None and errors[peer]:
        ratio = ours / errors[peer]
        verdict = "PASS" if ratio <= 0.1 else "FAIL"
        print(
            f"  B3a mapping errors (wrong names): mlpack {ours}, {peer} {errors[peer]}: "
            f"ratio {ratio:.2f}, goal <= 0.1  {verdict}"
        )
    venv = "PASS" if leaks["mlpack"] == 0 else "FAIL"
    print(
        f"  B3a .venv / pyvenv.cfg content and type-only imports reported: mlpack "
        f"{leaks.pop('mlpack')}, " + ", ".join(f"{t} {n}" for t, n in leaks.items()) + f"  {venv}"
    )


def bench_tree(tree: Tree, *, quick: bool, with_mlpack: bool, work: Path) -> TreeResult:
    """Time and score both tools on one tree; print as it goes."""
    files, lines = _count(tree.path)
    print(f"\n== {tree.name}: {files} .py files, {lines} lines; scope: {tree.scope}", flush=True)
    caches = work / "caches"
    caches.mkdir(exist_ok=True)
    state: dict[str, Path] = {}

    def fresh_cache() -> Path:
        if "cache" in state:  # the last round's warm run is done with it
            shutil.rmtree(state["cache"])
        state["cache"] = Path(tempfile.mkdtemp(prefix="xdg-", dir=caches))
        return state["cache"]

    probe_pipreqs = run_pipreqs(tree.path)
    mapped = pipreqs_mapped(run_pipreqs(tree.path, debug=True))
    aborts: dict[str, str | None] = {"pipreqs": probe_pipreqs.failure}
    outputs: dict[str, Run] = {"pipreqs": probe_pipreqs}
    if with_mlpack:
        probe_cold = run_mlpack(tree.path, fresh_cache())
        probe_warm = run_mlpack(tree.path, state["cache"])
        aborts["mlpack"] = probe_cold.failure
        outputs["mlpack"] = probe_cold
        outputs["mlpack-warm"] = probe_warm
        if probe_cold.returncode == 0 and probe_warm.stdout != probe_cold.stdout:
            print("  WARNING: mlpack warm output differs from cold output (cache bug?)")
        cached = [p for p in state["cache"].rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in cached) / 2**20
        print(f"  mlpack cache after cold+warm: {len(cached)} files, {size:.1f} MiB (MLPACK_HOME)")
    for tool, failure in aborts.items():
        if failure:
            print(f"  {tool}: ABORT: {failure}")

    comparisons: list[Comparison] = []
    slow = probe_pipreqs.seconds > 1.0
    rounds = 5 if slow else (8 if quick else 20)
    warmups = 1 if quick else 3
    if with_mlpack and not any(aborts.values()):
        problems: list[str] = []
        cpu: dict[str, list[float]] = {"cold": [], "pipreqs": [], "warm": []}

        def checked(label: str, run: Run, expected: str) -> float:
            # A failed or divergent timed run would make a fast ratio meaningless.
            if run.returncode != 0 or run.stdout != expected:
                problems.append(f"{label}: exit {run.returncode}, output differs")
            cpu[label].append(run.cpu_seconds)
            return run.seconds

        def cold() -> float:
            return checked("cold", run_mlpack(tree.path, fresh_cache()), probe_cold.stdout)

        def pipreqs() -> float:
            return checked("pipreqs", run_pipreqs(tree.path), probe_pipreqs.stdout)

        def warm() -> float:
            return checked("warm", run_mlpack(tree.path, state["cache"]), probe_cold.stdout)

        times = interleave(
            {"cold": cold, "pipreqs": pipreqs, "warm": warm}, rounds=rounds, warmups=warmups
        )
        large = tree.name.startswith(LARGE_TREE)
        comparisons.append(
            compare(
                "B3 cold / pipreqs-local",
                "mlpack",
                times["cold"],
                "pipreqs",
                times["pipreqs"],
                goal=GOAL_COLD if large else None,
            )
        )
        comparisons.append(
            compare(
                "B3 warm / pipreqs-local",
                "mlpack",
                times["warm"],
                "pipreqs",
                times["pipreqs"],
                goal=GOAL_WARM if large else None,
            )
        )
        for c in comparisons:
            print("  " + format_line(c), flush=True)
        medians = {label: median(values) for label, values in cpu.items()}
        print(
            f"  CPU (medians): mlpack cold {medians['cold']:.2f} s, warm {medians['warm']:.3f} s, "
            f"pipreqs {medians['pipreqs']:.2f} s; cold/pipreqs "
            f"{medians['cold'] / medians['pipreqs']:.3f}, warm/pipreqs "
            f"{medians['warm'] / medians['pipreqs']:.3f}; {load_average()}"
        )
        if problems:
            print(f"  WARNING: {len(problems)} timed runs failed or differed: {problems[:3]}")
        print(
            f"  peak RSS: mlpack cold {outputs['mlpack'].max_rss_mib:.0f} MiB, "
            f"pipreqs {probe_pipreqs.max_rss_mib:.0f} MiB"
        )
    else:
        once = f"pipreqs {format_seconds(probe_pipreqs.seconds)}"
        if with_mlpack:
            once += f", mlpack cold {format_seconds(outputs['mlpack'].seconds)}"
            once += f", warm {format_seconds(outputs['mlpack-warm'].seconds)}"
        print(f"  one run each, not compared: {once}")

    predicted: dict[str, frozenset[str] | None] = {
        "pipreqs": None if aborts["pipreqs"] else pipreqs_packages(probe_pipreqs),
        "pipreqs-map": None if aborts["pipreqs"] else mapped,
    }
    if aborts["pipreqs"]:
        # Score pipreqs anyway on a copy without the files it cannot parse, so its mapping
        # errors show next to the abort (starred: it needed the tree edited to finish).
        clean, dropped = parse_clean_copy(tree.path, work / "trees" / f"{tree.name}-parse-clean")
        print(f"  pipreqs* = pipreqs on a copy without {', '.join(dropped) or 'nothing'}")
        retry = run_pipreqs(clean)
        if retry.returncode == 0:
            predicted["pipreqs*"] = pipreqs_packages(retry)
            predicted["pipreqs-map*"] = pipreqs_mapped(run_pipreqs(clean, debug=True))
    if with_mlpack:
        predicted["mlpack"] = None
        if not aborts["mlpack"]:
            predicted["mlpack"], importless = mlpack_packages(outputs["mlpack"])
            if importless:
                print(f"  note: mlpack lists packages no import maps to: {_short(importless)}")
    scores = _print_scores(tree.truth, predicted)
    verdict: Verdict = "n/a"
    if with_mlpack:
        ours = scores.get("mlpack")
        peers = {t: s[1].f1 for t, s in scores.items() if t != "mlpack" and s is not None}
        best = max(peers, key=lambda t: peers[t]) if peers else None
        if ours is None:
            verdict = "FAIL"
        # A tie is its own verdict: on small trees both tools often reach what the code
        # reveals (an unimported test extra caps both below 1.00).
        elif best is None or ours[1].f1 > peers[best]:
            verdict = "PASS"
        else:
            verdict = "TIE" if ours[1].f1 == peers[best] else "FAIL"
        against = f"best pipreqs variant {best} {peers[best]:.2f}" if best else "no peer result"
        margin = (
            ""
            if ours is None or best is None
            else f"; design goal >= +0.15: {'PASS' if ours[1].f1 >= peers[best] + 0.15 else 'FAIL'}"
        )
        print(f"  B3a F1 (all extras) mlpack > {against}: {verdict}{margin}")
        if aborts["pipreqs"]:
            ok = "PASS" if not aborts["mlpack"] else "FAIL"
            print(f"  B3 no abort where pipreqs aborts: {ok}")
        if tree.truth.forbidden and ours is not None:
            _print_mapping_errors(scores)
    return TreeResult(
        tree=tree,
        files=files,
        lines=lines,
        comparisons=tuple(comparisons),
        aborts=aborts,
        scores=scores,
        f1_verdict=verdict,
    )


def print_summary(results: Sequence[TreeResult]) -> None:
    """One row per tree: ratios and F1 (all extras) per tool."""
    print("\n== summary (F1 against all declared extras; ratios are medians of per-pair ratios)")
    header = (
        f"{'tree':<30} {'kLoC':>6} {'cold/pipreqs':>13} {'warm/pipreqs':>13} "
        f"{'F1 mlpack':>10} {'F1 pipreqs':>11} {'F1 pr-map':>10} {'aborts':>14} {'B3a':>5}"
    )
    print(header)
    print("-" * len(header))

    def ratio(result: TreeResult, prefix: str) -> str:
        for c in result.comparisons:
            if c.name.startswith(prefix):
                return f"{c.ratio:.3f} {c.verdict if c.goal is not None else ''}".strip()
        return "n/a"

    def f1(result: TreeResult, tool: str) -> str:
        if tool not in result.scores:
            return "-"
        pair = result.scores[tool]
        if pair is not None:
            return f"{pair[1].f1:.2f}"
        starred = result.scores.get(tool + "*")
        return "abort" if starred is None else f"abort/{starred[1].f1:.2f}*"

    for r in results:
        aborted = ",".join(t for t, msg in r.aborts.items() if msg) or "none"
        print(
            f"{r.tree.name:<30} {r.lines / 1000:6.1f} {ratio(r, 'B3 cold'):>13} "
            f"{ratio(r, 'B3 warm'):>13} {f1(r, 'mlpack'):>10} {f1(r, 'pipreqs'):>11} "
            f"{f1(r, 'pipreqs-map'):>10} {aborted:>14} {r.f1_verdict:>5}"
        )


def floors() -> None:
    """Process start-up floors: what any CLI run pays before it reads a file."""
    python = [run_cmd([sys.executable, "-c", "pass"], cwd=REPO).seconds for _ in range(5)]
    version = [run_cmd([str(BIN / "mlpack"), "--version"], cwd=REPO).seconds for _ in range(5)]
    print(
        f"floors: python -c pass {format_seconds(median(python))}; "
        f"mlpack --version {format_seconds(median(version))}"
    )


def _profiled(label: str, fn: Callable[[], object], *, sort: str, limit: int) -> None:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    fn()
    profiler.disable()
    print(f"\n== profile: {label}: {time.perf_counter() - start:.2f} s under cProfile")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats(sort).print_stats(limit)


def profile(tree: Tree, work: Path) -> None:
    """cProfile in-process analyses of ``tree``: cold as it runs, cold serial, and warm."""
    from mlpack.analyze import analyze, factcache

    caches = [Path(tempfile.mkdtemp(prefix="profile-", dir=work)) for _ in range(2)]
    _profiled(
        f"in-process cold analyze of {tree.name}",
        lambda: analyze(tree.path, cache_dir=caches[0]),
        sort="cumulative",
        limit=15,
    )
    # Worker processes hide the parsing from cProfile; one worker shows where it goes.
    # (A private seam: if it is renamed, the serial profile is simply the parallel one.)
    namespace = vars(factcache)
    workers = namespace.get("_workers")
    if workers is not None:
        namespace["_workers"] = lambda: 1
    try:
        _profiled(
            f"cold, parsing in one process, hottest functions of {tree.name}",
            lambda: analyze(tree.path, cache_dir=caches[1]),
            sort="tottime",
            limit=25,
        )
    finally:
        if workers is not None:
            namespace["_workers"] = workers
    _profiled(
        f"in-process warm analyze of {tree.name}",
        lambda: analyze(tree.path, cache_dir=caches[0]),
        sort="cumulative",
        limit=15,
    )


def load_average() -> str:
    """The machine's load, printed with the timings it disturbs."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def versions() -> None:
    """Print what ran where."""
    mlpack = run_cmd([str(BIN / "mlpack"), "--version"], cwd=REPO).stdout.strip() or "unavailable"
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(
        f"python {platform.python_version()} ({sys.executable}); "
        f"pipreqs {importlib.metadata.version('pipreqs')}; {mlpack} (commit {commit or '?'})"
    )
    print(
        f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), "
        f"kernel {platform.release()}, {load_average()}; network: "
        + ("none (unshare -n) for both tools" if NETNS else "not isolated (pipreqs --use-local)")
    )


# ---------------------------------------------------------------------------------------------
# B3c: a corpus of real repositories, pinned by commit (bench/analyze_corpus.toml)

CORPUS_FILE = Path(__file__).with_name("analyze_corpus.toml")
# Every declaration format the analyzer reads, at any depth (subprojects too).
CORPUS_HIDDEN = (*HIDDEN, "requirement*.txt", "requirements", "conda.yaml", "conda.yml")
GOAL_F1_GAIN = 0.1  # mean F1 above pipreqs', and not below it on any kind of repository


@dataclass(frozen=True, kw_only=True)
class CorpusRepo:
    """One repository of the corpus and, when it declares nothing, its README's install line."""

    name: str  # owner/name
    commit: str
    kind: str
    truth: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        """Its folder under the corpus directory: ``owner+name``."""
        return self.name.replace("/", "+")


def load_corpus(path: Path = CORPUS_FILE) -> tuple[CorpusRepo, ...]:
    """The corpus, in file order."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return tuple(
        CorpusRepo(
            name=r["name"],
            commit=r["commit"],
            kind=r["kind"],
            truth=tuple(canonicalize_name(n) for n in r.get("truth", ())),
        )
        for r in data["repo"]
    )


def corpus_truth(root: Path, repo: CorpusRepo) -> frozenset[str]:
    """What the repository declares as its main dependencies (registry names only)."""
    if repo.truth:
        return frozenset(repo.truth)
    from mlpack.analyze.requirements import declarations

    declared = declarations(root, warnings=[])[0]
    return frozenset(r.name for r in declared if r.group is None and r.url is None)


def checked_out_commit(root: Path) -> str | None:
    """The commit of a git checkout (None for a plain copy, which cannot be checked)."""
    if not (root / ".git").exists():
        return None
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or None


@dataclass(frozen=True, kw_only=True)
class CorpusResult:
    """One repository's scores and times."""

    repo: CorpusRepo
    truth: frozenset[str]
    mlpack: Score
    pipreqs: Score
    mlpack_s: float  # medians of the rounds
    pipreqs_s: float
    mlpack_cpu: float
    pipreqs_cpu: float
    baseline_s: float | None = None  # ``--baseline``: the older mlpack, same rounds
    baseline_cpu: float | None = None


@dataclass(frozen=True, kw_only=True)
class CorpusTiming:
    """How often to time each tool per repository, and the older mlpack to time beside it."""

    rounds: int = 1
    baseline: Path | None = None


def bench_corpus_repo(
    repo: CorpusRepo, source: Path, work: Path, timing: CorpusTiming
) -> CorpusResult:
    """Hide the declarations, then score mlpack's runtime group and pipreqs's imports."""
    truth = corpus_truth(source, repo)
    tree = work / repo.folder
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns(*CORPUS_HIDDEN, ".git"))
    ml = run_mlpack(tree, work / "cache" / repo.folder)  # cold: a new, empty cache
    if ml.returncode != 0:
        msg = f"{repo.name}: mlpack analyze failed: {ml.failure}"
        raise SystemExit(msg)
    runtime = frozenset(
        canonicalize_name(p["name"])
        for p in json.loads(ml.stdout)["packages"]
        if p.get("group") == "runtime"
    )
    pq_tree = tree
    pq = run_pipreqs(tree, debug=True)
    if pq.returncode != 0:  # pipreqs stops at the first file ast cannot parse
        pq_tree, _ = parse_clean_copy(tree, work / f"{repo.folder}-clean")
        pq = run_pipreqs(pq_tree, debug=True)
    runs = _corpus_rounds(tree, pq_tree, work / "cache" / repo.folder, timing, ml, pq)
    expected = _single(truth)
    base = runs.get("baseline")
    return CorpusResult(
        repo=repo,
        truth=truth,
        mlpack=score(runtime, expected),
        pipreqs=score(pipreqs_mapped(pq), expected),
        mlpack_s=median([r.seconds for r in runs["mlpack"]]),
        pipreqs_s=median([r.seconds for r in runs["pipreqs"]]),
        mlpack_cpu=median([r.cpu_seconds for r in runs["mlpack"]]),
        pipreqs_cpu=median([r.cpu_seconds for r in runs["pipreqs"]]),
        baseline_s=median([r.seconds for r in base]) if base else None,
        baseline_cpu=median([r.cpu_seconds for r in base]) if base else None,
    )


def _corpus_rounds(
    tree: Path, pq_tree: Path, cache: Path, timing: CorpusTiming, ml: Run, pq: Run
) -> dict[str, list[Run]]:
    """The scored runs plus ``rounds - 1`` more of each tool, in rotating order; each mlpack
    run cold (a new cache folder). The baseline runs ``rounds`` times."""
    runs: dict[str, list[Run]] = {"mlpack": [ml], "pipreqs": [pq]}
    tools = ["mlpack", "pipreqs"]
    if timing.baseline is not None:
        runs["baseline"] = []
        tools.append("baseline")
    for k in range(timing.rounds):
        for tool in tools[k % len(tools) :] + tools[: k % len(tools)]:
            if k == 0 and tool != "baseline":
                continue  # the scored runs are the first round
            if tool == "pipreqs":
                runs[tool].append(run_pipreqs(pq_tree, debug=True))
                continue
            fresh = cache.with_name(f"{cache.name}-{tool}-{k}")
            source = timing.baseline if tool == "baseline" else None
            runs[tool].append(run_mlpack(tree, fresh, source=source))
    return runs


def print_corpus(results: Sequence[CorpusResult]) -> None:
    """The per-repository table, the means, and the goals."""
    print("\nB3c: runtime group vs declared main dependencies (declarations hidden)")
    head = f"{'repository':38} {'kind':28} {'n':>3}  {'mlpack P/R/F1':>16}  {'pipreqs P/R/F1':>16}"
    print(head + f"  {'mlpack':>7} {'pipreqs':>7}")
    for r in results:
        m, p = r.mlpack, r.pipreqs
        print(
            f"{r.repo.name:38} {r.repo.kind:28} {len(r.truth):3}  "
            f"{m.precision:4.2f}/{m.recall:4.2f}/{m.f1:4.2f}  "
            f"{p.precision:4.2f}/{p.recall:4.2f}/{p.f1:4.2f}  "
            f"{r.mlpack_s:6.2f}s {r.pipreqs_s:6.2f}s  CPU {r.mlpack_cpu:5.2f}s {r.pipreqs_cpu:5.2f}s"
            + (
                f"  baseline {r.baseline_s:5.2f}s CPU {r.baseline_cpu:5.2f}s"
                if r.baseline_s
                else ""
            )
        )
    for r in results:
        print(
            f"  {r.repo.name}: mlpack missed {_short(r.mlpack.missed)}; extra {_short(r.mlpack.extra)}"
        )
    if not results:
        return
    mean_m = sum(r.mlpack.f1 for r in results) / len(results)
    mean_p = sum(r.pipreqs.f1 for r in results) / len(results)
    verdict = "PASS" if mean_m >= mean_p + GOAL_F1_GAIN else "FAIL"
    print(f"mean F1: mlpack {mean_m:.3f}, pipreqs {mean_p:.3f} (goal +{GOAL_F1_GAIN}): {verdict}")
    kinds = sorted({r.repo.kind for r in results})
    for kind in kinds:
        of_kind = [r for r in results if r.repo.kind == kind]
        km = sum(r.mlpack.f1 for r in of_kind) / len(of_kind)
        kp = sum(r.pipreqs.f1 for r in of_kind) / len(of_kind)
        print(f"  {kind}: mlpack {km:.3f}, pipreqs {kp:.3f}: {'PASS' if km >= kp else 'FAIL'}")
    time_m = sum(r.mlpack_s for r in results)
    time_p = sum(r.pipreqs_s for r in results)
    cpu_m = sum(r.mlpack_cpu for r in results)
    cpu_p = sum(r.pipreqs_cpu for r in results)
    print(
        f"time: mlpack {time_m:.2f} s, pipreqs {time_p:.2f} s, ratio {time_m / time_p:.2f} "
        f"(goal <= {GOAL_COLD}); CPU: mlpack {cpu_m:.2f} s, pipreqs {cpu_p:.2f} s, "
        f"ratio {cpu_m / cpu_p:.2f}; {load_average()}"
    )
    base = [r for r in results if r.baseline_s is not None and r.baseline_cpu is not None]
    if base:
        time_b = sum(r.baseline_s or 0.0 for r in base)
        cpu_b = sum(r.baseline_cpu or 0.0 for r in base)
        print(
            f"baseline: mlpack {time_b:.2f} s, CPU {cpu_b:.2f} s; ratio to pipreqs: "
            f"wall {time_b / time_p:.2f}, CPU {cpu_b / cpu_p:.2f}; this checkout / baseline: "
            f"wall {time_m / time_b:.2f}, CPU {cpu_m / cpu_b:.2f}"
        )


def bench_corpus(corpus: Path, only: str | None, timing: CorpusTiming) -> int:
    """Run B3c over the corpus directory; missing repositories are named, not fatal."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-corpus-") as tmp:
        for repo in load_corpus():
            if only and not repo.name.startswith(tuple(only.split(","))):
                continue
            source = corpus / repo.folder
            if not source.is_dir():
                print(f"{repo.name}: not in {corpus} (see bench/README.md, B3c); skipped")
                continue
            commit = checked_out_commit(source)
            if commit is not None and commit != repo.commit:
                print(f"{repo.name}: checked out at {commit}, not the pinned {repo.commit}")
            results.append(bench_corpus_repo(repo, source, Path(tmp), timing))
    print_corpus(results)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 0 even when goals fail (the figures are the output)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="1 warm-up, fewer pairs, transformers only"
    )
    parser.add_argument(
        "--tool",
        choices=("both", "pipreqs"),
        default="both",
        help="pipreqs alone (harness check before mlpack analyze exists)",
    )
    parser.add_argument("--only", help="comma-separated tree names (prefix match)")
    parser.add_argument("--profile", action="store_true", help="cProfile mlpack on the large tree")
    parser.add_argument(
        "--corpus",
        type=Path,
        help="B3c: score the runtime group on the real repositories of bench/analyze_corpus.toml, "
        "checked out under this folder as owner+name",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="B3c: time each tool this many times per repository (medians; mlpack cold each time)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="B3c: also time the mlpack package found in this folder (an older commit's, from "
        "`git archive COMMIT mlpack | tar -x -C DIR`), interleaved: before/after in one run",
    )
    args = parser.parse_args(argv)

    global NETNS  # noqa: PLW0603
    NETNS = _netns_prefix()
    versions()
    if args.corpus is not None:
        timing = CorpusTiming(rounds=max(1, args.rounds), baseline=args.baseline)
        return bench_corpus(args.corpus, args.only, timing)
    with_mlpack = args.tool == "both"
    if with_mlpack:
        why = mlpack_available()
        if why is not None:
            print(f"mlpack analyze unavailable ({why}); running pipreqs alone")
            with_mlpack = False
    if with_mlpack:
        floors()
    cache = Path(os.environ.get("MLPACK_BENCH_CACHE", Path.home() / ".cache" / "mlpack-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    sdists = SDISTS[:1] if args.quick else SDISTS
    results = []
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-analyze-") as tmp:
        work = Path(tmp)
        trees = [synthetic_tree(work), *example_trees(work)]
        trees += [sdist_tree(cache, work, name, version) for name, version in sdists]
        if args.only:
            wanted = tuple(args.only.split(","))
            trees = [t for t in trees if t.name.startswith(wanted)]
        started = time.perf_counter()
        for tree in trees:
            results.append(bench_tree(tree, quick=args.quick, with_mlpack=with_mlpack, work=work))
        print_summary(results)
        print(f"\nbench wall time {time.perf_counter() - started:.0f} s; {load_average()}")
        if args.profile and with_mlpack:
            large = [t for t in trees if t.name.startswith(LARGE_TREE)]
            profile(large[0] if large else trees[-1], work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
