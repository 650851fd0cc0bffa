# ruff: noqa: PTH112, PTH116, PTH118, PTH123
"""A memo of images resolved for running: reference -> unpacked layer dirs and image config.

``mlpack run IMAGE`` otherwise imports the whole store (~15 ms of a ~30 ms budget, BENCHMARKS
B1) to read index.json, two blobs and the layer dirs' existence. An entry is trusted only while
index.json is the very file it was made from (same inode, size and mtime: the store replaces
index.json by rename on every change of a name) and every layer dir still exists; anything else
is a miss, and the caller resolves through the store and records a fresh entry. Digest
references are not memoized: which manifest an index digest means is kept outside index.json.
"""

from __future__ import annotations

import os
import zlib

from mlpack.oslib import jsoncodec

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any, TypeGuard

VERSION = 1


def _path(home: str, ref: str) -> str:
    """The entry's file: its name only finds it (an entry holds its ref, checked on lookup), so
    a CRC-32 does, without loading OpenSSL's hashlib on the run path (~2 ms).
    """
    data = ref.encode()
    return os.path.join(home, "cache", "run", f"{zlib.crc32(data):08x}-{len(data)}.json")


def index_identity(home: str) -> list[int] | None:
    """What identifies the current index.json (None when there is none)."""
    try:
        st = os.stat(os.path.join(home, "index.json"))
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def memoizable(ref: str) -> bool:
    """Only names (``repo[:tag]``) are memoized; digests are resolved through the store."""
    return "@" not in ref and not ref.startswith("sha256:")


def lookup(home: str, ref: str) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    """The layer dirs (bottom first) and the image config recorded for ``ref``, if still valid."""
    if not memoizable(ref):
        return None
    try:
        with open(_path(home, ref), "rb") as f:
            doc = jsoncodec.loads(f.read())
    except (OSError, ValueError):
        return None
    if not _valid(doc, ref, index_identity(home)):
        return None
    return tuple(doc["layers"]), doc["config"]


def _valid(doc: object, ref: str, identity: list[int] | None) -> TypeGuard[dict[str, Any]]:
    """A memo counts only for this version and ref, the same index.json, and layers still there."""
    if not isinstance(doc, dict) or doc.get("version") != VERSION or doc.get("ref") != ref:
        return False
    if identity is None or doc.get("index") != identity:
        return False
    layers, config = doc.get("layers"), doc.get("config")
    if not isinstance(layers, list) or not isinstance(config, dict):
        return False
    return all(isinstance(d, str) and os.path.isdir(d) for d in layers)


def record(
    home: str,
    ref: str,
    *,
    identity: list[int] | None,
    layers: tuple[str, ...],
    config: dict[str, Any],
) -> None:
    """Remember a resolution; ``identity`` is index.json's, taken before resolving.

    Best effort: a memo that cannot be written only costs the next run its speed.
    """
    if identity is None or not memoizable(ref):
        return
    from pathlib import Path

    from mlpack.oslib.fs import atomic_write

    doc = {"version": VERSION, "ref": ref, "index": identity, "layers": layers, "config": config}
    path = Path(_path(home, ref))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, jsoncodec.dumps(doc))
    except OSError:
        return
