"""The in-root resolver: the kernel's openat2 and the component walk follow one symlink rule."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpack.oslib import inroot
from mlpack.oslib.fs import remove_tree


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def kernel(request: pytest.FixtureRequest) -> bool:
    """Each test runs with openat2, then with the fallback walk."""
    return bool(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A root dir and its fd."""
    tree = tmp_path / "root"
    tree.mkdir()
    fd = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    try:
        yield tree, fd
    finally:
        os.close(fd)


def _where(fd: int) -> str:
    try:
        return str(Path(f"/proc/self/fd/{fd}").readlink())
    finally:
        os.close(fd)


def test_absolute_and_dotdot_symlinks_stay_in_the_root(
    kernel: bool, root: tuple[Path, int], tmp_path: Path
) -> None:
    tree, fd = root
    (tree / "data").mkdir()
    (tree / "etc").symlink_to("/")
    (tree / "up").symlink_to("../../../..")
    assert _where(inroot.resolve(fd, "etc/data", kernel=kernel)) == str(tree / "data")
    assert _where(inroot.resolve(fd, "up/data", kernel=kernel)) == str(tree / "data")
    assert _where(inroot.resolve(fd, "/../../data", kernel=kernel)) == str(tree / "data")
    assert _where(inroot.mkdirs(fd, "etc/new", kernel=kernel)) == str(tree / "new")
    assert not (tmp_path.parent / "new").exists()


def test_a_dangling_symlink_has_its_target_created_in_the_root(
    kernel: bool, root: tuple[Path, int], tmp_path: Path
) -> None:
    tree, fd = root
    (tree / "etc").mkdir()
    outside = tmp_path / "outside"
    (tree / "etc" / "hosts").symlink_to(outside / "hosts")
    (tree / "var").symlink_to(str(outside / "var"))
    assert _where(inroot.make(fd, "/etc/hosts", directory=False, kernel=kernel)) == str(
        tree / str(outside / "hosts").lstrip("/")
    )
    assert _where(inroot.mkdirs(fd, "var/lib", kernel=kernel)) == str(
        tree / str(outside / "var/lib").lstrip("/")
    )
    assert not outside.exists()


def test_make_refuses_a_symlink_leaf_without_follow(kernel: bool, root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "dev").symlink_to("/")
    with pytest.raises(OSError) as info:
        inroot.make(fd, "/dev", directory=True, follow=False, kernel=kernel)
    assert info.value.errno == errno.ELOOP
    assert (tree / "dev").is_symlink()


def test_resolve_without_follow_returns_the_link_itself(
    kernel: bool, root: tuple[Path, int]
) -> None:
    tree, fd = root
    (tree / "l").symlink_to("/nowhere")
    link = inroot.resolve(fd, "l", follow=False, kernel=kernel)
    try:
        assert os.readlink("", dir_fd=link) == "/nowhere"
    finally:
        os.close(link)
    with pytest.raises(FileNotFoundError):
        inroot.resolve(fd, "l", kernel=kernel)


def test_a_file_on_the_way_is_not_a_directory(kernel: bool, root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        inroot.mkdirs(fd, "f/sub", kernel=kernel)
    with pytest.raises(NotADirectoryError):
        inroot.mkdirs(fd, "f", kernel=kernel)


def test_symlink_loops_end_in_eloop(kernel: bool, root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "a").symlink_to("b")
    (tree / "b").symlink_to("a")
    with pytest.raises(OSError) as info:
        inroot.mkdirs(fd, "a/x", kernel=kernel)
    assert info.value.errno == errno.ELOOP


def test_resolve_opens_with_the_flags_given(kernel: bool, root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "etc").mkdir()
    (tree / "etc" / "f").write_text("data")
    (tree / "link").symlink_to("/etc")
    rfd = inroot.resolve(fd, "link/f", os.O_RDONLY, kernel=kernel)
    try:
        assert os.read(rfd, 10) == b"data"
    finally:
        os.close(rfd)


def test_mkdirs_walks_a_deep_path_without_recursion(kernel: bool, root: tuple[Path, int]) -> None:
    tree, fd = root
    deep = "/".join(["d"] * 1200)
    os.close(inroot.mkdirs(fd, deep, kernel=kernel))
    assert (tree / deep).is_dir()
    remove_tree(tree / "d")  # pytest's own tmp cleanup recurses
