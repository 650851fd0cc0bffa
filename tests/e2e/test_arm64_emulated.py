"""linux/arm64 on this amd64 host through qemu-user-static's binfmt_misc handler (F flag).

The paths that must execute arm64 programs, against real parts, nothing stubbed:

- the Debian base provider configures a real arm64 minbase (mmdebstrap runs dpkg and every
  maintainer script under qemu), and the embedded runtime runs its Python;
- `build_project --platform linux/arm64` of a small project with a Debian package: the lock
  pins the package with apt inside the arm64 base, the build installs it with dpkg inside the
  base and compiles the wheels' bytecode with the base's Python, all on the embedded runtime
  through binfmt; `mlpack run` then runs the image's python3 on this host, and a second build
  from scratch gives the same digest.

`.ci/run` installs qemu-user-static and registers the handler; without it these tests fail in
CI. The mlpack home (the arm64 base, the wheelhouse, uv's and the .deb caches) is kept under
$MLPACK_CI_CACHE, keyed by the base's inputs; the build cache is emptied before each build, so
every layer is built again (dpkg and the bytecode compile run under qemu every time).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from mlpack.base import debian, resolve
from mlpack.oci.store import Store
from mlpack.oslib import binfmt
from mlpack.oslib.fs import remove_tree
from mlpack.pipeline import build_project
from tests.conftest import require
from tests.e2e.embedded_support import run_cli
from tests.e2e.test_build_arm64 import EM_AARCH64, elf_machines, no_registry
from tests.e2e.test_build_examples import mirror_reachable
from tests.oci_fixtures import CACHE, SDE
from tests.unit.lock.fakes import pypi_reachable

pytestmark = [pytest.mark.network, pytest.mark.root, pytest.mark.slow]
TAG = "localhost/tiny:arm64"
MAIN = """\
import ctypes, platform, yaml
ctypes.CDLL("libgomp.so.1")
print(platform.machine(), yaml.__with_libyaml__)
"""
CONFIG = """\
name = "tiny"
python = "3.11"
platform = "linux/arm64"

[dependencies]
system = ["libgomp1"]
[[dependencies.packages]]
requirement = "pyyaml==6.0.2"
source = "requirements.txt:1"

[entrypoints.main]
kind = "training"
command = ["python", "main.py"]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The mlpack home (cached, keyed by the arm64 minbase's inputs), with the checks first."""
    require(os.geteuid() == 0, "root (mmdebstrap and the embedded runtime)")
    require(binfmt.host_machine() == "x86_64", "an x86_64 host (arm64 is foreign here)")
    require(
        binfmt.emulator_registered("aarch64"),
        "a qemu-aarch64 binfmt_misc handler with the F flag (qemu-user-static)",
    )
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap")
    require(mirror_reachable(), "the Debian mirror")
    parts = (debian._RECIPE, debian.configured_mirror(), str(SDE), "minbase", *debian.PACKAGES)
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    home = CACHE / f"arm64-emulated-home-{key}" if CACHE.is_dir() else tmp_path / "home"
    monkeypatch.setenv("MLPACK_HOME", str(home))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(SDE))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # PyPI only, as on any machine
    monkeypatch.setattr(resolve, "registry_base", no_registry)  # the Debian provider's base
    return home


def layer_members(store: Store, digest: str) -> dict[str, bytes]:
    """The regular files of a layer, by path."""
    data = gzip.decompress(store.blob_path(digest).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile()
        }


def dpkg_status(files: dict[str, bytes]) -> dict[str, dict[str, str]]:
    """The dpkg status database of a layer: package -> its fields."""
    found = {}
    for stanza in files["var/lib/dpkg/status"].decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " "
        )
        if "Package" in fields:
            found[fields["Package"]] = fields
    return found


@pytest.mark.usefixtures("home")
def test_an_arm64_debian_base_is_configured_under_qemu_and_runs_there(home: Path) -> None:
    store = Store.default()

    base = debian.build_debian_base("3.11", store, platform="linux/arm64")

    image = store.image(base.digest)
    assert (image.config.os, image.config.architecture) == ("linux", "arm64")
    assert image.config.label(debian.VARIANT_LABEL) is None  # minbase, not unpacked
    files = layer_members(store, image.manifest.layers[0].digest)
    # Every package configured: its maintainer scripts ran, which only emulation can do here.
    status = dpkg_status(files)
    assert {"python3", "dpkg", "ca-certificates"} <= status.keys()
    assert {f["Status"] for f in status.values()} == {"install ok installed"}
    assert {f["Architecture"] for f in status.values()} <= {"arm64", "all"}
    # update-ca-certificates (ca-certificates' postinst) ran under qemu and wrote the bundle.
    assert b"BEGIN CERTIFICATE" in files["etc/ssl/certs/ca-certificates.crt"]
    machines = elf_machines(store, image.manifest.layers[0].digest, suffix="")
    assert machines["usr/bin/python3.11"] == EM_AARCH64
    assert machines["usr/bin/dpkg"] == EM_AARCH64

    code = "import platform, ssl; print(platform.machine(), ssl.OPENSSL_VERSION.split()[0])"
    done = run_cli(["run", base.reference, "python3", "-c", code], home, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["aarch64", "OpenSSL"]


@pytest.mark.usefixtures("home")
def test_without_the_handler_an_arm64_image_is_refused_before_it_starts(home: Path) -> None:
    """Not "Exec format error" from inside a half-made container: one error, one hint."""
    base = debian.build_debian_base("3.11", Store.default(), platform="linux/arm64")  # cached
    handler = binfmt.BINFMT / "qemu-aarch64"
    handler.write_text("0")  # disabled, machine-wide: enabled again whatever happens
    try:
        assert not binfmt.emulator_registered("aarch64")
        done = run_cli(["run", base.reference, "python3", "-c", "print(1)"], home)
    finally:
        handler.write_text("1")
    assert binfmt.emulator_registered("aarch64")
    assert done.returncode == 7, done.stderr
    assert done.stdout == ""
    error, hint = done.stderr.strip().splitlines()
    assert error.startswith(f"error: image {base.reference} is linux/arm64 and this x86_64 host")
    assert "no qemu-aarch64 handler with the F (fix-binary) flag" in error
    assert hint.startswith("hint: apt-get install qemu-user-static")


def test_an_arm64_build_installs_debian_packages_under_qemu(tmp_path: Path, home: Path) -> None:
    require(pypi_reachable(), "the Python package index (the arm64 lock and its wheel)")
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "mlpack.toml").write_text(CONFIG)
    (root / "requirements.txt").write_text("pyyaml==6.0.2\n")
    (root / "main.py").write_text(MAIN)
    remove_tree(home / "build-cache")  # every layer is built: dpkg runs under qemu each time
    notes: list[str] = []

    result = build_project(root, platform="linux/arm64", tag=TAG, note=notes.append)

    assert any("locking in memory" in n for n in notes)
    store = Store.default()
    image = store.image(TAG)
    assert (image.config.os, image.config.architecture) == ("linux", "arm64")
    assert [x.role for x in result.layers] == [None, "system", "interpreter", "packages", "code"]
    assert result.skipped == ()
    assert not any(x.cached for x in result.layers[1:])
    # The system layer: libgomp1 for arm64, installed and configured by dpkg in the base.
    system = next(x for x in result.layers if x.role == "system")
    files = layer_members(store, system.digest)
    gomp = dpkg_status(files)["libgomp1"]
    assert (gomp["Status"], gomp["Architecture"]) == ("install ok installed", "arm64")
    libs = elf_machines(store, system.digest, suffix="libgomp.so")
    assert libs
    assert set(libs.values()) == {EM_AARCH64}
    # The packages layer: the aarch64 wheel, with bytecode the arm64 Python compiled.
    packages = next(x for x in result.layers if x.role == "packages")
    names = layer_members(store, packages.digest)
    assert any(n.endswith("yaml/__pycache__/__init__.cpython-311.pyc") for n in names)
    assert set(elf_machines(store, packages.digest).values()) == {EM_AARCH64}

    done = run_cli(["run", TAG], home, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["aarch64", "True"]
    code = "import sys, yaml; print(sys.executable, yaml.safe_load('a: [1, 2]'))"
    done = run_cli(["run", TAG, "python3", "-c", code], home, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "/opt/venv/bin/python3 {'a': [1, 2]}"

    # What dpkg and the compiler leave under emulation is normalized like a native build's.
    remove_tree(home / "build-cache")
    again = build_project(root, platform="linux/arm64", tag=f"{TAG}-again", note=notes.append)
    assert not any(x.cached for x in again.layers[1:])
    assert again.digest == result.digest
