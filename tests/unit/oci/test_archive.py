"""Export/import: deterministic dual-format tarballs, docker-save import, peer tools accept them."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from typing import TYPE_CHECKING

import pytest

from mlpack.errors import ImageError
from mlpack.oci.archive import export_image, import_archive
from mlpack.oci.layer_stream import ExpansionLimit
from mlpack.oci.snapshots import rootfs
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
    assert (rootfs(other, "legacy/app:2") / "hello.txt").read_text() == "hi\n"


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


def _host_secret(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    """A file outside the imported directory, and the digest it would have as a blob."""
    secret = tmp_path / "host" / "secret"
    secret.parent.mkdir()
    secret.write_bytes(data)
    return secret, sha256_file(secret)


def test_docker_save_directory_symlinks_are_refused(
    image: tuple[Store, str], tmp_path: Path
) -> None:
    """A layer symlinked to a host file never becomes a blob (issue 10 item 5)."""
    store, digest = image
    img = store.image(digest)
    secret, secret_digest = _host_secret(tmp_path, b"host secret\n" * 100)
    (tmp_path / "hostdir").mkdir()
    (tmp_path / "hostdir" / "layer.tar").symlink_to(secret)
    for variant, layer in (("leaf", "l0/layer.tar"), ("parent", "ldir/layer.tar")):
        src = tmp_path / f"save-{variant}"
        (src / "l0").mkdir(parents=True)
        (src / "l0" / "layer.tar").symlink_to(secret)
        (src / "ldir").symlink_to(tmp_path / "hostdir")
        shutil.copy(store.blob_path(img.manifest.config.digest), src / "config.json")
        manifest = [{"Config": "config.json", "RepoTags": ["evil/app:1"], "Layers": [layer]}]
        (src / "manifest.json").write_text(json.dumps(manifest))
        other = Store(tmp_path / f"other-{variant}")
        with pytest.raises(ImageError, match="symlink") as info:
            import_archive(other, src)
        assert "import a tarball" in info.value.hint
        assert not other.has_blob(secret_digest)
        assert other.images() == ()


def test_oci_layout_directory_symlinks_are_refused(
    image: tuple[Store, str], tmp_path: Path
) -> None:
    """A blob (or the blobs folder) symlinked out of an OCI layout is refused, not read."""
    store, _ = image
    good = tmp_path / "good.tar"
    export_image(store, "test/bb:1", good, fmt="oci")
    for variant in ("blob", "blobs-dir"):
        out = tmp_path / f"layout-{variant}"
        _untar(good, out)
        blobs = out / "blobs" / "sha256"
        layer = max(blobs.iterdir(), key=lambda p: p.stat().st_size)
        host = tmp_path / f"host-{variant}"
        host.mkdir()
        if variant == "blob":
            shutil.move(layer, host / layer.name)
            layer.symlink_to(host / layer.name)
        else:
            shutil.move(blobs, host / "sha256")
            blobs.symlink_to(host / "sha256")
        other = Store(tmp_path / f"other-{variant}")
        with pytest.raises(ImageError, match="symlink"):
            import_archive(other, out)
        assert not other.has_blob(f"sha256:{layer.name}")
        assert other.images() == ()


def test_tarball_links_out_of_the_archive_are_refused(
    image: tuple[Store, str], tmp_path: Path
) -> None:
    """A layer member that is a symlink to a host path: a clear error, not a KeyError."""
    store, digest = image
    secret, secret_digest = _host_secret(tmp_path, b"host secret\n" * 100)
    src = tmp_path / "save"
    src.mkdir()
    shutil.copy(store.blob_path(store.image(digest).manifest.config.digest), src / "config.json")
    (src / "manifest.json").write_text(
        json.dumps([{"Config": "config.json", "RepoTags": ["evil/app:1"], "Layers": ["l.tar"]}])
    )
    (src / "l.tar").symlink_to(secret)
    tar = tmp_path / "evil.tar"
    with tarfile.open(tar, "w") as out:
        for name in ("manifest.json", "config.json", "l.tar"):
            out.add(src / name, arcname=name, recursive=False)
    other = Store(tmp_path / "other")
    with pytest.raises(ImageError, match="not in the archive"):
        import_archive(other, tar)
    assert not other.has_blob(secret_digest)
    assert other.images() == ()


def test_tarball_import_reads_one_stream_without_tarfile(
    image: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§8: an imported tarball (plain or gzipped) is parsed by mlpack's own stream reader only;
    tarfile is never asked to read it, and nothing of it stays in the store's staging area."""
    store, digest = image
    tar = tmp_path / "x.tar"
    export_image(store, "test/bb:1", tar, fmt="both")
    gz = tmp_path / "x.tar.gz"
    gz.write_bytes(gzip.compress(tar.read_bytes()))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tarfile read the archive")

    monkeypatch.setattr(tarfile, "open", refuse)
    monkeypatch.setattr(tarfile.TarFile, "__init__", refuse)
    for i, path in enumerate((tar, gz)):
        other = Store(tmp_path / f"other{i}")
        (imported,) = import_archive(other, path)
        assert imported.digest == digest
        assert other.check().ok
        assert list((other.root / "tmp").iterdir()) == []


def _tar_of(path: Path, members: list[tuple[str, bytes | str, bytes]]) -> Path:
    """A tarball of (name, type, content-or-link-target) members, names written as given."""
    with tarfile.open(path, "w") as out:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind if isinstance(kind, bytes) else kind.encode()
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            else:
                info.linkname = data.decode()
                out.addfile(info)
    return path


def test_tarball_links_inside_the_archive_are_aliases(
    image: tuple[Store, str], tmp_path: Path
) -> None:
    """docker save links a repeated layer to its first copy: read as that member, never made
    a link on disk (a symlink relative to its folder, a hardlink to the archive root)."""
    store, digest = image
    img = store.image(digest)
    layer = img.manifest.layers[0]
    raw = gzip.decompress(store.blob_path(layer.digest).read_bytes())
    config = store.blob_path(img.manifest.config.digest).read_bytes()
    doc = [{"Config": "c.json", "RepoTags": ["links/app:1"], "Layers": ["a/l.tar", "b/l.tar"]}]
    tar = _tar_of(
        tmp_path / "links.tar",
        [
            ("manifest.json", tarfile.REGTYPE, json.dumps(doc).encode()),
            ("c.json", tarfile.REGTYPE, config),
            ("0/layer.tar", tarfile.REGTYPE, raw),
            ("a/l.tar", tarfile.SYMTYPE, b"../0/layer.tar"),
            ("b/l.tar", tarfile.LNKTYPE, b"a/l.tar"),
        ],
    )
    other = Store(tmp_path / "other")
    (imported,) = import_archive(other, tar)
    got = other.image(imported.digest)
    assert [x.digest for x in got.manifest.layers] == [img.config.diff_ids[0]] * 2


@pytest.mark.parametrize(
    ("members", "error"),
    [
        ([("../escape", tarfile.REGTYPE, b"x")], "outside the archive"),
        ([("/abs", tarfile.REGTYPE, b"x")], "outside the archive"),
        ([("a", tarfile.REGTYPE, b"x"), ("./a", tarfile.REGTYPE, b"y")], "appears twice"),
        ([("l", tarfile.SYMTYPE, b"../../etc/passwd")], "not in the archive"),
        ([("l", tarfile.LNKTYPE, b"missing")], "not in the archive"),
        ([("l", tarfile.SYMTYPE, b"l")], "not in the archive"),
        ([("f", tarfile.FIFOTYPE, b"")], "holds only files"),
    ],
)
def test_hostile_tarball_members_are_refused(
    tmp_path: Path, members: list[tuple[str, bytes, bytes]], error: str
) -> None:
    """Names outside the archive, duplicates, dangling or looping links, special files: each a
    clear error; nothing is written outside the staging area and no image is added."""
    tar = _tar_of(tmp_path / "evil.tar", [("manifest.json", tarfile.REGTYPE, b"[]"), *members])
    other = Store(tmp_path / "store" / "nested")
    with pytest.raises(ImageError, match=error):
        import_archive(other, tar)
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "store" / "escape").exists()
    assert other.images() == ()
    assert list((other.root / "tmp").iterdir()) == []


def test_compressed_tarball_bomb_stops_before_filling_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzipped tarball whose members inflate past the expansion limit is refused mid-stream."""
    monkeypatch.setattr(ExpansionLimit, "from_env", classmethod(lambda cls: cls(ratio=10, floor=0)))
    plain = _tar_of(tmp_path / "bomb.tar", [("manifest.json", tarfile.REGTYPE, b"\0" * (4 << 20))])
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(plain.read_bytes()))
    assert bomb.stat().st_size * 10 < 4 << 20
    other = Store(tmp_path / "other")
    with pytest.raises(ImageError, match="decompression bomb"):
        import_archive(other, bomb)
    assert list((other.root / "tmp").iterdir()) == []
