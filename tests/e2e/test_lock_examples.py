"""Both resolvers on both example projects: the same package set, each pin hashed and explained."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mlpack.lock.inputs import LockInputs
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import read_lock
from mlpack.lock.resolver_registry import ResolverSetup, make_resolver
from mlpack.paths import tools_folder
from mlpack.vocabulary import PackageSpec, ResolverName
from tests.conftest import require
from tests.unit.lock.fakes import FakeBase, pypi_reachable

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.network
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def declared(example: str) -> tuple[PackageSpec, ...]:
    """The example's declared requirements with file:line sources (what analyze reports)."""
    root = EXAMPLES / example
    reqs = root / "requirements.txt"
    if reqs.exists():
        return tuple(
            PackageSpec(requirement=line.strip(), source=f"requirements.txt:{n}")
            for n, line in enumerate(reqs.read_text().splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        )
    text = (root / "pyproject.toml").read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    lines = text.splitlines()
    out = []
    for dep in deps:
        quoted = '"' + dep + '"'
        line = next(i for i, text_line in enumerate(lines, 1) if quoted in text_line)
        out.append(PackageSpec(requirement=dep, source=f"pyproject.toml:{line}"))
    return tuple(out)


@pytest.fixture(autouse=True)
def _only_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both resolvers must see the same inputs: no machine-specific pip configuration.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(key, raising=False)


@pytest.mark.parametrize("example", ["training", "inference"])
def test_uv_and_pip_tools_lock_the_same_packages(example: str, tmp_path: Path) -> None:
    require(pypi_reachable(), "the Python package index")
    require((EXAMPLES / example).is_dir(), f"examples/{example}")
    requirements = declared(example)
    home = tmp_path / "home"
    locks = {}
    resolvers: tuple[ResolverName, ...] = ("uv", "pip-tools")
    for resolver in resolvers:
        inputs = LockInputs(
            requirements=requirements, python="3.11", platform="linux/amd64", resolver=resolver
        )
        out = tmp_path / resolver / "mlpack.lock"
        out.parent.mkdir()
        lock(
            inputs,
            out,
            root=EXAMPLES / example,
            base_resolver=FakeBase(),
            home=home,
            resolver=make_resolver(
                resolver, ResolverSetup(tools=tools_folder(home), image="python:3.11-slim")
            ),
        )
        locks[resolver] = read_lock(out)
    uv, pt = locks["uv"], locks["pip-tools"]
    assert {p.name for p in uv.packages} == {p.name for p in pt.packages}
    # Versions agree too: both pick the newest release allowed, resolved back to back. A release
    # published between the two runs could differ; that is the only accepted difference.
    pt_versions = {p.name: p.version for p in pt.packages}
    differ = {
        p.name: (p.version, pt_versions[p.name])
        for p in uv.packages
        if p.version != pt_versions[p.name]
    }
    assert not differ, f"uv and pip-compile chose different versions: {differ}"
    for lock_file in (uv, pt):
        for pkg in lock_file.packages:
            assert pkg.hashes, f"{pkg.name} has no hashes"
            assert pkg.via, f"{pkg.name} does not say why it is there"
            assert pkg.files, f"{pkg.name}'s files were not listed"
    direct = {r.name for r in requirements}
    for name in direct:
        direct_pin = uv.package(name)
        assert direct_pin is not None
        assert any(v.startswith(("requirements.txt:", "pyproject.toml:")) for v in direct_pin.via)
