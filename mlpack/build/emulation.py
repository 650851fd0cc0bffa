"""Whether a build step can execute programs of the target platform on this host.

Installing wheels, writing layers and the image config never execute anything of the image, so
an image for another architecture is assembled natively. Only steps that run in the base (the
system packages' dpkg) execute its programs; on another architecture the kernel runs them only
through a qemu-user handler registered with binfmt_misc (qemu-user-static registers them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpack.errors import BuildError
from mlpack.oslib.binfmt import BINFMT, can_run, host_machine, install_hint
from mlpack.vocabulary import MACHINES

if TYPE_CHECKING:
    from pathlib import Path


def can_execute(platform: str, *, binfmt: Path | None = None) -> bool:
    """Whether this host runs programs of ``platform``: natively or through a qemu handler."""
    machine = MACHINES.get(platform)  # type: ignore[call-overload]
    return machine is None or can_run(machine, host=host_machine(), binfmt=binfmt or BINFMT)


def require_execution(platform: str, what: str, *, binfmt: Path | None = None) -> None:
    """Raise BuildError when ``what`` must run programs of ``platform`` and this host cannot."""
    binfmt = binfmt or BINFMT
    if can_execute(platform, binfmt=binfmt):
        return
    machine = MACHINES[platform]  # type: ignore[index]
    msg = (
        f"{what} must run {platform} programs in the base, and this {host_machine()} host "
        f"cannot: no qemu-{machine} handler with the F (fix-binary) flag, which containers "
        f"need, is registered with binfmt_misc ({binfmt})"
    )
    raise BuildError(
        msg,
        hint=f"{install_hint(machine)}, or build on a {platform} host; "
        "a lock of wheels only needs no emulation",
    )
