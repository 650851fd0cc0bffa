"""Whether a build step can execute programs of the target platform on this host.

Installing wheels, writing layers and the image config never execute anything of the image, so
an image for another architecture is assembled natively. Only steps that run in the base (the
system packages' dpkg) execute its programs; on another architecture the kernel runs them only
through a qemu-user handler registered with binfmt_misc (qemu-user-static registers them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from mlpack.errors import BuildError
from mlpack.vocabulary import MACHINES

BINFMT: Final = Path("/proc/sys/fs/binfmt_misc")


def host_machine() -> str:
    """The kernel's machine name ("x86_64", "aarch64")."""
    return os.uname().machine


def emulator_registered(machine: str, *, binfmt: Path | None = None) -> bool:
    """Whether binfmt_misc (default: the kernel's) has an enabled qemu handler for ``machine``."""
    try:
        return ((binfmt or BINFMT) / f"qemu-{machine}").read_text().startswith("enabled")
    except OSError:
        return False


def can_execute(platform: str, *, binfmt: Path | None = None) -> bool:
    """Whether this host runs programs of ``platform``: natively or through a qemu handler."""
    machine = MACHINES.get(platform)  # type: ignore[call-overload]
    return (
        machine is None
        or machine == host_machine()
        or emulator_registered(machine, binfmt=binfmt or BINFMT)
    )


def require_execution(platform: str, what: str, *, binfmt: Path | None = None) -> None:
    """Raise BuildError when ``what`` must run programs of ``platform`` and this host cannot."""
    binfmt = binfmt or BINFMT
    if can_execute(platform, binfmt=binfmt):
        return
    machine = MACHINES[platform]  # type: ignore[index]
    msg = (
        f"{what} must run {platform} programs in the base, and this {host_machine()} host "
        f"cannot: no qemu-{machine} handler is registered with binfmt_misc ({binfmt})"
    )
    raise BuildError(
        msg,
        hint="install qemu-user-static (it registers the handlers), or build on a "
        f"{platform} host; a lock of wheels only needs no emulation",
    )
