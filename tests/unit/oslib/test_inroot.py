"""The in-root resolver: the kernel's openat2 and the component walk follow one symlink rule."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpack.oslib import inroot
from mlpack.oslib.fs import remove_tree


@pytest.fixture(params=["openat2", "walk"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A root dir and its fd, resolved by openat2 and then by the fallback walk."""
    saved = inroot._openat2[0]
    inroot._openat2[0] = request.param == "openat2"
    tree = tmp_path / "root"
    tree.mkdir()
    fd = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    try:
        yield tree, fd
    finally:
        os.close(fd)
        inroot._openat2[0] = saved


def _where(fd: int) -> str:
    try:
        return str(Path(f"/proc/self/fd/{fd}").readlink())
    finally:
        os.close(fd)


def test_absolute_and_dotdot_symlinks_stay_in_the_root(
    root: tuple[Path, int], tmp_path: Path
) -> None:
    tree, fd = root
    (tree / "data").mkdir()
    (tree / "etc").symlink_to("/")
    (tree / "up").symlink_to("../../../..")
    assert _where(inroot.resolve(fd, "etc/data")) == str(tree / "data")
    assert _where(inroot.resolve(fd, "up/data")) == str(tree / "data")
    assert _where(inroot.resolve(fd, "/../../data")) == str(tree / "data")
    assert _where(inroot.mkdirs(fd, "etc/new")) == str(tree / "new")
    assert not (tmp_path.parent / "new").exists()


def test_a_dangling_symlink_has_its_target_created_in_the_root(
    root: tuple[Path, int], tmp_path: Path
) -> None:
    tree, fd = root
    (tree / "etc").mkdir()
    outside = tmp_path / "outside"
    (tree / "etc" / "hosts").symlink_to(outside / "hosts")
    (tree / "var").symlink_to(str(outside / "var"))
    assert _where(inroot.make(fd, "/etc/hosts", directory=False)) == str(
        tree / str(outside / "hosts").lstrip("/")
    )
    assert _where(inroot.mkdirs(fd, "var/lib")) == str(tree / str(outside / "var/lib").lstrip("/"))
    assert not outside.exists()


def test_make_refuses_a_symlink_leaf_without_follow(root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "dev").symlink_to("/")
    with pytest.raises(OSError) as info:
        inroot.make(fd, "/dev", directory=True, follow=False)
    assert info.value.errno == errno.ELOOP
    assert (tree / "dev").is_symlink()


def test_resolve_without_follow_returns_the_link_itself(root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "l").symlink_to("/nowhere")
    link = inroot.resolve(fd, "l", follow=False)
    try:
        assert os.readlink("", dir_fd=link) == "/nowhere"
    finally:
        os.close(link)
    with pytest.raises(FileNotFoundError):
        inroot.resolve(fd, "l")


def test_a_file_on_the_way_is_not_a_directory(root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        inroot.mkdirs(fd, "f/sub")
    with pytest.raises(NotADirectoryError):
        inroot.mkdirs(fd, "f")


def test_symlink_loops_end_in_eloop(root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "a").symlink_to("b")
    (tree / "b").symlink_to("a")
    with pytest.raises(OSError) as info:
        inroot.mkdirs(fd, "a/x")
    assert info.value.errno == errno.ELOOP


def test_resolve_opens_with_the_flags_given(root: tuple[Path, int]) -> None:
    tree, fd = root
    (tree / "etc").mkdir()
    (tree / "etc" / "f").write_text("data")
    (tree / "link").symlink_to("/etc")
    rfd = inroot.resolve(fd, "link/f", os.O_RDONLY)
    try:
        assert os.read(rfd, 10) == b"data"
    finally:
        os.close(rfd)


def test_mkdirs_walks_a_deep_path_without_recursion(root: tuple[Path, int]) -> None:
    tree, fd = root
    deep = "/".join(["d"] * 1200)
    os.close(inroot.mkdirs(fd, deep))
    assert (tree / deep).is_dir()
    remove_tree(tree / "d")  # pytest's own tmp cleanup recurses
