"""Export/import: deterministic dual-format tarballs, docker-save import, peer tools accept them."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from typing import TYPE_CHECKING

import pytest

from mlpack.errors import ImageError
from mlpack.oci.archive import export_image, import_archive
from mlpack.oci.store import Store
from tests.conftest import require
from tests.oci_fixtures import busybox_image, sha256_file

if TYPE_CHECKING:
    from pathlib import Path


def _untar(tar: Path, out: Path) -> None:
    out.mkdir()
    subprocess.run(["tar", "-xf", str(tar), "-C", str(out)], check=True)


@pytest.fixture
def image(tmp_path: Path) -> tuple[Store, str]:
    store = Store(tmp_path / "store")
    return store, busybox_image(store, tmp_path, "test/bb:1")


def test_export_is_deterministic_and_dual_format(image: tuple[Store, str], tmp_path: Path) -> None:
    store, digest = image
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    assert export_image(store, "test/bb:1", a) == digest
    export_image(store, "test/bb:1", b)
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        names = tar.getnames()
        assert names[:3] == ["oci-layout", "index.json", "manifest.json"]
        assert all(m.uid == 0 and m.mtime == 1700000000 for m in tar.getmembers())
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        legacy = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert index["manifests"][0]["digest"] == digest
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/test/bb:1"
    assert legacy[0]["RepoTags"] == ["test/bb:1"]
    # Every blob's name is its sha256, recomputed here with hashlib.
    out = tmp_path / "x"
    _untar(a, out)
    for blob in (out / "blobs" / "sha256").iterdir():
        assert sha256_file(blob) == f"sha256:{blob.name}"


def test_roundtrip_import(image: tuple[Store, str], tmp_path: Path) -> None:
    store, digest = image
    for fmt in ("both", "oci"):
        tar = tmp_path / f"{fmt}.tar"
        export_image(store, "test/bb:1", tar, fmt=fmt)
        other = Store(tmp_path / f"other-{fmt}")
        (imported,) = import_archive(other, tar)
        assert imported.digest == digest
        assert imported.reference == "test/bb:1"
        assert other.check().ok


def test_import_docker_save_legacy_layout(image: tuple[Store, str], tmp_path: Path) -> None:
    """The Docker 20.10 `docker save` layout: <id>/layer.tar (uncompressed) + manifest.json."""
    store, digest = image
    img = store.image(digest)
    src = tmp_path / "legacy"
    src.mkdir()
    import gzip

    layer_names = []
    for i, layer in enumerate(img.manifest.layers):
        (src / f"l{i}").mkdir()
        (src / f"l{i}" / "layer.tar").write_bytes(
            gzip.decompress(store.blob_path(layer.digest).read_bytes())
        )
        layer_names.append(f"l{i}/layer.tar")
    shutil.copy(store.blob_path(img.manifest.config.digest), src / "config.json")
    (src / "manifest.json").write_text(
        json.dumps([{"Config": "config.json", "RepoTags": ["legacy/app:2"], "Layers": layer_names}])
    )
    tar = tmp_path / "legacy.tar"
    with tarfile.open(tar, "w") as out:
        for path in sorted(src.rglob("*")):
            out.add(path, arcname=str(path.relative_to(src)), recursive=False)
    other = Store(tmp_path / "other")
    (imported,) = import_archive(other, tar)
    assert imported.reference == "legacy/app:2"
    got = other.image("legacy/app:2")
    assert got.config.diff_ids == img.config.diff_ids
    assert [x.digest for x in got.manifest.layers] == list(img.config.diff_ids)
    assert (other.rootfs("legacy/app:2") / "hello.txt").read_text() == "hi\n"


def test_import_rejects_garbage_and_corruption(image: tuple[Store, str], tmp_path: Path) -> None:
    store, _ = image
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar" * 100)
    with pytest.raises(ImageError, match="cannot read the archive"):
        import_archive(Store(tmp_path / "o1"), junk)
    with pytest.raises(ImageError, match="does not exist"):
        import_archive(Store(tmp_path / "o1"), tmp_path / "missing.tar")
    good = tmp_path / "good.tar"
    export_image(store, "test/bb:1", good, fmt="oci")
    out = tmp_path / "layout"
    _untar(good, out)
    blob = max((out / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    other = Store(tmp_path / "o2")
    with pytest.raises(ImageError, match="failed verification"):
        import_archive(other, out)
    assert other.check().ok
    assert other.images() == ()


def test_skopeo_and_umoci_accept_the_export(image: tuple[Store, str], tmp_path: Path) -> None:
    require(shutil.which("skopeo") is not None, "skopeo")
    require(shutil.which("umoci") is not None, "umoci")
    store, digest = image
    tar = tmp_path / "img.tar"
    export_image(store, "test/bb:1", tar)
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", f"oci-archive:{tar}"], check=True, capture_output=True
        ).stdout
    )
    assert info["Digest"] == digest
    layout = tmp_path / "layout"
    _untar(tar, layout)
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:1", str(tmp_path / "bundle")],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "bundle" / "rootfs" / "hello.txt").read_text() == "hi\n"
