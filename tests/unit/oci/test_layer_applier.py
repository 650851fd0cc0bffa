"""The layer applier on well-formed layers: round trips, layering semantics, ownership, overlay."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mlpack.oci import mediatypes
from mlpack.oci.digest import sha256_digest
from mlpack.oci.layer_applier import ApplyResult
from mlpack.oci.layer_writer import write_layer
from mlpack.oslib.fs import remove_tree
from tests.conftest import require
from tests.unit.oci._sandbox import (
    NOBODY,
    Sandbox,
    load_corpus,
    nobody_dir,
    readlink_raw,
    run_rootless,
    sandbox_fixture,
    setpriv_available,
    tree_listing,
    untouched,
    userns_available,
)

corpus = load_corpus()
SDE = 1_600_000_000


sb = pytest.fixture(params=["openat2", "walk"])(sandbox_fixture)


def layer(tree: Path, **kwargs: Any) -> bytes:
    out = io.BytesIO()
    write_layer(tree, out, source_date_epoch=SDE, **kwargs)
    return out.getvalue()


def apply_gz(sb: Sandbox, data: bytes, **kwargs: Any) -> ApplyResult:
    return sb.apply(data, media_type=mediatypes.OCI_LAYER_GZIP, **kwargs)


def test_round_trip_with_writer(sb: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "app" / "pkg").mkdir(parents=True)
    (tree / "app" / "pkg" / "mod.py").write_text("x = 1\n")
    (tree / "app" / "run").write_text("#!/bin/sh\n")
    (tree / "app" / "run").chmod(0o755)
    (tree / "app" / "big.bin").write_bytes(os.urandom(3 << 20))
    (tree / "app" / "link").symlink_to("/app/pkg/mod.py")
    os.link(tree / "app" / "big.bin", tree / "app" / "big-again.bin")
    (tree / "ünï" / ("deep-" * 40)).mkdir(parents=True)
    data = layer(tree)
    with untouched(sb):
        result = apply_gz(sb, data, expected_digest=sha256_digest(data), expected_size=len(data))
    assert tree_listing(sb.root) == {
        k: (kind, 0o755 if kind == "dir" else mode, extra)
        for k, (kind, mode, extra) in tree_listing(tree).items()
    }
    assert result.bytes_written == (3 << 20) + len("x = 1\n") + len("#!/bin/sh\n")
    assert result.entries == 9
    big = (sb.root / "app" / "big.bin").stat()
    assert big.st_ino == (sb.root / "app" / "big-again.bin").stat().st_ino
    for path in [sb.root / "app", sb.root / "app" / "pkg", sb.root / "app" / "big.bin"]:
        assert path.stat().st_mtime == SDE  # directories too, after their children were added
    assert (sb.root / "app" / "link").lstat().st_mtime == SDE


def test_whiteouts_and_opaque_dirs_across_layers(sb: Sandbox, tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for rel in ["a/x", "a/y", "d/old", "d/sub/f", "gone/deep/f"]:
        (lower / rel).parent.mkdir(parents=True, exist_ok=True)
        (lower / rel).write_text(rel)
    (upper / "d").mkdir(parents=True)
    (upper / "d" / "new").write_text("new")
    apply_gz(sb, layer(lower))
    with untouched(sb):
        apply_gz(sb, layer(upper, whiteouts=["a/x", "gone", "never/was"], opaque_dirs=["d"]))
    assert sorted(str(p.relative_to(sb.root)) for p in sb.root.rglob("*")) == [
        "a",
        "a/y",
        "d",
        "d/new",
        "never",
    ]


def test_whiteout_after_its_sibling_in_the_same_layer_keeps_the_sibling(sb: Sandbox) -> None:
    (sb.root / "x").write_text("lower")
    data = corpus.file(b"x", b"this layer") + corpus.file(b".wh.x") + corpus.end()
    sb.apply(data)
    assert (sb.root / "x").read_text() == "this layer"


def test_type_changes_replace_the_old_leaf(sb: Sandbox) -> None:
    (sb.root / "p" / "q").mkdir(parents=True)
    (sb.root / "p" / "q" / "f").write_text("lower")
    (sb.root / "r").write_text("lower file")
    data = (
        corpus.file(b"p", b"now a file")
        + corpus.directory(b"r/")
        + corpus.file(b"r/s", b"in the new dir")
        + corpus.end()
    )
    with untouched(sb):
        sb.apply(data)
    assert (sb.root / "p").read_text() == "now a file"
    assert (sb.root / "r" / "s").read_text() == "in the new dir"


def test_a_lower_symlink_is_replaced_not_written_through(sb: Sandbox) -> None:
    sentinel = sb.outside / "sentinel"
    (sb.root / "f").symlink_to(sentinel)
    (sb.root / "dirlink").symlink_to(sb.outside)
    data = (
        corpus.file(b"f", b"overwrite?")
        + corpus.directory(b"dirlink/")
        + corpus.file(b"dirlink/new", b"x")
        + corpus.end()
    )
    with untouched(sb):
        sb.apply(data)
    assert (sb.root / "f").lstat().st_mode & stat.S_IFMT(0o170000) == stat.S_IFREG
    assert (sb.root / "f").read_text() == "overwrite?"
    assert (sb.root / "dirlink").is_dir()
    assert not (sb.root / "dirlink").is_symlink()


def test_hard_link_to_a_lower_layer_file(sb: Sandbox) -> None:
    (sb.root / "etc").mkdir()
    (sb.root / "etc" / "conf").write_text("lower")
    sb.apply(corpus.hardlink(b"conf-link", b"/etc/conf") + corpus.end())
    assert (sb.root / "conf-link").stat().st_ino == (sb.root / "etc" / "conf").stat().st_ino


def test_directory_merge_keeps_lower_contents(sb: Sandbox) -> None:
    (sb.root / "usr" / "lib").mkdir(parents=True)
    (sb.root / "usr" / "lib" / "keep").write_text("lower")
    sb.apply(corpus.directory(b"usr/", mode=0o750) + corpus.file(b"usr/new") + corpus.end())
    assert (sb.root / "usr" / "lib" / "keep").read_text() == "lower"
    assert stat.S_IMODE((sb.root / "usr").stat().st_mode) == 0o750


def test_merged_usr_symlinks_resolve_inside_the_root(sb: Sandbox) -> None:
    (sb.root / "usr" / "lib").mkdir(parents=True)
    (sb.root / "lib").symlink_to("usr/lib")
    (sb.root / "bin").symlink_to("/usr/bin")
    (sb.root / "usr" / "bin").mkdir()
    sb.apply(corpus.file(b"lib/libx.so", b"so") + corpus.file(b"bin/tool", b"t") + corpus.end())
    assert (sb.root / "usr" / "lib" / "libx.so").read_text() == "so"
    assert (sb.root / "usr" / "bin" / "tool").read_text() == "t"


@pytest.mark.root
def test_rootful_ownership_follows_the_tar(sb: Sandbox) -> None:
    require(os.geteuid() == 0, "root")
    data = (
        corpus.header(b"owned", uid=1000, gid=2000, size=0)
        + corpus.header(b"link", typeflag=b"2", linkname=b"owned", uid=1001, gid=2001)
        + corpus.end()
    )
    sb.apply(data, rootless=False)
    st = (sb.root / "owned").lstat()
    assert (st.st_uid, st.st_gid) == (1000, 2000)
    lst = (sb.root / "link").lstat()
    assert (lst.st_uid, lst.st_gid) == (1001, 2001)


def test_rootless_mode_does_not_chown(sb: Sandbox) -> None:
    data = corpus.header(b"owned", uid=1000, gid=2000, size=0) + corpus.end()
    sb.apply(data, rootless=True)
    st = (sb.root / "owned").lstat()
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


@pytest.mark.root
def test_overlay_mode_rootful_writes_char_device_whiteouts(sb: Sandbox) -> None:
    require(os.geteuid() == 0, "root")
    data = (
        corpus.directory(b"d/")
        + corpus.file(b"d/.wh..wh..opq")
        + corpus.file(b".wh.gone")
        + corpus.end()
    )
    sb.apply(data, whiteout_mode="overlay", rootless=False)
    st = (sb.root / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode)
    assert st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(sb.root / "d", "trusted.overlay.opaque") == b"y"
    assert not (sb.root / "d" / ".wh..wh..opq").exists()


def _rootless_jobs(base: Path, cases: dict[str, bytes], **kwargs: Any) -> list[dict[str, Any]]:
    jobs = []
    for name, data in cases.items():
        root = base / "roots" / name
        root.mkdir(parents=True)
        os.chown(root, NOBODY, NOBODY)
        blob = base / f"{name}.tar"
        blob.write_bytes(data)
        jobs.append(
            {"blob": str(blob), "root": str(root), "media_type": mediatypes.OCI_LAYER, **kwargs}
        )
    return jobs


OVERLAY_LAYER = (
    corpus.directory(b"d/") + corpus.file(b"d/.wh..wh..opq") + corpus.file(b"d/.wh.gone") + b""
) + corpus.end()


@pytest.mark.root
def test_overlay_mode_rootless_child() -> None:
    require(setpriv_available(), "root and setpriv (to start an unprivileged child)")
    with nobody_dir() as base:
        jobs = _rootless_jobs(base, {"ovl": OVERLAY_LAYER}, kwargs={"whiteout_mode": "overlay"})
        report = run_rootless(jobs)
        assert report["euid"] == NOBODY
        assert report["results"][0]["ok"], report
        d = base / "roots" / "ovl" / "d"
        st = (d / "gone").lstat()
        # Linux >= 5.8 lets anyone mknod a 0:0 whiteout; older kernels get the xattr form.
        if stat.S_ISCHR(st.st_mode):
            assert st.st_rdev == 0
        else:
            assert os.getxattr(d / "gone", "user.overlay.whiteout") == b"y"
        assert os.getxattr(d, "user.overlay.opaque") == b"y"


def test_overlay_whiteout_falls_back_to_xattrs_without_mknod(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_mknod(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "mknod", no_mknod)
    data = corpus.directory(b"d/") + corpus.file(b"d/.wh.gone") + corpus.end()
    sb.apply(data, whiteout_mode="overlay", rootless=True)
    d = sb.root / "d"
    assert stat.S_ISREG((d / "gone").lstat().st_mode)
    assert os.getxattr(d / "gone", "user.overlay.whiteout") == b"y"
    # Linux >= 6.8: xattr whiteouts count only in a directory marked opaque "x".
    assert os.getxattr(d, "user.overlay.opaque") == b"x"


@pytest.mark.root
def test_overlay_mode_in_a_user_namespace_uses_mknod() -> None:
    require(userns_available(), "unprivileged user namespaces")
    with nobody_dir() as base:
        jobs = _rootless_jobs(
            base, {"ovl": OVERLAY_LAYER}, kwargs={"whiteout_mode": "overlay", "rootless": True}
        )
        report = run_rootless(jobs, userns=True)
        assert report["euid"] == 0  # root inside the namespace, nobody outside
        assert report["results"][0]["ok"], report
        d = base / "roots" / "ovl" / "d"
        st = (d / "gone").lstat()
        assert stat.S_ISCHR(st.st_mode)
        assert st.st_rdev == 0
        assert st.st_uid == NOBODY
        assert os.getxattr(d, "user.overlay.opaque") == b"y"


@pytest.mark.root
def test_rootless_read_only_directories_and_cleanup(tmp_path: Path) -> None:
    require(setpriv_available(), "root and setpriv (to start an unprivileged child)")
    tree = tmp_path / "tree"
    (tree / "ro" / "sub").mkdir(parents=True)
    (tree / "ro" / "sub" / "f").write_text("x")
    (tree / "ro" / "g").write_text("y")
    out = io.BytesIO()
    write_layer(tree, out, source_date_epoch=SDE, modes={"ro": 0o555, "ro/sub": 0o500})
    with nobody_dir() as base:
        jobs = _rootless_jobs(base, {"ro": out.getvalue()})
        jobs[0]["media_type"] = mediatypes.OCI_LAYER_GZIP
        # A second layer writes into the now read-only directory.
        jobs += _rootless_jobs(base, {"ro2": corpus.file(b"ro/h", b"z") + corpus.end()})
        jobs[1]["root"] = jobs[0]["root"]
        report = run_rootless(jobs)
        assert [r["ok"] for r in report["results"]] == [True, True], report
        root = Path(jobs[0]["root"])
        assert stat.S_IMODE((root / "ro").stat().st_mode) == 0o555
        assert stat.S_IMODE((root / "ro" / "sub").stat().st_mode) == 0o500
        assert (root / "ro" / "h").read_text() == "z"
        assert (root / "ro" / "sub" / "f").stat().st_uid == NOBODY
        remove_tree(root)
        assert not root.exists()


def test_symlink_targets_are_stored_verbatim(sb: Sandbox) -> None:
    sb.apply(corpus.symlink(b"l", b"../../x//y/./") + corpus.end())
    assert readlink_raw(sb.root / "l") == "../../x//y/./"


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_archives_from_other_writers(sb: Sandbox, fmt: int) -> None:
    """ustar prefix names, GNU long names/links and PAX records, as other tools write them."""
    long_dir = "d" * 60 + "/" + "e" * 60  # > 100 bytes: ustar prefix, GNU 'L' or PAX path
    long_target = "t" * 90 if fmt == tarfile.USTAR_FORMAT else "t/" * 70
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for name in ("d" * 60, long_dir):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tf.addfile(info)
        info = tarfile.TarInfo(long_dir + "/file")
        info.size = 5
        info.uid = 1000
        tf.addfile(info, io.BytesIO(b"hello"))
        link = tarfile.TarInfo(long_dir + "/link")
        link.type = tarfile.SYMTYPE
        link.linkname = long_target
        tf.addfile(link)
    sb.apply(out.getvalue())
    assert (sb.root / long_dir / "file").read_bytes() == b"hello"
    assert readlink_raw(sb.root / long_dir / "link") == long_target
