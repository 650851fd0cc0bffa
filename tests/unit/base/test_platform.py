"""The target platform reaches the base providers, and a base of one arch never serves another."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
import types
from typing import TYPE_CHECKING, Any

import pytest

from mlpack.base import debian, registry, resolve
from mlpack.base.debian import (
    EXTRACT_PACKAGES,
    VARIANT_LABEL,
    base_reference,
    build_debian_base,
    variant_for,
)
from mlpack.errors import ImageError
from mlpack.lock.lockfile import read_lock
from mlpack.oci.registry import PullResult
from mlpack.oci.registry_errors import RegistryUnreachable
from mlpack.oci.store import Store
from mlpack.oslib import binfmt as binfmt_misc
from mlpack.pipeline import ensure_base
from mlpack.progress import RecordingReporter, using
from mlpack.vocabulary import BaseImage, Platform
from tests.oci_fixtures import add_tree_image
from tests.unit.lock.fakes import FakeBase, FakeResolver
from tests.unit.lock.test_locker import PINS, inputs, run

if TYPE_CHECKING:
    from pathlib import Path

MINIMAL_CONTROL = (
    "Package: {name}\nVersion: 1.0\nArchitecture: {arch}\nMaintainer: t <t@t>\nDescription: t\n"
)


@pytest.fixture
def amd64_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An x86_64 host whose binfmt_misc folder (returned) has no handler yet."""
    binfmt = tmp_path / "binfmt"
    binfmt.mkdir()
    monkeypatch.setattr(binfmt_misc, "host_machine", lambda: "x86_64")
    monkeypatch.setattr(binfmt_misc, "BINFMT", binfmt)
    monkeypatch.setattr(debian, "host_machine", lambda: "x86_64")
    return binfmt


def test_the_lock_asks_the_base_resolver_for_its_target_platform(tmp_path: Path) -> None:
    base = FakeBase()
    run(tmp_path, FakeResolver(PINS), inputs(platform="linux/arm64"), base=base)
    assert base.platforms == ["linux/arm64"]
    assert read_lock(tmp_path / "mlpack.lock").target.platform == "linux/arm64"


def test_ensure_base_asks_for_the_locks_platform(tmp_path: Path) -> None:
    base = FakeBase()
    run(tmp_path, FakeResolver(PINS), inputs(platform="linux/arm64"), base=FakeBase())
    lock_file = read_lock(tmp_path / "mlpack.lock")
    store = Store(tmp_path / "store")
    ensure_base(lock_file, _config(), store, base)
    assert base.platforms == ["linux/arm64"]


def _config() -> Any:
    """ensure_base reads only the config's ``base`` setting."""
    return types.SimpleNamespace(base=None)


def test_the_registry_base_pulls_the_target_platforms_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s")
    digest = add_tree_image(store, [_tree(tmp_path)], "docker.io/library/python:3.11-slim")
    seen = []

    def pull(text: str, _store: Store, *, options: Any) -> PullResult:
        seen.append((text, options.platform))
        return PullResult(reference=text, digest=digest, index_digest=None,
                          layers_fetched=0, bytes_fetched=0)  # fmt: skip

    monkeypatch.setattr(registry, "pull", pull)
    registry.registry_base("3.11", store, platform="linux/arm64")
    assert [(t, str(p)) for t, p in seen] == [("docker.io/library/python:3.11-slim", "linux/arm64")]


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "f").write_text("x")
    return tree


def test_offline_a_stored_base_of_another_arch_never_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s")
    # add_tree_image stores an amd64 image under the official name.
    amd64 = add_tree_image(store, [_tree(tmp_path)], "docker.io/library/python:3.11-slim")
    built: list[Platform] = []

    def unreachable(*_: object, **__: object) -> BaseImage:
        raise RegistryUnreachable("offline", hint="")

    def debian_base(python: str, _store: Store, *, platform: Platform) -> BaseImage:
        built.append(platform)
        return BaseImage(reference="d", digest="sha256:" + "0" * 64, provider="debian",
                         python_full="3.11.2")  # fmt: skip

    monkeypatch.setattr(resolve, "registry_base", unreachable)
    monkeypatch.setattr(resolve, "build_debian_base", debian_base)
    with using(RecordingReporter()):
        same = resolve.resolve_base("3.11", store=store, platform="linux/amd64")
        other = resolve.resolve_base("3.11", store=store, platform="linux/arm64")
    assert same.digest == amd64
    assert other.provider == "debian"
    assert built == ["linux/arm64"]


def test_an_explicit_base_of_another_arch_in_the_store_is_pulled_for_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s")
    add_tree_image(store, [_tree(tmp_path)], "my/base:1")  # amd64
    asked = []

    def pull(text: str, _store: Store, *, options: Any) -> PullResult:
        asked.append(str(options.platform))
        raise RegistryUnreachable("offline", hint="")

    monkeypatch.setattr(resolve, "pull", pull)
    with pytest.raises(RegistryUnreachable):
        resolve.resolve_base("3.11", explicit="my/base:1", store=store, platform="linux/arm64")
    assert asked == ["linux/arm64"]


def test_each_arch_has_its_own_store_name() -> None:
    assert base_reference("3.11") == "localhost/mlpack-base/python:3.11-bookworm"
    assert (
        base_reference("3.11", "linux/arm64") == "localhost/mlpack-base/python:3.11-bookworm-arm64"
    )


def test_a_foreign_arch_is_configured_only_through_a_registered_handler(amd64_host: Path) -> None:
    assert variant_for("linux/amd64", binfmt=amd64_host) == "minbase"
    assert variant_for("linux/arm64", binfmt=amd64_host) == "extract"
    handler = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {}\n"
    (amd64_host / "qemu-aarch64").write_text(handler.format("PO"))
    assert variant_for("linux/arm64", binfmt=amd64_host) == "extract"  # no F: not in a chroot
    (amd64_host / "qemu-aarch64").write_text(handler.format("POF"))
    assert variant_for("linux/arm64", binfmt=amd64_host) == "minbase"


def _fake_bootstrap(calls: list[tuple[str, str]]) -> Any:
    """Instead of mmdebstrap: a rootfs whose one package is a real (tiny) .deb of ``arch``."""

    def bootstrap(
        suite: str, mirror: str, root: Path, sde: int, *, arch: str, variant: str
    ) -> None:
        calls.append((arch, variant))
        (root / "var/lib/dpkg").mkdir(parents=True)
        (root / "usr/bin").mkdir(parents=True)
        (root / "usr/bin/python3").write_text(f"{arch} python\n")
        pkg = root.parent / "pkg"
        (pkg / "DEBIAN").mkdir(parents=True)
        control = MINIMAL_CONTROL.format(name="python3.11-minimal", arch=arch)
        (pkg / "DEBIAN/control").write_text(control.replace("1.0", "3.11.2-6"))
        archives = root / "var/cache/apt/archives"
        archives.mkdir(parents=True)
        deb = archives / f"python3.11-minimal_3.11.2-6_{arch}.deb"
        subprocess.run(["dpkg-deb", "--build", str(pkg), str(deb)], check=True,
                       capture_output=True)  # fmt: skip
        if variant == "minbase":
            (root / "var/lib/dpkg/status").write_text(control + "Status: install ok installed\n")

    return bootstrap


def test_a_foreign_base_without_emulation_is_unpacked_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amd64_host: Path
) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(debian, "_bootstrap", _fake_bootstrap(calls))
    store = Store(tmp_path / "s")
    rep = RecordingReporter()
    with using(rep):
        host = build_debian_base("3.11", store, platform="linux/amd64", mirror="http://m", sde=1)
        arm = build_debian_base("3.11", store, platform="linux/arm64", mirror="http://m", sde=1)
        again = build_debian_base("3.11", store, platform="linux/arm64", mirror="http://m", sde=1)
    assert calls == [("amd64", "minbase"), ("arm64", "extract")]  # the third was cached
    assert again == arm
    assert host.digest != arm.digest
    assert arm.python_full == "3.11.2"
    config = store.image(arm.digest).config
    assert config.architecture == "arm64"
    assert config.label(VARIANT_LABEL) == "extract"
    assert store.image(host.digest).config.architecture == "amd64"
    assert store.image(base_reference("3.11")).digest == host.digest  # not overwritten
    assert any("unpacked, not configured" in n and "qemu-user-static" in n for n in rep.notices)
    # The unpacked packages are in the dpkg status, for the lock's host-side apt.
    layer = store.image(arm.digest).manifest.layers[0]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(store.blob_path(layer.digest).read_bytes()))) as tar:  # fmt: skip
        status = tar.extractfile("var/lib/dpkg/status").read().decode()  # type: ignore[union-attr]
    assert "Package: python3.11-minimal" in status
    assert "Status: install ok unpacked" in status
    assert "Architecture: arm64" in status


def test_an_unpacked_base_has_what_a_usable_python_needs() -> None:
    assert {"python3", "libstdc++6", "debian-archive-keyring"} <= set(EXTRACT_PACKAGES)


def test_mmdebstrap_is_asked_for_the_target_arch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    cmd = debian._command("extract", "arm64", "bookworm", "http://m", tmp_path)
    assert "--arch=arm64" in cmd
    assert "--variant=extract" in cmd
    assert f"--include={','.join(EXTRACT_PACKAGES)}" in cmd
    assert "--arch=amd64" in debian._command("minbase", "amd64", "bookworm", "http://m", tmp_path)


def test_a_configured_foreign_base_trusts_the_checked_handler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # mmdebstrap would want arch-test to find what variant_for found: a fix-binary handler.
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(debian, "host_machine", lambda: "x86_64")
    cmd = debian._command("minbase", "arm64", "bookworm", "http://m", tmp_path)
    assert "--skip=check/qemu" in cmd
    assert "--variant=minbase" in cmd
    native = debian._command("minbase", "amd64", "bookworm", "http://m", tmp_path)
    assert "--skip=check/qemu" not in native


def test_an_unpacked_base_needs_mmdebstrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ImageError, match="arm64"):
        debian._command("extract", "arm64", "bookworm", "http://m", tmp_path)


def test_an_explicit_single_platform_base_of_another_arch_is_refused_at_lock_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "s")
    digest = add_tree_image(store, [_tree(tmp_path)], "my/base:1")  # amd64 only

    def pull(text: str, _store: Store, *, options: Any) -> PullResult:
        return PullResult(reference=text, digest=digest, index_digest=None,
                          layers_fetched=0, bytes_fetched=0)  # fmt: skip

    monkeypatch.setattr(resolve, "pull", pull)
    with pytest.raises(ImageError, match="is linux/amd64, not linux/arm64"):
        resolve.resolve_base("3.11", explicit="my/base:1", store=store, platform="linux/arm64")
    chosen = resolve.resolve_base("3.11", explicit="my/base:1", store=store, platform="linux/amd64")
    assert chosen.digest == digest
