"""A tiny busybox-static rootfs and its Docker image, for runtime tests and benchmarks.

Built from Debian's ``busybox-static`` (``/bin/busybox``): a static binary, one symlink per
applet, ``/etc/passwd`` with root and nobody, and the empty mount points a runtime expects.
Cached under ``$MLPACK_CI_CACHE`` keyed by the binary's hash; rebuilt when absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlpack.oci.store import Store

BUSYBOX = Path("/bin/busybox")
DOCKER_REPO = "mlpack-test/busybox"


def cache_dir() -> Path:
    return Path(os.environ.get("MLPACK_CI_CACHE", "/var/cache/mlpack-ci"))


def available() -> bool:
    """Return True when Debian's static busybox is installed (``apt-get install busybox-static``)."""
    try:
        data = BUSYBOX.read_bytes()
    except OSError:
        return False
    # A static ELF64 binary has no PT_INTERP (3) program header; the dynamic busybox has one.
    if data[:5] != b"\x7fELF\x02":
        return False
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    types = {
        int.from_bytes(data[phoff + i * phentsize : phoff + i * phentsize + 4], "little")
        for i in range(phnum)
    }
    return 3 not in types


def key() -> str:
    return hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()[:16]


def rootfs(dest: Path | None = None) -> Path:
    """Return a busybox rootfs directory (cached), or build one at ``dest``."""
    target = dest or cache_dir() / f"busybox-rootfs-{key()}"
    if (target / "bin" / "busybox").exists():
        return target
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var", "run", "mnt"):
        (tmp / d).mkdir(parents=True)
    (tmp / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, tmp / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (tmp / "bin" / applet).symlink_to("busybox")
    (tmp / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (tmp / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(target)
    return target


def tarball(root: Path) -> bytes:
    """Tar a rootfs for ``docker import`` (numeric root ownership, no host names)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=reset)
    return buf.getvalue()


ENTRYPOINT_VARIANT = (("/bin/echo", "ep"), ("default",))  # Entrypoint, Cmd


def docker_image(*, entrypoint: bool = False) -> str:
    """Return a Docker image reference with this rootfs, importing it when missing.

    ``entrypoint`` gives the variant with ENTRYPOINT_VARIANT's Entrypoint and Cmd.
    """
    ref = f"{DOCKER_REPO}:{key()}" + ("-ep" if entrypoint else "")
    have = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, check=False)
    if have.returncode == 0:
        return ref
    data = tarball(rootfs())
    changes = ["--change", 'CMD ["/bin/sh"]']
    if entrypoint:
        ep, cmd = ENTRYPOINT_VARIANT
        changes = [
            "--change",
            f"ENTRYPOINT {json.dumps(list(ep))}",
            "--change",
            f"CMD {json.dumps(list(cmd))}",
        ]
    subprocess.run(
        ["docker", "import", *changes, "-", ref],
        input=data,
        capture_output=True,
        check=True,
    )
    return ref


def store_image(
    store: Store, *, env: tuple[str, ...] = (), tag: str | None = None, entrypoint: bool = False
) -> str:
    """Put the rootfs into an mlpack store as a one-layer OCI image; return its reference.

    ``env`` adds image ``Env`` entries (give such variants their own ``tag``); ``entrypoint``
    gives the variant with ENTRYPOINT_VARIANT's Entrypoint and Cmd.
    """
    from mlpack.oci import mediatypes
    from mlpack.oci.documents import Descriptor
    from mlpack.oci.layer_writer import write_layer

    ref = f"{DOCKER_REPO}:{tag or key()}" + ("-ep" if entrypoint else "")
    with contextlib.suppress(Exception):
        store.resolve(ref)
        return ref
    store.prepare()
    root = rootfs()
    with tempfile.TemporaryDirectory(dir=store.root) as tmp:
        layer_path = Path(tmp) / "layer.tar.gz"
        with layer_path.open("wb") as fh:
            digests = write_layer(root, fh, source_date_epoch=0, clamp_mtime=True)
        store.put_file(layer_path, digest=digests.digest)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            **(
                {"Entrypoint": list(ENTRYPOINT_VARIANT[0]), "Cmd": list(ENTRYPOINT_VARIANT[1])}
                if entrypoint
                else {"Cmd": ["/bin/sh"]}
            ),
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *env],
        },
        "rootfs": {"type": "layers", "diff_ids": [digests.diff_id]},
    }
    layer = Descriptor(
        media_type=mediatypes.OCI_LAYER_GZIP, digest=digests.digest, size=digests.size
    )
    store.add_image(config=config, layers=(layer,), ref=ref)
    return ref
