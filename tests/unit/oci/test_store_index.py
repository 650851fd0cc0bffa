"""An image pulled through an index (manifest list) is found again by the index digest."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest

from mlpack.errors import ImageError
from mlpack.oci import jsonc, mediatypes
from mlpack.oci.registry import pull
from mlpack.oci.store import Store
from tests.unit.oci.test_registry_errors import FakeRegistry, fake  # noqa: F401 - fixture

if TYPE_CHECKING:
    from pathlib import Path


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _serve_index(reg: FakeRegistry) -> str:
    index = jsonc.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": f"sha256:{'2' * 64}",
                    "size": 10,
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
                {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": _digest(reg.manifest),
                    "size": len(reg.manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    )
    reg.manifests["multi"] = (index, mediatypes.OCI_INDEX)
    reg.manifests[_digest(index)] = (index, mediatypes.OCI_INDEX)
    return _digest(index)


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_lookup_by_index_digest(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    by: str,
) -> None:
    reg, addr = fake
    index_digest = _serve_index(reg)
    store = Store(tmp_path / "store")
    source = f"{addr}/lib/app:multi" if by == "tag" else f"{addr}/lib/app@{index_digest}"
    result = pull(source, store)
    assert result.index_digest == index_digest
    assert store.resolve(index_digest) == result.digest
    assert store.resolve(f"{addr}/lib/app@{index_digest}") == result.digest
    assert store.image(f"{addr}/lib/app@{index_digest}").digest == result.digest
    assert store.blob_path(index_digest).read_bytes() == reg.manifests["multi"][0]
    assert store.check().ok
    # Prune keeps the index while its image is named, and drops it with the image.
    store.prune()
    assert store.resolve(index_digest) == result.digest
    store.remove(index_digest)
    store.prune()
    assert not store.has_blob(index_digest)
    assert not list((store.root / "indexes").iterdir())
    with pytest.raises(ImageError, match="no image"):
        store.resolve(index_digest)
    assert store.check().ok
