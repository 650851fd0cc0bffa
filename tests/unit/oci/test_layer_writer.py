"""The deterministic layer writer: same tree, same bytes, readable by tarfile and GNU tar."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpack.errors import ImageError
from mlpack.oci import mediatypes
from mlpack.oci.layer_applier import apply_layer
from mlpack.oci.layer_compression import LayerDigests, gzip_header
from mlpack.oci.layer_writer import write_layer
from tests.conftest import require
from tests.unit.oci._sandbox import readlink_raw, tree_listing

SDE = 1_700_000_000

# The golden layer of ``_golden_tree``. diff_id is the tar itself and must never change; the
# compressed digest is also pinned to the zlib it was recorded with (REPRODUCIBILITY.md §2).
GOLDEN_DIFF_ID = "sha256:8e8a0eaab9d6ab17d1ac9405746288392127628cd84870b63808f0710b1ac04b"
GOLDEN_DIGEST = "sha256:9c65a05349553235108ecd58181365e65428f404344d643e591674b205cdd485"
GOLDEN_SIZE = 929
GOLDEN_ZLIB = "1.2.13"


def _golden_tree(root: Path, *, reverse: bool = False) -> None:
    """A small tree with every entry kind; ``reverse`` creates it in the opposite order."""
    dirs = ["app/data", "app", "ünïcødé", "tmp"]
    files = [
        ("app/main.py", b"print('hi')\n", 0o644),
        ("app/run.sh", b"#!/bin/sh\nexec python main.py\n", 0o700),
        ("app/data/weights.bin", bytes(range(256)) * 64, 0o600),
        ("ünïcødé/" + "long-" * 30 + "name.txt", b"long\n", 0o664),
    ]
    order = -1 if reverse else 1
    for d in dirs[::order]:
        (root / d).mkdir(parents=True, exist_ok=True)
    for name, data, mode in files[::order]:
        (root / name).write_bytes(data)
        (root / name).chmod(mode)
    (root / "app" / "latest").symlink_to("data/weights.bin")
    os.link(root / "app" / "data" / "weights.bin", root / "app" / "hard.bin")


def _write(tree: Path, **kwargs: Any) -> tuple[bytes, LayerDigests]:
    out = io.BytesIO()
    kwargs.setdefault("source_date_epoch", SDE)
    digests = write_layer(tree, out, **kwargs)
    return out.getvalue(), digests


def test_golden_digests(tmp_path: Path) -> None:
    _golden_tree(tmp_path)
    data, digests = _write(tmp_path, modes={"tmp": 0o1777}, whiteouts=["etc/old.conf"])
    assert digests.diff_id == GOLDEN_DIFF_ID
    if zlib.ZLIB_RUNTIME_VERSION == GOLDEN_ZLIB:
        assert digests.digest == GOLDEN_DIGEST
        assert digests.size == GOLDEN_SIZE == len(data)


def test_digests_describe_the_bytes(tmp_path: Path) -> None:
    _golden_tree(tmp_path)
    data, digests = _write(tmp_path)
    assert digests.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert digests.size == len(data)
    raw = gzip.decompress(data)
    assert digests.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(("level", "xfl"), [(1, 4), (6, 0), (9, 2), (0, 4)])
def test_gzip_header_is_fixed(tmp_path: Path, level: int, xfl: int) -> None:
    (tmp_path / "f").write_text("x")
    data, _ = _write(tmp_path, level=level)
    assert data[:10] == bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, xfl, 255])
    assert gzip_header(level) == data[:10]
    raw = gzip.decompress(data)
    assert int.from_bytes(data[-8:-4], "little") == zlib.crc32(raw)
    assert int.from_bytes(data[-4:], "little") == len(raw)


def test_same_bytes_whatever_umask_mtime_order_and_tz(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "deeper" / "path" / "b"
    a.mkdir()
    b.mkdir(parents=True)
    old_umask = os.umask(0o022)
    old_tz = os.environ.get("TZ")
    try:
        os.environ["TZ"] = "UTC"
        time.tzset()
        _golden_tree(a)
        first, _ = _write(a)
        os.umask(0o077)
        os.environ["TZ"] = "Pacific/Kiritimati"
        time.tzset()
        _golden_tree(b, reverse=True)
        for path in b.rglob("*"):
            os.utime(path, (123456789, 987654321), follow_symlinks=False)
        second, _ = _write(b)
    finally:
        os.umask(old_umask)
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
    assert first == second


def test_clamp_mtime_keeps_older_times(tmp_path: Path) -> None:
    (tmp_path / "old").write_text("x")
    (tmp_path / "new").write_text("y")
    os.utime(tmp_path / "old", (1000, 1000))
    os.utime(tmp_path / "new", (SDE + 5000, SDE + 5000))
    data, _ = _write(tmp_path, clamp_mtime=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        mtimes = {m.name: m.mtime for m in tf}
    assert mtimes == {"new": SDE, "old": 1000}


def test_headers_carry_no_host_metadata(tmp_path: Path) -> None:
    _golden_tree(tmp_path)
    os.chown(tmp_path / "app" / "main.py", 1234, 5678) if os.geteuid() == 0 else None
    data, _ = _write(tmp_path, modes={"tmp": 0o1777})
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == [
        "app",
        "app/data",
        "app/data/weights.bin",
        "app/hard.bin",
        "app/latest",
        "app/main.py",
        "app/run.sh",
        "tmp",
        "ünïcødé",
        "ünïcødé/" + "long-" * 30 + "name.txt",
    ]
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", SDE)
        assert not m.pax_headers.keys() - {"path", "linkpath"}
    modes = {m.name: m.mode for m in members}
    assert modes["app"] == 0o755
    assert modes["app/run.sh"] == 0o755  # any exec bit: 0755, whatever the other bits were
    assert modes["app/main.py"] == 0o644
    assert modes["tmp"] == 0o1777  # declared
    by_name = {m.name: m for m in members}
    assert by_name["app/hard.bin"].islnk()
    assert by_name["app/hard.bin"].linkname == "app/data/weights.bin"  # first in sort order
    assert by_name["app/latest"].issym()
    assert data.count(b"././@PaxHeader") == 0  # the header name lives inside the gzip stream
    raw = gzip.decompress(data)
    assert raw.count(b"././@PaxHeader") == 2  # the two non-ASCII names, nothing else
    assert raw[: len(b"app/")] == b"app/"


def test_whiteouts_come_first_in_their_directory(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "a.conf").write_text("x")
    data, _ = _write(tmp_path, whiteouts=["etc/z.conf", "var/lib/gone"], opaque_dirs=["etc"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == [
        "etc",
        "etc/.wh..wh..opq",
        "etc/.wh.z.conf",
        "etc/a.conf",
        "var",
        "var/lib",
        "var/lib/.wh.gone",
    ]
    for m in members:
        if m.name.rsplit("/", 1)[-1].startswith(".wh."):
            assert (m.isfile(), m.size, m.mode, m.mtime) == (True, 0, 0o644, SDE)


@pytest.mark.parametrize("bad", ["../x", "", "/", "a/.wh.b"])
def test_bad_whiteouts_are_rejected(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ImageError, match="whiteout"):
        _write(tmp_path, whiteouts=[bad])


def test_reserved_names_in_tree_are_rejected(tmp_path: Path) -> None:
    (tmp_path / ".wh.sneaky").write_text("")
    with pytest.raises(ImageError, match="reserved for whiteouts"):
        _write(tmp_path)


def test_fifo_is_an_error_or_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageError, match="FIFO"):
        _write(tmp_path)
    data, _ = _write(tmp_path, on_special="skip")
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.getnames() == ["f"]


def test_unknown_mode_override_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not in the layer tree"):
        _write(tmp_path, modes={"nope": 0o755})


def test_missing_tree_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read layer tree"):
        _write(tmp_path / "absent")


def test_long_symlink_target_uses_pax_linkpath(tmp_path: Path) -> None:
    target = "x/" * 80 + "y"
    (tmp_path / "l").symlink_to(target)
    data, _ = _write(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        (member,) = tf.getmembers()
    assert member.linkname == target
    assert member.pax_headers == {"linkpath": target}


# Hypothesis: random trees. Names are UTF-8, never '.', '..' or '.wh.*', at most 200 bytes.
_name = (
    st.text(
        alphabet=st.characters(
            exclude_categories=["Cs"], exclude_characters="/\0", min_codepoint=32
        ),
        min_size=1,
        max_size=40,
    )
    .filter(lambda s: s not in (".", "..") and not s.startswith(".wh."))
    .filter(lambda s: len(s.encode()) <= 200)
)
_file = st.tuples(st.just("file"), st.binary(max_size=3000), st.booleans())
_link = st.tuples(
    st.just("symlink"), st.text(min_size=1, max_size=150).filter(lambda s: "\0" not in s)
)
_tree: st.SearchStrategy[dict[str, object]] = st.recursive(
    st.dictionaries(_name, st.one_of(_file, _link), max_size=4),
    lambda children: st.dictionaries(_name, st.one_of(_file, _link, children), max_size=4),
    max_leaves=12,
)


def _build(root: Path, spec: dict[str, object]) -> None:
    for name, node in spec.items():
        path = root / name
        if isinstance(node, dict):
            path.mkdir()
            _build(path, node)
        else:
            assert isinstance(node, tuple)
            if node[0] == "file":
                path.write_bytes(node[1])
                path.chmod(0o755 if node[2] else 0o600)
            else:
                path.symlink_to(node[1])


HARDLINK = "hl\x01"  # control characters never come out of the name strategy


def _add_hardlink(root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    if files:
        os.link(files[0], root / HARDLINK)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=_tree, hardlink=st.booleans())
def test_random_trees_round_trip(spec: dict[str, object], hardlink: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tree = base / "tree"
        tree.mkdir()
        _build(tree, spec)
        if hardlink:
            _add_hardlink(tree)
        first, digests = _write(tree)
        second, _ = _write(tree)
        assert first == second
        expected = _normalised(tree_listing(tree))

        # Read back with Python's tarfile (parsing only, never extracting).
        seen: dict[str, tuple[str, int, object]] = {}
        with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tf:
            for m in tf:
                if m.issym():
                    seen[m.name] = ("symlink", 0o777, m.linkname)
                elif m.isdir():
                    seen[m.name] = ("dir", m.mode, None)
                elif m.islnk():
                    seen[m.name] = ("file", m.mode, seen[m.linkname][2])
                else:
                    extracted = tf.extractfile(m)
                    assert extracted is not None
                    seen[m.name] = ("file", m.mode, extracted.read())
        assert seen == expected

        # And with GNU tar, as a user would.
        out = base / "gnu"
        out.mkdir()
        blob = base / "layer.tar.gz"
        blob.write_bytes(first)
        subprocess.run(["tar", "-xzf", str(blob), "-C", str(out)], check=True)
        assert tree_listing(out) == expected
        if hardlink and (tree / HARDLINK).exists():
            assert (out / HARDLINK).stat().st_nlink == 2

        # And with mlpack's own applier, which must agree with both.
        applied = base / "applied"
        applied.mkdir()
        result = apply_layer(
            io.BytesIO(first),
            applied,
            media_type=mediatypes.OCI_LAYER_GZIP,
            expected_digest=digests.digest,
            expected_diff_id=digests.diff_id,
            expected_size=digests.size,
        )
        assert tree_listing(applied) == expected
        assert result.entries == len(expected)
        assert digests.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(first)).hexdigest()


def _normalised(listing: dict[str, tuple[str, int, object]]) -> dict[str, tuple[str, int, object]]:
    """What the layer should hold: modes normalised by the writer's rules."""
    result = {}
    for name, (kind, mode, extra) in listing.items():
        if kind == "dir":
            mode = 0o755
        elif kind == "file":
            mode = 0o755 if mode & 0o111 else 0o644
        result[name] = (kind, mode, extra)
    return result


def test_gnu_tar_is_available() -> None:
    require(shutil.which("tar") is not None, "GNU tar")
    version = subprocess.run(
        ["tar", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "GNU tar" in version


def test_stat_of_sources_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("x")
    (tmp_path / "link").symlink_to("target")
    data, _ = _write(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        kinds = {m.name: m.type for m in tf}
    assert kinds == {"link": tarfile.SYMTYPE, "target": tarfile.REGTYPE}
    assert readlink_raw(tmp_path / "link") == "target"
    assert stat.S_ISLNK((tmp_path / "link").lstat().st_mode)


def test_sizes_past_the_ustar_field_use_a_pax_size_record() -> None:
    from mlpack.oci import layer_writer
    from mlpack.oci.tar_reader import TarReader

    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: bytes | memoryview) -> None:
            self.data += data

    sink = Sink()
    huge = 9 << 30
    entry = layer_writer._Entry(path="weights.bin", kind="file", mode=0o644, mtime=SDE, size=huge)
    layer_writer._write_entry(sink, entry)  # type: ignore[arg-type]
    raw = bytes(sink.data)
    assert b"size=9663676416\n" in raw
    reader = TarReader(io.BytesIO(raw))
    member = reader.next()
    assert member is not None
    assert (member.name, member.size) == ("weights.bin", huge)


def test_preserve_metadata_keeps_a_rootfs_modes_and_owners(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp").chmod(0o1777)
    (tmp_path / "su").write_text("#!/bin/sh\n")
    (tmp_path / "su").chmod(0o4755)
    (tmp_path / "shadow").write_text("root:*:1::::::\n")
    (tmp_path / "shadow").chmod(0o640)
    if os.geteuid() == 0:
        os.chown(tmp_path / "shadow", 0, 42)
        os.chown(tmp_path / "tmp", 3_000_000, 5)  # past the 8-byte octal field: PAX uid
    data, _ = _write(tmp_path, preserve_metadata=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = {m.name: m for m in tf}
    assert members["tmp"].mode == 0o1777
    assert members["su"].mode == 0o4755
    assert members["shadow"].mode == 0o640
    if os.geteuid() == 0:
        assert (members["shadow"].uid, members["shadow"].gid) == (0, 42)
        assert (members["tmp"].uid, members["tmp"].gid) == (3_000_000, 5)
        assert members["tmp"].pax_headers == {"uid": "3000000"}
    assert all((m.uname, m.gname, m.mtime) == ("", "", SDE) for m in members.values())
    # Without the flag, the same tree is normalised.
    plain, _ = _write(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(plain)) as tf:
        assert {m.name: (m.mode, m.uid, m.gid) for m in tf} == {
            "shadow": (0o644, 0, 0),
            "su": (0o755, 0, 0),
            "tmp": (0o755, 0, 0),
        }
