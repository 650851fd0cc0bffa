"""The evil-tar corpus (SECURITY-AND-ISOLATION.md §10): each case is a clear error or a no-op."""

from __future__ import annotations

import ast
import gzip
import io
import os
import stat
import subprocess
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from mlpack.errors import ImageError
from mlpack.oci import mediatypes
from mlpack.oci.digest import sha256_digest
from mlpack.oci.layer_applier import apply_layer
from mlpack.oci.layer_stream import ExpansionLimit
from tests.conftest import require
from tests.unit.oci._sandbox import (
    EVIL_DIR,
    NOBODY,
    Sandbox,
    load_corpus,
    make_sandbox,
    nobody_dir,
    readlink_raw,
    run_rootless,
    sandbox_fixture,
    setpriv_available,
    untouched,
)
from tests.unit.source_scan import called_name, calls

corpus = load_corpus()
COMMITTED = corpus.make_cases()


sb = pytest.fixture(params=["openat2", "walk"])(sandbox_fixture)


def evil(name: str) -> bytes:
    return (EVIL_DIR / f"{name}.tar").read_bytes()


def local(sb: Sandbox, name: str) -> bytes:
    """The case rebuilt with symlinks aimed at this test's real sentinel directory."""
    data: bytes = corpus.make_cases(os.fsencode(sb.outside))[name]
    return data


def test_committed_corpus_matches_the_generator() -> None:
    on_disk = {p.stem for p in EVIL_DIR.glob("*.tar")}
    assert on_disk == set(COMMITTED)
    for name, data in COMMITTED.items():
        assert evil(name) == data, f"{name}.tar is stale: run make_corpus.py"


REJECTED = {
    "path_dotdot": "'..'",
    "path_nested_dotdot": "'..'",
    "path_nul": "NUL",
    "symlink_empty_name": "names the root",
    "symlink_empty_chain": "empty target",
    "hardlink_outside": "'..'",
    "hardlink_symlink": "not a file",
    "hardlink_missing": "missing path",
    "hardlink_dir": "not a file",
    "whiteout_empty": "invalid whiteout",
    "whiteout_dot": "invalid whiteout",
    "whiteout_dotdot": "invalid whiteout",
    "whiteout_whwh": "invalid whiteout",
    "pax_64k": "extended header",
    "path_too_long": "6001-byte name",
    "size_negative": "negative size",
    "size_past_end": "truncated",
    "bad_checksum": "checksum",
    "pax_uid_huge": "out-of-range uid",
    "pax_mtime_huge": "out-of-range mtime",
    "mtime_negative_base256": r"out-of-range mtime \(-1237940039285380274899124224\)",
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_cases(sb: Sandbox, name: str) -> None:
    with untouched(sb), pytest.raises(ImageError, match=REJECTED[name]) as info:
        sb.apply(evil(name))
    assert info.value.hint


@pytest.mark.parametrize("name", ["hardlink_symlink", "hardlink_via_symlink_parent"])
def test_hardlinks_never_reach_the_real_sentinel(sb: Sandbox, name: str) -> None:
    with untouched(sb), pytest.raises(ImageError, match="hard link"):
        sb.apply(local(sb, name))
    assert (sb.outside / "sentinel").stat().st_nlink == 1


def test_global_pax_header_is_ignored(sb: Sandbox) -> None:
    """moby and Go ignore a ``g`` header: its ``path`` renames nothing (issue 10 item 8)."""
    with untouched(sb):
        result = sb.apply(evil("pax_global_path"))
    assert sorted(p.name for p in sb.root.iterdir()) == ["a", "b"]
    assert (sb.root / "a").read_bytes() == b"1"
    assert result.entries == 2


def test_absolute_path_lands_inside_root(sb: Sandbox) -> None:
    with untouched(sb):
        sb.apply(evil("path_absolute"))
    assert (sb.root / "etc" / "passwd").read_text().startswith("root:")


@pytest.mark.parametrize("variant", ["committed", "real-sentinel"])
def test_symlink_then_write_through_stays_in_root(sb: Sandbox, variant: str) -> None:
    data = evil("symlink_escape_abs") if variant == "committed" else local(sb, "symlink_escape_abs")
    target = Path("/outside") if variant == "committed" else sb.outside
    with untouched(sb):
        sb.apply(data)
    # Chroot semantics: the absolute target resolves under the root.
    assert (sb.root / target.relative_to("/") / "x").read_text() == "through"
    assert readlink_raw(sb.root / "etc") == str(target)


def test_relative_symlink_escape_clamps_at_root(sb: Sandbox) -> None:
    with untouched(sb):
        sb.apply(evil("symlink_escape_rel"))
    assert (sb.root / "x").read_text() == "through"


def test_root_symlink_then_later_layer(sb: Sandbox) -> None:
    with untouched(sb):
        sb.apply(evil("symlink_root"))
        sb.apply(evil("symlink_root_write"))
    assert (sb.root / "etc" / "x").read_text() == "2"
    assert readlink_raw(sb.root / "rootlink") == "/."


def test_type_swaps(sb: Sandbox) -> None:
    with untouched(sb):
        sb.apply(local(sb, "type_swap"))
    assert (sb.root / "a").is_symlink()
    assert (sb.root / sb.outside.relative_to("/") / "g").read_text() == "through"
    assert (sb.root / "b").is_dir()
    assert (sb.root / "b" / "c").read_text() == "in dir"


def test_whiteout_of_missing_path_is_a_noop(sb: Sandbox) -> None:
    with untouched(sb):
        result = sb.apply(evil("whiteout_missing"))
    assert result.entries == 1
    assert list(sb.root.iterdir()) == []


def test_whiteout_through_symlinked_parent_stays_in_root(sb: Sandbox) -> None:
    with untouched(sb):
        sb.apply(local(sb, "whiteout_via_symlink"))
    assert (sb.outside / "sentinel").exists()


def test_opaque_marker_after_siblings_keeps_them(sb: Sandbox) -> None:
    (sb.root / "d").mkdir()
    (sb.root / "d" / "old").write_text("lower layer")
    (sb.root / "d" / "olddir").mkdir()
    (sb.root / "d" / "olddir" / "f").write_text("lower layer")
    with untouched(sb):
        sb.apply(evil("opaque_after_siblings"))
    assert sorted(p.name for p in (sb.root / "d").iterdir()) == ["new"]
    assert (sb.root / "d" / "new").read_text() == "this layer"


def test_devices_and_fifos_are_dropped_by_default(sb: Sandbox) -> None:
    with untouched(sb):
        result = sb.apply(evil("devices"), rootless=False)
    assert result.skipped == ("null", "sda", "fifo")
    assert list(sb.root.iterdir()) == []


@pytest.mark.root
def test_devices_kept_when_rootful_and_asked(sb: Sandbox) -> None:
    require(os.geteuid() == 0, "root")
    with untouched(sb):
        result = sb.apply(evil("devices"), rootless=False, keep_devices=True)
    assert result.skipped == ()
    assert stat.S_ISCHR((sb.root / "null").lstat().st_mode)
    assert stat.S_ISFIFO((sb.root / "fifo").lstat().st_mode)


def test_setuid_is_stripped_by_default(sb: Sandbox) -> None:
    with untouched(sb):
        sb.apply(evil("setuid_root"))
    assert stat.S_IMODE((sb.root / "su").stat().st_mode) == 0o755


def test_setuid_kept_on_request(sb: Sandbox) -> None:
    sb.apply(evil("setuid_root"), keep_setid=True, rootless=False)
    assert stat.S_IMODE((sb.root / "su").stat().st_mode) == 0o6755


def test_xattr_allowlist(sb: Sandbox) -> None:
    probe = sb.base / "xattr-probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        pytest.skip("the temp filesystem has no user xattrs")
    finally:
        probe.unlink()
    with untouched(sb):
        sb.apply(evil("xattrs"))
    names = set(os.listxattr(sb.root / "capfile"))
    assert "user.ok" in names
    assert os.getxattr(sb.root / "capfile", "user.ok") == b"fine"
    assert not names & {"security.capability", "trusted.evil", "user.overlay.opaque"}


def test_gzip_bomb_is_capped(sb: Sandbox) -> None:
    bomb = corpus.gzip_bomb(64 << 20)
    assert len(bomb) < 128 << 10
    with untouched(sb), pytest.raises(ImageError, match="decompression bomb"):
        sb.apply(bomb, media_type=mediatypes.OCI_LAYER_GZIP, max_bytes=8 << 20)


def test_gzip_bomb_is_stopped_by_the_expansion_ratio(tmp_path: Path) -> None:
    """32 KiB that inflate to 32 MiB: over 10x plus a 1 MiB floor (issue 10 item 11)."""
    bomb = corpus.gzip_bomb(32 << 20)
    sb = make_sandbox(tmp_path / "a")
    tight = ExpansionLimit(ratio=10, floor=1 << 20)
    with untouched(sb), pytest.raises(ImageError, match="10x its") as info:
        sb.apply(bomb, media_type=mediatypes.OCI_LAYER_GZIP, expansion=tight)
    assert "MLPACK_MAX_LAYER_EXPANSION" in info.value.hint
    roomy = ExpansionLimit(ratio=10_000, floor=1 << 20)
    loose = make_sandbox(tmp_path / "b")
    result = loose.apply(bomb, media_type=mediatypes.OCI_LAYER_GZIP, expansion=roomy)
    assert (loose.root / "zeros").stat().st_size == 32 << 20
    assert result.bytes_written == 32 << 20


def test_expansion_ratio_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPACK_MAX_LAYER_EXPANSION", "7")
    assert ExpansionLimit.from_env() == ExpansionLimit(ratio=7)
    monkeypatch.setenv("MLPACK_MAX_LAYER_EXPANSION", "lots")
    with pytest.raises(ImageError, match="MLPACK_MAX_LAYER_EXPANSION"):
        ExpansionLimit.from_env()
    monkeypatch.delenv("MLPACK_MAX_LAYER_EXPANSION")
    assert ExpansionLimit.from_env() == ExpansionLimit(ratio=100, floor=1 << 30)


def test_layer_larger_than_the_free_space_is_stopped(tmp_path: Path) -> None:
    """On a 24 MiB filesystem a 48 MiB layer stops with a clear error, not ENOSPC midway."""
    require(os.geteuid() == 0, "root (to mount a small tmpfs)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        sb = make_sandbox(mnt / "base")
        with pytest.raises(ImageError, match="free space of the filesystem") as info:
            sb.apply(corpus.gzip_bomb(48 << 20), media_type=mediatypes.OCI_LAYER_GZIP)
        assert "free disk space" in info.value.hint
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_entry_count_is_capped(sb: Sandbox) -> None:
    data = corpus.entries_tar(300)
    with untouched(sb), pytest.raises(ImageError, match="more than 100 entries"):
        sb.apply(data, max_entries=100)


def test_pax_header_cap_can_be_raised_for_trusted_layers(sb: Sandbox) -> None:
    result = sb.apply(evil("pax_64k"), max_header_bytes=1 << 20)
    assert result.entries == 1
    assert (sb.root / "f").read_bytes() == b"x"


class _Endless(io.RawIOBase):
    """A blob that never ends; counts what the applier read."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = len(buffer)
        chunk = (self.prefix[self.served : self.served + n]).ljust(n, b"\0")
        buffer[:n] = chunk
        self.served += n
        return n


def test_reading_stops_one_byte_past_the_descriptor(sb: Sandbox) -> None:
    blob = _Endless(corpus.file(b"f", b"data"))
    with untouched(sb), pytest.raises(ImageError, match="larger than its descriptor"):
        apply_layer(
            cast("BinaryIO", blob), sb.root, media_type=mediatypes.OCI_LAYER, expected_size=4096
        )
    assert blob.served == 4097


GOOD = corpus.file(b"f", b"data") + corpus.end()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"expected_size": len(GOOD) - 1}, "larger than its descriptor"),
        ({"expected_size": len(GOOD) + 1}, "descriptor says"),
        ({"expected_size": -1}, "negative size"),
        ({"expected_digest": sha256_digest(b"other")}, "digest mismatch"),
        ({"expected_diff_id": sha256_digest(b"other")}, "diff_id mismatch"),
        ({"expected_digest": "sha256:xyz"}, "malformed"),
        ({"expected_digest": "md5:" + "0" * 32}, "unsupported digest algorithm"),
        ({"media_type": ""}, "no mediaType"),
        ({"media_type": mediatypes.OCI_LAYER_NONDIST_GZIP}, "unsupported layer media type"),
        ({"media_type": mediatypes.OCI_MANIFEST}, "unsupported layer media type"),
    ],
)
def test_descriptor_mismatches(sb: Sandbox, kwargs: dict[str, object], match: str) -> None:
    with untouched(sb), pytest.raises(ImageError, match=match):
        sb.apply(GOOD, **kwargs)


def test_matching_descriptor_is_accepted(sb: Sandbox) -> None:
    blob = gzip.compress(GOOD)
    result = sb.apply(
        blob,
        media_type=mediatypes.OCI_LAYER_GZIP,
        expected_size=len(blob),
        expected_digest=sha256_digest(blob),
        expected_diff_id=sha256_digest(GOOD),
    )
    assert (result.digest, result.diff_id, result.size) == (
        sha256_digest(blob),
        sha256_digest(GOOD),
        len(blob),
    )
    assert result.bytes_written == 4


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (gzip.compress(GOOD)[:-20], "truncated"),
        (gzip.compress(GOOD) + b"garbage", "trailing data"),
        (b"\x1f\x8b" + b"\0" * 40, "not valid gzip"),
        (b"\x28\xb5\x2f\xfd" + b"\0" * 40, "zstd"),
    ],
    ids=["truncated", "trailing", "corrupt", "zstd"],
)
def test_broken_compression(sb: Sandbox, blob: bytes, match: str) -> None:
    with untouched(sb), pytest.raises(ImageError, match=match):
        sb.apply(blob, media_type=mediatypes.OCI_LAYER_GZIP)


def test_multi_member_gzip_is_one_stream(sb: Sandbox) -> None:
    half = len(GOOD) // 2
    blob = gzip.compress(GOOD[:half]) + gzip.compress(GOOD[half:])
    result = sb.apply(blob, media_type=mediatypes.OCI_LAYER_GZIP)
    assert result.diff_id == sha256_digest(GOOD)
    assert (sb.root / "f").read_bytes() == b"data"


@pytest.mark.root
def test_rootless_child_applies_the_corpus_safely() -> None:
    """The same cases, applied by a process whose euid is not 0 (tests run as root in CI)."""
    require(setpriv_available(), "root and setpriv (to start an unprivileged child)")
    names = ["devices", "setuid_root", "symlink_escape_abs", "hardlink_symlink", "path_dotdot"]
    with nobody_dir() as base:
        sb = make_sandbox(base)
        jobs = []
        for name in names:
            root = sb.root / name
            root.mkdir()
            os.chown(root, NOBODY, NOBODY)
            jobs.append(
                {
                    "blob": str(EVIL_DIR / f"{name}.tar"),
                    "root": str(root),
                    "media_type": mediatypes.OCI_LAYER,
                }
            )
        with untouched(sb):
            report = run_rootless(jobs)
        assert report["euid"] == NOBODY
        results = dict(zip(names, report["results"], strict=True))
        assert results["devices"] == {"ok": True, "skipped": ["null", "sda", "fifo"], "entries": 3}
        assert stat.S_IMODE((sb.root / "setuid_root" / "su").stat().st_mode) == 0o755
        assert (sb.root / "setuid_root" / "su").stat().st_uid == NOBODY
        assert (sb.root / "symlink_escape_abs" / "outside" / "x").read_text() == "through"
        assert not results["hardlink_symlink"]["ok"]
        assert "'..'" in results["path_dotdot"]["error"]


def test_endless_extended_headers_are_capped(sb: Sandbox) -> None:
    record = corpus.pax(corpus.pax_record(b"comment", b"y" * 30_000))
    data = record * 10 + corpus.file(b"f") + corpus.end()
    with untouched(sb), pytest.raises(ImageError, match="too many extended headers"):
        sb.apply(data)
    many_globals = corpus.header(b"g", typeflag=b"g", size=30_000) + corpus.pad(
        b"9 a=bbbb\n".ljust(30_000, b"\0")
    )
    with untouched(sb), pytest.raises(ImageError, match="too many extended headers"):
        sb.apply(many_globals * 5 + corpus.end())


def test_nothing_extracts_with_tarfile() -> None:
    """§8: never ``tarfile``'s ``extractall``/``extract``, with a filter or without."""
    assert [at for at, call in calls() if called_name(call) in ("extractall", "extract")] == []


def _tarfile_modes() -> list[tuple[str, object]]:
    """(``path:line``, mode) of every ``tarfile.open`` call; a mode that is not a literal fails."""
    found: list[tuple[str, object]] = []
    for at, call in calls():
        if called_name(call) == "open" and ast.unparse(call.func).startswith("tarfile."):
            mode = next((k.value for k in call.keywords if k.arg == "mode"), None)
            assert isinstance(mode, ast.Constant), at
            found.append((at, mode.value))
    return found


def test_tarfile_reads_only_as_a_stream() -> None:
    """§8: ``tarfile`` may only parse headers as a stream (``r|``, ``r|*``), or write."""
    modes = _tarfile_modes()
    assert modes
    for at, mode in modes:
        assert isinstance(mode, str), at
        assert mode == "w" or mode.startswith("r|"), at


def test_image_archives_are_never_parsed_with_tarfile() -> None:
    """§8 CVE-2024-6232: no archive anywhere in mlpack/ (imported tarball, pulled or stored
    layer) is read by ``tarfile``: ``tar_reader`` parses them all, and ``tarfile`` only writes
    (the export, the docker build context), so that CVE's header parser never sees one."""
    modes = _tarfile_modes()
    assert modes == [(at, "w") for at, _ in modes]
    assert any(at.startswith("mlpack/oci/archive.py:") for at, _ in modes)
    assert [at for at, call in calls() if called_name(call) == "extractfile"] == []


def test_layers_are_decompressed_and_applied_in_process(
    sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§9 "image content run on the host": no helper program (gzip, tar, unpigz) ever sees a
    layer, so none of the image's bytes, env or labels can steer one."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a process was started: {args!r}")

    for name in ("fork", "posix_spawn", "posix_spawnp", "execv", "execve", "system"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    sb.apply(gzip.compress(GOOD), media_type=mediatypes.OCI_LAYER_GZIP)
    assert (sb.root / "f").read_bytes() == b"data"
