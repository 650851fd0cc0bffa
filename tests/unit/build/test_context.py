"""The code layer's selection: .dockerignore semantics, and exclusions a project cannot undo."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.build.context import IgnoreRules, project_rules, select, tree_hash
from mlpack.errors import BuildError
from mlpack.spec import ALWAYS_EXCLUDED


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (("data",), "data/x.csv", True),
        (("data",), "src/data", False),  # anchored at the root, as Docker's
        (("/data",), "data", True),
        (("**/__pycache__",), "a/b/__pycache__/m.pyc", True),
        (("**/__pycache__",), "__pycache__", True),
        (("*.log",), "a.log", True),
        (("*.log",), "dir/a.log", False),
        (("**/*.log",), "dir/a.log", True),
        (("?.txt",), "a.txt", True),
        (("[ab].txt",), "c.txt", False),
        ((".env", ".env.*", "!.env.example"), ".env.example", False),
        ((".env", ".env.*", "!.env.example"), ".env.local", True),
        (("docs", "!docs/keep.md"), "docs/keep.md", False),
        (("docs", "!docs/keep.md"), "docs/other.md", True),
        (("# comment", ""), "anything", False),
    ],
)
def test_dockerignore_semantics(patterns: tuple[str, ...], path: str, excluded: bool) -> None:
    assert IgnoreRules(patterns).excluded(path) is excluded


def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    for rel in ("src/a.py", ".env", "data/big.bin", "docs/keep.md", "docs/x.md", "id.pem"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "link").symlink_to("src/a.py")
    return root


def test_the_projects_ignore_file_cannot_bring_back_a_secret(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".dockerignore").write_text("docs\n!docs/keep.md\n!.env\n!id.pem\n")
    rules = project_rules(root, (*ALWAYS_EXCLUDED, "/data"))
    kept = {e.rel for e in select(root, rules)}
    assert {"src", "src/a.py", "docs", "docs/keep.md", "link", ".dockerignore"} <= kept
    assert not kept & {".env", "id.pem", "data", "data/big.bin", "docs/x.md"}


def test_mlpackignore_adds_to_dockerignore(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".mlpackignore").write_text("src\n")
    kept = {e.rel for e in select(root, project_rules(root, ()))}
    assert "src/a.py" not in kept
    assert "docs/x.md" in kept


def test_symlinks_are_kept_verbatim_and_never_followed(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "outside").symlink_to("/etc")
    entries = {e.rel: e for e in select(root, IgnoreRules(()))}
    assert entries["outside"].kind == "symlink"
    assert entries["outside"].target == "/etc"
    assert not any(rel.startswith("outside/") for rel in entries)


def test_the_tree_hash_follows_content_and_exec_bits_only(tmp_path: Path) -> None:
    root = project(tmp_path)
    rules = IgnoreRules(())
    first = tree_hash(root, select(root, rules))
    (root / "src" / "a.py").touch()  # a new mtime alone changes nothing
    assert tree_hash(root, select(root, rules)) == first
    (root / "src" / "a.py").chmod(0o755)
    assert tree_hash(root, select(root, rules)) != first


def test_an_unreadable_ignore_file_is_an_error(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".dockerignore").write_bytes(b"\xff\xfe")
    with pytest.raises(BuildError, match=r"\.dockerignore"):
        project_rules(root, ())


def test_virtualenvs_are_left_out_whatever_their_name(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "myenv" / "lib").mkdir(parents=True)
    (root / "myenv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "condaenv" / "conda-meta").mkdir(parents=True)
    kept = {e.rel for e in select(root, IgnoreRules(()))}
    assert not any(rel.startswith(("myenv", "condaenv")) for rel in kept)
    assert "src/a.py" in kept
