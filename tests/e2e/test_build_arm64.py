"""An arm64 image of examples/training assembled on this (amd64) host, with nothing executed.

The base is Debian's arm64 Python, unpacked by ``mmdebstrap --variant=extract`` (no maintainer
script runs, so no emulation); the lock is the fixture lock's pins with each package's
aarch64 wheel from PyPI. The image's manifest and config must say arm64, every shared object
in its packages layer must be an aarch64 ELF, and under qemu-user (``-L``, no binfmt needed)
the image's Python imports numpy and scikit-learn from the built venv.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import shutil
import subprocess
import tarfile
from typing import TYPE_CHECKING

import pytest
from packaging.utils import parse_wheel_filename

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.config import load_config
from mlpack.lock.files import choose_file
from mlpack.lock.indexes import list_files
from mlpack.lock.lockdata import Lock, LockedFile
from mlpack.lock.lockfile import read_lock
from mlpack.lock.wheelhouse import fetch
from mlpack.oci import mediatypes
from mlpack.oci.documents import Descriptor
from mlpack.oci.layer_applier import apply_layer
from mlpack.oci.layer_writer import write_layer
from mlpack.oci.store import Store
from mlpack.spec import Provenance, plan
from tests.conftest import require
from tests.e2e.test_build_examples import mirror_reachable, project
from tests.unit.lock.fakes import pypi_reachable

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.slow]
EM_AARCH64 = 183
TAG = "localhost/training:arm64"
# apt resolves their dependencies (libc6, libssl3, ...); extract unpacks them all.
BASE_PACKAGES = "python3-minimal,python3.11-minimal,libpython3.11-stdlib,libgomp1,libstdc++6"


def never(**_: object) -> int:
    raise AssertionError("nothing of the arm64 image may execute on this host")


def arm64_base(store: Store, tmp: Path) -> str:
    """Debian bookworm's arm64 Python, unpacked without running any of it, as a store image."""
    rootfs_tar = tmp / "rootfs.tar"
    subprocess.run(
        ["mmdebstrap", "--variant=extract", "--arch=arm64", f"--include={BASE_PACKAGES}",
         "bookworm", str(rootfs_tar)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    rootfs = tmp / "rootfs"
    rootfs.mkdir()
    subprocess.run(["tar", "-xf", str(rootfs_tar), "-C", str(rootfs)], check=True)
    store.prepare()
    blob = tmp / "base.tar.gz"
    with blob.open("wb") as fh:
        digests = write_layer(rootfs, fh, source_date_epoch=1, clamp_mtime=True,
                              preserve_metadata=True, on_special="skip")  # fmt: skip
    store.put_file(blob, digest=digests.digest)
    config = {
        "architecture": "arm64",
        "os": "linux",
        "created": "1970-01-01T00:00:01Z",
        "config": {"Env": ["PATH=/usr/bin:/bin", "PYTHON_VERSION=3.11.2"], "Cmd": ["python3"]},
        "rootfs": {"type": "layers", "diff_ids": [digests.diff_id]},
        "history": [{"created": "1970-01-01T00:00:01Z", "created_by": "mmdebstrap extract"}],
    }
    layer = Descriptor(media_type=mediatypes.OCI_LAYER_GZIP, digest=digests.digest,
                       size=digests.size)  # fmt: skip
    return store.add_image(config=config, layers=(layer,), ref="localhost/base-arm64:1")


def arm64_lock(lock: Lock, base: str) -> Lock:
    """The lock's pins, each with its cp311 aarch64 (or pure) wheel as PyPI lists it."""
    packages = []
    for pkg in lock.packages:
        files: dict[str, str] = {
            f.filename: f.sha256 or ""
            for f in list_files(lock.index_url, pkg.name)
            if f.filename.endswith(".whl")
            and f.sha256
            and str(parse_wheel_filename(f.filename)[1]) == pkg.version
        }
        chosen = choose_file(tuple(files), "3.11.2", "linux/arm64")
        assert chosen is not None, pkg.name
        file = LockedFile(name=chosen, sha256=files[chosen])
        packages.append(dataclasses.replace(pkg, files=(file,), hashes=(file.sha256,)))
    return dataclasses.replace(
        lock,
        target=dataclasses.replace(lock.target, platform="linux/arm64"),
        base=dataclasses.replace(lock.base, digest=base, reference="localhost/base-arm64:1"),
        extra_index_urls=(),
        packages=tuple(packages),
        system_packages=(),  # libgomp1 is in the base above: nothing to execute
    )


def elf_machines(store: Store, digest: str) -> dict[str, int]:
    """e_machine of every regular ``.so`` file in a layer."""
    found = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.blob_path(digest).read_bytes()))) as tar:  # fmt: skip
        for member in tar:
            if member.isfile() and ".so" in member.name.rsplit("/", 1)[-1]:
                head = tar.extractfile(member).read(20)  # type: ignore[union-attr]
                if head[:4] == b"\x7fELF":
                    found[member.name] = int.from_bytes(head[18:20], "little")
    return found


def test_an_arm64_training_image_is_assembled_without_emulation(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root (mmdebstrap unpacks a rootfs with its owners)")
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap")
    require(mirror_reachable(), "the Debian mirror")
    require(pypi_reachable(), "the Python package index (aarch64 wheels)")
    store = Store(tmp_path / "home")
    root = project(tmp_path / "training")
    lock = arm64_lock(read_lock(root / "mlpack.lock"), arm64_base(store, tmp_path))
    house = fetch(lock, home=tmp_path / "wheels-home")
    spec = plan(lock, load_config(root), provenance=Provenance(source_date_epoch=1700000000))
    wheels = {f.sha256: f.path for f in house.files}
    result = EmbeddedBuilder(store, wheels=wheels, runner=never).build(spec, context=root, tag=TAG)

    image = store.image(TAG)
    assert (image.config.os, image.config.architecture) == ("linux", "arm64")
    assert result.platform == "linux/arm64"
    packages = next(x for x in result.layers if x.step == "packages")
    machines = elf_machines(store, packages.digest)
    assert any("numpy" in name for name in machines)
    assert set(machines.values()) == {EM_AARCH64}, {
        n: m for n, m in machines.items() if m != EM_AARCH64
    }

    qemu = shutil.which("qemu-aarch64")
    require(qemu is not None, "qemu-user (qemu-aarch64)")
    assert qemu is not None
    rootfs = tmp_path / "image-rootfs"
    rootfs.mkdir()
    for desc in image.manifest.layers:
        with store.blob_path(desc.digest).open("rb") as blob:
            apply_layer(blob, rootfs, media_type=desc.media_type)
    site = rootfs / "opt/venv/lib/python3.11/site-packages"
    code = (
        f"import sys, platform; sys.path.insert(0, {str(site)!r}); import numpy, sklearn; "
        "print(int(numpy.arange(6).sum()), sklearn.__version__, platform.machine())"
    )
    proc = subprocess.run(
        [qemu, "-L", str(rootfs), str(rootfs / "usr/bin/python3.11"), "-c", code],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    total, version, machine = proc.stdout.split()
    assert (total, machine) == ("15", "aarch64")
    assert version == next(p.version for p in lock.packages if p.name == "scikit-learn")
