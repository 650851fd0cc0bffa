import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.oslib import fs
from mlpack.oslib.fs import atomic_write, remove_tree


def test_atomic_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, "one", mode=0o600)
    assert target.read_text() == "one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o640)
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_atomic_write_ignores_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "f", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_atomic_write_failure_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")

    with pytest.raises(TypeError):
        atomic_write(target, 5)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_remove_tree_handles_depth_beyond_the_recursion_limit(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    # Build 3,000 levels with relative mkdirs (the path is longer than PATH_MAX).
    script = (
        "import os,sys; os.mkdir(sys.argv[1]); os.chdir(sys.argv[1])\n"
        "for _ in range(3000):\n    os.mkdir('d'); os.chdir('d')\n"
        "open('leaf','w').write('x'); os.symlink('/etc/passwd','link')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(root)], check=True)
    remove_tree(root)
    assert not root.exists()
    assert Path("/etc/passwd").exists()


def test_remove_tree_opens_unreadable_directories_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    root = tmp_path / "tree"
    (root / "work" / "work").mkdir(parents=True)
    (root / "work" / "work" / "f").write_text("x")
    (root / "ro").mkdir()
    (root / "ro" / "g").write_text("y")
    (root / "to-outside").symlink_to(outside)
    (root / "ro").chmod(0o500)
    (root / "work" / "work").chmod(0)
    remove_tree(root)
    assert not root.exists()
    assert (outside / "keep").read_text() == "k"


def test_remove_tree_of_a_file_a_link_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path)
    remove_tree(tmp_path / "f")
    remove_tree(tmp_path / "l")
    remove_tree(tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


def test_remove_tree_under_a_directory_fd(tmp_path: Path) -> None:
    """The layer applier removes a replaced entry by name under a parent fd, at any depth."""
    script = (
        "import os,sys; os.mkdir(sys.argv[1]); os.chdir(sys.argv[1])\n"
        "for _ in range(1500):\n    os.mkdir('d'); os.chdir('d')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "victim")], check=True)
    (tmp_path / "file").write_text("x")
    parent = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        remove_tree("victim", dir_fd=parent)
        remove_tree("file", dir_fd=parent)
        remove_tree("absent", dir_fd=parent)
    finally:
        os.close(parent)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_without_durability_still_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write(target, "one", durable=False)
    atomic_write(target, "two", durable=False)
    assert target.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


@pytest.mark.parametrize(("at_call", "taken"), [(2, "."), (4, "a"), (4, "a/b/c"), (3, "x")])
def test_remove_tree_finishes_when_another_remover_takes_part_of_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_call: int, taken: str
) -> None:
    """A second remover (``mlpack stop`` against the run it stops) takes a part mid-walk.

    Including the directory the walk stands in (``a`` while it empties ``a/b/c``), which
    leaves it no ``..`` to go back up through.
    """
    root = tmp_path / "state"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "file").write_text("x")
    (root / "x" / "y").mkdir(parents=True)
    children = fs._children
    calls = 0

    def raced(fd: int) -> list[str]:
        nonlocal calls
        calls += 1
        names = children(fd)
        if calls == at_call and (root / taken).exists():
            shutil.rmtree(root / taken)
        return names

    monkeypatch.setattr(fs, "_children", raced)
    remove_tree(root)
    assert not root.exists()
    assert calls >= 2


def test_remove_tree_still_fails_when_the_tree_is_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a tree that is really gone counts as removed: a vanished child alone is re-raised."""
    root = tmp_path / "state"
    (root / "a").mkdir(parents=True)

    def lost(fd: int) -> list[str]:
        raise FileNotFoundError(2, "gone", "a")

    monkeypatch.setattr(fs, "_children", lost)
    with pytest.raises(FileNotFoundError):
        remove_tree(root)
    assert root.exists()
