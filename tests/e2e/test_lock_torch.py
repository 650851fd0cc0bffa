"""CPU/CUDA torch decisions with the real resolvers: a local fake CPU index, and PyPI's CUDA build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.lock.indexes import Indexes
from mlpack.lock.inputs import LockInputs
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import read_lock
from mlpack.lock.resolver_registry import ResolverSetup, make_resolver
from mlpack.paths import tools_folder
from mlpack.vocabulary import PackageSpec
from tests.conftest import require
from tests.unit.lock.fakes import (
    FakeBase,
    http_server,
    make_wheel,
    pypi_reachable,
    write_simple_index,
)


@pytest.fixture(scope="module")
def cpu_index(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """download.pytorch.org/whl/cpu is not reachable here: serve a tiny look-alike."""
    tmp = tmp_path_factory.mktemp("torchidx")
    wheels = [
        make_wheel(tmp / "built", "torch", "2.3.0+cpu", requires=("typing-extensions>=4",)),
        make_wheel(tmp / "built", "typing-extensions", "4.12.2"),
    ]
    write_simple_index(tmp / "srv" / "whl" / "cpu", wheels)
    with http_server(tmp / "srv") as url:
        yield url + "/whl/cpu"


@pytest.fixture(autouse=True)
def _no_pip_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS"):
        monkeypatch.delenv(key, raising=False)


def torch_inputs(indexes: Indexes, *, cuda: bool, resolver: str = "uv") -> LockInputs:
    return LockInputs(
        requirements=(PackageSpec(requirement="torch", source="import: train.py:1"),),
        python="3.11",
        platform="linux/amd64",
        indexes=indexes,
        cuda=cuda,
        resolver=resolver,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("resolver", ["uv", pytest.param("pip-tools", marks=pytest.mark.network)])
def test_cpu_project_gets_cpu_wheels_from_the_configured_index(
    cpu_index: str, tmp_path: Path, resolver: str
) -> None:
    if resolver == "pip-tools":
        require(pypi_reachable(), "the Python package index (to install pip-tools)")
    home = tmp_path / "home"
    inputs = torch_inputs(Indexes(index_url=cpu_index), cuda=False, resolver=resolver)
    lock(
        inputs,
        tmp_path / "mlpack.lock",
        root=tmp_path,
        base_resolver=FakeBase(),
        home=home,
        resolver=make_resolver(
            inputs.resolver, ResolverSetup(tools=tools_folder(home), image="python:3.11-slim")
        ),
    )
    lock_file = read_lock(tmp_path / "mlpack.lock")
    torch = lock_file.package("torch")
    assert torch is not None
    assert torch.version == "2.3.0+cpu"
    assert torch.files
    assert torch.files[0].name == "torch-2.3.0+cpu-py3-none-any.whl"
    assert lock_file.torch is not None
    assert lock_file.torch.variant == "cpu"
    assert lock_file.torch.min_driver is None
    assert "CPU-only wheels from" in lock_file.torch.reason
    assert "/whl/cpu" in lock_file.torch.reason
    assert not any(p.name.startswith("nvidia-") for p in lock_file.packages)
    typing_ext = lock_file.package("typing-extensions")
    assert typing_ext is not None
    assert typing_ext.via == ("pkg:torch",)


@pytest.mark.network
def test_cuda_project_records_runtime_and_driver(tmp_path: Path) -> None:
    require(pypi_reachable(), "the Python package index")
    lock(
        torch_inputs(Indexes(), cuda=True),
        tmp_path / "mlpack.lock",
        root=tmp_path,
        base_resolver=FakeBase(),
        home=tmp_path / "home",
    )
    lock_file = read_lock(tmp_path / "mlpack.lock")
    decision = lock_file.torch
    assert decision is not None
    runtime = next(p for p in lock_file.packages if p.name.startswith("nvidia-cuda-runtime"))
    assert decision.cuda_runtime == ".".join(runtime.version.split(".")[:2])
    assert decision.variant == "cu" + decision.cuda_runtime.replace(".", "")
    assert decision.min_driver is not None
    assert int(decision.min_driver.split(".")[0]) >= 520
    assert "CUDA use" in decision.reason
