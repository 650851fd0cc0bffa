"""examples/training built with the embedded builder on THE Debian base, then trained in the image.

The lock is the committed fixture lock (tests/fixtures/render/training) re-pointed at the test
base; wheels come from a wheelhouse kept under $MLPACK_CI_CACHE, so only a cold cache needs PyPI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.build.protocol import BuildResult, StepRunner
from mlpack.config import load_config
from mlpack.lock.lockfile import read_lock
from mlpack.lock.wheelhouse import cached_path, fetch
from mlpack.oci import mediatypes
from mlpack.oci.layer_stream import stored_layer
from mlpack.oci.store import Store
from mlpack.pipeline import embedded_step_runner
from mlpack.spec import ImageSpec, Provenance, commands, plan
from tests.conftest import require
from tests.e2e.embedded_support import MLPACK
from tests.oci_fixtures import CACHE, debian_base
from tests.unit.lock.fakes import pypi_reachable

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "render"
TAG = "localhost/training:e2e"


def project(dest: Path, example: str = "training") -> Path:
    """A copy of examples/<example> with the fixture's mlpack.toml and mlpack.lock."""
    shutil.copytree(REPO / "examples" / example, dest)
    for name in ("mlpack.toml", "mlpack.lock"):
        shutil.copy(FIXTURES / example / name, dest / name)
    return dest


def spec_and_wheels(root: Path, store: Store) -> tuple[ImageSpec, dict[str, Path]]:
    base = store.image(debian_base(store))
    lock = read_lock(root / "mlpack.lock")
    lock = dataclasses.replace(lock, base=dataclasses.replace(lock.base, digest=base.digest))
    home = CACHE / "build-home" if CACHE.is_dir() else root.parent / "home"
    wanted = [f for p in lock.packages for f in p.files]
    if not all(cached_path(home, f.sha256, f.name).exists() for f in wanted):
        require(pypi_reachable(), "the Python package index (cold wheelhouse)")
    house = fetch(lock, home=home)
    spec = plan(lock, load_config(root), provenance=Provenance(source_date_epoch=1700000000))
    return spec, {f.sha256: f.path for f in house.files}


def mirror_reachable() -> bool:
    from mlpack.base.debian import configured_mirror

    try:
        with urllib.request.urlopen(f"{configured_mirror()}/dists/bookworm/Release", timeout=10):
            return True
    except OSError:
        return False


def runner_for(store: Store) -> StepRunner:
    """The pipeline's step runner, with the runtime reading images from ``store``.

    MLPACK_HOME stays set while any run is in flight: the two bytecode compiles overlap.
    """
    inner = embedded_step_runner()
    require(inner is not None, "the embedded runtime")
    assert inner is not None
    lock = threading.Lock()
    in_flight: list[str | None] = []  # MLPACK_HOME as it was, once per run in flight

    def run(
        *,
        image: str,
        argv: tuple[str, ...],
        mounts: tuple[tuple[str, Path], ...],
        readonly: tuple[tuple[str, Path], ...],
        network: bool,
    ) -> int:
        with lock:
            in_flight.append(in_flight[0] if in_flight else os.environ.get("MLPACK_HOME"))
            os.environ["MLPACK_HOME"] = str(store.root)
        try:
            return inner(image=image, argv=argv, mounts=mounts, readonly=readonly, network=network)
        finally:
            with lock:
                old = in_flight.pop()
                if not in_flight:  # the last run out puts it back
                    if old is None:
                        del os.environ["MLPACK_HOME"]
                    else:
                        os.environ["MLPACK_HOME"] = old

    return run


def build(root: Path, store: Store) -> BuildResult:
    """The embedded build of ``root``; apt runs in the base through the embedded runtime."""
    require(mirror_reachable(), "the Debian mirror (the pinned libgomp1 .deb)")
    spec, wheels = spec_and_wheels(root, store)
    builder = EmbeddedBuilder(store, wheels=wheels, runner=runner_for(store))
    return builder.build(spec, context=root, tag=TAG)


@pytest.fixture
def root_required() -> None:
    require(os.geteuid() == 0, "root (mmdebstrap and the embedded runtime)")


@pytest.mark.usefixtures("root_required")
def test_training_runs_in_the_built_image_and_writes_its_outputs(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    root = project(tmp_path / "training")
    result = build(root, store)
    assert [x.role for x in result.layers] == [None, "system", "interpreter", "packages", "code"]
    assert result.skipped == ()
    outputs = tmp_path / "outputs"
    outputs.mkdir(mode=0o777)
    outputs.chmod(0o777)  # the image runs as 1000:1000
    env = {"PATH": os.environ.get("PATH", ""), "MLPACK_HOME": str(store.root)}
    proc = subprocess.run(
        [*MLPACK, "run",
         "-v", f"{root / 'data'}:/app/data:ro",
         "-v", f"{root / 'configs'}:/app/configs:ro",
         "-v", f"{outputs}:/app/outputs",
         TAG, "python", "train.py"],
        capture_output=True, text=True, env=env, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((outputs / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8
    assert metrics["tracking"] == "none"
    assert (outputs / "model.joblib").stat().st_size > 0
    # The system step installed libgomp1 (the lock's system package) with dpkg's records.
    check = "import ctypes; ctypes.CDLL('libgomp.so.1'); print(open('/var/lib/dpkg/status').read())"
    proc = subprocess.run([*MLPACK, "run", TAG, "python", "-c", check],
                          capture_output=True, text=True, env=env, check=False, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Package: libgomp1" in proc.stdout
    # The packages layer carries bytecode from the image's Python, unchecked-hash (PEP 552).
    pyc = packages_pyc(store, result, "yaml/__pycache__/__init__.cpython-311.pyc")
    assert int.from_bytes(pyc[4:8], "little") == commands.UNCHECKED_HASH_FLAGS
    # ... listed in the distribution's RECORD, as pip lists what it compiles.
    record = packages_pyc(store, result, "pyyaml-6.0.3.dist-info/RECORD").decode()
    assert "yaml/__pycache__/__init__.cpython-311.pyc,,\n" in record
    assert next(x for x in result.layers if x.step == "packages").pyc_dropped == ()


def packages_pyc(store: Store, result: BuildResult, rel: str) -> bytes:
    """One .pyc of the packages layer, read with mlpack's tar reader."""
    digest = next(x.digest for x in result.layers if x.step == "packages")
    name = f"opt/venv/lib/python3.11/site-packages/{rel}"
    with store.blob_path(digest).open("rb") as raw:
        reader = stored_layer(raw)
        for member in reader:
            if member.name.removeprefix("./") == name:
                return b"".join(reader.read_data())
    raise AssertionError(f"{name} is not in the packages layer")


@pytest.mark.usefixtures("root_required")
def test_builds_from_two_folders_umasks_and_zones_are_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = build(project(tmp_path / "a" / "training"), Store(tmp_path / "a" / "home"))
    old = os.umask(0o077)
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        two = build(
            project(tmp_path / "b" / "much" / "deeper" / "training"), Store(tmp_path / "b" / "h")
        )
    finally:
        os.umask(old)
        monkeypatch.delenv("TZ")
        time.tzset()
    assert [x.digest for x in one.layers] == [x.digest for x in two.layers]
    assert one.digest == two.digest


@pytest.mark.usefixtures("root_required")
def test_a_code_only_change_changes_only_the_code_layer(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    root = project(tmp_path / "training")
    before = build(root, store)
    with (root / "train.py").open("a") as fh:
        fh.write("\n# a comment\n")
    after = build(root, store)
    changed = [
        a.step for a, b in zip(before.layers, after.layers, strict=True) if a.digest != b.digest
    ]
    assert changed == ["code"]
    assert [x.cached for x in after.layers] == [True, True, True, True, False]


@pytest.mark.usefixtures("root_required")
def test_a_zstd_build_writes_zstd_layers_that_the_runtime_runs(tmp_path: Path) -> None:
    """``--compression zstd``: every layer the build writes is tar+zstd (the base's stay as
    pulled), and the embedded runtime unpacks them into a working image.
    """
    require(mirror_reachable(), "the Debian mirror (the pinned libgomp1 .deb)")
    store = Store(tmp_path / "home")
    root = project(tmp_path / "training")
    spec, wheels = spec_and_wheels(root, store)
    builder = EmbeddedBuilder(store, wheels=wheels, runner=runner_for(store), compression="zstd")
    result = builder.build(spec, context=root, tag=TAG)
    layers = store.image(result.digest).manifest.layers
    assert layers[0].media_type == mediatypes.OCI_LAYER_GZIP  # the base, reused as it is
    assert {x.media_type for x in layers[1:]} == {mediatypes.OCI_LAYER_ZSTD}
    check = "import numpy, sklearn, yaml; print('imports ok')"
    env = {"PATH": os.environ.get("PATH", ""), "MLPACK_HOME": str(store.root)}
    proc = subprocess.run([*MLPACK, "run", TAG, "python", "-c", check],
                          capture_output=True, text=True, env=env, check=False, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imports ok"
