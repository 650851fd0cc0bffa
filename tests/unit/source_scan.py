"""Every call in mlpack's own source, for tests that forbid a dangerous API outright."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import mlpack

PACKAGE = Path(mlpack.__file__).parent


def calls() -> Iterator[tuple[str, ast.Call]]:
    """(``path:line``, call) for each call expression in every module of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                yield f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node


def called_name(call: ast.Call) -> str:
    """``f`` for ``f(...)`` and ``x.f(...)``; empty for anything else."""
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else ""
