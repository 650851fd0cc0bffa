"""The image store: verified ingest, names, prune, check, locking, unpack, full disk."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from mlpack.errors import ImageError
from mlpack.oci.documents import chain_id
from mlpack.oci.layer_stream import ExpansionLimit
from mlpack.oci.snapshots import rootfs, unpack
from mlpack.oci.store import Store, disk_error, tree_size
from mlpack.oslib.fs import remove_tree as real_remove_tree
from tests.conftest import require
from tests.oci_fixtures import add_layer_image, busybox_image, sha256_file


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
    unpack(store, digest)
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
    dirs = unpack(store, digest)
    config = store.image(digest).config
    assert [d.name for d in dirs] == [x[7:] for x in config.diff_ids]
    assert (dirs[1] / "hello.txt").read_text() == "hi\n"
    assert unpack(store, digest) == dirs
    other = busybox_image(store, tmp_path, "test/other:1", extra="other")
    assert unpack(store, other)[0] == dirs[0]  # shared base layer unpacked once
    root = rootfs(store, digest)
    assert root.name == chain_id(config.diff_ids)[7:]
    assert (root / "bin" / "busybox").is_file()
    assert (root / "hello.txt").read_text() == "hi\n"
    assert list((store.root / "tmp").iterdir()) == []
    # Each tree's root is the container's /: searchable by every user inside it.
    assert {stat.S_IMODE(p.stat().st_mode) for p in (*dirs, root)} == {0o755}


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


PRIVATE = ("blobs", "blobs/sha256", "layers", "rootfs", "tmp", "locks", "containers")


def test_store_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = Store(tmp_path / "store")
        store.prepare()
    finally:
        os.umask(old)
    for sub in PRIVATE:
        assert stat.S_IMODE((store.root / sub).stat().st_mode) == 0o700, sub


def test_an_existing_store_is_tightened_on_open(tmp_path: Path) -> None:
    Store(tmp_path / "store").prepare()
    for sub in PRIVATE:
        (tmp_path / "store" / sub).chmod(0o755)
    Store(tmp_path / "store").images()
    for sub in PRIVATE:
        assert stat.S_IMODE((tmp_path / "store" / sub).stat().st_mode) == 0o700, sub


def test_other_users_cannot_read_blobs_or_unpacked_layers(tmp_path: Path) -> None:
    """Issue 10 item 2: uid 65534 reads neither a blob nor a layer file of a root store."""
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None, "root and setpriv")
    from tests.unprivileged import run_as_nobody

    home = Path(tempfile.mkdtemp(prefix="mlpack-private-"))
    try:
        home.chmod(0o755)  # the store's own folders must be what keeps others out
        store = Store(home / "store")
        digest = busybox_image(store, tmp_path, "test/bb:1")
        layer = unpack(store, digest)[-1] / "hello.txt"
        blob = store.blob_path(store.image(digest).manifest.layers[-1].digest)
        assert layer.read_text() == "hi\n"
        probe = textwrap.dedent(
            f"""
            for path in ({str(blob)!r}, {str(layer)!r}):
                try:
                    open(path, "rb").read()
                    print("READ", path)
                except PermissionError:
                    print("DENIED", path)
            """
        )
        lines = run_as_nobody(probe).stdout.split()
        assert lines == ["DENIED", str(blob), "DENIED", str(layer)]
    finally:
        shutil.rmtree(home)


def _deep_layer(depth: int) -> bytes:
    """A gzip'd layer whose tree is ``depth`` directories deep, a file at the bottom."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for level in range(1, depth + 1):
            info = tarfile.TarInfo("/".join(["d"] * level))
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        leaf = tarfile.TarInfo("/".join(["d"] * depth + ["leaf"]))
        leaf.size = 5
        tar.addfile(leaf, io.BytesIO(b"deep\n"))
    return out.getvalue()


def test_prune_after_a_1500_level_image(store: Store) -> None:
    """Issue 10 item 4: a deep image unpacks, and prune removes it without a RecursionError."""
    digest = add_layer_image(store, _deep_layer(1500), "test/deep:1")
    layer = unpack(store, digest)[0]
    merged = rootfs(store, digest)
    assert (layer / "/".join(["d"] * 1500) / "leaf").read_text() == "deep\n"
    assert tree_size(merged) == 5
    store.remove("test/deep:1")
    result = store.prune()
    assert result.failures == ()
    assert (result.blobs, result.layers) == (3, 2)
    assert result.bytes_freed >= 10
    assert not layer.exists()
    assert not merged.exists()
    assert store.check().ok


def test_prune_steps_are_independent(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One tree that cannot be removed is reported; blobs, other trees and tmp still go."""
    busybox_image(store, tmp_path, "test/bb:1")
    dirs = unpack(store, "test/bb:1")
    store.remove("test/bb:1")
    (store.root / "tmp" / "leftover").write_bytes(b"x" * 100)
    stuck = dirs[0]

    def remove_tree(path: Path) -> None:
        if Path(path) == stuck:
            raise PermissionError(13, "Permission denied", str(path))
        real_remove_tree(path)

    monkeypatch.setattr("mlpack.oci.store.remove_tree", remove_tree)
    result = store.prune()
    assert len(result.failures) == 1
    assert str(stuck) in result.failures[0]
    assert "Permission denied" in result.failures[0]
    assert stuck.exists()
    assert not dirs[1].exists()
    assert list((store.root / "blobs" / "sha256").iterdir()) == []
    assert list((store.root / "tmp").iterdir()) == []


def _held(path: Path) -> bool:
    """Whether a live process holds the flock on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _wait_for_staging(
    store: Store, proc: subprocess.Popen[str], prefix: str, count: int
) -> list[Path]:
    """The ``count`` staging directories the child made and holds (each then blocks on a FIFO).

    A directory not yet flocked may still be taken by another process's cleaner (its maker then
    picks a new name), so only a held one counts.
    """
    tmp = store.root / "tmp"
    while proc.poll() is None:
        held = [p for p in tmp.iterdir() if p.name.startswith(prefix) and _held(p)]
        if len(held) == count:
            return held
        time.sleep(0.05)
    msg = f"the unpacking child exited early: {proc.communicate()}"
    raise AssertionError(msg)


def test_killed_unpack_leaves_no_staging_for_the_next_command(store: Store, tmp_path: Path) -> None:
    """Issue 10 item 12: kill -9 mid-unpack; the next command clears what no process holds."""
    digest = busybox_image(store, tmp_path, "test/bb:1")
    layers = store.image(digest).manifest.layers
    for layer in layers:  # unpack stages every layer at once: each must block, none finish
        blob = store.blob_path(layer.digest)
        blob.unlink()
        os.mkfifo(blob)  # the child blocks inside its staging directory, reading this
    child = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from mlpack.oci.snapshots import rootfs, unpack
        from mlpack.oci.store import Store
        (unpack if sys.argv[2] == "unpack" else rootfs)(Store(Path(sys.argv[1])), "test/bb:1")
        """
    )
    running: list[subprocess.Popen[str]] = []
    try:
        staged = []
        for how, prefix, count in (("unpack", "layer-", len(layers)), ("rootfs", "rootfs-", 1)):
            proc = subprocess.Popen([sys.executable, "-c", child, str(store.root), how], text=True)
            running.append(proc)
            staged.append(_wait_for_staging(store, proc, prefix, count))
        killed, [live] = staged
        for path in killed:
            (path / "half-applied").write_bytes(b"x" * 4096)
        running[0].kill()  # kill -9 while it stages
        running[0].wait()
        assert all(path.exists() for path in killed)
        Store(store.root).images()  # any command that opens the store
        assert not any(path.exists() for path in killed)
        assert live.exists()  # still held by a live process: left alone
        running[1].kill()
        running[1].wait()
        Store(store.root).images()
        assert [p.name for p in (store.root / "tmp").iterdir()] == []
    finally:
        for proc in running:  # never leave a child blocked on the FIFO behind a failure
            proc.kill()
            proc.wait()


def test_gzip_bomb_in_the_store_leaves_nothing_behind(tmp_path: Path) -> None:
    """Issue 10 item 11 at the store: the bound is the store's setting; no staging remains."""
    from tests.unit.oci._sandbox import load_corpus

    store = Store(tmp_path / "store", expansion=ExpansionLimit(ratio=10, floor=1 << 20))
    digest = add_layer_image(store, load_corpus().gzip_bomb(32 << 20), "test/bomb:1")
    with pytest.raises(ImageError, match="decompression bomb"):
        unpack(store, digest)
    with pytest.raises(ImageError, match="decompression bomb"):
        rootfs(store, digest)
    assert list((store.root / "tmp").iterdir()) == []
    assert list((store.root / "layers").iterdir()) == []
    assert list((store.root / "rootfs").iterdir()) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_is_one_error(tmp_path: Path, code: int) -> None:
    """EDQUOT (a user's quota) is reported as a full disk, as ENOSPC is: mlpack.oslib.fs.NO_SPACE."""
    error = disk_error(OSError(code, os.strerror(code)), tmp_path)
    assert "no space left" in error.message
    assert "MLPACK_HOME" in error.hint


def test_any_other_write_error_points_at_permissions(tmp_path: Path) -> None:
    error = disk_error(OSError(errno.EACCES, os.strerror(errno.EACCES)), tmp_path)
    assert "cannot write to the image store" in error.message
    assert "permissions" in error.hint
