"""Debian packages pinned for real: resolved inside the base image, recorded by ``.deb`` hash.

apt inside the base (``mlpack.pipeline`` hands the locker a way to run there, with the host's
network and its CA bundle mounted read-only) lists what ``apt-get install`` would download:
every package and dependency the base lacks, each with its URL, size and SHA-256. The build
fetches exactly those files and installs them with no network, so a rebuild from scratch
installs the same bytes, or fails naming the version that left the mirror. A package Debian 13
renamed (``mlpack.analyze.debian``) is asked for by both names: apt installs the one the base's
release has.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

from mlpack.analyze.debian import same_names, spellings
from mlpack.errors import LockError, MlpackError
from mlpack.lock.host_apt import HostAptRunner
from mlpack.lock.lockdata import SystemPackagePin
from mlpack.oslib.binfmt import can_run, install_hint
from mlpack.progress import reporter
from mlpack.vocabulary import MACHINES

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.lock.host_apt import RootfsFactory
    from mlpack.lock.lockdata import Lock
    from mlpack.lock.runner import ImageRunnerFactory, Runner
    from mlpack.vocabulary import BaseImage, Platform

# apt's download methods drop to the _apt user with setgroups(), which a container without
# CAP_SETGID refuses. ForceHash makes --print-uris print SHA256 (it picks MD5Sum otherwise);
# no translations: they are not needed and are half of the download.
APT_OPTIONS: Final = (
    "-o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 "
    "-o Acquire::ForceHash=SHA256 -o Acquire::Languages=none"
)
RUNTIME_HINT: Final = (
    "apt runs inside the base image on the embedded runtime: lock as root or where user "
    "namespaces are allowed"
)
SEPARATOR: Final = "--- installed ---"
# The container's stdout: the would-be downloads, then the requested packages the base has.
# An argument "a|b" is one package as two Debian releases name it: the first that this release
# has as a real package (not a name another one only provides) is installed.
SCRIPT: Final = f"""set -eu
apt-get {APT_OPTIONS} -q update >&2
names=
for spelled in "$@"; do
  name=${{spelled%%|*}}
  for candidate in $(echo "$spelled" | tr '|' ' '); do
    if apt-cache show --no-all-versions "$candidate" 2>/dev/null | grep -q '^Package:'; then
      name=$candidate
      break
    fi
  done
  names="$names $name"
done
set -- $names
apt-get {APT_OPTIONS} install -qq --print-uris -y --no-install-recommends "$@"
echo '{SEPARATOR}'
dpkg-query -W -f='${{db:Status-Abbrev}}|${{Package}}|${{Version}}|${{Architecture}}\\n' "$@" \\
  2>/dev/null || true
"""
# 'URL' name_version_arch.deb SIZE SHA256:hex
_URI_LINE: Final = re.compile(
    r"^'(?P<url>[^']+)' (?P<name>[^_\s]+)_(?P<version>[^_\s]+)_(?P<arch>[^_\s]+)\.deb "
    r"(?P<size>\d+) (?P<hash>\S+)$"
)


def pin_system(
    names: tuple[str, ...],
    *,
    base: BaseImage,
    platform: Platform,
    previous: Lock | None,
    upgrade: bool,
    image_runner: ImageRunnerFactory | None,
    base_rootfs: RootfsFactory | None = None,
    workdir: Path,
) -> tuple[SystemPackagePin, ...]:
    """The pins of ``names`` and their dependencies for ``base``.

    The previous lock's pins are kept while the base digest and the names are unchanged (a
    requirements edit does not move Debian packages), unless ``upgrade``. A base whose
    programs this host cannot run (another architecture, no qemu handler) is asked through
    the host's apt (``mlpack.lock.host_apt``) in ``base_rootfs``'s files.
    """
    wanted = tuple(sorted(set(names)))
    if not wanted:
        return ()
    kept = _reusable(previous, wanted, base) if not upgrade else None
    if kept is not None:
        return kept
    host_apt = _host_apt(wanted, base, platform, base_rootfs, workdir)
    if host_apt is None and image_runner is None:
        msg = f"cannot pin the system packages ({', '.join(wanted)}): no way to run apt in the base"
        raise LockError(msg, hint=RUNTIME_HINT)
    rep = reporter()
    rep.start("system packages", None)
    (workdir / "tools").mkdir(parents=True, exist_ok=True)
    (workdir / "work").mkdir(parents=True, exist_ok=True)
    try:
        runner = host_apt
        if runner is None and image_runner is not None:
            runner = image_runner(base.digest, workdir / "tools")
        assert runner is not None  # one of the two, checked above
        spelled = tuple("|".join(spellings(name)) for name in wanted)
        done = runner.run(("sh", "-c", SCRIPT, "sh", *spelled), cwd=workdir / "work", env={})
    except MlpackError as exc:
        msg = f"cannot pin the system packages ({', '.join(wanted)}): {exc.message}"
        raise LockError(msg, hint=RUNTIME_HINT) from exc
    if done.returncode != 0:
        tail = " | ".join(line for line in done.stderr.splitlines()[-4:] if line.strip())
        msg = f"apt in the base image cannot install {shlex.join(wanted)}: {tail}"
        raise LockError(msg, hint="check the names in mlpack.toml (`apt-cache search` in Debian)")
    rep.finish("system packages")
    pins = parse_pins(done.stdout, wanted)
    foreign = [f"{p.name}={p.version}" for p in pins if p.url]
    if foreign and not can_run(MACHINES[platform]):
        rep.notice(
            f"building this {platform} image installs {', '.join(foreign)} with dpkg in the base, "
            f"which needs emulation here: {install_hint(MACHINES[platform])}; or remove them "
            "from mlpack.toml"
        )
    return pins


def _host_apt(
    wanted: tuple[str, ...],
    base: BaseImage,
    platform: Platform,
    base_rootfs: RootfsFactory | None,
    workdir: Path,
) -> Runner | None:
    """The host's apt on the base's files where this host cannot run the base; else None."""
    if can_run(MACHINES[platform]):
        return None
    if base_rootfs is None:
        msg = f"cannot pin the {platform} system packages ({', '.join(wanted)}) on this host"
        raise LockError(
            msg, hint=f"{install_hint(MACHINES[platform])}, or lock on a {platform} host"
        )
    arch = platform.partition("/")[2]
    return HostAptRunner(base_rootfs(base.digest), arch=arch, state=workdir / "apt")


def _reusable(
    previous: Lock | None, wanted: tuple[str, ...], base: BaseImage
) -> tuple[SystemPackagePin, ...] | None:
    if previous is None or previous.base.digest != base.digest:
        return None
    pins = previous.system_packages
    if not same_names((p.name for p in pins if p.requested), wanted):
        return None
    return pins if all(p.pinned for p in pins) else None


def parse_pins(stdout: str, requested: tuple[str, ...]) -> tuple[SystemPackagePin, ...]:
    """The pins from ``SCRIPT``'s output: each download, then each requested package in the base.

    LockError when a line is not what apt prints or a hash is not SHA-256.
    """
    downloads, _, installed = stdout.partition(SEPARATOR)
    spelled = tuple(s for name in requested for s in spellings(name))
    pins: dict[str, SystemPackagePin] = {}
    for line in downloads.splitlines():
        if line.strip():
            pin = parse_uri_line(line, spelled)
            pins[pin.name] = pin
    for line in installed.splitlines():
        status, _, rest = line.partition("|")
        name, version, arch = [*rest.split("|"), "", ""][:3]
        # iU: unpacked, as in a foreign base made without emulation; its files are there.
        if status.startswith(("ii", "iU")) and name in spelled and name not in pins:
            pins[name] = SystemPackagePin(name=name, version=version, architecture=arch)
    missing = [n for n in requested if not pins.keys() & set(spellings(n))]
    if missing:
        msg = f"apt neither installs nor finds {', '.join(missing)} in the base image"
        raise LockError(msg, hint="name the Debian package itself, not a virtual one")
    return tuple(pins[n] for n in sorted(pins))


def parse_uri_line(line: str, requested: tuple[str, ...]) -> SystemPackagePin:
    """One line of ``apt-get install --print-uris``: ``'URL' name_version_arch.deb SIZE SHA256:hex``."""
    match = _URI_LINE.match(line.strip())
    algorithm, _, digest = match.group("hash").partition(":") if match else ("", "", "")
    if match is None or algorithm.upper() != "SHA256" or not re.fullmatch(r"[0-9a-f]{64}", digest):
        msg = f"unexpected output from apt-get --print-uris: {line.strip()[:200]!r}"
        raise LockError(msg, hint="the base image's apt may be too old; use a Debian base")
    name = match.group("name")
    return SystemPackagePin(
        name=name,
        version=unquote(match.group("version")),
        architecture=match.group("arch"),
        url=match.group("url"),
        size=int(match.group("size")),
        sha256=digest,
        requested=name in requested,
    )
