"""Unpacked images: one directory per layer (overlayfs lowerdirs) and merged root trees.

Layer directories are cached by diff_id under ``layers/<hex>`` and shared by every image that has
the layer; a merged tree is cached by chain id under ``rootfs/<hex>``. Each is applied into a
staging directory of the store and renamed into place only when the whole layer verified.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal

from mlpack.errors import ImageError
from mlpack.oci.documents import chain_id
from mlpack.oci.layer_applier import apply_layer
from mlpack.oci.layer_stream import ExpansionLimit
from mlpack.oci.store import disk_error

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.oci.documents import Descriptor
    from mlpack.oci.store import Store


def unpack(store: Store, ref_or_digest: str) -> tuple[Path, ...]:
    """Apply each layer of an image into its own directory (overlay whiteouts), bottom first."""
    img = store.image(ref_or_digest)
    pairs = list(zip(img.manifest.layers, img.config.diff_ids, strict=True))
    expansion = store.expansion or ExpansionLimit.from_env()
    with store.writing():
        # Layers are independent directories: decompression and file writes release the
        # GIL, so applying them side by side uses more than one core.
        workers = max(1, min(len(pairs), os.cpu_count() or 1, 4))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return tuple(
                pool.map(lambda pair: _unpack_layer(store, pair[0], pair[1], expansion), pairs)
            )


def rootfs(store: Store, ref_or_digest: str) -> Path:
    """One merged tree of all the image's layers (whiteouts applied), cached by chain id."""
    img = store.image(ref_or_digest)
    chain = chain_id(img.config.diff_ids)
    if not chain:
        msg = f"image {ref_or_digest} has no layers"
        raise ImageError(msg, hint="an image needs at least one layer to run")
    final = store.root / "rootfs" / chain.removeprefix("sha256:")
    if final.is_dir():
        return final
    expansion = store.expansion or ExpansionLimit.from_env()
    with store.writing(), store.lock(f"rootfs-{final.name}"):
        if final.is_dir():
            return final
        with store.staging("rootfs") as stage:
            for layer, diff_id in zip(img.manifest.layers, img.config.diff_ids, strict=True):
                _apply(store, layer, diff_id, stage, whiteout_mode="apply", expansion=expansion)
            _publish(store, stage, final)
    return final


def _unpack_layer(store: Store, layer: Descriptor, diff_id: str, expansion: ExpansionLimit) -> Path:
    final = store.root / "layers" / diff_id.removeprefix("sha256:")
    if final.is_dir():
        return final
    with store.lock(f"layer-{final.name}"):
        if final.is_dir():
            return final
        with store.staging("layer") as stage:
            _apply(store, layer, diff_id, stage, whiteout_mode="overlay", expansion=expansion)
            _publish(store, stage, final)
    return final


def _publish(store: Store, stage: Path, final: Path) -> None:
    """Rename a finished tree into place; its root becomes the container's ``/`` (0755).

    The staging directory was made 0700; ``layers/`` and ``rootfs/`` keep others out.
    """
    try:
        stage.chmod(0o755)
        stage.rename(final)
    except OSError as exc:
        raise disk_error(exc, store.root) from exc


def _apply(
    store: Store,
    layer: Descriptor,
    diff_id: str,
    dest: Path,
    *,
    whiteout_mode: Literal["apply", "overlay"],
    expansion: ExpansionLimit,
) -> None:
    """Apply one stored layer blob onto ``dest``, verifying digest, size and diff_id."""
    try:
        with store.blob_path(layer.digest).open("rb") as blob:
            apply_layer(
                blob,
                dest,
                media_type=layer.media_type,
                expected_digest=layer.digest,
                expected_size=layer.size,
                expected_diff_id=diff_id,
                whiteout_mode=whiteout_mode,
                expansion=expansion,
            )
    except OSError as exc:
        raise disk_error(exc, store.root) from exc
