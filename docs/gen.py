"""Regenerate the parts of the docs that copy a table from the code or its data files.

A rule is stated once: where a table lives in code or data, the docs either link to it or carry a
copy made by this script, between ``<!-- gen:NAME -->`` and ``<!-- /gen:NAME -->`` markers.
``python docs/gen.py`` rewrites the copies; ``--check`` only reports stale ones (exit 1), which is
what ``tests/unit/test_docs.py`` runs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's mlpack, even when another one is installed

from mlpack import errors


def _cell(text: str) -> str:
    """Escape a table cell's pipes."""
    return text.replace("|", "\\|")


def exit_codes() -> str:
    """The exit-code table: one row per stage error in ``mlpack/errors.py``, then the fixed codes."""
    rows = [
        (cls.exit_code, f"`{cls.__name__}`", (cls.__doc__ or "").strip().splitlines()[0])
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.MlpackError)
        and "exit_code" in vars(cls)
        and cls.exit_code != errors.MlpackError.exit_code
    ]
    rows.append(
        (errors.EXIT_BUG, "", "an unexpected exception: a bug in mlpack (please report it)")
    )
    rows.append((errors.EXIT_INTERRUPTED, "", "interrupted (Ctrl-C)"))
    rows.append((errors.EXIT_BROKEN_PIPE, "", "the reader of the output went away (`| head`)"))
    lines = ["| Code | Error | Meaning |", "| --- | --- | --- |"]
    lines += [f"| {code} | {name} | {_cell(text)} |" for code, name, text in sorted(rows)]
    return "\n".join(lines)


def system_libs() -> str:
    """The distribution -> Debian packages table of ``mlpack/analyze/data/system_libs.toml``."""
    path = ROOT / "mlpack" / "analyze" / "data" / "system_libs.toml"
    table: dict[str, list[str]] = tomllib.loads(path.read_text(encoding="utf-8"))["packages"]
    lines = ["| Distribution | Debian packages |", "| --- | --- |"]
    lines += [
        f"| `{name}` | {', '.join(f'`{deb}`' for deb in debs)} |"
        for name, debs in sorted(table.items())
    ]
    return "\n".join(lines)


# file (relative to the repository root) -> block name -> generator
BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"exit-codes": exit_codes},
    "docs/analyze.md": {"system-libs": system_libs},
}


def render(text: str, blocks: dict[str, Callable[[], str]]) -> str:
    """Return ``text`` with every named block replaced by its generator's output."""
    for name, make in blocks.items():
        found = re.search(
            rf"<!-- gen:{re.escape(name)} -->\n.*?(<!-- /gen:{re.escape(name)} -->)",
            text,
            re.DOTALL,
        )
        if found is None:
            msg = f"no <!-- gen:{name} --> ... <!-- /gen:{name} --> markers"
            raise ValueError(msg)
        head = text.index("\n", found.start()) + 1
        text = f"{text[:head]}{make()}\n{text[found.start(1) :]}"
    return text


def stale() -> list[str]:
    """Return the files whose generated parts differ from what this script would write."""
    out = []
    for rel, blocks in BLOCKS.items():
        text = (ROOT / rel).read_text(encoding="utf-8")
        if render(text, blocks) != text:
            out.append(rel)
    return out


def main(argv: list[str]) -> int:
    """Rewrite the generated parts, or with ``--check`` list the stale files and return 1."""
    if argv == ["--check"]:
        files = stale()
        for rel in files:
            sys.stderr.write(f"{rel}: generated part is stale; run python docs/gen.py\n")
        return 1 if files else 0
    for rel, blocks in BLOCKS.items():
        path = ROOT / rel
        path.write_text(render(path.read_text(encoding="utf-8"), blocks), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
