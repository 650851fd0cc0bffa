"""Per-file facts: parse each .py file and notebook once, extract every concept's raw facts.

A file's facts depend on its bytes only, so they are cached by content hash (see
``mlpack.analyze.factcache``). The concept modules (imports, envvars, layout, entrypoints,
accelerators) turn the facts of all files into the analysis; nothing here knows the repository.
Nothing is executed: the source is only parsed with :mod:`ast`, whole or in chunks (``chunks``),
and walked by ``pyextract``; notebooks' code cells are read here.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from mlpack.analyze import chunks

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mlpack.analyze.pyextract import Extractor

MAX_SOURCE_BYTES: Final = 5 * 2**20  # larger .py files are generated data, not code
MAX_NOTEBOOK_BYTES: Final = 50 * 2**20  # notebooks carry outputs (images); code is small
TOO_DEEP: Final = "too deeply nested to parse, skipped"
BINARY: Final = "binary content (null bytes), not parsed"
# From this size on, only the statements that may hold a fact are parsed (see ``chunks``);
# a smaller file parses whole faster than the scan picks its statements (on the corpus of
# bench/analyze.py, 1 KiB parses its small files in 0.75x the time 4 KiB took, same facts).
FAST_MIN_BYTES: Final = 2**10
Mode = str  # "r" read, "w" write, "p" from_pretrained (local only when the folder exists)
# Import flags: why an import may not run when its module does.
OPTIONAL: Final = 1  # inside ``try``/``except ImportError``
GUARDED: Final = 2  # under an availability check: ``if is_x_available():``, ``find_spec``
LAZY: Final = 4  # inside a function body: runs only when the function is called
Import = tuple[str, int, int, tuple[str, ...]]  # (module, line, flags, names of a from-import)
# Namespace roots that no single distribution owns (see ``imports``).
NAMESPACE_ROOTS: Final = frozenset(
    {
        "google",
        "azure",
        "jaraco",
        "backports",
        "zope",
        "sphinxcontrib",
        "nvidia",
        "ruamel",
        "opentelemetry",
        "snowflake",
        "databricks",
    }
)
# A column-0 statement that does work when the file runs: a loop, a ``with`` or a bare call
# (``main()``, ``torch.manual_seed(0)``) but not set-up calls that modules make too. Searched
# after a newline (the text gets one in front): a pattern that starts with a literal lets the
# regex engine skip from line to line, where ``^`` would be tried at every character.
_SCRIPT_LINE: Final = re.compile(
    r"\n(?:(?:async[ \t]+)?(?:for|while|with)\b[^\n]*:[ \t]*(?:#[^\n]*)?$"
    r"|(?!(?:logging|warnings|sys|os|app|router|load_dotenv|register|setattr|mp|multiprocessing"
    r"|torch\.backends|pd\.set_option|np\.set_printoptions|print_function)\b)"
    r"[A-Za-z_][\w.]*\()",
    re.MULTILINE,
)
# An early exit on the device (`if device.type == "cpu": return`) guards the GPU use after it
# in the same block, which only a parse of the whole block can see (chunks split it). These
# only trigger a full parse: the syntax tree decides.
_EXIT_WORD: Final = re.compile(rb"(?:return|continue|break)\b")
_INLINE_EXIT: Final = re.compile(rb":[ \t]*(?:return|continue|break)\b")
_CELL_MAGIC_PYTHON: Final = frozenset({"%%time", "%%timeit", "%%capture", "%%prun"})


@dataclass(frozen=True, kw_only=True)
class FileFacts:
    """What one source file says, with 1-based line numbers.

    - ``imports``: (dotted module, line, flags, names) for imports, ``importlib`` and
      ``__import__`` literals; relative ones keep their dots (``..pkg``), ``names`` are what a
      ``from`` import takes (a name may be a submodule; ``*`` for a star import); ``flags``
      holds ``OPTIONAL``, ``GUARDED`` and ``LAZY``; ``TYPE_CHECKING`` imports are left out;
    - ``sys_path``: folders added to ``sys.path``, ``"file:<rel>"`` relative to the file's folder
      or ``"cwd:<rel>"`` for a literal relative path;
    - ``script``: line of the first column-0 statement that does work (a loop or a bare call):
      a script that runs without a ``__main__`` guard (0: none);
    - ``modules``: module names a notebook writes with ``%%writefile name.py`` (the repository's
      own modules once it ran; the cell's code is analysed as the notebook's);
    - ``env``: (name, line, literal default or None);
    - ``paths``: (literal path, line, mode) with mode "r", "w" or "p" (``from_pretrained``);
    - ``main``: line of ``if __name__ == "__main__"`` (0: none); ``serves``: line of a server
      start (``uvicorn.run``, ``app.run``; 0: none);
    - ``apps``: (variable, framework, line) for module-level FastAPI/Flask/Starlette objects;
    - ``cuda``: (line, what) for unguarded GPU use; ``cuda_optional``: line of a guarded use;
    - ``error``: why the file was skipped, or None.
    """

    imports: tuple[Import, ...] = ()
    env: tuple[tuple[str, int, str | None], ...] = ()
    paths: tuple[tuple[str, int, Mode], ...] = ()
    main: int = 0
    serves: int = 0
    apps: tuple[tuple[str, str, int], ...] = ()
    cuda: tuple[tuple[int, str], ...] = ()
    cuda_optional: int = 0
    sys_path: tuple[str, ...] = ()
    script: int = 0
    modules: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> list[Any]:
        """Return a compact JSON-able form (the cache's format)."""
        return [
            self.imports,
            self.env,
            self.paths,
            self.main,
            self.serves,
            self.apps,
            self.cuda,
            self.cuda_optional,
            self.sys_path,
            self.script,
            self.modules,
            self.error,
        ]

    @classmethod
    def from_json(cls, data: Any) -> FileFacts:
        """Rebuild facts from :meth:`to_json`'s form; raise ValueError when malformed."""
        try:
            (imports, env, paths, main, serves, apps, cuda, cuda_optional, sys_path, script,
             modules, error) = data  # fmt: skip
            return cls(
                imports=tuple(
                    (str(m), int(n), int(f), tuple(str(x) for x in names))
                    for m, n, f, names in imports
                ),
                env=tuple((str(k), int(n), None if d is None else str(d)) for k, n, d in env),
                paths=tuple((str(p), int(n), str(m)) for p, n, m in paths),
                main=int(main),
                serves=int(serves),
                apps=tuple((str(v), str(f), int(n)) for v, f, n in apps),
                cuda=tuple((int(n), str(w)) for n, w in cuda),
                cuda_optional=int(cuda_optional),
                sys_path=tuple(str(p) for p in sys_path),
                script=int(script),
                modules=tuple(str(m) for m in modules),
                error=None if error is None else str(error),
            )
        except (TypeError, ValueError) as exc:
            msg = f"malformed cached facts: {exc}"
            raise ValueError(msg) from exc


def facts_for(path: str, data: bytes) -> FileFacts:
    """Extract the facts of one file from its bytes (``.py`` or ``.ipynb``)."""
    if path.endswith(".ipynb"):
        return _notebook_facts(data)
    if len(data) > MAX_SOURCE_BYTES:
        return FileFacts(error=f"larger than {MAX_SOURCE_BYTES // 2**20} MiB, not parsed")
    found = _source_facts(data)
    if found.error is not None or found.main:
        return found
    text = "\n" + data.decode("utf-8", "replace")
    match = _SCRIPT_LINE.search(text)
    if match is None:
        return found
    return replace(found, script=text.count("\n", 0, match.start() + 1))


def _extractor() -> Extractor:
    # Imported here: the walk's module builds this module's FileFacts.
    from mlpack.analyze.pyextract import Extractor

    return Extractor()


def _source_facts(data: bytes) -> FileFacts:
    if len(data) >= FAST_MIN_BYTES:
        fast = _chunked_facts(data)
        # An early exit and the GPU use after it may sit in different chunks: parse it all.
        if fast is not None and not (
            fast.cuda and _exit_guards_a_use(data, (n for n, _ in fast.cuda))
        ):
            return fast
    tree_or_error = _parse(data)
    if isinstance(tree_or_error, str):
        return FileFacts(error=tree_or_error)
    extractor = _extractor()
    try:
        extractor.visit(tree_or_error)
    except RecursionError:
        return FileFacts(error=TOO_DEEP)
    return extractor.facts()


def _exit_guards_a_use(data: bytes, uses: Iterable[int]) -> bool:
    """An ``if`` on the device whose block (within its next six lines) returns, continues or
    breaks, followed in the same block (no line indented less before it) by one of the GPU
    ``uses`` (1-based lines). Line by line: one regular expression backtracks badly here.
    """
    from mlpack.analyze.pyextract import GPU_CHECK_WORD  # imported already: facts were parsed

    lines = data.split(b"\n")
    wanted = sorted(uses)
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped.startswith(b"if") or not GPU_CHECK_WORD.search(line):
            continue
        if not _INLINE_EXIT.search(line) and not any(
            _EXIT_WORD.match(following.lstrip()) for following in lines[i + 1 : i + 7]
        ):
            continue
        indent = len(line) - len(stripped)
        after = [n for n in wanted if n > i + 1]
        if after and _same_block(lines, i + 1, after[0], indent):
            return True
    return False


def _same_block(lines: list[bytes], start: int, end: int, indent: int) -> bool:
    """No code line in ``lines[start:end - 1]`` is indented less than ``indent``."""
    for line in lines[start : end - 1]:
        stripped = line.lstrip()
        if stripped and not stripped.startswith(b"#") and len(line) - len(stripped) < indent:
            return False
    return True


def _chunked_facts(data: bytes) -> FileFacts | None:
    """Facts from parsing only the statements that may hold one; None: parse everything."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or text.startswith("\ufeff"):
        return None
    try:
        parts = chunks.chunks(text)
    except chunks.Unsure:
        return None
    extractor = _extractor()
    for chunk in parts:
        try:
            tree = ast.parse(chunk.text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        extractor.offset = chunk.offset
        try:
            extractor.visit(tree)
        except RecursionError:
            return FileFacts(error=TOO_DEEP)
    return extractor.facts()


def _parse(data: bytes | str) -> ast.Module | str:
    """Parse source (bytes honour PEP 263 coding cookies); return the tree or why not."""
    # Tested before parsing: CPython up to 3.11.6 raises ValueError for a NUL byte, later ones
    # a SyntaxError without a line number, which would read "syntax error at line None".
    if (b"\x00" in data) if isinstance(data, bytes) else ("\x00" in data):
        return BINARY
    try:
        return ast.parse(data)
    except SyntaxError as exc:
        text = str(exc.msg)
        if "decode" in text or "codec" in text or "utf-8" in text.lower():
            return "not valid UTF-8 (nor its declared encoding), not parsed"
        hint = ""
        if isinstance(data, bytes) and b"\n<<<<<<< " in b"\n" + data:
            hint = " (merge-conflict markers)"
        elif _looks_like_python2(data):
            hint = " (Python 2 code?)"
        return f"syntax error at line {exc.lineno}{hint}, not parsed"
    except (RecursionError, MemoryError):
        return TOO_DEEP


def _looks_like_python2(data: bytes | str) -> bool:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return bool(
        re.search(
            r"^\s*print\s+[\"'\w]|^\s*exec\s+[\"']|except\s+\w+\s*,\s*\w+:", text, re.MULTILINE
        )
    )


def _notebook_facts(data: bytes) -> FileFacts:
    """Facts of a notebook's code cells; a location's line counts through the cells joined."""
    cells = _code_cells(data)
    if isinstance(cells, FileFacts):
        return cells
    extractor = _extractor()
    offset = 0
    bad: list[str] = []
    written: list[str] = []
    for number, source in enumerate(cells, 1):
        module = _written_module(source)
        if module is not None:
            written.append(module)
        code = _strip_magics(source, python_file=module is not None)
        if code is not None and not _extract_cell(extractor, code, offset):
            bad.append(str(number))
        offset += source.count("\n") + 1
    facts = replace(extractor.facts(), modules=tuple(dict.fromkeys(written)))
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        return replace(
            facts, error=f"code cell {shown} not valid Python, skipped (the rest was analysed)"
        )
    return facts


def _code_cells(data: bytes) -> list[str] | FileFacts:
    """The sources of the code cells in order, or the facts of a notebook that is unreadable."""
    if len(data) > MAX_NOTEBOOK_BYTES:
        return FileFacts(error=f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB, not parsed")
    try:
        nb = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return FileFacts(error="invalid notebook JSON, not parsed")
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        # nbformat 3 kept cells under worksheets.
        sheets = nb.get("worksheets") if isinstance(nb, dict) else None
        cells = []
        if isinstance(sheets, list):
            for sheet in sheets:
                if isinstance(sheet, dict) and isinstance(sheet.get("cells"), list):
                    cells.extend(sheet["cells"])
    sources = []
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            raw = cell.get("source", cell.get("input", ""))
            sources.append("".join(raw) if isinstance(raw, list) else str(raw))
    return sources


def _extract_cell(extractor: Extractor, code: str, offset: int) -> bool:
    """Add one cell's facts at its line offset; False when the cell is not valid Python."""
    tree = _parse(code)
    if isinstance(tree, str):
        return False
    extractor.offset = offset
    try:
        extractor.visit(tree)
    except RecursionError:
        return False
    return True


def _written_module(source: str) -> str | None:
    """``model`` for a cell that starts ``%%writefile model.py`` (or ``-a src/model.py``)."""
    first = source.lstrip().split("\n", 1)[0].split()
    if len(first) < 2 or first[0] != "%%writefile" or not first[-1].endswith(".py"):
        return None
    stem = first[-1].rpartition("/")[2][:-3]
    return stem if stem.isidentifier() else None


def _strip_magics(source: str, *, python_file: bool = False) -> str | None:
    """Blank IPython magics and shell escapes (``%``, ``!``); None for non-Python cell magics.

    ``python_file``: the cell writes a ``.py`` file; its body is Python the notebook runs later.
    """
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        if lines[0].split()[0] not in _CELL_MAGIC_PYTHON and not python_file:
            return None
        lines[0] = ""
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            # Keep the indentation so a magic alone in a block stays valid Python.
            out.append(line[: len(line) - len(stripped)] + "pass")
        else:
            out.append(line)
    return "\n".join(out)
