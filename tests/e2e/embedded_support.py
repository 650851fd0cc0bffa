"""Shared pieces of the embedded-runtime end-to-end tests: a busybox rootfs and a CLI runner."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
# A 512-byte static x86_64 probe assembled from tests/fixtures/probe_x86_64.S: `probe u|c|v|n`
# exits with geteuid()&255, -clone3(), -socket(AF_VSOCK), -unshare(CLONE_NEWNS) (0 on success).
PROBE = base64.b64decode(
    "".join(
        "f0VMRgIBAQAAAAAAAAAAAAIAPgABAAAAsABAAAAAAABAAAAAAAAAAEABAAAAAAAAAAAAAEAAOAACAEAAAwACAAEA"
        "AAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAKgEAAAAAAAAqAQAAAAAAAAAQAAAAAAAAUeV0ZAYAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAABIi1wkEEiF23QXD7YLg/l1dBaD+WN0"
        "IoP5dnQqg/ludDq//wAAAOtLuGsAAAAPBYnHgef/AAAA6zq4swEAADH/MfYPBeshuCkAAAC/KAAAAL4BAAAAMdIP"
        "BesMuBABAAC/AAACAA8FMf9IhcB5BUj32InHuOcAAAAPBQAuc2hzdHJ0YWIALnRleHQAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACwAAAAEAAAAGAAAA"
        "AAAAALAAQAAAAAAAsAAAAAAAAAB6AAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAEAAAADAAAAAAAAAAAA"
        "AAAAAAAAAAAAACoBAAAAAAAAEQAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAA="
    )
)
MLPACK = [sys.executable, "-c", "from mlpack.cli import main; main()"]


def require_root() -> None:
    """Namespaces, cgroups and mounts as root: CI runs these tests as root."""
    require(os.geteuid() == 0, "root")
    require(BUSYBOX.is_file(), "busybox-static (/bin/busybox)")


def make_rootfs(root: Path, *, owner: int | None = None) -> Path:
    """A minimal image: busybox and its applet links, passwd/group, the probe."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (root / "bin" / "probe").write_bytes(PROBE)
    (root / "bin" / "probe").chmod(0o755)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "user:x:1000:1000:user:/home/user:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
    )
    (root / "etc" / "group").write_text(
        "root:x:0:\nuser:x:1000:\nextra:x:2000:user\nnogroup:x:65534:\n"
    )
    (root / "tmp").chmod(0o1777)
    if owner is not None:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                os.chown(Path(dirpath) / name, owner, owner, follow_symlinks=False)
        os.chown(root, owner, owner)
    return root


def run_cli(
    args: list[str],
    home: Path,
    *,
    user: int | None = None,
    timeout: float = 120,
    input_: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`mlpack ARGS` in a subprocess with its own MLPACK_HOME (as `user` via setpriv)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MLPACK_HOME": str(home),
        "HOME": str(home),
    }
    cmd = [*MLPACK, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        input=input_,
        cwd=str(home) if user is not None else None,
    )
