"""An image of another architecture: refused before anything starts unless qemu can run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.oslib.binfmt import host_machine
from mlpack.runtime.embedded.runtime import check_platform
from mlpack.vocabulary import MACHINES

HANDLER = "{}\ninterpreter /usr/libexec/qemu-binfmt/{}-binfmt-P\nflags: {}\noffset 0\n"


def foreign() -> tuple[str, str]:
    """A supported platform other than this host's, and its machine name."""
    return next((p, m) for p, m in MACHINES.items() if m != host_machine())


def config(platform: str) -> dict[str, object]:
    os_name, arch = platform.split("/")
    return {"os": os_name, "architecture": arch, "config": {"Cmd": ["true"]}}


def test_a_foreign_image_without_a_handler_is_one_clear_error(tmp_path: Path) -> None:
    platform, machine = foreign()
    with pytest.raises(ContainerError, match=f"qemu-{machine}") as info:
        check_platform("localhost/x:1", config(platform), binfmt=tmp_path)
    assert f"is {platform}" in info.value.message
    assert "qemu-user-static" in info.value.hint
    assert f"run it on a {platform} host" in info.value.hint


def test_a_handler_without_the_fix_binary_flag_counts_as_none(tmp_path: Path) -> None:
    """Without F the kernel looks the emulator up in the container's root, where it is not."""
    platform, machine = foreign()
    (tmp_path / f"qemu-{machine}").write_text(HANDLER.format("enabled", machine, "PO"))
    with pytest.raises(ContainerError):
        check_platform("localhost/x:1", config(platform), binfmt=tmp_path)
    (tmp_path / f"qemu-{machine}").write_text(HANDLER.format("disabled", machine, "POF"))
    with pytest.raises(ContainerError):
        check_platform("localhost/x:1", config(platform), binfmt=tmp_path)
    (tmp_path / f"qemu-{machine}").write_text(HANDLER.format("enabled", machine, "POF"))
    check_platform("localhost/x:1", config(platform), binfmt=tmp_path)  # runs under qemu


def test_the_hosts_own_and_unknown_platforms_are_not_checked(tmp_path: Path) -> None:
    native = next(p for p, m in MACHINES.items() if m == host_machine())
    check_platform("localhost/x:1", config(native), binfmt=tmp_path)
    check_platform("localhost/x:1", config("linux/s390x"), binfmt=tmp_path)  # left to try
    check_platform("localhost/x:1", {}, binfmt=tmp_path)  # no platform recorded
