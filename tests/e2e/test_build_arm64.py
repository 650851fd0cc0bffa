"""`build_project(--platform linux/arm64)` of examples/training on this amd64 host, no emulation.

Nothing is built by hand: the pipeline re-locks the fixture project for linux/arm64 in memory,
the Debian base provider (as with no registry reachable) makes the arm64 base, unpacked because
no qemu handler is registered (the test hides any the host has), the host's apt pins its Debian
packages, and the embedded builder assembles the image. Every step that would execute a program
of the image is replaced by one that fails the test. The image's config must say arm64, its
base's Python and every shared object of its packages layer must be aarch64 ELF. Then
`mlpack run` (another process, which sees the host's real binfmt_misc) runs the training
command in the image through the qemu-aarch64 handler and it writes its metrics and model.

The mlpack home (the base, the wheelhouse, uv's cache) is kept under $MLPACK_CI_CACHE, keyed
by the base's inputs, so a warm run builds no base and downloads no wheel.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

import mlpack.pipeline
from mlpack.base import debian, resolve
from mlpack.build import emulation
from mlpack.oci.registry_errors import RegistryUnreachable
from mlpack.oci.store import Store
from mlpack.oslib import binfmt
from mlpack.pipeline import build_project
from tests.conftest import require
from tests.e2e.embedded_support import run_cli
from tests.e2e.test_build_examples import mirror_reachable, project
from tests.oci_fixtures import CACHE, SDE
from tests.unit.lock.fakes import pypi_reachable

pytestmark = [pytest.mark.network, pytest.mark.root, pytest.mark.slow]
EM_AARCH64 = 183
TAG = "localhost/training:arm64"


def never(*_: object, **__: object) -> int:
    raise AssertionError("nothing of the arm64 image may execute on this host")


def no_registry(*_: object, **__: object) -> object:
    raise RegistryUnreachable("no registry in this test", hint="")


def arm64_home(tmp: Path) -> Path:
    """The cached mlpack home, keyed by what decides the arm64 base."""
    parts = (debian._RECIPE, debian.configured_mirror(), str(SDE), *debian.EXTRACT_PACKAGES)
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return CACHE / f"arm64-home-{key}" if CACHE.is_dir() else tmp / "home"


def elf_machines(store: Store, digest: str, *, suffix: str = ".so") -> dict[str, int]:
    """e_machine of every regular ELF file in a layer whose name contains ``suffix``."""
    found = {}
    data = gzip.decompress(store.blob_path(digest).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            if member.isfile() and suffix in member.name.rsplit("/", 1)[-1]:
                head = tar.extractfile(member).read(20)  # type: ignore[union-attr]
                if head[:4] == b"\x7fELF":
                    found[member.name] = int.from_bytes(head[18:20], "little")
    return found


def test_an_arm64_training_image_is_built_on_amd64_without_emulation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require(os.geteuid() == 0, "root (mmdebstrap unpacks a rootfs with its owners)")
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap")
    require(shutil.which("apt-get") is not None, "apt-get (pins the arm64 Debian packages)")
    require(mirror_reachable(), "the Debian mirror")
    require(pypi_reachable(), "the Python package index (the arm64 lock and its wheels)")
    emulating = binfmt.emulator_registered("aarch64")  # the host's, before it is hidden
    monkeypatch.setenv("MLPACK_HOME", str(arm64_home(tmp_path)))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(SDE))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # PyPI only, as on any machine
    # No qemu handler, whatever this host has registered: the no-emulation path is the test.
    (tmp_path / "binfmt").mkdir()
    monkeypatch.setattr(binfmt, "BINFMT", tmp_path / "binfmt")
    monkeypatch.setattr(emulation, "BINFMT", tmp_path / "binfmt")
    monkeypatch.setattr(resolve, "registry_base", no_registry)
    monkeypatch.setattr(mlpack.pipeline, "embedded_step_runner", lambda: never)
    monkeypatch.setattr(mlpack.pipeline, "embedded_image_runner", never)
    root = project(tmp_path / "training")
    notes: list[str] = []

    result = build_project(root, platform="linux/arm64", tag=TAG, note=notes.append)

    assert any("locking in memory" in n for n in notes)  # the fixture lock is amd64's
    store = Store.default()
    image = store.image(TAG)
    assert (image.config.os, image.config.architecture) == ("linux", "arm64")
    assert result.platform == "linux/arm64"
    # libgomp1 (the project's system package) is in the unpacked base: no dpkg step.
    assert [x.role for x in result.layers] == [None, "interpreter", "packages", "code"]
    base = store.image(result.base.rpartition("@")[2])
    assert base.config.architecture == "arm64"
    pythons = elf_machines(store, base.manifest.layers[0].digest, suffix="python3.11")
    assert pythons
    assert set(pythons.values()) == {EM_AARCH64}
    packages = next(x for x in result.layers if x.step == "packages")
    machines = elf_machines(store, packages.digest)
    assert any("numpy" in name for name in machines)
    assert set(machines.values()) == {EM_AARCH64}, {
        n: m for n, m in machines.items() if m != EM_AARCH64
    }

    # The training command in the image, on the embedded runtime in another process, which
    # sees the host's real binfmt_misc: the image's programs run through its qemu handler.
    require(emulating, "a qemu-aarch64 binfmt_misc handler with the F flag (qemu-user-static)")
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    outputs.chmod(0o777)  # the image runs as 1000:1000
    done = run_cli(
        ["run", "-v", f"{root / 'data'}:/app/data:ro", "-v", f"{root / 'configs'}:/app/configs:ro",
         "-v", f"{outputs}:/app/outputs", TAG, "python", "train.py"],
        Path(os.environ["MLPACK_HOME"]), timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((outputs / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8
    assert (outputs / "model.joblib").stat().st_size > 0
