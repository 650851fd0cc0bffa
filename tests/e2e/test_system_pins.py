"""examples/training locked for real (libgomp1 pinned inside THE Debian base) and built from the
pinned .deb files with no network; a tampered hash fails naming the file and tags nothing.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from mlpack.base.debian import base_reference
from mlpack.build.embedded import EmbeddedBuilder
from mlpack.config import load_config
from mlpack.errors import BuildError, ImageError
from mlpack.lock.inputs import inputs_from_config
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import read_lock, write_lock
from mlpack.oci.store import Store
from mlpack.pipeline import embedded_image_runner
from mlpack.vocabulary import BaseImage, Platform
from tests.conftest import require
from tests.e2e.test_build_examples import (
    FIXTURES,
    REPO,
    mirror_reachable,
    runner_for,
    spec_and_wheels,
)
from tests.oci_fixtures import debian_base
from tests.unit.lock.fakes import pypi_reachable

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.network]


class TheTestBase:
    """The base resolver for the lock: THE test base, already in the store."""

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def resolve(
        self, python: str, *, explicit: str | None, platform: Platform = "linux/amd64"
    ) -> BaseImage:
        return BaseImage(
            reference=base_reference(python),
            digest=self.digest,
            provider="debian",
            python_full="3.11.2",
        )


class Recording:
    """The pipeline's step runner, recording each call's network setting."""

    def __init__(self, store: Store) -> None:
        self.inner = runner_for(store)
        self.network: list[bool] = []

    def __call__(
        self,
        *,
        image: str,
        argv: tuple[str, ...],
        mounts: tuple[tuple[str, Path], ...],
        readonly: tuple[tuple[str, Path], ...],
        network: bool,
    ) -> int:
        self.network.append(network)
        return self.inner(image=image, argv=argv, mounts=mounts, readonly=readonly, network=network)

    def output(
        self, image: str, script: str, work: Path, readonly: tuple[tuple[str, Path], ...] = ()
    ) -> str:
        """What ``script`` writes to /out/result in a container of ``image``, with no network."""
        work.mkdir()
        code = self.inner(
            image=image,
            argv=("sh", "-c", script),
            mounts=(("/out", work),),
            readonly=readonly,
            network=False,
        )
        assert code == 0
        return (work / "result").read_text()


@pytest.fixture
def locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Store]:
    """examples/training with a fresh lock: the Python pins by uv, libgomp1 by apt in the base."""
    require(os.geteuid() == 0, "root (mmdebstrap and the embedded runtime)")
    require(mirror_reachable(), "the Debian mirror")
    require(pypi_reachable(), "the Python package index")
    store = Store(tmp_path / "home")
    digest = debian_base(store)
    monkeypatch.setenv("MLPACK_HOME", str(store.root))  # the runtime reads images from here
    root = tmp_path / "training"
    shutil.copytree(REPO / "examples" / "training", root)
    shutil.copy(FIXTURES / "training" / "mlpack.toml", root / "mlpack.toml")
    lock(
        inputs_from_config(load_config(root)),
        root / "mlpack.lock",
        root=root,
        home=tmp_path / "lock-home",
        base_resolver=TheTestBase(digest),
        image_runner=embedded_image_runner,
    )
    return root, store


def test_the_image_has_exactly_the_locked_deb_installed_offline(
    locked: tuple[Path, Store], tmp_path: Path
) -> None:
    root, store = locked
    pins = read_lock(root / "mlpack.lock").system_packages
    gomp = next(p for p in pins if p.name == "libgomp1")
    assert gomp.requested
    assert gomp.url.endswith(".deb")
    assert len(gomp.sha256) == 64
    assert gomp.size > 0
    spec, wheels = spec_and_wheels(root, store)
    runner = Recording(store)
    result = EmbeddedBuilder(store, wheels=wheels, runner=runner).build(
        spec, context=root, tag="localhost/training:pinned"
    )
    # Every step that executed (the dpkg install, the bytecode compiles) had no network.
    assert runner.network
    assert not any(runner.network)
    installed = runner.output(
        result.digest, "dpkg-query -W -f '${Version}' libgomp1 > /out/result", tmp_path / "v"
    )
    assert installed == gomp.version
    # A container without network sees the loopback interface only.
    interfaces = runner.output(
        result.digest, "tail -n +3 /proc/net/dev | cut -d: -f1 > /out/result", tmp_path / "net"
    )
    assert interfaces.split() == ["lo"]
    # The .deb folder is mounted read-only: the install cannot touch the cache's files.
    probe = (
        "touch /mlpack-debs/x 2>/dev/null && echo writable > /out/result || echo ro > /out/result"
    )
    cache = store.root / "cache" / "debs"
    assert (
        runner.output(result.digest, probe, tmp_path / "ro", (("/mlpack-debs", cache),)) == "ro\n"
    )
    assert not (cache / "x").exists()
    cached = store.root / "cache" / "debs" / gomp.sha256 / gomp.filename
    assert cached.stat().st_size == gomp.size


def test_a_tampered_deb_hash_fails_naming_the_file_and_tags_nothing(
    locked: tuple[Path, Store],
) -> None:
    root, store = locked
    lock_file = read_lock(root / "mlpack.lock")
    tampered = tuple(
        dataclasses.replace(p, sha256="0" * 64) if p.name == "libgomp1" else p
        for p in lock_file.system_packages
    )
    write_lock(root / "mlpack.lock", dataclasses.replace(lock_file, system_packages=tampered))
    spec, wheels = spec_and_wheels(root, store)
    gomp = next(p for p in tampered if p.name == "libgomp1")
    with pytest.raises(BuildError, match=gomp.filename.replace("+", r"\+")) as info:
        EmbeddedBuilder(store, wheels=wheels, runner=runner_for(store)).build(
            spec, context=root, tag="localhost/training:tampered"
        )
    assert "sha256" in info.value.message
    with pytest.raises(ImageError):
        store.resolve("localhost/training:tampered")
    assert not (store.root / "cache" / "debs" / ("0" * 64) / gomp.filename).exists()
