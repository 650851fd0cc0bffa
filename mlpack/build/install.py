"""Install locked wheels into a staging tree laid out as the image's prefix (pypa/installer API).

``python -m installer`` would use the running interpreter's scheme and ``sys.executable``; here
the scheme is computed for the in-image prefix and the interpreter is the image's, so scripts
start with ``#!/opt/venv/bin/python`` and no host path reaches the layer
(REPRODUCIBILITY.md §5). installer writes RECORD in wheel order with every file's hash, so the
result is deterministic per wheel; INSTALLER is fixed and direct_url.json is never written.
A file that an earlier wheel of the same step installed is replaced, as pip replaces it: mlflow,
mlflow-skinny and mlflow-tracing ship the same modules and the same ``mlflow`` script, and
opencv-python and opencv-python-headless the same ``cv2``; ``clashes`` names those that differ.
Nothing is compiled here, by the host's Python: the image's own interpreter compiles the
bytecode afterwards (``mlpack.build.bytecode``).
"""

from __future__ import annotations

import csv
import io
import posixpath
import zipfile
from typing import TYPE_CHECKING, Final

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile
from packaging.utils import canonicalize_name

from mlpack.errors import BuildError
from mlpack.oslib.fs import NO_SPACE

if TYPE_CHECKING:
    from pathlib import Path

INSTALLER_NAME: Final = b"mlpack\n"


def scheme(prefix: str, python: str, distribution: str) -> dict[str, str]:
    """The install scheme of a venv at ``prefix`` for Python ``python`` (X.Y or X.Y.Z)."""
    minor = ".".join(python.split(".")[:2])
    site = f"{prefix}/lib/python{minor}/site-packages"
    return {
        "purelib": site,
        "platlib": site,
        "scripts": f"{prefix}/bin",
        "data": prefix,
        "headers": f"{prefix}/include/site/python{minor}/{distribution}",
    }


def install_wheel(wheel: Path, *, staging: Path, prefix: str, python: str) -> None:
    """Install ``wheel`` under ``staging`` as if at ``prefix`` in the image."""
    try:
        with WheelFile.open(wheel) as source:
            destination = SchemeDictionaryDestination(
                scheme(prefix, python, source.distribution),
                interpreter=f"{prefix}/bin/python",
                script_kind="posix",
                bytecode_optimization_levels=(),
                destdir=str(staging),
                overwrite_existing=True,
            )
            install(source, destination, additional_metadata={"INSTALLER": INSTALLER_NAME})
    except OSError as exc:
        if exc.errno in NO_SPACE:
            raise  # the builder reports a full disk, with the folder that filled up
        raise _cannot_install(wheel, exc) from exc
    except (InstallerError, zipfile.BadZipFile, ValueError) as exc:
        raise _cannot_install(wheel, exc) from exc


def clashes(site: Path) -> dict[str, tuple[str, ...]]:
    """Files that several distributions installed under ``site`` list with different hashes:
    each path (as RECORD gives it) -> those distributions. The image has the last one's copy.
    """
    hashes: dict[str, dict[str, str]] = {}
    for record in sorted(site.glob("*.dist-info/RECORD")):
        dist = canonicalize_name(record.parent.name.partition("-")[0])
        for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))):
            if len(row) >= 2 and row[1]:
                hashes.setdefault(posixpath.normpath(row[0]), {})[dist] = row[1]
    return {path: tuple(by) for path, by in hashes.items() if len(set(by.values())) > 1}


def _cannot_install(wheel: Path, exc: Exception) -> BuildError:
    msg = f"cannot install {wheel.name}: {exc}"
    return BuildError(msg, hint="remove it from the wheelhouse and re-run `mlpack fetch`")
