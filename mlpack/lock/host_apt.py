"""apt of the host, pointed at a base image's package database: Debian pins for a foreign base.

``mlpack.lock.system`` runs apt inside the base. A base of another architecture runs there only
through a qemu-user handler (binfmt_misc); without one, the host's apt answers the same question
instead: with the base's architecture, its dpkg status, its sources and its archive keys, and a
private state and cache folder, ``apt-get install --print-uris`` lists exactly what the base
lacks, with each file's SHA-256, and executes nothing of the base. dpkg-query reads the base's
status through ``DPKG_ADMINDIR``. The base's sources name their keyring by absolute path
(``Signed-By: /usr/share/keyrings/...``), which apt reads on the host: copies of the sources
point at the base's own keyring file instead, so the host needs no keys of the base's release.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import TYPE_CHECKING, Final, Protocol

from mlpack.errors import LockError
from mlpack.lock.runner import HostRunner

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from mlpack.lock.runner import Completed


class RootfsFactory(Protocol):
    """The unpacked files of a stored image (``mlpack.pipeline`` hands one over); read only."""

    def __call__(self, image: str) -> Path:
        """The merged root tree of ``image`` (a digest)."""
        ...


# A keyring path in a one-line source's [signed-by=...] or a deb822 Signed-By field.
_SIGNED_BY: Final = re.compile(r"(signed-by(?:=|:[ \t]*))(/[^\s\],]+)", re.IGNORECASE)


def rooted_sources(rootfs: Path, dest: Path) -> None:
    """Copy the base's apt sources into ``dest`` with keyring paths inside ``rootfs``.

    ``dest/sources.list`` and ``dest/sources.list.d/``; a keyring the base lacks keeps its path.
    """
    etc = rootfs / "etc" / "apt"
    (dest / "sources.list.d").mkdir(parents=True, exist_ok=True)
    files = [(etc / "sources.list", dest / "sources.list")]
    parts = etc / "sources.list.d"
    if parts.is_dir():
        files += [(f, dest / "sources.list.d" / f.name) for f in sorted(parts.iterdir())]

    def inside(match: re.Match[str]) -> str:
        key = rootfs / match.group(2).lstrip("/")
        return match.group(1) + str(key) if key.is_file() else match.group(0)

    for source, target in files:
        if source.is_file():
            text = source.read_text(encoding="utf-8", errors="replace")
            target.write_text(_SIGNED_BY.sub(inside, text), encoding="utf-8")


def apt_config(rootfs: Path, *, arch: str, state: Path) -> str:
    """Apt's configuration for the base at ``rootfs``: its arch, status, sources and keys.

    The sources are ``rooted_sources``'s copies in ``state``.
    """
    etc = rootfs / "etc" / "apt"
    items = {
        "APT::Architecture": arch,
        "Dir::State::status": rootfs / "var/lib/dpkg/status",
        "Dir::State::lists": state / "lists",
        "Dir::State::extended_states": state / "extended_states",
        "Dir::Cache": state / "cache",
        "Dir::Etc::sourcelist": state / "sources.list",
        "Dir::Etc::sourceparts": state / "sources.list.d",
        "Dir::Etc::trustedparts": etc / "trusted.gpg.d",
        "Dir::Etc::preferencesparts": etc / "preferences.d",
        # Nothing is installed: no lock on the base's (read-only) dpkg database.
        "Debug::NoLocking": "true",
    }
    lines = [f'{key} "{value}";' for key, value in items.items()]
    # Only the base's architecture: no lists of the host's.
    lines.append(f'APT::Architectures {{ "{arch}"; }};')
    return "\n".join(lines) + "\n"


class HostAptRunner:
    """Runs apt-get, apt-cache and dpkg-query on the host against the base at ``rootfs``."""

    def __init__(self, rootfs: Path, *, arch: str, state: Path) -> None:
        """:param state: a private, empty folder for apt's lists and caches."""
        if shutil.which("apt-get") is None:
            msg = f"resolving the {arch} system packages needs apt-get on this host"
            raise LockError(msg, hint="lock on a Debian or Ubuntu host, or in a container of one")
        for folder in (state / "lists" / "partial", state / "cache" / "archives" / "partial"):
            folder.mkdir(parents=True, exist_ok=True)
        rooted_sources(rootfs, state)
        self._config = state / "apt.conf"
        self._config.write_text(apt_config(rootfs, arch=arch, state=state), encoding="utf-8")
        self._admindir = rootfs / "var" / "lib" / "dpkg"

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Completed:
        """Run ``argv`` on the host with apt and dpkg-query pointed at the base."""
        full = {
            **os.environ,  # the host's proxy settings reach the mirror as the host's apt would
            "LC_ALL": "C.UTF-8",
            **env,
            "APT_CONFIG": str(self._config),
            "DPKG_ADMINDIR": str(self._admindir),
        }
        return HostRunner().run(argv, cwd=cwd, env=full)
