"""One pinning rule for every deploy target: a registry digest, never this machine's store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.deploy.images import pinned
from mlpack.errors import DeployError
from mlpack.oci.store import Store

DIGEST = "sha256:" + "ab" * 32
PINNED = f"127.0.0.1:5000/team/train:1@{DIGEST}"


def _stored(store: Store, ref: str) -> str:
    rootfs = {"type": "layers", "diff_ids": []}
    config = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": rootfs}
    return store.add_image(config=config, layers=(), ref=ref)


def test_pinned_reference_is_used_as_given(tmp_path: Path) -> None:
    assert pinned(PINNED, image_ref=None, store=Store(tmp_path)) == PINNED


def test_image_ref_with_a_digest_is_used_as_given(tmp_path: Path) -> None:
    ref = f"127.0.0.1:5000/app@{DIGEST}"
    assert pinned("mytrain:1", image_ref=ref, store=Store(tmp_path)) == ref


def test_image_ref_without_a_digest_is_pinned_to_the_local_image(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = _stored(store, "localhost/mytrain:1")
    got = pinned("localhost/mytrain:1", image_ref="127.0.0.1:5000/x", store=store)
    assert got == f"127.0.0.1:5000/x@{digest}"


def test_registry_tag_is_pinned_to_the_digest_the_store_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path)
    digest = _stored(store, "127.0.0.1:5000/team/train:2")
    got = pinned("127.0.0.1:5000/team/train:2", image_ref=None, store=store)
    assert got == f"127.0.0.1:5000/team/train:2@{digest}"


@pytest.mark.parametrize(
    ("image", "image_ref"),
    [
        ("mytrain:1", None),
        ("localhost/mytrain:1", None),
        (f"localhost/mytrain@{DIGEST}", None),
        ("mytrain:1", f"localhost/mytrain@{DIGEST}"),
    ],
)
def test_local_only_image_says_to_push(tmp_path: Path, image: str, image_ref: str | None) -> None:
    with pytest.raises(DeployError, match="exists only in the local store") as info:
        pinned(image, image_ref=image_ref, store=Store(tmp_path))
    assert f"mlpack push {image} " in info.value.hint
    assert "--image-ref" in info.value.hint


def test_unknown_image_with_image_ref_is_a_deploy_error(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="no image named"):
        pinned("mytrain:1", image_ref="127.0.0.1:5000/x", store=Store(tmp_path))
