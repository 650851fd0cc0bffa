"""The system-packages step: the lock's exact ``.deb`` files, installed by dpkg with no network.

The host fetches every file the lock pins (size and SHA-256 verified, cached by hash under the
mlpack home), and a container of the base (the embedded runtime, handed in by the pipeline as
a ``StepRunner``) installs them all in one ``dpkg -i``, so dpkg orders their configuration,
with the files mounted read-only and no network: nothing but those bytes can reach the layer.
The container lists the filesystem before and after and tars the entries created or changed
(by ctime), less what varies between runs (logs, caches, dpkg backups, ldconfig's aux-cache,
``__pycache__``: ``commands.HYGIENE``, REPRODUCIBILITY.md §4), plus the list of deleted paths,
into mounted folders. The host applies that tar with the safe layer applier, the deleted paths
become whiteouts, and the layer writer packs it with the entries' own modes and owners and a
fixed mtime.

The script is ``mlpack.spec.commands.SYSTEM_SCRIPT``: the Dockerfile's system stage runs the
same one on the same files, hygiene included, and deletes the same paths in its final stage,
so both builders install one pin the same way, offline, into the same files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final

from mlpack.errors import BuildError, LockError
from mlpack.lock.wheelhouse import download
from mlpack.oci import mediatypes
from mlpack.oci.layer_applier import apply_layer
from mlpack.progress import reporter
from mlpack.spec.commands import DEBS, DELETED, LOG, OUT, SYSTEM_SCRIPT

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.build.protocol import StepRunner
    from mlpack.lock.lockdata import SystemPackagePin
    from mlpack.spec import SystemStep

RELOCK: Final = "re-lock against the mirror's current versions: `mlpack lock --upgrade`"
_CHUNK: Final = 1 << 20
_WORKERS: Final = 8  # parallel downloads: a GUI or CUDA stack is dozens of .deb files


def stage_system(
    step: SystemStep, runner: StepRunner, *, image: str, cache: Path, work: Path, staging: Path
) -> tuple[str, ...]:
    """Install ``step``'s .deb files in ``image``; fill ``staging``; return the deleted paths.

    :param cache: the verified .deb files by sha256 (downloaded here when missing).
    """
    debs, out, log = work / "system-debs", work / "system-out", work / "system-log"
    for folder in (debs, out, log):
        folder.mkdir()
    for pin, path in zip(step.debs, fetch_debs(step.debs, cache=cache), strict=True):
        _link(path, debs / pin.filename)
    code = runner(
        image=image,
        argv=("sh", "-c", SYSTEM_SCRIPT, "sh", *(f"{DEBS}/{pin.filename}" for pin in step.debs)),
        mounts=((OUT, out), (LOG, log)),
        readonly=((DEBS, debs),),
        network=False,
    )
    if code != 0:
        names = ", ".join(f"{n}={v}" for n, v in step.packages)
        msg = f"installing the system packages {names} failed (exit {code})"
        raise BuildError(f"{msg}: {_tail(log / 'dpkg.log')}", hint=RELOCK)
    with (out / "changes.tar").open("rb") as fh:
        # A package may install setuid helpers: keep the bits, as the package does.
        apply_layer(fh, staging, media_type=mediatypes.OCI_LAYER, keep_setid=True)
    deleted = [line.lstrip("/") for line in (log / DELETED).read_text().splitlines() if line]
    gone = set(deleted)
    # Whiteout the top of each deleted tree only: its children go with it.
    return tuple(p for p in deleted if p.rpartition("/")[0] not in gone)


def fetch_debs(
    pins: tuple[SystemPackagePin, ...], *, cache: Path, ca_cert: Path | None = None
) -> tuple[Path, ...]:
    """The verified file of each pin, downloaded into ``cache/<sha256>/`` when not there.

    BuildError naming the package and version when the mirror no longer has it, and naming
    the file when its size or SHA-256 is not what the lock says.
    """
    paths = tuple(cache / pin.sha256 / pin.filename for pin in pins)
    missing = [(p, path) for p, path in zip(pins, paths, strict=True) if not _intact(path, p)]
    rep = reporter()
    rep.start("system packages: download", len(missing))

    def one(pin: SystemPackagePin, path: Path) -> None:
        path.unlink(missing_ok=True)  # a damaged copy: fetched again
        try:
            download(pin.url, path, sha256=pin.sha256, ca_cert=ca_cert)
        except LockError as exc:
            raise _fetch_error(pin, exc) from exc
        if not _intact(path, pin):
            path.unlink(missing_ok=True)
            msg = f"{pin.filename} from {pin.url} is not the {pin.size} bytes the lock says"
            raise BuildError(msg, hint="the mirror served different bytes; " + RELOCK)
        rep.advance("system packages: download", 1)

    if missing:
        with ThreadPoolExecutor(max_workers=min(_WORKERS, len(missing))) as pool:
            for future in [pool.submit(one, pin, path) for pin, path in missing]:
                future.result()
    rep.finish("system packages: download")
    return paths


def _intact(path: Path, pin: SystemPackagePin) -> bool:
    """True when ``path`` has the pin's size and SHA-256."""
    try:
        if path.stat().st_size != pin.size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    return digest.hexdigest() == pin.sha256


def _fetch_error(pin: SystemPackagePin, exc: LockError) -> BuildError:
    cause = exc.__cause__
    if isinstance(cause, urllib.error.HTTPError):
        cause.close()  # it holds the response's socket
    if isinstance(cause, urllib.error.HTTPError) and cause.code in (404, 410):
        msg = (
            f"the Debian package {pin.name} {pin.version} ({pin.architecture}) has left the "
            f"mirror: {pin.url} answered {cause.code}"
        )
        return BuildError(msg, hint=RELOCK)
    if cause is None:  # the bytes arrived, with another hash
        return BuildError(exc.message, hint="the mirror served different bytes; " + RELOCK)
    return BuildError(exc.message, hint="check the network and the Debian mirror, then rebuild")


def _link(source: Path, dest: Path) -> None:
    """``dest`` as a hard link to the cached file, or a copy across filesystems."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no dpkg log)"
    return " | ".join(line for line in text.splitlines()[-lines:] if line.strip())
