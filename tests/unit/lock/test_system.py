"""Debian packages pinned at lock time: apt's --print-uris output, the lock round trip, reuse."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from mlpack.errors import LockError
from mlpack.lock.lockdata import Lock, SystemPackagePin, Target
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import dumps, loads, read_lock, write_lock
from mlpack.lock.system import SCRIPT, parse_pins, parse_uri_line, pin_system
from mlpack.oslib.binfmt import host_machine
from mlpack.vocabulary import MACHINES, PLATFORMS, BaseImage
from tests.unit.lock.fakes import PRINT_URIS, FakeAptImage, FakeBase, FakeResolver
from tests.unit.lock.test_locker import PINS, inputs

GOMP_SHA = "48fec46bda7f5b1638b9e959889bfbc20491247d402d120bb152687eb48143d7"
HOST = next(p for p in PLATFORMS if MACHINES[p] == host_machine())
BASE = BaseImage(
    reference="localhost/mlpack-base/python:3.11-bookworm",
    digest="sha256:" + "ab" * 32,
    provider="debian",
    python_full="3.11.2",
)


def test_a_print_uris_line_gives_name_version_arch_url_size_and_sha256() -> None:
    pin = parse_uri_line(PRINT_URIS, ("libgomp1",))
    assert pin == SystemPackagePin(
        name="libgomp1",
        version="12.2.0-14+deb12u1",
        architecture="amd64",
        url="http://deb.debian.org/debian/pool/main/g/gcc-12/libgomp1_12.2.0-14%2bdeb12u1_amd64.deb",
        size=115772,
        sha256=GOMP_SHA,
        requested=True,
    )
    assert pin.filename == "libgomp1_12.2.0-14+deb12u1_amd64.deb"


def test_an_epoch_is_read_back_from_apts_quoted_file_name() -> None:
    line = f"'http://m/pool/p/perl-base_5.36.0-7_amd64.deb' libx_1%3a2.0-1_amd64.deb 10 SHA256:{'0' * 64}"
    pin = parse_uri_line(line, ())
    assert (pin.name, pin.version, pin.requested) == ("libx", "1:2.0-1", False)
    assert pin.filename == "libx_1%3a2.0-1_amd64.deb"


@pytest.mark.parametrize(
    "line",
    [
        "'http://m/x.deb' libx_1.0_amd64.deb 10 MD5Sum:898439c6702dbfd9723d747fb99086d4",
        "'http://m/x.deb' libx_1.0_amd64.deb 10",
        "Reading package lists...",
        f"'http://m/x.deb' libx-1.0-amd64.deb 10 SHA256:{'0' * 64}",
    ],
)
def test_anything_but_a_sha256_uri_line_is_refused(line: str) -> None:
    with pytest.raises(LockError, match="unexpected output from apt-get --print-uris"):
        parse_uri_line(line, ())


def test_dependencies_are_pinned_and_a_package_the_base_has_keeps_its_version() -> None:
    dep = f"'http://m/pool/gcc-12-base_12.2.0-14_amd64.deb' gcc-12-base_12.2.0-14_amd64.deb 37 SHA256:{'1' * 64}\n"
    out = PRINT_URIS + dep + "--- installed ---\nii |python3|3.11.2-1+b1|amd64\n"
    pins = parse_pins(out, ("libgomp1", "python3"))
    assert [(p.name, p.version, p.requested, bool(p.url)) for p in pins] == [
        ("gcc-12-base", "12.2.0-14", False, True),
        ("libgomp1", "12.2.0-14+deb12u1", True, True),
        ("python3", "3.11.2-1+b1", True, False),  # in the base: no file to fetch
    ]


def test_a_name_apt_neither_installs_nor_finds_is_an_error() -> None:
    with pytest.raises(LockError, match="nope"):
        parse_pins(PRINT_URIS + "--- installed ---\n", ("libgomp1", "nope"))


def sample(system: tuple[SystemPackagePin, ...]) -> Lock:
    return Lock(
        input_hash="sha256:" + "e" * 64,
        resolver="uv",
        target=Target(python="3.11.2", platform="linux/amd64"),
        base=BASE,
        index_url="https://pypi.org/simple",
        system_packages=system,
    )


def test_the_lock_round_trips_every_pin_field() -> None:
    pins = parse_pins(
        PRINT_URIS + "--- installed ---\nii |python3|3.11.2-1+b1|amd64\n", ("libgomp1", "python3")
    )
    dep = dataclasses.replace(pins[0], name="gcc-12-base", requested=False)
    original = sample((dep, *pins))
    text = dumps(original)
    assert f'sha256 = "{GOMP_SHA}"' in text
    assert "size = 115772" in text
    assert "requested = false" in text
    again = loads(text)
    assert again == dataclasses.replace(
        original, system_packages=tuple(sorted((dep, *pins), key=lambda p: p.name))
    )
    assert dumps(again) == text


def test_pin_system_runs_apt_in_the_base_by_digest(tmp_path: Path) -> None:
    apt = FakeAptImage()
    pins = pin_system(
        ("libgomp1",),
        base=BASE,
        platform=HOST,
        previous=None,
        upgrade=False,
        image_runner=apt,
        workdir=tmp_path,
    )
    assert [(p.name, p.sha256) for p in pins] == [("libgomp1", GOMP_SHA)]
    assert apt.calls == [(BASE.digest, ("libgomp1",))]


def test_pins_are_kept_while_base_and_names_are_unchanged(tmp_path: Path) -> None:
    apt = FakeAptImage()
    first = pin_system(
        ("libgomp1",),
        base=BASE,
        platform=HOST,
        previous=None,
        upgrade=False,
        image_runner=apt,
        workdir=tmp_path,
    )
    previous = sample(first)
    kw = {"previous": previous, "image_runner": apt, "workdir": tmp_path}
    assert pin_system(("libgomp1",), base=BASE, platform=HOST, upgrade=False, **kw) == first  # type: ignore[arg-type]
    assert len(apt.calls) == 1
    pin_system(("libgomp1",), base=BASE, platform=HOST, upgrade=True, **kw)  # type: ignore[arg-type]
    newer = dataclasses.replace(BASE, digest="sha256:" + "cd" * 32)
    pin_system(("libgomp1",), base=newer, platform=HOST, upgrade=False, **kw)  # type: ignore[arg-type]
    assert len(apt.calls) == 3


def test_apt_failing_in_the_base_names_the_packages(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="cannot install nope") as info:
        pin_system(
            ("nope",), base=BASE, platform=HOST, previous=None, upgrade=False,
            image_runner=FakeAptImage(returncode=100), workdir=tmp_path,
        )  # fmt: skip
    assert "E: no such pkg" in info.value.message


def test_without_a_runner_system_packages_cannot_be_locked(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="cannot pin the system packages"):
        pin_system(
            ("libgomp1",), base=BASE, platform=HOST, previous=None, upgrade=False, image_runner=None,
            workdir=tmp_path,
        )  # fmt: skip


def test_a_lock_from_before_debian_pins_is_relocked(tmp_path: Path) -> None:
    more = inputs(system_packages=("libgomp1",))
    apt = FakeAptImage()
    kw = {"root": tmp_path, "home": tmp_path / "home", "base_resolver": FakeBase(),
          "resolver": FakeResolver(PINS), "image_runner": apt}  # fmt: skip
    lock(more, tmp_path / "mlpack.lock", **kw)  # type: ignore[arg-type]
    old = read_lock(tmp_path / "mlpack.lock")
    write_lock(
        tmp_path / "mlpack.lock",
        dataclasses.replace(old, system_packages=(SystemPackagePin(name="libgomp1"),)),
    )
    assert lock(more, tmp_path / "mlpack.lock", **kw).resolved  # type: ignore[arg-type]
    assert read_lock(tmp_path / "mlpack.lock").system_packages[0].sha256 == GOMP_SHA
    assert not lock(more, tmp_path / "mlpack.lock", **kw).resolved  # type: ignore[arg-type]


def _glib_line(name: str) -> str:
    return (
        f"'http://deb.debian.org/debian/pool/main/g/glib2.0/{name}_2.84.4-3_amd64.deb' "
        f"{name}_2.84.4-3_amd64.deb 1520000 SHA256:" + "c" * 64 + "\n"
    )


@pytest.mark.parametrize(
    ("requested", "installed"),
    [
        ("libglib2.0-0", "libglib2.0-0t64"),  # a Debian 12 name on a Debian 13 base
        ("libglib2.0-0t64", "libglib2.0-0"),  # the analysis's Debian 13 name on a Debian 12 base
        ("libglib2.0-0t64", "libglib2.0-0t64"),
    ],
)
def test_a_package_debian_13_renamed_is_found_by_either_name(
    requested: str, installed: str
) -> None:
    pins = parse_pins(_glib_line(installed) + "--- installed ---\n", (requested,))
    assert [(p.name, p.requested) for p in pins] == [(installed, True)]


def test_a_name_that_is_no_spelling_of_the_installed_package_is_missing() -> None:
    with pytest.raises(LockError, match=r"libglib2\.0-1"):
        parse_pins(_glib_line("libglib2.0-0t64") + "--- installed ---\n", ("libglib2.0-1",))


def test_apt_is_asked_for_both_spellings_and_pins_stay_across_them(tmp_path: Path) -> None:
    apt = FakeAptImage(stdout=_glib_line("libglib2.0-0") + "--- installed ---\n")
    first = pin_system(
        ("libglib2.0-0t64",), base=BASE, platform=HOST, previous=None, upgrade=False, image_runner=apt,
        workdir=tmp_path,
    )  # fmt: skip
    assert apt.calls == [(BASE.digest, ("libglib2.0-0t64|libglib2.0-0",))]
    kw = {"previous": sample(first), "image_runner": apt, "workdir": tmp_path}
    assert pin_system(("libglib2.0-0t64",), base=BASE, platform=HOST, upgrade=False, **kw) == first  # type: ignore[arg-type]
    assert pin_system(("libglib2.0-0",), base=BASE, platform=HOST, upgrade=False, **kw) == first  # type: ignore[arg-type]
    assert len(apt.calls) == 1


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("release_has", "installed"),
    [("libglib2.0-0", "libglib2.0-0"), ("libglib2.0-0t64", "libglib2.0-0t64")],
)
def test_the_apt_script_installs_the_spelling_the_release_has(
    tmp_path: Path, release_has: str, installed: str
) -> None:
    """The script in a shell, with apt stubbed: a Debian 12 or 13 archive."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "installed"
    _stub(bin_dir, "apt-cache", f'[ "$3" = "{release_has}" ] && echo "Package: $3"\nexit 0\n')
    _stub(bin_dir, "apt-get", f'[ "$1" = update ] || echo "$@" > {log}\n')
    _stub(bin_dir, "dpkg-query", "exit 1\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    argv = ["sh", "-c", SCRIPT, "sh", "libglib2.0-0t64|libglib2.0-0", "libgomp1"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split()[-2:] == [installed, "libgomp1"]
