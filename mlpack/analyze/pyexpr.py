"""What simple expressions say without running them: names, literals, tests and file paths.

The helpers of ``pyextract``'s walk: a dotted name, a string or number literal, the tests that
make an ``if`` a ``TYPE_CHECKING`` block, a ``__main__`` guard or an availability check, a
``"cuda"`` literal, and the paths code names: literal paths, an f-string's folder, ``open``
modes, ``sys.path`` entries and folders relative to ``__file__``.
"""

from __future__ import annotations

import ast
import posixpath
import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from mlpack.analyze.pyfacts import Mode

_CUDA_LITERAL: Final = re.compile(r"cuda(:\d+)?$")
_AVAILABILITY: Final = re.compile(r"^(is_\w+_available|has_\w+|find_spec|find_loader)$")


def dotted(node: ast.expr) -> str:
    """Return ``a.b.c`` for a Name/Attribute chain, else ""."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def literal(node: ast.expr | None) -> str | None:
    """Return a literal default as text (str/int/float/bool), None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        return str(node.value)
    return None


def is_type_checking(test: ast.expr) -> bool:
    """True for ``if TYPE_CHECKING:``: imports that never run."""
    return dotted(test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING", "t.TYPE_CHECKING"}


def is_main_guard(test: ast.expr) -> bool:
    """True for ``if __name__ == "__main__":``."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and mains)


def is_availability_check(test: ast.expr) -> bool:
    """True for ``if is_x_available():``, ``if find_spec("x"):`` and their negation-free kin."""
    for node in ast.walk(test):
        if isinstance(node, ast.Call):
            last = dotted(node.func).rpartition(".")[2]
            if _AVAILABILITY.match(last):
                return True
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return False  # ``if not is_x_available(): raise``: the body is the fallback
    return False


def is_cuda_literal(node: ast.expr) -> bool:
    """True for ``"cuda"`` and ``"cuda:N"``."""
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and bool(_CUDA_LITERAL.match(node.value))
    )


def path_literal(node: ast.expr) -> str | None:
    """Return the literal path an argument names, or its literal folder part."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return _fstring_folder(node)
    if isinstance(node, ast.Call):
        return _path_call_literal(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left = path_literal(node.left)
        right = path_literal(node.right)
        if left is not None and right is not None:
            return f"{left}/{right}"
        return left
    return None


def _fstring_folder(node: ast.JoinedStr) -> str | None:
    """The folder of an f-string's literal head: ``f"data/{name}.csv"`` -> ``data/``."""
    head = ""
    for value in node.values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            head += value.value
        else:
            break
    folder = head.rpartition("/")[0]
    return f"{folder}/" if folder else None


def _path_call_literal(node: ast.Call) -> str | None:
    """``Path("x")`` and ``os.path.join("a", "b")`` with literal arguments (a literal prefix)."""
    name = dotted(node.func)
    if name.endswith(("Path", "PurePath")) and node.args:
        return path_literal(node.args[0])
    if name in {"os.path.join", "path.join", "join"}:
        parts: list[str] = []
        for arg in node.args:
            lit = path_literal(arg)
            if lit is None:
                break
            parts.append(lit)
        return "/".join(parts) or None
    return None


def open_mode(node: ast.Call) -> Mode:
    """``"w"`` when an ``open`` call's mode writes, else ``"r"``."""
    mode_node = node.args[1] if len(node.args) > 1 else None
    for kw in node.keywords:
        if kw.arg == "mode":
            mode_node = kw.value
    mode = literal(mode_node) or "r"
    return "w" if any(c in mode for c in "wax+") else "r"


def looks_like_path(text: str) -> bool:
    """True for text that may name a file: a folder path or a name with an extension."""
    if not text or len(text) > 300 or any(c in text for c in "\n\t ") or "://" in text:
        return False
    return "/" in text or bool(re.search(r"\.[A-Za-z0-9]{1,10}$", text))


def sys_path_entry(node: ast.expr) -> str | None:
    """``"file:<rel>"`` for a folder built from ``__file__``, ``"cwd:<rel>"`` for a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return f"cwd:{posixpath.normpath(node.value)}" if node.value else None
    rel = _file_relative(node)
    if rel is None or rel == "<file>":
        return None
    return f"file:{rel}"


def _file_relative(node: ast.expr) -> str | None:
    """A path built from ``__file__``, relative to the file's folder (``"<file>"``: itself)."""
    if isinstance(node, ast.Name):
        return "<file>" if node.id == "__file__" else None
    if isinstance(node, ast.Attribute):
        base = _file_relative(node.value)
        return _parent(base) if base is not None and node.attr == "parent" else base
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
        return _file_parents(node, node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        base = _file_relative(node.left)
        right = literal(node.right)
        return None if base is None or right is None else _join(base, right)
    if isinstance(node, ast.Call):
        return _file_relative_call(node)
    return None


def _joined(first: str, args: list[ast.expr]) -> str | None:
    """``os.path.join(<file-relative>, "a", "b")``: None when a part is not a literal."""
    for arg in args:
        part = literal(arg)
        if part is None:
            return None
        first = _join(first, part)
    return first


def _file_parents(node: ast.Subscript, value: ast.Attribute) -> str | None:
    """``Path(__file__).parents[N]``."""
    base = _file_relative(value.value)
    index = node.slice
    if (
        base is None
        or value.attr != "parents"
        or not isinstance(index, ast.Constant)
        or not isinstance(index.value, int)
    ):
        return None
    for _ in range(index.value + 1):
        base = _parent(base)
    return base


def _file_relative_call(node: ast.Call) -> str | None:
    """``os.path.dirname/join/abspath(...)``, ``Path(...)``, ``str(...)``, ``.resolve()``."""
    if node.args:
        last = dotted(node.func).rpartition(".")[2]
        first = _file_relative(node.args[0])
        if first is None:
            return None
        if last == "dirname":
            return _parent(first)
        if last == "join":
            return _joined(first, node.args[1:])
        if last in {"abspath", "realpath", "normpath", "Path", "str", "resolve", "absolute"}:
            return first
    if isinstance(node.func, ast.Attribute) and node.func.attr in {"resolve", "absolute"}:
        return _file_relative(node.func.value)
    return None


def _parent(rel: str) -> str:
    return "." if rel == "<file>" else posixpath.normpath(f"{rel}/..")


def _join(rel: str, part: str) -> str:
    base = "." if rel == "<file>" else rel
    return posixpath.normpath(f"{base}/{part}")
