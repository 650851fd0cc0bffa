from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mlpack.errors import LockError
from mlpack.lock.files import choose_file, release_files
from mlpack.lock.indexes import Indexes
from mlpack.lock.lockdata import Lock, LockedFile, LockedPackage, Target
from mlpack.lock.wheelhouse import cached_path, download, fetch
from mlpack.vocabulary import BaseImage
from tests.conftest import require
from tests.unit.lock.fakes import http_server, make_wheel, sha256_of, write_simple_index


def test_choose_file_prefers_the_targets_best_wheel() -> None:
    names = (
        "numpy-2.0.0-cp311-cp311-win_amd64.whl",
        "numpy-2.0.0-cp311-cp311-musllinux_1_1_x86_64.whl",
        "numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "numpy-2.0.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "numpy-2.0.0.tar.gz",
    )
    assert choose_file(names, "3.11.2", "linux/amd64") == names[3]
    assert choose_file(names, "3.11.2", "linux/arm64") == names[4]
    # no wheel for the target: the sdist (built inside the image)
    assert choose_file(names, "3.10.13", "linux/amd64") == "numpy-2.0.0.tar.gz"
    # a wheel needing a newer glibc than the base's 2.36 is not usable
    assert (
        choose_file(("x-1-cp311-cp311-manylinux_2_39_x86_64.whl",), "3.11.2", "linux/amd64") is None
    )
    assert (
        choose_file(("x-1-py3-none-any.whl", "x-1.tar.gz"), "3.13.1", "linux/arm64")
        == "x-1-py3-none-any.whl"
    )


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    built = tmp_path / "built"
    wheels = [
        make_wheel(built, "alpha", "1.0"),
        make_wheel(built, "beta", "2.0", tag="cp311-cp311-manylinux_2_17_x86_64"),
        make_wheel(built, "beta", "2.0", tag="cp311-cp311-win_amd64"),
    ]
    sdist = built / "gamma-3.0.tar.gz"
    sdist.write_bytes(b"not really a tarball, but hashed all the same")
    root = tmp_path / "srv"
    write_simple_index(root / "simple", [*wheels, sdist])
    with http_server(root) as url:
        yield url + "/simple", {p.name: sha256_of(p) for p in [*wheels, sdist]}


def make_lock(hashes: dict[str, str], index_url: str, *, named: bool = True) -> Lock:
    def pkg(name: str, version: str) -> LockedPackage:
        mine = {f: h for f, h in hashes.items() if f.startswith(f"{name}-")}
        files = tuple(LockedFile(name=f, sha256=h) for f, h in mine.items()) if named else ()
        return LockedPackage(name=name, version=version, hashes=tuple(mine.values()), files=files)

    return Lock(
        input_hash="sha256:x",
        resolver="uv",
        target=Target(python="3.11.2", platform="linux/amd64"),
        base=BaseImage(reference="r", digest="d", provider="registry", python_full="3.11.2"),
        index_url=index_url,
        packages=(
            pkg("alpha", "1.0"),
            pkg("beta", "2.0"),
            pkg("gamma", "3.0"),
            LockedPackage(
                name="mylib",
                version="",
                kind="vcs",
                url="git+https://x/y@" + "a" * 40,
                build="image",
            ),
        ),
    )


def test_fetch_downloads_target_files_verified_and_content_addressed(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, hashes = index
    home = tmp_path / "home"
    house = fetch(make_lock(hashes, url), home=home)
    names = sorted(f.filename for f in house.files)
    assert names == [
        "alpha-1.0-py3-none-any.whl",
        "beta-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "gamma-3.0.tar.gz",
    ]
    for f in house.files:
        assert f.path == home / "wheelhouse" / "sha256" / f.sha256 / f.filename
        assert sha256_of(f.path) == f.sha256
    assert house.to_build == ("gamma", "mylib")
    assert house.downloaded == 3
    # a second fetch needs no network: the index is gone and nothing is downloaded
    again = fetch(make_lock(hashes, "http://127.0.0.1:9/simple"), home=home)
    assert again.downloaded == 0


def test_fetch_lists_the_index_when_the_lock_has_no_names(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, hashes = index
    house = fetch(make_lock(hashes, url, named=False), home=tmp_path / "home")
    assert len(house.files) == 3


def test_hash_mismatch_leaves_nothing(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _hashes = index
    dest = tmp_path / "home" / "x" / "alpha-1.0-py3-none-any.whl"
    with pytest.raises(LockError, match="but the lock says"):
        download(
            url.replace("/simple", "/simple/files/alpha-1.0-py3-none-any.whl"),
            dest,
            sha256="0" * 64,
        )
    assert list(dest.parent.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "w" / "x.whl"
    with pytest.raises(LockError, match="cannot download"):
        download("http://127.0.0.1:9/x.whl", dest, sha256="0" * 64)
    assert list(dest.parent.iterdir()) == []
    assert not cached_path(tmp_path, "0" * 64, "x.whl").exists()


def test_release_listing_is_cached(index, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, hashes = index
    alpha = (hashes["alpha-1.0-py3-none-any.whl"],)
    cache = tmp_path / "cache"
    _, files = release_files(
        "alpha", "1.0", alpha, indexes=Indexes(index_url=url), cache_root=cache
    )
    assert [f.filename for f in files] == ["alpha-1.0-py3-none-any.whl"]
    assert len(list(cache.rglob("alpha-1.0.json"))) == 1
    _, cached = release_files(
        "alpha", "1.0", alpha, indexes=Indexes(index_url=url), cache_root=cache
    )
    assert cached == files


def test_a_file_gone_from_the_index_says_how_to_relock(tmp_path: Path) -> None:
    locked = make_wheel(tmp_path / "then", "alpha", "1.0")
    rebuilt = make_wheel(tmp_path / "now", "alpha", "1.0", tag="py2.py3-none-any")
    root = tmp_path / "srv"
    write_simple_index(root / "simple", [rebuilt])  # the locked file was deleted and replaced
    with http_server(root) as url:
        lock = make_lock({locked.name: sha256_of(locked)}, url + "/simple")
        alpha_only = Lock(**{**vars(lock), "packages": lock.packages[:1]})
        with pytest.raises(LockError, match="has left the index") as caught:
            fetch(alpha_only, home=tmp_path / "home")
    assert caught.value.hint is not None
    assert "mlpack lock --upgrade-package alpha" in caught.value.hint


def test_a_full_disk_is_not_called_a_network_error(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and shutil.which("mount") is not None, "root (to mount a tmpfs)")
    big = tmp_path / "srv2"
    big.mkdir()
    (big / "big.whl").write_bytes(os.urandom(2 << 20))
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], check=True)
    try:
        with http_server(big) as served, pytest.raises(LockError, match="No space left") as caught:
            download(served + "/big.whl", mnt / "w" / "big.whl", sha256="0" * 64)
        assert caught.value.hint is not None
        assert "free space" in caught.value.hint
        assert [p.name for p in (mnt / "w").iterdir()] == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
