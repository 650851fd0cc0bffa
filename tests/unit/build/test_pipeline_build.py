"""The build pipeline's composition: config and lock in memory, --frozen, the base by digest."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlpack import pipeline
from mlpack.config import load_config
from mlpack.errors import BuildError, LockError
from mlpack.lock import wheelhouse
from mlpack.lock.lockfile import read_lock
from mlpack.lock.wheelhouse import Wheelhouse
from mlpack.oci.store import Store
from mlpack.vocabulary import BaseImage, Platform
from tests.unit.build.fakes import make_base

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "render"


def training(tmp_path: Path) -> Path:
    root = tmp_path / "training"
    shutil.copytree(FIXTURES / "training", root)
    (root / "train.py").write_text("import numpy\nimport os\nos.environ.get('SEED', '1')\n")
    (root / "requirements.txt").write_text("numpy>=1.24\n")
    return root


def test_without_mlpack_toml_the_analysis_serves_in_memory(tmp_path: Path) -> None:
    root = training(tmp_path)
    (root / "mlpack.toml").unlink()
    notes: list[str] = []
    config = pipeline.project_config(root, note=notes.append)
    assert [p.name for p in config.packages] == ["numpy"]
    assert len(notes) == 1
    assert "analysing the project in memory" in notes[0]
    assert not (root / "mlpack.toml").exists()
    # A caller that asks again (a long-lived one) sees an edited tree.
    (root / "train.py").write_text("import numpy\nimport yaml\n")
    again = pipeline.project_config(root, note=notes.append)
    assert [p.name for p in again.packages] == ["numpy", "pyyaml"]


def test_a_build_without_mlpack_toml_analyses_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plan, lock and fetch share the command's one config: one analysis, one line."""
    import mlpack.analyze

    root = training(tmp_path)
    (root / "mlpack.toml").unlink()
    analysed: list[Path] = []
    real = mlpack.analyze.analyze

    def counting(path: Path, **kwargs: Any) -> Any:
        analysed.append(path)
        return real(path, **kwargs)

    class Stop(Exception):
        pass

    def no_base(*_: object) -> None:
        raise Stop

    locked = read_lock(root / "mlpack.lock")
    house = Wheelhouse(root=tmp_path, files=(), to_build=(), downloaded=0)
    monkeypatch.setattr(mlpack.analyze, "analyze", counting)
    monkeypatch.setattr(pipeline, "project_lock", lambda *_, **__: locked)
    monkeypatch.setattr(wheelhouse, "fetch", lambda *_, **__: house)
    monkeypatch.setattr(pipeline, "ensure_base", no_base)  # everything before the build proper
    notes: list[str] = []
    with pytest.raises(Stop):
        pipeline.build_project(root, note=notes.append)
    assert analysed == [root]
    assert sum("analysing the project in memory" in n for n in notes) == 1


def test_frozen_refuses_a_stale_lock_with_the_reason(tmp_path: Path) -> None:
    root = training(tmp_path)
    config = dataclasses.replace(load_config(root), python="3.13")
    with pytest.raises(LockError, match=r"python changed to 3\.13") as info:
        pipeline.project_lock(root, config, frozen=True, note=lambda _: None)
    assert "--frozen" in info.value.message


class FakeResolver:
    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.asked: list[tuple[str, str | None]] = []

    def resolve(
        self, python: str, *, explicit: str | None, platform: Platform = "linux/amd64"
    ) -> BaseImage:
        self.asked.append((python, explicit))
        return BaseImage(reference="x", digest=self.digest, provider="debian", python_full="3.11.2")


def test_a_base_already_in_the_store_is_not_resolved_again(tmp_path: Path) -> None:
    root = training(tmp_path)
    store = Store(tmp_path / "store")
    digest = make_base(store, tmp_path)
    lock = read_lock(root / "mlpack.lock")
    lock = dataclasses.replace(lock, base=dataclasses.replace(lock.base, digest=digest))
    resolver = FakeResolver(digest)
    pipeline.ensure_base(lock, load_config(root), store, resolver)
    assert resolver.asked == []


def test_a_base_that_comes_back_with_another_digest_is_an_error(tmp_path: Path) -> None:
    root = training(tmp_path)
    lock = read_lock(root / "mlpack.lock")
    resolver = FakeResolver("sha256:" + "9" * 64)
    with pytest.raises(BuildError, match="no longer") as info:
        pipeline.ensure_base(lock, load_config(root), Store(tmp_path / "store"), resolver)
    assert resolver.asked == [("3.11", None)]
    assert "mlpack lock" in info.value.hint


@pytest.mark.parametrize(
    ("index_url", "expected"),
    [
        # The lock's index with the config's credentials: the fetch uses them.
        ("https://user:token@pypi.org/simple", "https://user:token@pypi.org/simple"),
        # The config moved on to another index: the fetch keeps to the lock's own.
        ("https://mirror.example/simple", None),
    ],
)
def test_the_fetch_takes_the_configs_indexes_only_while_they_match_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index_url: str, expected: str | None
) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no machine-local index here
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    root = training(tmp_path)
    config = dataclasses.replace(load_config(root), index_url=index_url)
    asked: list[object] = []

    def fetch(lock: object, *, indexes: object, **_: object) -> Wheelhouse:
        asked.append(indexes)
        return Wheelhouse(root=tmp_path, files=(), to_build=(), downloaded=0)

    monkeypatch.setattr(wheelhouse, "fetch", fetch)
    pipeline.fetch_lock(root, read_lock(root / "mlpack.lock"), config=config)
    [indexes] = asked
    assert (None if indexes is None else indexes.index_url) == expected  # type: ignore[attr-defined]
