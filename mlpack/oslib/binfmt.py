"""Whether this kernel runs programs of another machine: natively, or through binfmt_misc.

The kernel runs a foreign ELF only through a handler registered with binfmt_misc
(``qemu-user-static`` and ``binfmt-support`` register ``qemu-aarch64``, ``qemu-x86_64``, ...).
The base providers, the locker and the builder ask this before they execute anything of an
image; stdlib only, so every layer may ask.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

BINFMT: Final = Path("/proc/sys/fs/binfmt_misc")
INSTALL_HINT: Final = "apt-get install qemu-user-static binfmt-support"


def host_machine() -> str:
    """The kernel's machine name ("x86_64", "aarch64")."""
    return os.uname().machine


def emulator_registered(machine: str, *, binfmt: Path | None = None) -> bool:
    """Whether binfmt_misc (default: the kernel's) has an enabled qemu handler for ``machine``."""
    try:
        return ((binfmt or BINFMT) / f"qemu-{machine}").read_text().startswith("enabled")
    except OSError:
        return False


def can_run(machine: str, *, host: str | None = None, binfmt: Path | None = None) -> bool:
    """Whether programs for ``machine`` run here: it is the ``host``'s, or a handler runs them."""
    return machine == (host or host_machine()) or emulator_registered(machine, binfmt=binfmt)
