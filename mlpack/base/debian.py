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
from mlpack.oslib.binfmt import can_run, host_machine, install_hint
from mlpack.oslib.fs import remove_tree
from mlpack.progress import reporter
from mlpack.vocabulary import MACHINES, PLATFORMS, BaseImage

if TYPE_CHECKING:
    from mlpack.oci.store import Store
    from mlpack.vocabulary import Platform

PACKAGES = ("python3", "python3-venv", "ca-certificates")
# A foreign base without emulation is only unpacked (mmdebstrap --variant=extract): nothing of
# the Essential set or apt comes along, and nothing can be installed later without emulation.
# So it also carries what minbase's apt would have brought (libstdc++6, the archive keys the
# lock's host-side apt trusts) and the OpenMP runtime that ML wheels load (libgomp1).
EXTRACT_PACKAGES = (*PACKAGES, "libstdc++6", "libgomp1", "debian-archive-keyring")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEY_LABEL = "org.mlpack.base.key"
PACKAGES_LABEL = "org.mlpack.base.packages"
VARIANT_LABEL = "org.mlpack.base.variant"
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


def base_reference(python: str, platform: Platform = "linux/amd64") -> str:
    """The store name of the Debian base for ``python`` on ``platform`` (amd64: no suffix)."""
    arch = debian_arch(platform)
    suffix = "" if arch == "amd64" else f"-{arch}"
    return f"localhost/mlpack-base/python:{python}-{suite_for(python)}{suffix}"


def debian_arch(platform: Platform) -> str:
    """Debian's name of ``platform``'s architecture (for linux/amd64 and linux/arm64, OCI's)."""
    return platform.partition("/")[2]


def host_platform() -> Platform:
    """The platform of this machine; linux/amd64 when mlpack does not build for it."""
    machine = host_machine()
    return next((p for p in PLATFORMS if MACHINES[p] == machine), "linux/amd64")


# Bumped whenever the way the rootfs is made or packed changes, so cached bases are rebuilt.
_RECIPE = "2"


def _key(suite: str, mirror: str, sde: int, arch: str, variant: str) -> str:
    """The base's inputs; the architecture is one, so no base serves another architecture."""
    packages = PACKAGES if variant == "minbase" else (*EXTRACT_PACKAGES, f"variant={variant}")
    text = "\n".join((_RECIPE, suite, mirror, str(sde), arch, *packages))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def variant_for(platform: Platform, *, binfmt: Path | None = None) -> str:
    """``minbase`` when this host runs ``platform``'s programs (natively or through a
    registered qemu handler), else ``extract``: unpacked, nothing executed.
    """
    return "minbase" if can_run(MACHINES[platform], binfmt=binfmt) else "extract"


def _command(variant: str, arch: str, suite: str, mirror: str, root: Path) -> list[str]:
    """The mmdebstrap (else, natively, debootstrap) command that makes ``root``."""
    tool = shutil.which("mmdebstrap")
    packages = ",".join(PACKAGES if variant == "minbase" else EXTRACT_PACKAGES)
    if tool is not None:
        mode = "root" if os.geteuid() == 0 else "unshare"
        # extract: keep the .deb files, whose control data become the dpkg status (_unpacked).
        skip = ["--skip=cleanup/apt/cache"] if variant == "extract" else []
        if variant == "minbase" and arch != debian_arch(host_platform()):
            # variant_for found a fix-binary qemu handler, which is all a chroot needs; the
            # check would want arch-test, one more package, to say the same.
            skip = ["--skip=check/qemu"]
        return [tool, f"--variant={variant}", f"--arch={arch}", f"--include={packages}",
                *skip, f"--mode={mode}", "--format=directory", "--quiet",
                suite, str(root), mirror]  # fmt: skip
    if variant == "minbase" and (tool := shutil.which("debootstrap")) and os.geteuid() == 0:
        return [tool, "--variant=minbase", f"--arch={arch}", f"--include={packages}",
                suite, str(root), mirror]  # fmt: skip
    msg = "the debian base provider needs mmdebstrap (or debootstrap as root)"
    if variant == "extract":
        msg = f"an unpacked {arch} Debian base needs mmdebstrap"
    raise ImageError(msg, hint="apt-get install mmdebstrap, or set base = ... in mlpack.toml")


def _bootstrap(suite: str, mirror: str, root: Path, sde: int, *, arch: str, variant: str) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(sde), "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    cmd = _command(variant, arch, suite, mirror, root)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        msg = (
            f"{Path(cmd[0]).name} failed to build a {suite} {arch} rootfs from {mirror}: "
            f"{' '.join(tail)}"
        )
        raise ImageError(msg, hint="check that the Debian mirror is reachable (apt sources)")


def _unpacked(root: Path) -> None:
    """Write the dpkg status of an extracted rootfs from its kept ``.deb`` files.

    extract runs no dpkg, so the status would be empty and apt (the lock's system packages,
    resolved on the host against this status) would think the base has nothing. Each package
    is recorded as ``unpacked``: its files are there, its maintainer scripts never ran.
    """
    stanzas = []
    for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
        fields = subprocess.run(
            ["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True
        ).stdout.rstrip("\n")
        stanzas.append(f"{fields}\nStatus: install ok unpacked\n")
    (root / "var/lib/dpkg/status").write_text("\n".join(stanzas), encoding="utf-8")


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
    python: str,
    store: Store,
    *,
    platform: Platform | None = None,
    mirror: str | None = None,
    sde: int | None = None,
) -> BaseImage:
    """Build (or reuse, keyed by its inputs) the Debian base for ``python`` in ``store``.

    :param platform: the target (default: this host's). Where this host cannot run its
        programs, the rootfs is unpacked, not configured (``variant_for``), and a notice says so.
    """
    platform = platform or host_platform()
    suite = suite_for(python)
    mirror = mirror or configured_mirror()
    sde = _sde() if sde is None else sde
    arch, variant = debian_arch(platform), variant_for(platform)
    key = _key(suite, mirror, sde, arch, variant)
    ref = base_reference(python, platform)
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
    rep.notice(
        f"building a Debian {suite} + Python {python} {arch} base from {mirror} (about a minute)"
    )
    if variant == "extract":
        rep.notice(
            f"this {host_machine()} host cannot run {platform} programs (no qemu-"
            f"{MACHINES[platform]} handler with the F flag in binfmt_misc): the base is "
            "unpacked, not configured, and its maintainer scripts never run (to configure it: "
            f"{install_hint(MACHINES[platform])})"
        )
    store.prepare()
    # Hold the shared gc lock for the whole build so prune cannot collect the new blobs.
    with store.writing(), store.staging("debian") as work:
        try:
            digest, python_full = _make(
                work, store, suite=suite, mirror=mirror, sde=sde, python=python,
                platform=platform, variant=variant, key=key, ref=ref,
            )  # fmt: skip
        except OSError as exc:
            msg = f"building the Debian base failed: {exc}"
            raise ImageError(msg, hint="check free disk space under MLPACK_HOME") from exc
    return BaseImage(reference=ref, digest=digest, provider="debian", python_full=python_full)


def _make(  # noqa: PLR0913  one keyword per input of the image
    work: Path,
    store: Store,
    *,
    suite: str,
    mirror: str,
    sde: int,
    python: str,
    platform: Platform,
    variant: str,
    key: str,
    ref: str,
) -> tuple[str, str]:
    """Bootstrap, scrub and pack the rootfs in ``work``; store the image; (digest, Python)."""
    arch = debian_arch(platform)
    # amd64 minbase images stay byte for byte what they were before other platforms existed.
    extra = {} if variant == "minbase" else {VARIANT_LABEL: variant}
    arch_flag = "" if arch == "amd64" else f" --arch={arch}"
    rootfs = work / "rootfs"
    _bootstrap(suite, mirror, rootfs, sde, arch=arch, variant=variant)
    if variant == "extract":
        _unpacked(rootfs)
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
        "architecture": arch,
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
                **extra,
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
                "created_by": f"mmdebstrap --variant={variant}{arch_flag} "
                f"--include={','.join(PACKAGES if variant == 'minbase' else EXTRACT_PACKAGES)} "
                f"{suite}",
            }
        ],
    }
    layer = Descriptor(
        media_type=mediatypes.OCI_LAYER_GZIP, digest=digests.digest, size=digests.size
    )
    return store.add_image(config=config, layers=(layer,), ref=ref), python_full


def _env_python(env: tuple[str, ...]) -> str | None:
    for item in env:
        if item.startswith("PYTHON_VERSION="):
            return item.partition("=")[2]
    return None
