"""The system-packages step with a fake runner: the lock's .deb files, verified, become one layer."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.build.system import fetch_debs
from mlpack.errors import BuildError
from mlpack.lock.lockdata import SystemPackagePin
from mlpack.oci.store import Store
from mlpack.paths import cache_folder
from mlpack.progress import RecordingReporter, using
from mlpack.spec import ImageSpec, SystemStep, commands
from tests.unit.build.fakes import make_base, make_project, make_spec
from tests.unit.lock.fakes import http_server


class FakeDpkg:
    """Plays the container: checks the mounts, writes changes.tar, the deleted list and the log."""

    def __init__(self, *, code: int = 0) -> None:
        self.code = code
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.seen: list[dict[str, bytes]] = []  # the .deb files as mounted, per call

    def __call__(
        self,
        *,
        image: str,
        argv: tuple[str, ...],
        mounts: tuple[tuple[str, Path], ...],
        readonly: tuple[tuple[str, Path], ...],
        network: bool,
    ) -> int:
        assert not network  # the install never reaches a mirror
        self.calls.append((image, argv[4:]))
        debs = dict(readonly)["/mlpack-debs"]
        self.seen.append({p.name: p.read_bytes() for p in debs.iterdir()})
        where = dict(mounts)
        log = "Selecting previously unselected package libx1.\ndpkg: error processing libx1\n"
        (where["/mlpack-log"] / "dpkg.log").write_text(log)
        if self.code:
            return self.code
        (where["/mlpack-log"] / "deleted").write_text("/etc/old.conf\n/etc/olddir\n/etc/olddir/a\n")
        with tarfile.open(where["/mlpack-out"] / "changes.tar", "w") as tar:
            for name, mode, data in (
                ("usr", 0o755, None),
                ("usr/bin", 0o755, None),
                ("usr/bin/helper", 0o4755, b"#!/bin/sh\n"),
                ("usr/lib/libx.so.1", 0o644, b"\x7fELF"),
                ("var", 0o755, None),
                ("var/log", 0o755, None),  # its files: left out by the script's hygiene
            ):
                info = tarfile.TarInfo(name)
                info.mode, info.mtime = mode, 1765000000
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return 0


def deb(name: str, version: str, data: bytes, *, url: str = "") -> SystemPackagePin:
    return SystemPackagePin(
        name=name,
        version=version,
        architecture="amd64",
        url=url or f"http://127.0.0.1:9/pool/{name}_{version}_amd64.deb",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def cached(store: Store, *pins_and_data: tuple[SystemPackagePin, bytes]) -> None:
    """Put the files where a fetch leaves them, so no download is needed."""
    for pin, data in pins_and_data:
        path = cache_folder("debs", home=store.root) / pin.sha256 / pin.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def spec_with_system(store: Store, tmp_path: Path, debs: tuple[SystemPackagePin, ...]) -> ImageSpec:
    spec = make_spec(make_base(store, tmp_path), ())
    return dataclasses.replace(spec, steps=(SystemStep(debs=debs), *spec.steps))


def layer_members(store: Store, digest: str) -> dict[str, tarfile.TarInfo]:
    data = gzip.decompress(store.blob_path(digest).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_pinned_debs_are_installed_offline_into_a_clean_layer(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    libx, tool = deb("libx1", "1:1.2-3", b"libx deb"), deb("tool", "2.0", b"tool deb")
    cached(store, (libx, b"libx deb"), (tool, b"tool deb"))
    spec = spec_with_system(store, tmp_path, (libx, tool))
    dpkg = FakeDpkg()
    result = EmbeddedBuilder(store, wheels={}, runner=dpkg).build(
        spec, context=make_project(tmp_path / "p"), tag="localhost/sys:1"
    )
    # One dpkg run with every file, by apt's file name (an epoch's colon quoted).
    files = ("/mlpack-debs/libx1_1%3a1.2-3_amd64.deb", "/mlpack-debs/tool_2.0_amd64.deb")
    assert dpkg.calls == [(spec.base_digest, files)]
    assert dpkg.seen == [
        {"libx1_1%3a1.2-3_amd64.deb": b"libx deb", "tool_2.0_amd64.deb": b"tool deb"}
    ]
    system = next(x for x in result.layers if x.step == "system")
    assert system.role == "system"
    members = layer_members(store, system.digest)
    assert members["usr/bin/helper"].mode == 0o4755  # a package's setuid bit is kept
    assert members["usr/lib/libx.so.1"].mtime == 1
    assert "var/log" in members
    # Deletions are whiteouts, the top of a deleted tree only.
    assert "etc/.wh.old.conf" in members
    assert "etc/.wh.olddir" in members
    assert "etc/olddir/.wh.a" not in members


# What dpkg leaves in a container that varies between runs, and what it installs.
VARYING = (
    "/var/log/dpkg.log",
    "/var/log/apt/eipp.log.xz",
    "/var/lib/dpkg/status-old",
    "/var/cache/debconf/config.dat-old",
    "/var/cache/ldconfig/aux-cache",
    "/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
    "/var/cache/apt/pkgcache.bin",
    "/root/.cache",
    "/root/.cache/pip/x",
    "/root/.wget-hsts",
    "/usr/lib/python3/dist-packages/yaml/__pycache__",
    "/usr/lib/python3/dist-packages/yaml/__pycache__/x.cpython-311.pyc",
    "/etc/machine-id",
)
KEPT = (
    "/var/log",
    "/var/cache/ldconfig",
    "/var/lib/dpkg/status",
    "/var/lib/dpkg/info/libx1:amd64.list",
    "/usr/lib/x86_64-linux-gnu/libgomp.so.1",
    "/etc/machine-id.d",
    "/usr/share/doc/logrotate/var/log/x",
)


def test_the_install_script_leaves_what_varies_out_of_the_layer() -> None:
    """Both builders run SYSTEM_SCRIPT, so its filter is the one hygiene rule of the step: the
    base rootfs's SCRUB list (the same list), ``__pycache__`` and machine-id, run here through
    the host's ``grep -E`` as the script runs it.
    """
    assert f"grep -Ev '{commands.HYGIENE}'" in commands.SYSTEM_SCRIPT
    proc = subprocess.run(
        ["grep", "-Ev", commands.HYGIENE],
        input="".join(f"{p}\n" for p in (*VARYING, *KEPT)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.splitlines() == list(KEPT)


def test_the_system_layer_is_cached_by_base_and_deb_hashes(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    dpkg = FakeDpkg()
    project = make_project(tmp_path / "p")
    one, other = deb("libx1", "1.0", b"one"), deb("libx1", "1.0", b"rebuilt")
    cached(store, (one, b"one"), (other, b"rebuilt"))
    spec = spec_with_system(store, tmp_path, (one,))
    EmbeddedBuilder(store, wheels={}, runner=dpkg).build(spec, context=project, tag="a:1")
    again = EmbeddedBuilder(store, wheels={}, runner=dpkg).build(spec, context=project, tag="a:1")
    assert len(dpkg.calls) == 1
    assert next(x for x in again.layers if x.step == "system").cached
    # Same name and version, other bytes: another layer.
    changed = spec_with_system(store, tmp_path, (other,))
    EmbeddedBuilder(store, wheels={}, runner=dpkg).build(changed, context=project, tag="a:2")
    assert len(dpkg.calls) == 2


def test_a_failed_install_names_the_packages_and_the_log(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    pin = deb("libx1", "1.0", b"x")
    cached(store, (pin, b"x"))
    spec = spec_with_system(store, tmp_path, (pin,))
    with pytest.raises(BuildError, match=r"libx1=1\.0") as info:
        EmbeddedBuilder(store, wheels={}, runner=FakeDpkg(code=1)).build(
            spec, context=make_project(tmp_path / "p"), tag="a:1"
        )
    assert "dpkg: error processing libx1" in info.value.message
    assert "mlpack lock --upgrade" in info.value.hint


def test_without_a_runner_the_step_is_skipped_with_a_notice(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    spec = spec_with_system(store, tmp_path, (deb("libx1", "1.0", b"x"),))
    rep = RecordingReporter()
    with using(rep):
        result = EmbeddedBuilder(store, wheels={}).build(
            spec, context=make_project(tmp_path / "p"), tag="a:1"
        )
    assert result.skipped == ("system",)
    assert any("libx1" in n and "not installed" in n for n in rep.notices)


def test_fetch_downloads_verifies_and_caches_by_hash(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    (mirror / "pool").mkdir(parents=True)
    (mirror / "pool" / "libx1_1.0_amd64.deb").write_bytes(b"the deb")
    cache = tmp_path / "cache"
    with http_server(mirror) as url:
        pin = deb("libx1", "1.0", b"the deb", url=f"{url}/pool/libx1_1.0_amd64.deb")
        (path,) = fetch_debs((pin,), cache=cache)
        assert path == cache / pin.sha256 / "libx1_1.0_amd64.deb"
        assert path.read_bytes() == b"the deb"
    # Cached: no mirror needed; a damaged copy is fetched again (here: no mirror, so it fails).
    assert fetch_debs((pin,), cache=cache) == (path,)
    path.write_bytes(b"the bad")
    with pytest.raises(BuildError):
        fetch_debs((pin,), cache=cache)
    assert not path.exists()


def test_a_version_gone_from_the_mirror_names_it_and_how_to_relock(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    with http_server(tmp_path / "mirror") as url:
        pin = deb("libx1", "1.0", b"x", url=f"{url}/pool/libx1_1.0_amd64.deb")
        with pytest.raises(BuildError) as info:
            fetch_debs((pin,), cache=tmp_path / "cache")
    assert "libx1 1.0 (amd64) has left the mirror" in info.value.message
    assert "404" in info.value.message
    assert "mlpack lock --upgrade" in info.value.hint


def test_a_hash_mismatch_names_the_file_and_keeps_nothing(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "libx1_1.0_amd64.deb").write_bytes(b"tampered")
    with http_server(mirror) as url:
        pin = dataclasses.replace(
            deb("libx1", "1.0", b"original", url=f"{url}/libx1_1.0_amd64.deb"), size=8
        )
        with pytest.raises(BuildError) as info:
            fetch_debs((pin,), cache=tmp_path / "cache")
    assert "libx1_1.0_amd64.deb" in info.value.message
    assert "sha256" in info.value.message
    assert not list((tmp_path / "cache").rglob("*.deb"))
