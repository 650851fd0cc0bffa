"""The image store: verified ingest, names, prune, check, locking, unpack, full disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from mlpack.errors import ImageError
from mlpack.oci.store import Store, chain_id
from tests.conftest import require
from tests.oci_fixtures import busybox_image, sha256_file

if TYPE_CHECKING:
    from pathlib import Path


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_default_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "h"))
    assert Store.default().root == tmp_path / "h"
    monkeypatch.delenv("MLPACK_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert Store.default().root == tmp_path / "x" / "mlpack"


def test_layout_is_an_oci_image_layout(store: Store) -> None:
    digest = store.put_bytes(b"hello")
    assert (store.root / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    assert json.loads((store.root / "index.json").read_bytes())["schemaVersion"] == 2
    assert sha256_file(store.blob_path(digest)) == digest == _digest(b"hello")


def test_ingest_rejects_wrong_digest_and_size(store: Store) -> None:
    with pytest.raises(ImageError, match="failed verification"):
        store.ingest([b"abc"], digest=_digest(b"abd"), size=3)
    with pytest.raises(ImageError, match="failed verification"):
        store.ingest([b"ab"], digest=_digest(b"abc"), size=3)
    with pytest.raises(ImageError, match="larger than"):
        store.ingest([b"abcd"], digest=_digest(b"abc"), size=3)
    assert not store.has_blob(_digest(b"abc"))
    assert list((store.root / "tmp").iterdir()) == []
    assert store.check().ok


def test_tag_resolve_images_remove_prune(store: Store, tmp_path: Path) -> None:
    digest = busybox_image(store, tmp_path, "test/bb:1")
    store.tag("test/bb:latest", digest)
    assert store.resolve("test/bb:1") == digest
    assert store.resolve("docker.io/test/bb:1") == digest
    assert store.resolve(digest) == digest
    rows = store.images()
    assert [r.reference for r in rows] == ["test/bb:1", "test/bb:latest"]
    assert rows[0].size == store.image(digest).size > 0
    assert rows[0].created == "2023-11-14T22:13:20Z"
    with pytest.raises(ImageError, match="no image named"):
        store.resolve("test/bb:2")
    with pytest.raises(ImageError, match="no image named"):
        store.remove("test/bb:2")
    store.remove("test/bb:1")
    assert store.prune().bytes_freed == 0  # still named test/bb:latest
    store.unpack(digest)
    store.remove("test/bb:latest")
    blob_bytes = sum(p.stat().st_size for p in (store.root / "blobs" / "sha256").iterdir())
    result = store.prune()
    assert result.bytes_freed >= blob_bytes
    assert result.blobs == 4
    assert list((store.root / "blobs" / "sha256").iterdir()) == []
    assert list((store.root / "layers").iterdir()) == []
    assert list((store.root / "locks").glob("blob-*.lock")) == []
    assert store.check().ok


def test_check_finds_corruption(store: Store, tmp_path: Path) -> None:
    digest = busybox_image(store, tmp_path)
    layer = store.image(digest).manifest.layers[1].digest
    path = store.blob_path(layer)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    result = store.check()
    assert result.corrupt == (layer,)
    assert not result.ok
    path.unlink()
    assert store.check().missing == (layer,)


def test_unpack_caches_by_diff_id_and_rootfs_merges(store: Store, tmp_path: Path) -> None:
    digest = busybox_image(store, tmp_path)
    dirs = store.unpack(digest)
    config = store.image(digest).config
    assert [d.name for d in dirs] == [x[7:] for x in config.diff_ids]
    assert (dirs[1] / "hello.txt").read_text() == "hi\n"
    assert store.unpack(digest) == dirs
    other = busybox_image(store, tmp_path, "test/other:1", extra="other")
    assert store.unpack(other)[0] == dirs[0]  # shared base layer unpacked once
    root = store.rootfs(digest)
    assert root.name == chain_id(config.diff_ids)[7:]
    assert (root / "bin" / "busybox").is_file()
    assert (root / "hello.txt").read_text() == "hi\n"
    assert list((store.root / "tmp").iterdir()) == []


_WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mlpack.oci.store import Store
    data = bytes(range(256)) * 4096 * 4
    def slow():
        for i in range(0, len(data), 65536):
            time.sleep(0.01)
            yield data[i:i + 65536]
    import hashlib
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    Store(Path(sys.argv[1])).ingest(slow(), digest=d, size=len(data))
    print(d)
    """
)


def test_two_processes_ingest_the_same_blob(store: Store) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(store.root)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1]
    assert sha256_file(store.blob_path(outs[0])) == outs[0]
    assert store.check().ok


def test_killed_ingest_leaves_only_a_partial_that_resumes(store: Store) -> None:
    data = os.urandom(1 << 20)
    digest = _digest(data)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import os, sys, time
                from pathlib import Path
                from mlpack.oci.store import Store
                data = Path(sys.argv[2]).read_bytes()
                def chunks():
                    yield data[:300000]
                    print("half", flush=True)
                    time.sleep(60)
                    yield data[300000:]
                Store(Path(sys.argv[1])).ingest(chunks(), digest="{digest}", size=len(data))
                """
            ),
            str(store.root),
            str(_write(store.root.parent / "src.bin", data)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "half"
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert not store.has_blob(digest)
    partial = store.partial_path(digest)
    assert partial.name.endswith(".partial")
    assert store.check().ok
    offsets: list[int] = []

    def fetch(offset: int) -> tuple[int, list[bytes]]:
        offsets.append(offset)
        return offset, [data[offset:]]

    store.ingest_resumable(fetch, digest=digest, size=len(data))
    assert offsets[0] > 0, "the kept partial must be resumed, not restarted"
    assert not partial.exists()
    assert sha256_file(store.blob_path(digest)) == digest


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.root
def test_full_disk_gives_clear_error_and_consistent_store(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "root (to mount a tmpfs)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=True)
    try:
        store = Store(mnt / "store")
        small = store.put_bytes(b"small")
        big = os.urandom(2 << 20)
        with pytest.raises(ImageError, match="no space left") as info:
            store.ingest(
                [big[i : i + 65536] for i in range(0, len(big), 65536)],
                digest=_digest(big),
                size=len(big),
            )
        assert "MLPACK_HOME" in info.value.hint
        assert not store.has_blob(_digest(big))
        assert list((store.root / "tmp").iterdir()) == []
        assert store.has_blob(small)
        assert store.check().ok
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_bad_kept_partial_is_discarded_and_refetched(store: Store) -> None:
    data = os.urandom(300_000)
    digest = _digest(data)
    store.prepare()
    store.partial_path(digest).write_bytes(b"X" * 1000)  # a corrupt prefix from an earlier try
    offsets: list[int] = []

    def fetch(offset: int) -> tuple[int, list[bytes]]:
        offsets.append(offset)
        return offset, [data[offset:]]

    store.ingest_resumable(fetch, digest=digest, size=len(data))
    assert offsets == [1000, 0]
    assert sha256_file(store.blob_path(digest)) == digest
    assert not store.partial_path(digest).exists()
