"""A foreign base's Debian packages are pinned by the host's apt on its files, executing none."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from mlpack.errors import LockError
from mlpack.lock import system
from mlpack.lock.host_apt import HostAptRunner, apt_config, rooted_sources
from mlpack.lock.runner import Completed
from mlpack.lock.system import parse_pins, pin_system
from mlpack.progress import RecordingReporter, using
from mlpack.vocabulary import BaseImage
from tests.unit.lock.fakes import PRINT_URIS, FakeAptImage

BASE = BaseImage(
    reference="localhost/mlpack-base/python:3.11-bookworm-arm64",
    digest="sha256:" + "ab" * 32,
    provider="debian",
    python_full="3.11.2",
)


def test_apt_is_pointed_at_the_bases_arch_status_sources_and_keys(tmp_path: Path) -> None:
    text = apt_config(Path("/r"), arch="arm64", state=tmp_path)
    assert 'APT::Architecture "arm64";' in text
    assert 'APT::Architectures { "arm64"; };' in text
    assert 'Dir::State::status "/r/var/lib/dpkg/status";' in text
    assert f'Dir::Etc::sourcelist "{tmp_path}/sources.list";' in text
    assert 'Dir::Etc::trustedparts "/r/etc/apt/trusted.gpg.d";' in text
    assert f'Dir::State::lists "{tmp_path}/lists";' in text


def test_the_sources_trust_the_bases_own_keyring(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc/apt/sources.list.d").mkdir(parents=True)
    (rootfs / "usr/share/keyrings").mkdir(parents=True)
    (rootfs / "usr/share/keyrings/debian-archive-keyring.pgp").write_bytes(b"key")
    (rootfs / "etc/apt/sources.list").write_text(
        "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.pgp] http://d/debian trixie main\n"
        "deb [signed-by=/usr/share/keyrings/absent.gpg] http://x/debian trixie main\n"
    )
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.pgp\n"
    )
    rooted_sources(rootfs, tmp_path / "state")
    key = rootfs / "usr/share/keyrings/debian-archive-keyring.pgp"
    one_line = (tmp_path / "state/sources.list").read_text()
    assert f"signed-by={key}]" in one_line
    assert "signed-by=/usr/share/keyrings/absent.gpg]" in one_line  # not in the base: kept
    deb822 = (tmp_path / "state/sources.list.d/debian.sources").read_text()
    assert f"Signed-By: {key}\n" in deb822


def test_the_host_runner_hands_apt_and_dpkg_query_the_base(tmp_path: Path) -> None:
    runner = HostAptRunner(tmp_path / "rootfs", arch="arm64", state=tmp_path / "state")
    done = runner.run(
        ("sh", "-c", 'echo "$APT_CONFIG|$DPKG_ADMINDIR"'), cwd=tmp_path, env={"X": "1"}
    )
    config, admindir = done.stdout.strip().split("|")
    assert 'APT::Architecture "arm64";' in Path(config).read_text()
    assert admindir == str(tmp_path / "rootfs" / "var/lib/dpkg")


class FakeHostApt:
    """Stands in for the host's apt: answers the pin script with one download."""

    made: ClassVar[list[tuple[Path, str]]] = []

    def __init__(self, rootfs: Path, *, arch: str, state: Path) -> None:
        FakeHostApt.made.append((rootfs, arch))

    def run(self, argv: Any, *, cwd: Path, env: Any) -> Completed:
        return Completed(returncode=0, stdout=PRINT_URIS + "--- installed ---\n", stderr="")


@pytest.fixture
def no_emulation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "can_run", lambda machine: machine != "aarch64")
    monkeypatch.setattr(system, "HostAptRunner", FakeHostApt)
    FakeHostApt.made = []


@pytest.mark.usefixtures("no_emulation")
def test_a_foreign_base_is_pinned_by_the_host_apt_and_nothing_runs_in_it(tmp_path: Path) -> None:
    in_image = FakeAptImage()
    rep = RecordingReporter()
    with using(rep):
        pins = pin_system(
            ("libgomp1",), base=BASE, platform="linux/arm64", previous=None, upgrade=False,
            image_runner=in_image, base_rootfs=lambda image: tmp_path / image, workdir=tmp_path,
        )  # fmt: skip
    assert [p.name for p in pins] == ["libgomp1"]
    assert in_image.calls == []  # nothing executed in the arm64 base
    assert FakeHostApt.made == [(tmp_path / BASE.digest, "arm64")]
    # The pin must be installed by dpkg at build time: the lock says that needs emulation.
    assert any("qemu-user-static" in n and "libgomp1" in n for n in rep.notices)


@pytest.mark.usefixtures("no_emulation")
def test_the_host_platform_still_runs_apt_in_the_base(tmp_path: Path) -> None:
    in_image = FakeAptImage()
    pin_system(
        ("libgomp1",), base=BASE, platform="linux/amd64", previous=None, upgrade=False,
        image_runner=in_image, base_rootfs=lambda image: tmp_path, workdir=tmp_path,
    )  # fmt: skip
    assert len(in_image.calls) == 1
    assert FakeHostApt.made == []


@pytest.mark.usefixtures("no_emulation")
def test_a_foreign_base_without_its_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="linux/arm64 system packages") as info:
        pin_system(
            ("libgomp1",), base=BASE, platform="linux/arm64", previous=None, upgrade=False,
            image_runner=FakeAptImage(), workdir=tmp_path,
        )  # fmt: skip
    assert "qemu-user-static binfmt-support" in info.value.hint


def test_a_package_unpacked_in_the_base_is_pinned_as_present() -> None:
    out = "--- installed ---\niU |libgomp1|12.2.0-14+deb12u1|arm64\n"
    (pin,) = parse_pins(out, ("libgomp1",))
    assert (pin.name, pin.architecture, pin.url) == ("libgomp1", "arm64", "")
