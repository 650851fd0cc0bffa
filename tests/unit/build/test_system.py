"""The system-packages step with a fake runner: what the container reports becomes one layer."""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from pathlib import Path

import pytest

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.errors import BuildError
from mlpack.oci.store import Store
from mlpack.progress import RecordingReporter, using
from mlpack.spec import ImageSpec, SystemStep
from tests.unit.build.fakes import make_base, make_project, make_spec


class FakeApt:
    """Plays the container: writes changes.tar, the deleted list and the log where mounted."""

    def __init__(self, *, code: int = 0) -> None:
        self.code = code
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(
        self, *, image: str, argv: tuple[str, ...], mounts: tuple[tuple[str, Path], ...]
    ) -> int:
        self.calls.append((image, argv[4:]))
        where = dict(mounts)
        log = "Reading package lists...\nE: Unable to locate package nope\n"
        (where["/mlpack-log"] / "apt.log").write_text(log)
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
                ("var/log", 0o755, None),
                ("var/log/dpkg.log", 0o644, b"2026-12-07 installed\n"),
                ("var/lib/dpkg/status-old", 0o644, b"old"),
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


def spec_with_system(
    store: Store, tmp_path: Path, packages: tuple[tuple[str, str], ...]
) -> ImageSpec:
    spec = make_spec(make_base(store, tmp_path), ())
    return dataclasses.replace(spec, steps=(SystemStep(packages=packages), *spec.steps))


def layer_members(store: Store, digest: str) -> dict[str, tarfile.TarInfo]:
    data = gzip.decompress(store.blob_path(digest).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_container_diff_becomes_a_clean_layer(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    spec = spec_with_system(store, tmp_path, (("libx1", "1.2-3"), ("tool", "")))
    apt = FakeApt()
    result = EmbeddedBuilder(store, wheels={}, runner=apt).build(
        spec, context=make_project(tmp_path / "p"), tag="localhost/sys:1"
    )
    assert apt.calls == [(spec.base_digest, ("libx1=1.2-3", "tool"))]
    system = next(x for x in result.layers if x.step == "system")
    assert system.role == "system"
    members = layer_members(store, system.digest)
    assert members["usr/bin/helper"].mode == 0o4755  # a package's setuid bit is kept
    assert members["usr/lib/libx.so.1"].mtime == 1
    # Hygiene: logs and dpkg backups never reach the layer.
    assert "var/log/dpkg.log" not in members
    assert "var/lib/dpkg/status-old" not in members
    # Deletions are whiteouts, the top of a deleted tree only.
    assert "etc/.wh.old.conf" in members
    assert "etc/.wh.olddir" in members
    assert "etc/olddir/.wh.a" not in members


def test_the_system_layer_is_cached_by_base_and_packages(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    apt = FakeApt()
    project = make_project(tmp_path / "p")
    spec = spec_with_system(store, tmp_path, (("libx1", ""),))
    EmbeddedBuilder(store, wheels={}, runner=apt).build(spec, context=project, tag="a:1")
    again = EmbeddedBuilder(store, wheels={}, runner=apt).build(spec, context=project, tag="a:1")
    assert len(apt.calls) == 1
    assert next(x for x in again.layers if x.step == "system").cached
    other = spec_with_system(store, tmp_path, (("libx1", ""), ("liby", "")))
    EmbeddedBuilder(store, wheels={}, runner=apt).build(other, context=project, tag="a:2")
    assert len(apt.calls) == 2


def test_a_failed_install_names_the_packages_and_the_log(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    spec = spec_with_system(store, tmp_path, (("nope", "1.0"),))
    with pytest.raises(BuildError, match=r"nope=1\.0") as info:
        EmbeddedBuilder(store, wheels={}, runner=FakeApt(code=100)).build(
            spec, context=make_project(tmp_path / "p"), tag="a:1"
        )
    assert "Unable to locate package nope" in info.value.message
    assert "re-lock" in info.value.hint


def test_without_a_runner_the_step_is_skipped_with_a_notice(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    spec = spec_with_system(store, tmp_path, (("libx1", ""),))
    rep = RecordingReporter()
    with using(rep):
        result = EmbeddedBuilder(store, wheels={}).build(
            spec, context=make_project(tmp_path / "p"), tag="a:1"
        )
    assert result.skipped == ("system",)
    assert any("libx1" in n and "not installed" in n for n in rep.notices)
