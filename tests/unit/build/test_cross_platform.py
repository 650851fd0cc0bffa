"""An image for another architecture: assembled without executing anything of it, and a clear
error when a step must execute there and no qemu-user handler is registered."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest

from mlpack.build import emulation
from mlpack.build.embedded import EmbeddedBuilder
from mlpack.errors import BuildError, ImageError
from mlpack.lock.lockdata import SystemPackagePin
from mlpack.oci.store import Store
from mlpack.oslib import binfmt as binfmt_misc
from mlpack.spec import ImageSpec, SystemStep
from mlpack.vocabulary import MACHINES
from tests.unit.build.fakes import make_base, make_project, make_spec, make_wheel

if TYPE_CHECKING:
    from pathlib import Path

TAG = "localhost/demo:arm64"
DEB = SystemPackagePin(name="libgomp1", version="12.2.0-14", architecture="arm64",
                       url="http://deb.example/libgomp1.deb", sha256="0" * 64, size=1)  # fmt: skip


def never(**_: object) -> int:
    raise AssertionError("nothing of the image may execute")


def arm64(tmp: Path, *, system: bool) -> tuple[Store, EmbeddedBuilder, ImageSpec]:
    store = Store(tmp / "store")
    (tmp / "wheels").mkdir()
    pin = make_wheel(tmp / "wheels")
    spec = make_spec(make_base(store, tmp, architecture="arm64"), (pin,))
    spec = dataclasses.replace(spec, platform="linux/arm64")
    if system:
        spec = dataclasses.replace(spec, steps=(SystemStep(debs=(DEB,)), *spec.steps))
    builder = EmbeddedBuilder(store, wheels={pin.sha256: tmp / "wheels" / pin.filename},
                              runner=never)  # fmt: skip
    return store, builder, spec


def test_a_wheels_only_arm64_image_is_assembled_on_this_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not even the bytecode compile runs: it would need the arm64 Python.
    monkeypatch.setattr(emulation, "host_machine", lambda: "x86_64")
    monkeypatch.setattr(emulation, "BINFMT", tmp_path / "binfmt")
    store, builder, spec = arm64(tmp_path, system=False)
    result = builder.build(spec, context=make_project(tmp_path / "proj"), tag=TAG)
    image = store.image(TAG)
    assert result.platform == "linux/arm64"
    assert (image.config.os, image.config.architecture) == ("linux", "arm64")
    assert [x.role for x in result.layers] == [None, "interpreter", "packages", "code"]


def test_a_system_step_without_a_qemu_handler_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(emulation, "host_machine", lambda: "x86_64")
    monkeypatch.setattr(emulation, "BINFMT", tmp_path / "binfmt")  # nothing registered
    store, builder, spec = arm64(tmp_path, system=True)
    with pytest.raises(BuildError, match="qemu-aarch64") as info:
        builder.build(spec, context=make_project(tmp_path / "proj"), tag=TAG)
    assert "binfmt_misc" in info.value.message
    assert "qemu-user-static" in info.value.hint
    with pytest.raises(ImageError):
        store.resolve(TAG)


def test_a_registered_handler_lets_the_step_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    binfmt = tmp_path / "binfmt"
    binfmt.mkdir()
    handler = "{}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {}\noffset 0\n"
    (binfmt / "qemu-aarch64").write_text(handler.format("enabled", "POF"))
    monkeypatch.setattr(emulation, "host_machine", lambda: "x86_64")
    monkeypatch.setattr(emulation, "BINFMT", binfmt)
    assert binfmt_misc.emulator_registered("aarch64", binfmt=binfmt)
    emulation.require_execution("linux/arm64", "x", binfmt=binfmt)  # no error
    (binfmt / "qemu-aarch64").write_text(handler.format("disabled", "POF"))
    with pytest.raises(BuildError):
        emulation.require_execution("linux/arm64", "x", binfmt=binfmt)
    # Without F the kernel looks the emulator up in the container's root, where it is not.
    (binfmt / "qemu-aarch64").write_text(handler.format("enabled", "PO"))
    with pytest.raises(BuildError, match="F \\(fix-binary\\) flag") as info:
        emulation.require_execution("linux/arm64", "x", binfmt=binfmt)
    assert "/usr/lib/binfmt.d/qemu-aarch64.conf" in info.value.hint


def test_the_host_platform_needs_no_emulation(tmp_path: Path) -> None:
    machine = binfmt_misc.host_machine()
    platform = next(p for p, m in MACHINES.items() if m == machine)
    emulation.require_execution(platform, "x", binfmt=tmp_path / "none")
