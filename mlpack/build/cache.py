"""The build cache: a layer per step key, kept beside the store's blobs.

A key is the sha256 of everything that decides a layer's bytes (the step's inputs, the layer
recipe, installer's version, the compressor's identity); an entry names the layer blob, and it
counts only while that blob is in the store, so ``prune`` never leaves a stale hit. Entries
are written after their blob, atomically: an interrupted build leaves nothing half-valid.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Final

from mlpack.oci.layer_compression import LayerDigests
from mlpack.oslib.fs import atomic_write

if TYPE_CHECKING:
    from mlpack.oci.store import Store

# Bumped whenever how a step becomes a layer changes, so older entries stop matching.
RECIPE: Final = "1"
LEVEL: Final = 6  # gzip level of built layers


def step_key(*parts: str) -> str:
    """The cache key of a step from its inputs (the builder adds the compressor's identity)."""
    return hashlib.sha256(json.dumps([RECIPE, *parts]).encode()).hexdigest()


class BuildCache:
    """Maps step keys to layers already in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / "build-cache"

    def get(self, key: str) -> tuple[LayerDigests, tuple[str, ...]] | None:
        """The layer built for ``key`` and the ``.pyc`` its build left out, if its blob is
        still in the store (a cache hit reports what the build that wrote it reported).
        """
        try:
            doc = json.loads((self.root / key).read_text(encoding="utf-8"))
            layer = LayerDigests(diff_id=doc["diff_id"], digest=doc["digest"], size=doc["size"])
            dropped = tuple(str(path) for path in doc.get("pyc_dropped", ()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return (layer, dropped) if self.store.has_blob(layer.digest) else None

    def put(self, key: str, layer: LayerDigests, *, pyc_dropped: tuple[str, ...] = ()) -> None:
        """Remember ``layer`` (already stored) for ``key``."""
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {
            "diff_id": layer.diff_id,
            "digest": layer.digest,
            "size": layer.size,
            "pyc_dropped": list(pyc_dropped),
        }
        atomic_write(self.root / key, json.dumps(doc, sort_keys=True))
