"""The docs hold to their rules: the README's contract lines, short README, live links, fresh copies."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = (
    "apt-get update && apt-get install -y python3-venv mmdebstrap && python3 -m venv /opt/mlpack"
    " && /opt/mlpack/bin/pip install . && /opt/mlpack/bin/mlpack build examples/training"
    " && /opt/mlpack/bin/mlpack run examples/training"
    " && /opt/mlpack/bin/mlpack serve examples/inference"
)
TEST = "bash .ci/run"
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "CONTRIBUTING.md",
        ROOT / "bench" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8")))}


def broken_links(page: Path) -> list[str]:
    """Relative links (and their #anchors) in ``page`` that point at nothing."""
    broken = []
    for target in _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _anchors(dest)):
            broken.append(target)
    return broken


def _has(module: ModuleType, name: str) -> bool:
    """``from module import name`` works: an attribute, or a submodule of a package."""
    if hasattr(module, name):
        return True
    return hasattr(module, "__path__") and (
        importlib.util.find_spec(f"{module.__name__}.{name}") is not None
    )


def missing_names(page: Path) -> list[str]:
    """Names that the ``python`` examples in ``page`` import from mlpack and that do not exist."""
    missing = []
    for block in _PYTHON.findall(page.read_text(encoding="utf-8")):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlpack"):
                try:
                    module = importlib.import_module(node.module or "")
                except ImportError:
                    missing.append(f"{node.module}")
                    continue
                missing += [
                    f"{node.module}.{a.name}" for a in node.names if not _has(module, a.name)
                ]
    return missing


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen", ROOT / "docs" / "gen.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_opens_with_the_install_and_test_commands_word_for_word() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:20]
    assert INSTALL in lines
    assert TEST in lines
    assert lines.index(INSTALL) < lines.index(TEST)


def test_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 220


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_a_missing_file_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A `code`: heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-code-heading) [gone](missing.md) [bad](other.md#nope)"
        " [web](https://example.com/x) [self](#page)\n\n```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md", "other.md#nope"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_examples_import_what_exists(page: Path) -> None:
    assert missing_names(page) == []


def test_an_example_importing_a_moved_name_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nfrom mlpack.errors import MlpackError, Gone\nfrom mlpack.nowhere import x\n"
        "from mlpack import oci\n```\n"
    )
    assert missing_names(page) == ["mlpack.errors.Gone", "mlpack.nowhere"]


def test_every_manual_page_is_listed_in_the_index() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    listed = {Path(t).name for t in _LINK.findall(index)}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= listed


def test_every_command_has_a_manual_page() -> None:
    """Each command the CLI routes is named in the manual's index of command pages."""
    from mlpack.cli.app import COMMANDS

    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    named = {c for c in COMMANDS if re.search(rf"`(mlpack )?{c}[` ]", index)}
    assert set(COMMANDS) - named == set()


def test_generated_parts_match_their_sources() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_stale_generated_part_is_rewritten() -> None:
    gen = _gen()
    text = "before\n<!-- gen:t -->\nold\n<!-- /gen:t -->\nafter\n"
    assert gen.render(text, {"t": lambda: "new"}) == (
        "before\n<!-- gen:t -->\nnew\n<!-- /gen:t -->\nafter\n"
    )
    with pytest.raises(ValueError, match="gen:u"):
        gen.render(text, {"u": lambda: "x"})


def test_exit_code_table_follows_the_error_classes() -> None:
    table = _gen().exit_codes()
    assert "| 4 | `LockError` |" in table
    assert "| 70 |" in table
    assert "| 130 |" in table
