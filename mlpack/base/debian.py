"""The ``debian`` base provider: a minimal Debian + Python rootfs from Debian packages."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mlpack.base import DEBIAN_SUITES
from mlpack.errors import ImageError
from mlpack.oci import mediatypes
from mlpack.oci.documents import Descriptor
from mlpack.oci.layer_writer import write_layer
from mlpack.oslib.fs import remove_tree
from mlpack.progress import reporter
from mlpack.vocabulary import BaseImage

if TYPE_CHECKING:
    from mlpack.oci.store import Store

PACKAGES = ("python3", "python3-venv", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEY_LABEL = "org.mlpack.base.key"
PACKAGES_LABEL = "org.mlpack.base.packages"
_ARCH = {"amd64": "amd64", "arm64": "arm64", "armhf": "arm", "i386": "386", "ppc64el": "ppc64le"}
# REPRODUCIBILITY §4 hygiene: files that hold build time, inode numbers or caches.
SCRUB = (
    "var/log/*",
    "var/cache/ldconfig/aux-cache",
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "root/.cache",
    ".wget-hsts",
    "root/.wget-hsts",
    "dev/*",
    "run/*",
    "tmp/*",
)


def suite_for(python: str) -> str:
    """The Debian suite whose python3 is ``python`` (X.Y); ImageError when there is none."""
    suite = DEBIAN_SUITES.get(python)
    if suite is None:
        msg = f"no Debian suite ships Python {python}"
        raise ImageError(
            msg,
            hint=f"the debian provider serves {', '.join(DEBIAN_SUITES)}; set base = ... instead",
        )
    return suite


def configured_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI from apt's sources (deb822 or one-line), else deb.debian.org."""
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        candidates = re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE)
        candidates += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
        for uri in candidates:
            if re.search(r"/debian/?$", uri) and "security" not in uri:
                return str(uri).rstrip("/")
    return DEFAULT_MIRROR


def _sde() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(raw) if raw.isdigit() else 1


def base_reference(python: str) -> str:
    """The store name of the Debian base for ``python``."""
    return f"localhost/mlpack-base/python:{python}-{suite_for(python)}"


# Bumped whenever the way the rootfs is made or packed changes, so cached bases are rebuilt.
_RECIPE = "2"


def _key(suite: str, mirror: str, sde: int, arch: str) -> str:
    text = "\n".join((_RECIPE, suite, mirror, str(sde), arch, *PACKAGES))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _host_arch() -> str:
    try:
        out = subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = "amd64"
    return out


def _bootstrap(suite: str, mirror: str, root: Path, sde: int) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(sde), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    tool = shutil.which("mmdebstrap")
    if tool is not None:
        mode = "root" if os.geteuid() == 0 else "unshare"
        cmd = [
            tool,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            f"--mode={mode}",
            "--format=directory",
            "--quiet",
            suite,
            str(root),
            mirror,
        ]
    elif (tool := shutil.which("debootstrap")) is not None and os.geteuid() == 0:
        cmd = [
            tool,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            suite,
            str(root),
            mirror,
        ]
    else:
        msg = "the debian base provider needs mmdebstrap (or debootstrap as root)"
        raise ImageError(msg, hint="apt-get install mmdebstrap, or set base = ... in mlpack.toml")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        msg = (
            f"{Path(cmd[0]).name} failed to build a {suite} rootfs from {mirror}: {' '.join(tail)}"
        )
        raise ImageError(msg, hint="check that the Debian mirror is reachable (apt sources)")


def scrub_rootfs(root: Path) -> None:
    """Delete what varies between runs of the same install (REPRODUCIBILITY.md §4 hygiene)."""
    for pattern in SCRUB:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                remove_tree(path)
            else:
                path.unlink(missing_ok=True)
    machine_id = root / "etc" / "machine-id"
    if machine_id.exists():
        machine_id.write_bytes(b"")
    for cache in root.rglob("__pycache__"):
        remove_tree(cache)


def _packages(root: Path) -> tuple[str, ...]:
    proc = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root / 'var/lib/dpkg'}",
            "-W",
            "-f",
            "${Package}=${Version}\\n",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return tuple(sorted(line for line in proc.stdout.splitlines() if line))


def _python_full(packages: tuple[str, ...], python: str) -> str:
    for entry in packages:
        name, _, version = entry.partition("=")
        if name in (f"python{python}-minimal", f"python{python}"):
            match = re.match(r"(\d+\.\d+\.\d+)", version)
            if match:
                return match.group(1)
    return python


def build_debian_base(
    python: str, store: Store, *, mirror: str | None = None, sde: int | None = None
) -> BaseImage:
    """Build (or reuse, keyed by its inputs) the Debian base for ``python`` in ``store``."""
    suite = suite_for(python)
    mirror = mirror or configured_mirror()
    sde = _sde() if sde is None else sde
    arch = _host_arch()
    key = _key(suite, mirror, sde, arch)
    ref = base_reference(python)
    with contextlib.suppress(ImageError):
        existing = store.image(ref)
        if existing.config.label(KEY_LABEL) == key:
            return BaseImage(
                reference=ref,
                digest=existing.digest,
                provider="debian",
                python_full=_env_python(existing.config.env) or python,
            )
    rep = reporter()
    rep.notice(f"building a Debian {suite} + Python {python} base from {mirror} (about a minute)")
    store.prepare()
    # Hold the shared gc lock for the whole build so prune cannot collect the new blobs.
    with store.writing(), store.staging("debian") as work:
        rootfs = work / "rootfs"
        try:
            _bootstrap(suite, mirror, rootfs, sde)
            packages = _packages(rootfs)
            scrub_rootfs(rootfs)
            python_full = _python_full(packages, python)
            layer_file = work / "layer.tar.gz"
            with layer_file.open("wb") as fh:
                digests = write_layer(
                    rootfs,
                    fh,
                    source_date_epoch=sde,
                    clamp_mtime=True,
                    on_special="skip",
                    # A base rootfs's modes and owners are content: /tmp 1777, setuid su,
                    # /etc/shadow 0640 root:shadow.
                    preserve_metadata=True,
                )
            store.put_file(layer_file, digest=digests.digest)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sde))
            config = {
                "architecture": _ARCH.get(arch, arch),
                "os": "linux",
                "created": created,
                "config": {
                    "Env": [
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "LANG=C.UTF-8",
                        f"PYTHON_VERSION={python_full}",
                    ],
                    "Cmd": ["python3"],
                    "Labels": {
                        KEY_LABEL: key,
                        "org.mlpack.base.provider": "debian",
                        "org.mlpack.base.suite": suite,
                        "org.mlpack.base.mirror": mirror,
                        PACKAGES_LABEL: " ".join(packages),
                        mediatypes.CREATED_ANNOTATION: created,
                    },
                },
                "rootfs": {"type": "layers", "diff_ids": [digests.diff_id]},
                "history": [
                    {
                        "created": created,
                        "created_by": f"mmdebstrap --variant=minbase --include={','.join(PACKAGES)} {suite}",
                    }
                ],
            }
            layer = Descriptor(
                media_type=mediatypes.OCI_LAYER_GZIP, digest=digests.digest, size=digests.size
            )
            digest = store.add_image(config=config, layers=(layer,), ref=ref)
        except OSError as exc:
            msg = f"building the Debian base failed: {exc}"
            raise ImageError(msg, hint="check free disk space under MLPACK_HOME") from exc
    return BaseImage(reference=ref, digest=digest, provider="debian", python_full=python_full)


def _env_python(env: tuple[str, ...]) -> str | None:
    for item in env:
        if item.startswith("PYTHON_VERSION="):
            return item.partition("=")[2]
    return None
