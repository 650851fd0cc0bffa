"""docs/security-tests.md names real tests: every node id in it is a test function of its file.

The functions are found by parsing each file (no import, no collection), so the check is quick
and sees root-only and slow tests that a local run would skip.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "security-tests.md"
_NODE = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)`")


def node_ids(text: str) -> list[tuple[str, str]]:
    """(file, ``test`` or ``Class::test``) for each node id in backticks in ``text``."""
    return _NODE.findall(text)


def defined_tests(path: Path) -> set[str]:
    """``test_*`` functions of a test file, and ``Class::test_*`` for its test classes."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test_")
            )
    return found


def test_every_node_id_in_the_security_map_exists() -> None:
    ids = node_ids(MAP.read_text(encoding="utf-8"))
    assert len(ids) > 50  # the table was parsed, not skipped
    missing = [
        f"{file}::{name}"
        for file, name in ids
        if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)
    ]
    assert missing == []


def test_every_table_row_names_a_test_or_says_why_not() -> None:
    rows = [
        line for line in MAP.read_text(encoding="utf-8").splitlines() if re.match(r"\| §\d", line)
    ]
    assert rows
    for row in rows:
        status = re.split(r"(?<!\\)\|", row)[-2].strip()  # the last cell; `\|` is escaped
        assert node_ids(row) or status.startswith(("gap:", "deviation:")), row


def test_a_renamed_test_is_caught(tmp_path: Path) -> None:
    sample = tmp_path / "test_x.py"
    sample.write_text(
        "def test_a():\n    pass\n\nclass TestB:\n    def test_c(self):\n        pass\n"
    )
    assert defined_tests(sample) == {"test_a", "TestB::test_c"}
    assert node_ids("`tests/e2e/test_x.py::test_gone` and `tests/y.py::TestB::test_c`") == [
        ("tests/e2e/test_x.py", "test_gone"),
        ("tests/y.py", "TestB::test_c"),
    ]
