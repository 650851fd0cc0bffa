"""Whether this kernel runs programs of another machine: natively, or through binfmt_misc.

The kernel runs a foreign ELF only through a handler registered with binfmt_misc
(``qemu-user-static`` registers ``qemu-aarch64``, ``qemu-x86_64``, ... through systemd-binfmt or
``binfmt-support``). mlpack runs the image's programs in containers (mmdebstrap's chroot, the
embedded runtime's own root filesystem), where the handler's interpreter path does not exist:
only a handler with the F (fix-binary) flag, whose static emulator the kernel opened when it
was registered, works there. So a handler without F counts as none. The base providers, the
locker and the builder ask this before they execute anything of an image; stdlib only, so
every layer may ask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

BINFMT: Final = Path("/proc/sys/fs/binfmt_misc")


def host_machine() -> str:
    """The kernel's machine name ("x86_64", "aarch64")."""
    return os.uname().machine


def install_hint(machine: str) -> str:
    """How to get a fix-binary qemu handler for ``machine`` (on a host, in a container)."""
    return (
        "apt-get install qemu-user-static binfmt-support (in a container, where they register "
        f"nothing, as root: mount -t binfmt_misc binfmt_misc {BINFMT}; "
        f"cat /usr/lib/binfmt.d/qemu-{machine}.conf > {BINFMT}/register)"
    )


def emulator_registered(machine: str, *, binfmt: Path | None = None) -> bool:
    """Whether binfmt_misc (default: the kernel's) has an enabled fix-binary qemu handler for
    ``machine``: one that also runs programs inside a container.
    """
    try:
        lines = ((binfmt or BINFMT) / f"qemu-{machine}").read_text().splitlines()
    except OSError:
        return False
    flags = next((x.partition(":")[2] for x in lines if x.startswith("flags:")), "")
    return bool(lines) and lines[0] == "enabled" and "F" in flags


def can_run(machine: str, *, host: str | None = None, binfmt: Path | None = None) -> bool:
    """Whether programs for ``machine`` run here: it is the ``host``'s, or a handler runs them."""
    return machine == (host or host_machine()) or emulator_registered(machine, binfmt=binfmt)
