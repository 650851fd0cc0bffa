"""pip-tools inside the base image (embedded runtime, host network), as for a non-host Python."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.lock import piptools
from mlpack.lock.indexes import Indexes
from mlpack.lock.inputs import LockInputs
from mlpack.lock.locker import lock
from mlpack.pipeline import StoreBaseResolver, embedded_image_runner
from mlpack.vocabulary import PackageSpec
from tests.conftest import require
from tests.unit.lock.fakes import pypi_reachable

pytestmark = [pytest.mark.network, pytest.mark.root, pytest.mark.slow]


def test_pip_tools_resolves_inside_the_base_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require(os.geteuid() == 0, "root (the embedded runtime)")
    require(pypi_reachable(), "the Python package index")
    # Pretend the host has no Python 3.11, so pip-compile must run in the image.
    monkeypatch.setattr(piptools, "host_matches", lambda *_: False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    cache = Path(os.environ.get("MLPACK_CI_CACHE", "/var/cache/mlpack-ci"))
    home = cache / "lock-home" if cache.is_dir() else tmp_path / "home"
    monkeypatch.setenv("MLPACK_HOME", str(home))
    inputs = LockInputs(
        requirements=(PackageSpec(requirement="anyio", source="requirements.txt:1"),),
        python="3.11",
        platform="linux/amd64",
        indexes=Indexes(),
        resolver="pip-tools",
    )
    result = lock(
        inputs,
        tmp_path / "mlpack.lock",
        root=tmp_path,
        home=home,
        base_resolver=StoreBaseResolver(),
        image_runner=embedded_image_runner,
    )
    names = {p.name: p for p in result.lock.packages}
    assert {"anyio", "idna"} <= set(names)
    assert names["anyio"].via == ("requirements.txt:1",)
    assert result.lock.resolver == "pip-tools"
    assert result.lock.target.python.startswith("3.11.")
    assert (home / "tools").is_dir()  # the pinned pip-tools venv made inside the image is cached
