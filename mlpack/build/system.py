"""The system-packages step: apt-get inside the base image, captured as one layer.

The step runs in a container of the base (the embedded runtime, handed in by the pipeline as a
``StepRunner``): it lists the filesystem, installs the packages, and tars exactly the entries
created or changed since (by ctime) plus the list of deleted paths, into a mounted folder. The
host applies that tar with the safe layer applier, removes what varies between runs (logs, apt
lists and caches, ldconfig's aux-cache, dpkg backups: REPRODUCIBILITY.md §4), and the layer
writer packs it with the entries' own modes and owners and a fixed mtime. Until the lock pins
Debian versions and .deb hashes, a rebuild from scratch can pick newer packages: the build cache
(keyed by the base digest and the package list) is what keeps rebuilds identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from mlpack.base.debian import scrub_rootfs
from mlpack.errors import BuildError
from mlpack.oci import mediatypes
from mlpack.oci.layer_applier import apply_layer

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.build.protocol import StepRunner
    from mlpack.spec import SystemStep

OUT: Final = "/mlpack-out"
LOG: Final = "/mlpack-log"
# apt's download methods drop to the _apt user with setgroups(), which a container without
# CAP_SETGID refuses; the step is root in its own container anyway. Mount targets, the
# kernel's filesystems and scratch space are never content.
SCRIPT: Final = rf"""set -eu
opts="-o APT::Sandbox::User=root -o Dpkg::Use-Pty=0"
skip='^/$|^/(proc|sys|dev|run|tmp|mlpack-out|mlpack-log)(/|$)|^/etc/(hosts|hostname|resolv\.conf)$'
find / -xdev 2>/dev/null | grep -Ev "$skip" | LC_ALL=C sort > {LOG}/before
touch /tmp/.mlpack-stamp
sleep 1
{{ apt-get $opts update && DEBIAN_FRONTEND=noninteractive \
   apt-get $opts install -y --no-install-recommends "$@"; }} > {LOG}/apt.log 2>&1
find / -xdev 2>/dev/null | grep -Ev "$skip" | LC_ALL=C sort > {LOG}/after
LC_ALL=C comm -23 {LOG}/before {LOG}/after > {LOG}/deleted
find / -xdev -cnewer /tmp/.mlpack-stamp 2>/dev/null | grep -Ev "$skip" | LC_ALL=C sort \
  > {LOG}/changed
tar --no-recursion --numeric-owner -cf {OUT}/changes.tar -T {LOG}/changed 2>> {LOG}/apt.log
"""


def stage_system(
    step: SystemStep, runner: StepRunner, *, image: str, work: Path, staging: Path
) -> tuple[str, ...]:
    """Install ``step``'s packages in ``image``; fill ``staging``; return the deleted paths."""
    out, log = work / "system-out", work / "system-log"
    out.mkdir()
    log.mkdir()
    packages = tuple(f"{name}={version}" if version else name for name, version in step.packages)
    code = runner(
        image=image,
        argv=("sh", "-c", SCRIPT, "sh", *packages),
        mounts=((OUT, out), (LOG, log)),
    )
    if code != 0:
        msg = f"installing the system packages {', '.join(packages)} failed (exit {code})"
        raise BuildError(f"{msg}: {_tail(log / 'apt.log')}", hint=_hint(packages))
    with (out / "changes.tar").open("rb") as fh:
        # The base's own apt may install setuid helpers: keep the bits, as the package does.
        apply_layer(fh, staging, media_type=mediatypes.OCI_LAYER, keep_setid=True)
    scrub_rootfs(staging)
    deleted = [line.lstrip("/") for line in (log / "deleted").read_text().splitlines() if line]
    gone = set(deleted)
    # Whiteout the top of each deleted tree only: its children go with it.
    return tuple(p for p in deleted if p.rpartition("/")[0] not in gone)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no apt log)"
    return " | ".join(line for line in text.splitlines()[-lines:] if line.strip())


def _hint(packages: tuple[str, ...]) -> str:
    pinned = [p for p in packages if "=" in p]
    if pinned:
        return "a pinned version may have left the mirror: re-lock with `mlpack lock --upgrade`"
    return "check the package names in mlpack.toml and that the Debian mirror is reachable"
