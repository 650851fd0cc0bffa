"""mlpack.pipeline hands the locker its backends, and the no-op memo follows the lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mlpack import pipeline
from mlpack.errors import LockError
from mlpack.lock.locker import LockResult
from mlpack.lock.locker import lock as real_lock
from mlpack.lock.resolvers import Pin
from tests.unit.lock.fakes import FakeBase, FakeResolver

CONFIG = (
    'name = "proj"\npython = "3.11"\n[dependencies]\n'
    'index-url = "http://127.0.0.1:9/simple"\n'  # nothing listens: listings fail fast
    'packages = [{ requirement = "numpy", source = "requirements.txt:1" }]\n'
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "mlpack.toml").write_text(CONFIG)
    return proj


def test_the_locker_is_handed_the_store_resolver_and_the_embedded_runner(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_lock(*_args: object, **kw: Any) -> LockResult:
        seen.update(kw)
        raise LockError("stop here", hint="")

    monkeypatch.setattr(pipeline, "lock", fake_lock)
    with pytest.raises(LockError, match="stop here"):
        pipeline.lock_project(project)
    assert isinstance(seen["base_resolver"], pipeline.StoreBaseResolver)
    assert seen["image_runner"] is pipeline.embedded_image_runner
    assert seen["home"] == Path(os.environ["MLPACK_HOME"])


def test_lock_then_check_then_the_memo(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "StoreBaseResolver", FakeBase)
    pins = (Pin(name="numpy", version="2.0.0", hashes=("b" * 64,), via=("-r",)),)
    monkeypatch.setattr(
        pipeline, "lock", lambda *a, **kw: real_lock(*a, **kw, resolver=FakeResolver(pins))
    )
    assert not pipeline.lock_is_current(project, check=False)
    assert pipeline.lock_project(project).resolved
    assert pipeline.lock_is_current(project, check=False)  # recorded after the write
    assert pipeline.check_lock(project) == project / "mlpack.lock"
    assert pipeline.lock_is_current(project, check=True)
    (project / "mlpack.toml").write_text(CONFIG.replace("numpy", "pandas"))
    assert not pipeline.lock_is_current(project, check=True)
    with pytest.raises(LockError, match=r"mlpack\.lock is stale: the requirements"):
        pipeline.check_lock(project)
