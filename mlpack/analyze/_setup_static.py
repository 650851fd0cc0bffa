"""Read setup.py (static AST, never executed) and setup.cfg metadata that declares dependencies."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mlpack.analyze._declfile import read_text, rel

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class SetupValue:
    """One literal string and the line it sits on (``None`` when unknown)."""

    text: str
    line: int | None


@dataclass(frozen=True, kw_only=True)
class SetupInfo:
    """What setup.py / setup.cfg declare statically."""

    name: str | None = None
    python_requires: SetupValue | None = None
    install_requires: tuple[SetupValue, ...] = ()
    extras_require: tuple[tuple[str, tuple[SetupValue, ...]], ...] = ()


_NOT_RUN: Final = (
    "mlpack never runs setup.py; declare it in setup.cfg, pyproject.toml or requirements.txt"
)


class _Dynamic(Exception):
    """An expression that is not a literal (or a simple module-level name of one)."""

    def __init__(self, node: ast.AST) -> None:
        super().__init__()
        self.line: int = getattr(node, "lineno", 0)


class _Evaluator:
    """Evaluate literal strings, lists, tuples, dicts, ``+`` and module-level names of those."""

    def __init__(self, module: ast.Module) -> None:
        self._names: dict[str, ast.expr | None] = {}
        for stmt in module.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets, value = [stmt.target], stmt.value
            elif isinstance(stmt, ast.AugAssign):
                targets = [stmt.target]  # += makes the value dynamic
            for target in targets:
                if isinstance(target, ast.Name):
                    # Assigned twice (or augmented): which value wins depends on running the code.
                    seen = target.id in self._names
                    self._names[target.id] = None if seen else value

    def strings(self, node: ast.expr, depth: int = 0) -> tuple[SetupValue, ...]:
        """Evaluate a list/tuple of strings (a lone string counts as one line per entry)."""
        if depth > 64:  # A = B + [...]; B = A + [...] must not recurse forever
            raise _Dynamic(node)
        node = self._resolve(node)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return tuple(
                SetupValue(text=line.strip(), line=node.lineno)
                for line in node.value.splitlines()
                if line.strip() and not line.strip().startswith("#")
            )
        if isinstance(node, ast.List | ast.Tuple):
            out: list[SetupValue] = []
            for elt in node.elts:
                item = self._resolve(elt)
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    out.append(SetupValue(text=item.value, line=item.lineno))
                else:
                    raise _Dynamic(elt)
            return tuple(out)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.strings(node.left, depth + 1) + self.strings(node.right, depth + 1)
        raise _Dynamic(node)

    def string(self, node: ast.expr) -> SetupValue:
        item = self._resolve(node)
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            return SetupValue(text=item.value, line=item.lineno)
        raise _Dynamic(node)

    def mapping(self, node: ast.expr) -> list[tuple[ast.expr | None, ast.expr]]:
        """Return the (key, value) pairs of a dict literal or a ``dict(k=v)`` call."""
        node = self._resolve(node)
        if isinstance(node, ast.Dict):
            return list(zip(node.keys, node.values, strict=True))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
        ):
            if node.args:
                raise _Dynamic(node)
            return [
                (ast.Constant(value=kw.arg, lineno=kw.value.lineno) if kw.arg else None, kw.value)
                for kw in node.keywords
            ]
        raise _Dynamic(node)

    def _resolve(self, node: ast.expr) -> ast.expr:
        seen: set[str] = set()
        while isinstance(node, ast.Name):
            value = self._names.get(node.id)
            if value is None or node.id in seen:  # unknown, reassigned, or X = X
                raise _Dynamic(node)
            seen.add(node.id)
            node = value
        return node


def _find_setup_call(module: ast.Module) -> ast.Call | None:
    for node in ast.walk(module):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "setup") or (
                isinstance(func, ast.Attribute) and func.attr == "setup"
            ):
                return node
    return None


def read_setup_py(root: Path, path: Path, *, warnings: list[str]) -> SetupInfo | None:
    """Parse ``setup.py`` with ``ast`` and pull the literal metadata out of its ``setup()`` call."""
    text = read_text(root, path, warnings=warnings)
    if text is None:
        return None
    name = rel(root, path)
    module = _parse(text, name, warnings)
    if module is None:
        return None
    call = _find_setup_call(module)
    if call is None:
        return SetupInfo()
    evaluator = _Evaluator(module)
    project: str | None = None
    python: SetupValue | None = None
    install: tuple[SetupValue, ...] = ()
    extras: list[tuple[str, tuple[SetupValue, ...]]] = []
    for key, value in _setup_keywords(call, evaluator, name, warnings):
        try:
            if key == "name":
                project = evaluator.string(value).text
            elif key == "python_requires":
                python = evaluator.string(value)
            elif key == "install_requires":
                install = evaluator.strings(value)
            elif key == "extras_require":
                pairs = evaluator.mapping(value)
                extras = []
                _read_extras(evaluator, value, pairs, extras)
        except _Dynamic as exc:
            if key != "name":
                line = exc.line or value.lineno
                warnings.append(f"{name}:{line}: {key} is not a literal; {_NOT_RUN}")
    return SetupInfo(
        name=project, python_requires=python, install_requires=install, extras_require=tuple(extras)
    )


def _parse(text: str, name: str, warnings: list[str]) -> ast.Module | None:
    """The module's syntax tree, or None (warned) when it does not parse."""
    try:
        return ast.parse(text, filename=name)
    except SyntaxError as exc:
        warnings.append(f"{name}:{exc.lineno or 0}: syntax error ({exc.msg}); not read")
    except (RecursionError, MemoryError, ValueError):
        warnings.append(f"{name}: too deeply nested or invalid to parse; not read")
    return None


def _setup_keywords(
    call: ast.Call, evaluator: _Evaluator, name: str, warnings: list[str]
) -> list[tuple[str, ast.expr]]:
    """The keyword arguments of ``setup()``, those of ``setup(**{...})`` with a literal dict too."""
    keywords: list[tuple[str, ast.expr]] = []
    for kw in call.keywords:
        if kw.arg is not None:
            keywords.append((kw.arg, kw.value))
            continue
        try:  # setup(**kwargs) with a literal dict of keyword arguments
            for dict_key, dict_value in evaluator.mapping(kw.value):
                if isinstance(dict_key, ast.Constant) and isinstance(dict_key.value, str):
                    keywords.append((dict_key.value, dict_value))
        except _Dynamic as exc:
            warnings.append(f"{name}:{exc.line}: setup(**...) is not a literal dict; {_NOT_RUN}")
    return keywords


def _read_extras(
    evaluator: _Evaluator,
    value: ast.expr,
    pairs: list[tuple[ast.expr | None, ast.expr]],
    extras: list[tuple[str, tuple[SetupValue, ...]]],
) -> None:
    """Append ``extras_require``'s literal extras in order, up to the first one that is not."""
    for extra_key, extra_value in pairs:
        if extra_key is None:
            raise _Dynamic(value)
        extras.append((evaluator.string(extra_key).text, evaluator.strings(extra_value)))


def _cfg_line(lines: Sequence[str], section: str, key: str, value: str | None = None) -> int | None:
    current = ""
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*[=:]", re.IGNORECASE)
    found = False
    for number, line in enumerate(lines, 1):
        header = re.match(r"^\s*\[([^\]]+)\]", line)
        if header:
            if found:
                return None
            current = header.group(1).strip()
            continue
        if current != section:
            continue
        if not found and key_re.match(line):
            found = True
            if value is None:
                return number
        if found and value is not None and value in line:
            return number
    return None


def _cfg_list(raw: str, lines: Sequence[str], section: str, key: str) -> tuple[SetupValue, ...]:
    values: list[SetupValue] = []
    for item in raw.splitlines():
        text = item.strip()
        if text and not text.startswith("#"):
            values.append(SetupValue(text=text, line=_cfg_line(lines, section, key, text)))
    return tuple(values)


def read_setup_cfg(root: Path, path: Path, *, warnings: list[str]) -> SetupInfo | None:
    """Read ``[metadata] name``, ``[options]`` and ``[options.extras_require]`` of setup.cfg."""
    text = read_text(root, path, warnings=warnings)
    if text is None:
        return None
    name = rel(root, path)
    import configparser  # only here: most repositories have no setup.cfg (import: ~7 ms)

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=name)
    except configparser.Error as exc:
        warnings.append(f"{name}: invalid setup.cfg ({exc.message.splitlines()[0]}); not read")
        return None
    lines = text.splitlines()
    python: SetupValue | None = None
    install: tuple[SetupValue, ...] = ()
    if parser.has_option("options", "python_requires"):
        value = parser.get("options", "python_requires").strip()
        python = SetupValue(text=value, line=_cfg_line(lines, "options", "python_requires"))
    if parser.has_option("options", "install_requires"):
        raw = parser.get("options", "install_requires")
        if raw.strip().startswith("file:"):
            line = _cfg_line(lines, "options", "install_requires")
            warnings.append(
                f"{name}:{line}: install_requires = file: is not followed; "
                "name the file requirements.txt so mlpack reads it"
            )
        else:
            install = _cfg_list(raw, lines, "options", "install_requires")
    extras: list[tuple[str, tuple[SetupValue, ...]]] = []
    if parser.has_section("options.extras_require"):
        for extra, raw in parser.items("options.extras_require"):
            extras.append((extra, _cfg_list(raw, lines, "options.extras_require", extra)))
    project = parser.get("metadata", "name", fallback=None)
    return SetupInfo(
        name=project.strip() if project else None,
        python_requires=python,
        install_requires=install,
        extras_require=tuple(extras),
    )
