from __future__ import annotations

import os
from pathlib import Path

import pathspec
import pytest

from mlpack.analyze.walk import walk_repo
from tests.unit.analyze.repo_helpers import make_repo


def paths(root: Path) -> tuple[list[str], list[str]]:
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    return [f.path for f in tree.files], warnings


def test_skips_vcs_caches_and_environments(tmp_path: Path) -> None:
    make_repo(
        tmp_path,
        {
            "train.py": "",
            ".git/config": "",
            "node_modules/x/index.py": "",
            "pkg/__pycache__/m.cpython-311.pyc": b"\0",
            "lib/site-packages/foo/__init__.py": "",
            "myenv/pyvenv.cfg": "home = /usr/bin\n",
            "myenv/lib/python3.11/foo.py": "",
            "condaenv/conda-meta/history": "",
            "condaenv/lib/bar.py": "",
            ".venv/pyvenv.cfg": "",
            ".venv/lib/x.py": "",
        },
    )
    files, warnings = paths(tmp_path)
    assert files == ["train.py"]
    assert warnings == []


def test_gitignore_semantics(tmp_path: Path) -> None:
    make_repo(
        tmp_path,
        {
            ".gitignore": "*.log\n!keep.log\nbuild/\n/anchored.py\ndocs/**/gen.py\n",
            "a.log": "",
            "keep.log": "",
            "build/out.py": "",
            "sub/build": "a file, not a folder: dir-only patterns leave it",
            "anchored.py": "",
            "sub/anchored.py": "",
            "docs/x/y/gen.py": "",
            "docs/gen2.py": "",
            "sub/.gitignore": "!a.log\nlocal.py\n",
            "sub/a.log": "",
            "sub/local.py": "",
            "local.py": "",
        },
    )
    files, _ = paths(tmp_path)
    assert files == [
        ".gitignore",
        "docs/gen2.py",
        "keep.log",
        "local.py",
        "sub/.gitignore",
        "sub/a.log",
        "sub/anchored.py",
        "sub/build",
    ]


def test_mlpackignore_and_info_exclude(tmp_path: Path) -> None:
    make_repo(
        tmp_path,
        {
            ".mlpackignore": "data/\n",
            ".git/info/exclude": "secret.py\n",
            "data/big.py": "",
            "secret.py": "",
            "keep.py": "",
        },
    )
    files, _ = paths(tmp_path)
    assert files == [".mlpackignore", "keep.py"]


def test_ignored_folder_cannot_be_reincluded(tmp_path: Path) -> None:
    # git does not enter an excluded folder, so a negation inside it has no effect.
    make_repo(tmp_path, {".gitignore": "out/\n!out/keep.py\n", "out/keep.py": ""})
    files, _ = paths(tmp_path)
    assert files == [".gitignore"]


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = make_repo(tmp_path / "outside", {"evil.py": "import evil\n"})
    repo = make_repo(tmp_path / "repo", {"real.py": "", "sub/mod.py": ""})
    (repo / "out.py").symlink_to(outside / "evil.py")
    (repo / "outdir").symlink_to(outside, target_is_directory=True)
    (repo / "inside.py").symlink_to(repo / "real.py")
    (repo / "loop").symlink_to(repo / "loop")
    (repo / "dangling.py").symlink_to(repo / "missing.py")
    (repo / "sub" / "up").symlink_to(repo, target_is_directory=True)
    files, warnings = paths(repo)
    assert files == ["real.py", "sub/mod.py"]
    joined = "\n".join(warnings)
    assert "out.py: symlink to" in joined
    assert "outside the repository, not followed" in joined
    assert "outdir: symlink to" in joined
    assert "loop: symlink loop, skipped" in joined
    assert "dangling.py: broken symlink, skipped" in joined
    assert "inside.py" not in joined
    assert "sub/up" not in joined


def test_special_files_are_warned(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a.py": ""})
    os.mkfifo(tmp_path / "pipe.py")
    files, warnings = paths(tmp_path)
    assert files == ["a.py"]
    assert warnings == ["pipe.py: not a regular file (socket, FIFO or device), skipped"]


def test_records_sizes_and_dirs(tmp_path: Path) -> None:
    make_repo(tmp_path, {"a/b/c.bin": b"x" * 1234, "d/e.py": ""})
    tree = walk_repo(tmp_path, warnings=[])
    sizes = {f.path: f.size for f in tree.files}
    assert sizes == {"a/b/c.bin": 1234, "d/e.py": 0}
    assert tree.dirs == frozenset({"", "a", "a/b", "d"})
    assert tree.root == tmp_path.resolve()


def test_unreadable_folder_is_warned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_repo(tmp_path, {"ok.py": "", "locked/x.py": ""})
    # Root reads every folder, so the permission error is injected at the seam walk uses.
    real_scandir = os.scandir

    def scandir(path: Path) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr("mlpack.analyze.walk.os.scandir", scandir)
    files, warnings = paths(tmp_path)
    assert files == ["ok.py"]
    assert warnings == ["locked: unreadable folder, skipped (Permission denied)"]


def test_ignore_patterns_are_compiled_only_once_a_path_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree where no path matches the ignore file never builds its per-pattern spec."""
    built: list[int] = []
    real = pathspec.GitIgnoreSpec.from_lines

    def counting(cls: type[pathspec.GitIgnoreSpec], lines: list[str]) -> pathspec.GitIgnoreSpec:
        built.append(len(lines))
        return real(lines)

    monkeypatch.setattr(pathspec.GitIgnoreSpec, "from_lines", classmethod(counting))
    root = make_repo(tmp_path / "repo", {".gitignore": "*.log\n!keep.log\nbuild/\n", "a.py": ""})
    assert paths(root)[0] == [".gitignore", "a.py"]
    assert built == []
    make_repo(root, {"x.log": "", "keep.log": "", "build/b.py": ""})
    assert paths(root)[0] == [".gitignore", "a.py", "keep.log"]
    assert built == [3]
