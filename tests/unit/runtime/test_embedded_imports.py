"""Import discipline: the helper's tiny import list, and no rich or docker on `mlpack run`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import mlpack.runtime.embedded.helper as helper_module

# json and ctypes only where _json and _ctypes are missing; typing only under TYPE_CHECKING.
ALLOWED = {"__future__", "os", "_ctypes", "ctypes", "_json", "json", "_signal", "struct"}
ALLOWED |= {"errno", "sys", "select"}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (never executed)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return out


def test_helper_imports_only_the_allowed_modules() -> None:
    tree = ast.parse(Path(helper_module.__file__).read_text())
    imported: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= ALLOWED, imported - ALLOWED


def test_an_embedded_run_imports_no_docker_sdk_or_rich(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from mlpack.cli.app import run_app\n"
        "rc = run_app(['run', '-m', '64m', '-e', 'A=1', '/nonexistent-rootfs-dir', 'true'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'rich', 'docker', 'requests', 'jinja2'})\n"
        "print(rc, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"MLPACK_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.stdout.strip() == "7 []", done.stdout + done.stderr
    assert "error: root filesystem /nonexistent-rootfs-dir is not a directory" in done.stderr
