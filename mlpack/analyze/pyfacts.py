"""Per-file facts: parse each .py file and notebook once, extract every concept's raw facts.

A file's facts depend on its bytes only, so they are cached by content hash (see
``mlpack.analyze.factcache``). The concept modules (imports, envvars, layout, entrypoints,
accelerators) turn the facts of all files into the analysis; nothing here knows the repository.
Nothing is executed: the source is only parsed with :mod:`ast`.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from mlpack.analyze import chunks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

MAX_SOURCE_BYTES: Final = 5 * 2**20  # larger .py files are generated data, not code
MAX_NOTEBOOK_BYTES: Final = 50 * 2**20  # notebooks carry outputs (images); code is small
TOO_DEEP: Final = "too deeply nested to parse, skipped"
BINARY: Final = "binary content (null bytes), not parsed"
# From this size on, only the statements that may hold a fact are parsed (see ``chunks``).
FAST_MIN_BYTES: Final = 4 * 2**10

Mode = str  # "r" read, "w" write, "p" from_pretrained (local only when the folder exists)
# Import flags: why an import may not run when its module does.
OPTIONAL: Final = 1  # inside ``try``/``except ImportError``
GUARDED: Final = 2  # under an availability check: ``if is_x_available():``, ``find_spec``
LAZY: Final = 4  # inside a function body: runs only when the function is called
Import = tuple[str, int, int, tuple[str, ...]]  # (module, line, flags, names of a from-import)

_RECEIVER_CALLS: Final = frozenset(
    {"mkdir", "write_text", "write_bytes", "read_text", "read_bytes"}
)
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
_APP_CLASSES: Final = {"FastAPI": "fastapi", "Flask": "flask", "Starlette": "starlette"}
# torch.cuda.<name>(...) calls that do not need a GPU (queries, seeds, no-ops on CPU).
_CUDA_HARMLESS: Final = frozenset(
    {
        "is_available",
        "device_count",
        "manual_seed",
        "manual_seed_all",
        "empty_cache",
        "is_initialized",
        "is_bf16_supported",
        "amp",
        "reset_peak_memory_stats",
    }
)
_IMPORT_ERRORS: Final = frozenset(
    {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
)
_CUDA_LITERAL: Final = re.compile(r"cuda(:\d+)?$")
# A mode string passed to ``x.open(...)``: never a path.
_FILE_MODE: Final = re.compile(r"[rwaxbtU+]{1,4}$")
_AVAILABILITY: Final = re.compile(r"^(is_\w+_available|has_\w+|find_spec|find_loader)$")
# A column-0 statement that does work when the file runs: a loop, a ``with`` or a bare call
# (``main()``, ``torch.manual_seed(0)``) but not set-up calls that modules make too.
_SCRIPT_LINE: Final = re.compile(
    r"^(?:(?:async[ \t]+)?(?:for|while|with)\b[^\n]*:[ \t]*(?:#[^\n]*)?$"
    r"|(?!(?:logging|warnings|sys|os|app|router|load_dotenv|register|setattr|mp|multiprocessing"
    r"|torch\.backends|pd\.set_option|np\.set_printoptions|print_function)\b)"
    r"[A-Za-z_][\w.]*\()",
    re.MULTILINE,
)
_CELL_MAGIC_PYTHON: Final = frozenset({"%%time", "%%timeit", "%%capture", "%%prun"})


@dataclass(frozen=True, kw_only=True)
class FileFacts:
    """What one source file says, with 1-based line numbers.

    - ``imports``: (dotted module, line, flags, names) for imports, ``importlib`` and
      ``__import__`` literals; relative ones keep their dots (``..pkg``), ``names`` are what a
      ``from`` import takes (a name may be a submodule); ``flags`` holds ``OPTIONAL``,
      ``GUARDED`` and ``LAZY``; ``TYPE_CHECKING`` imports are left out;
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
    match = _SCRIPT_LINE.search(data.decode("utf-8", "replace"))
    if match is None:
        return found
    return replace(found, script=data.count(b"\n", 0, match.start()) + 1)


def _source_facts(data: bytes) -> FileFacts:
    if len(data) >= FAST_MIN_BYTES:
        fast = _chunked_facts(data)
        if fast is not None:
            return fast
    tree_or_error = _parse(data)
    if isinstance(tree_or_error, str):
        return FileFacts(error=tree_or_error)
    extractor = _Extractor()
    try:
        extractor.visit(tree_or_error)
    except RecursionError:
        return FileFacts(error=TOO_DEEP)
    return extractor.facts()


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
    extractor = _Extractor()
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
    extractor = _Extractor()
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


def _extract_cell(extractor: _Extractor, code: str, offset: int) -> bool:
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


def _dotted(node: ast.expr) -> str:
    """Return ``a.b.c`` for a Name/Attribute chain, else ""."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _literal(node: ast.expr | None) -> str | None:
    """Return a literal default as text (str/int/float/bool), None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        return str(node.value)
    return None


def _path_literal(node: ast.expr) -> str | None:
    """Return the literal path an argument names, or its literal folder part."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return _fstring_folder(node)
    if isinstance(node, ast.Call):
        return _path_call_literal(node)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left = _path_literal(node.left)
        right = _path_literal(node.right)
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
    name = _dotted(node.func)
    if name.endswith(("Path", "PurePath")) and node.args:
        return _path_literal(node.args[0])
    if name in {"os.path.join", "path.join", "join"}:
        parts: list[str] = []
        for arg in node.args:
            lit = _path_literal(arg)
            if lit is None:
                break
            parts.append(lit)
        return "/".join(parts) or None
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return _dotted(test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING", "t.TYPE_CHECKING"}


def _is_main_guard(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    mains = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return bool(names and mains)


def _mentions_gpu_check(test: ast.expr) -> bool:
    """True when a condition asks whether a GPU is there (``torch.cuda.is_available()``...)."""
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr in {
            "is_available",
            "device_count",
            "cuda",
            "list_physical_devices",
            "gpu_device_name",
            "is_built_with_cuda",
        }:
            return True
        if isinstance(node, ast.Name) and "cuda" in node.id.lower():
            return True
    return False


def _handles_import_error(handlers: Iterable[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(_dotted(t).rpartition(".")[2] in _IMPORT_ERRORS for t in types):
            return True
    return False


class _Extractor(ast.NodeVisitor):
    """One pass over a tree that records the facts of every concept."""

    def __init__(self) -> None:
        self.offset = 0  # line offset (notebook cells)
        self._optional = 0  # depth of try-bodies that catch ImportError
        # Conditions of the enclosing if-branches: whether one asks for a GPU is only worked
        # out when a GPU use is found (rare), not for every ``if``.
        self._conditions: list[ast.expr] = []
        self._scope = 0  # depth of def/class bodies
        self._function = 0  # depth of def bodies
        self._guarded = 0  # depth of if-bodies under an availability check
        self._os = {"os"}
        self._environ: set[str] = set()
        self._getenv: set[str] = set()
        self._app_vars: set[str] = set()
        self.imports: list[Import] = []
        self.env: list[tuple[str, int, str | None]] = []
        self.paths: list[tuple[str, int, Mode]] = []
        self.main = 0
        self.serves = 0
        self.apps: list[tuple[str, str, int]] = []
        self.cuda: list[tuple[int, str]] = []
        self.cuda_optional = 0
        self.sys_path: list[str] = []

    def visit(self, node: ast.AST) -> None:
        """Dispatch to ``visit_<Class>``, walk the children, or skip a leaf."""
        cls = node.__class__
        handler = _DISPATCH.get(cls)
        if handler is None:
            handler = _handler_for(cls)
        if handler is _generic:
            self.generic_visit(node)
        elif handler is not _leaf:
            handler(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        """Visit every child node, except type annotations (they hold no fact).

        The hot loop of a cold run: the fields to walk come from a per-class table, and leaves
        (names, constants, strings, None) are skipped here without a call.
        """
        dispatch = _DISPATCH
        fields = _FIELDS.get(node.__class__)
        for name in _fields_for(node.__class__) if fields is None else fields:
            value: Any = getattr(node, name, None)
            if value.__class__ is list:
                for item in value:
                    handler = dispatch.get(item.__class__) or _handler_for(item.__class__)
                    if handler is _generic:
                        self.generic_visit(item)
                    elif handler is not _leaf:
                        handler(self, item)
            else:
                handler = dispatch.get(value.__class__) or _handler_for(value.__class__)
                if handler is _generic:
                    self.generic_visit(value)
                elif handler is not _leaf:
                    handler(self, value)

    def facts(self) -> FileFacts:
        """Return what was collected."""
        return FileFacts(
            imports=tuple(self.imports),
            env=tuple(self.env),
            paths=tuple(self.paths),
            main=self.main,
            serves=self.serves,
            apps=tuple(self.apps),
            cuda=tuple(self.cuda),
            cuda_optional=self.cuda_optional,
            sys_path=tuple(dict.fromkeys(self.sys_path)),
        )

    def _line(self, node: ast.AST) -> int:
        return int(getattr(node, "lineno", 0)) + self.offset

    # --- imports ---
    def _flags(self) -> int:
        return (
            (OPTIONAL if self._optional else 0)
            | (GUARDED if self._guarded else 0)
            | (LAZY if self._function else 0)
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.append((alias.name, self._line(node), self._flags(), ()))
            if alias.name == "os":
                self._os.add(alias.asname or "os")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        line, flags = self._line(node), self._flags()
        names = tuple(alias.name for alias in node.names if alias.name != "*")
        if node.level:
            self.imports.append(("." * node.level + (node.module or ""), line, flags, names))
            return
        if not node.module:
            return
        if node.module.split(".", 1)[0] in NAMESPACE_ROOTS:
            # `from google.cloud import storage` imports google.cloud.storage.
            for name in names:
                self.imports.append((f"{node.module}.{name}", line, flags, ()))
        else:
            self.imports.append((node.module, line, flags, names))
        if node.module == "os":
            for alias in node.names:
                if alias.name == "environ":
                    self._environ.add(alias.asname or "environ")
                elif alias.name == "getenv":
                    self._getenv.add(alias.asname or "getenv")

    def visit_Try(self, node: ast.Try) -> None:
        self._visit_try(node.body, node.handlers, node.orelse, node.finalbody)

    def visit_TryStar(self, node: ast.TryStar) -> None:
        self._visit_try(node.body, node.handlers, node.orelse, node.finalbody)

    def _visit_try(
        self,
        body: list[ast.stmt],
        handlers: list[ast.ExceptHandler],
        orelse: list[ast.stmt],
        finalbody: list[ast.stmt],
    ) -> None:
        soft = _handles_import_error(handlers)
        self._optional += soft
        for stmt in body:
            self.visit(stmt)
        self._optional -= soft
        for part in (handlers, orelse, finalbody):
            for item in part:
                self.visit(item)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for stmt in node.orelse:  # the runtime branch
                self.visit(stmt)
            return
        if self._scope == 0 and _is_main_guard(node.test) and not self.main:
            self.main = self._line(node)
        self.visit(node.test)
        self._conditions.append(node.test)
        guarded = _is_availability_check(node.test)
        self._guarded += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._guarded -= guarded
        for stmt in node.orelse:
            self.visit(stmt)
        self._conditions.pop()

    def visit_IfExp(self, node: ast.IfExp) -> None:
        if (
            not self.cuda_optional
            and _is_cuda_literal(node.body)
            and _mentions_gpu_check(node.test)
        ):
            self.cuda_optional = self._line(node)  # "cuda" if torch.cuda.is_available() else ...
        self._conditions.append(node.test)
        self.generic_visit(node)
        self._conditions.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function += 1
        self._visit_scope(node)
        self._function -= 1

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function += 1
        self._visit_scope(node)
        self._function -= 1

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if any(_dotted(b).rpartition(".")[2] == "BaseSettings" for b in node.bases):
            self._settings_fields(node)
        self._visit_scope(node)

    def _settings_fields(self, node: ast.ClassDef) -> None:
        """A pydantic ``BaseSettings`` class: each field is read from ``<env_prefix><NAME>``."""
        prefix = ""
        for stmt in node.body:
            for sub in ast.walk(stmt):
                keyword = isinstance(sub, ast.keyword) and sub.arg == "env_prefix"
                assign = isinstance(sub, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "env_prefix" for t in sub.targets
                )
                if keyword or assign:
                    prefix = _literal(getattr(sub, "value", None)) or prefix
        for stmt in node.body:
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and not stmt.target.id.startswith("_")
                and stmt.target.id != "model_config"
                and "ClassVar" not in ast.unparse(stmt.annotation)
            ):
                name = (prefix + stmt.target.id).upper()
                self.env.append((name, self._line(stmt), _literal(stmt.value)))

    def _visit_scope(self, node: ast.AST) -> None:
        self._scope += 1
        self.generic_visit(node)
        self._scope -= 1

    # --- apps (module-level FastAPI()/Flask()/Starlette()) ---
    def visit_Assign(self, node: ast.Assign) -> None:
        self._app_assign(node.targets, node.value, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._app_assign([node.target], node.value, node)
        self.generic_visit(node)

    def _app_assign(self, targets: list[ast.expr], value: ast.expr, node: ast.AST) -> None:
        if not isinstance(value, ast.Call):
            return
        framework = _APP_CLASSES.get(_dotted(value.func).rpartition(".")[2])
        if framework is None:
            return
        for target in targets:
            if isinstance(target, ast.Name):
                self._app_vars.add(target.id)
                if self._scope == 0:
                    self.apps.append((target.id, framework, self._line(node)))

    # --- env vars ---
    def _is_environ(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self._environ
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "environ"
            and isinstance(node.value, ast.Name)
            and node.value.id in self._os
        )

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Load) and self._is_environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.env.append((key.value, self._line(node), None))
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if (
            len(node.ops) == 1
            and isinstance(node.ops[0], (ast.In, ast.NotIn))
            and self._is_environ(node.comparators[0])
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            self.env.append((node.left.value, self._line(node), None))
        self.generic_visit(node)

    def _env_call(self, node: ast.Call, func: ast.expr) -> bool:
        is_getenv = (isinstance(func, ast.Name) and func.id in self._getenv) or (
            isinstance(func, ast.Attribute)
            and func.attr == "getenv"
            and isinstance(func.value, ast.Name)
            and func.value.id in self._os
        )
        is_environ_method = (
            isinstance(func, ast.Attribute)
            and func.attr in {"get", "setdefault"}
            and self._is_environ(func.value)
        )
        if not (is_getenv or is_environ_method) or not node.args:
            return False
        key = node.args[0]
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            return True
        default_node = node.args[1] if len(node.args) > 1 else None
        for kw in node.keywords:
            if kw.arg in {"default", "value"}:
                default_node = kw.value
        self.env.append((key.value, self._line(node), _literal(default_node)))
        return True

    # --- calls: dynamic imports, env, paths, servers, cuda ---
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = _dotted(func)
        last = name.rpartition(".")[2] if name else getattr(func, "attr", "")
        if name in {"sys.path.insert", "sys.path.append"} and node.args:
            where = _sys_path_entry(node.args[-1])
            if where is not None:
                self.sys_path.append(where)
        elif not self._env_call(node, func):
            self._dynamic_import(node, name)
            self._path_call(node, name, last)
            self._server_call(node, name, func)
            self._cuda_call(node, name, last)
        self.generic_visit(node)

    def _dynamic_import(self, node: ast.Call, name: str) -> None:
        if name not in {"importlib.import_module", "import_module", "__import__"}:
            return
        if node.args and isinstance(node.args[0], ast.Constant):
            value = node.args[0].value
            if isinstance(value, str) and value and not value.startswith("."):
                self.imports.append((value, self._line(node), self._flags(), ()))

    def _path_call(self, node: ast.Call, name: str, last: str) -> None:
        line = self._line(node)
        if self._opened_path(node, name, last, line):
            return
        if last == "from_pretrained" and node.args:
            path = _path_literal(node.args[0])
            if path is not None:
                self.paths.append((path, line, "p"))
        elif last in chunks.WRITE_CALLS or last in chunks.READ_CALLS:
            mode = "w" if last in chunks.WRITE_CALLS else "r"
            if last in {"copy", "copyfile", "copytree"}:
                args = node.args[1:2]  # the destination
            else:
                args = node.args[:2]
            for arg in args:
                path = _path_literal(arg)
                if path is not None and _looks_like_path(path):
                    self.paths.append((path, line, mode))
                    break
        for kw in node.keywords:
            if kw.arg in chunks.WRITE_KEYWORDS or kw.arg in chunks.READ_KEYWORDS:
                path = _path_literal(kw.value)
                if path is not None and _looks_like_path(path):
                    self.paths.append((path, line, "w" if kw.arg in chunks.WRITE_KEYWORDS else "r"))

    def _opened_path(self, node: ast.Call, name: str, last: str, line: int) -> bool:
        """Record ``open(p)``, ``Path(p).open("w")`` and ``Path(p).read_text()``-style calls.

        True when the call was one of these, so nothing else in it is a path.
        """
        if last == "open" and isinstance(node.func, ast.Attribute):
            receiver = _path_literal(node.func.value)
            if receiver is not None:  # Path("x").open("w")
                mode_arg = _literal(node.args[0]) if node.args else None
                mode = "w" if mode_arg and any(c in mode_arg for c in "wax+") else "r"
                self.paths.append((receiver, line, mode))
                return True
        if name in {"open", "io.open", "codecs.open"} or (last == "open" and name != "open"):
            if node.args:
                path = _path_literal(node.args[0])
                if path is not None and not _FILE_MODE.match(path):
                    self.paths.append((path, line, _open_mode(node)))
            return True
        if last in _RECEIVER_CALLS and isinstance(node.func, ast.Attribute):
            path = _path_literal(node.func.value)
            if path is not None:
                self.paths.append((path, line, "r" if last.startswith("read") else "w"))
                return True
        return False

    def _server_call(self, node: ast.Call, name: str, func: ast.expr) -> None:
        if self.serves:
            return
        if name in {"uvicorn.run", "web.run_app", "waitress.serve"} or (
            isinstance(func, ast.Attribute)
            and func.attr == "run"
            and isinstance(func.value, ast.Name)
            and func.value.id in self._app_vars
        ):
            self.serves = self._line(node)

    def _cuda_call(self, node: ast.Call, name: str, last: str) -> None:
        what = _gpu_use(node, name, last)
        if not what:
            return
        if any(_mentions_gpu_check(test) for test in self._conditions):
            self.cuda_optional = self.cuda_optional or self._line(node)
        else:
            self.cuda.append((self._line(node), what))


def _gpu_use(node: ast.Call, name: str, last: str) -> str:
    """What in this call uses a GPU ("" for nothing): the call, a ``device=`` or a flag default."""
    what = _torch_gpu_call(node, name, last)
    if what is None:
        what = _other_gpu_call(node, name, last)
    return what or _gpu_keyword(node, last)


def _torch_gpu_call(node: ast.Call, name: str, last: str) -> str | None:
    """``.cuda()``, a ``torch.cuda`` call other than queries, or ``.to("cuda")``.

    None when the call has none of these shapes; "" when it has one but uses no GPU.
    """
    if last == "cuda" and isinstance(node.func, ast.Attribute) and name != "torch.cuda":
        return ".cuda()"
    if name.startswith("torch.cuda."):
        return name if name.split(".")[2] not in _CUDA_HARMLESS else ""
    if name in {"torch.device", "device"} or last == "to":
        return f'{name or last}("cuda")' if node.args and _is_cuda_literal(node.args[0]) else ""
    return None


def _other_gpu_call(node: ast.Call, name: str, last: str) -> str:
    """TensorFlow and JAX GPU devices, and an NCCL process group."""
    if name in {"tf.device", "tensorflow.device"} and node.args:
        lit = _literal(node.args[0])
        return name if lit is not None and "gpu" in lit.lower() else ""
    if name.startswith(("tf.config.", "tensorflow.config.")) and (
        "memory_growth" in name
        or any(_literal(a) is not None and str(_literal(a)).upper() == "GPU" for a in node.args)
    ):
        return name
    if name in {"jax.devices", "jax.local_devices"} and node.args:
        lit = _literal(node.args[0])
        return name if lit is not None and lit.lower() in {"gpu", "cuda"} else ""
    if last == "init_process_group" and any(
        _literal(a) == "nccl" for a in [*node.args[:1], *(k.value for k in node.keywords)]
    ):
        return "nccl process group"
    return ""


def _gpu_keyword(node: ast.Call, last: str) -> str:
    """``device="cuda"``, ``device_map="cuda"`` or ``add_argument("--device", default="cuda")``.

    With such a flag default the script runs on a GPU unless told otherwise.
    """
    for kw in node.keywords:
        if kw.arg in {"device", "device_map"} and _is_cuda_literal(kw.value):
            return f'{kw.arg}="cuda"'
    if last == "add_argument" and node.args:
        flag = _literal(node.args[0]) or ""
        for kw in node.keywords:
            if kw.arg == "default" and "device" in flag and _is_cuda_literal(kw.value):
                return "--device default cuda"
    return ""


def _generic(extractor: _Extractor, node: ast.AST) -> None:
    """Marker: walk the children."""


def _leaf(extractor: _Extractor, node: ast.AST) -> None:
    """Marker: nothing below can hold a fact."""


_LEAVES: Final = (ast.Name, ast.Constant, ast.expr_context, ast.operator, ast.cmpop, ast.unaryop)
_SKIPPED_FIELDS: Final = frozenset({"annotation", "returns", "type_comment", "ctx", "type_params"})
# Fields that never hold a node (identifiers, numbers, flags): not worth a look.
_PLAIN_FIELDS: Final = frozenset(
    {"id", "attr", "name", "arg", "asname", "module", "level", "kind", "is_async", "simple"}
)
# A lean dispatch: NodeVisitor's generic machinery (and its visit_Constant shim for the removed
# ast.Num/ast.Str) dominates the cost on large trees.
_DISPATCH: dict[type, Callable[[_Extractor, Any], None]] = {}
_FIELDS: dict[type, tuple[str, ...]] = {}


def _handler_for(cls: type) -> Callable[[_Extractor, Any], None]:
    """The handler of a class: its own ``visit_<Class>``, ``_generic`` or ``_leaf``."""
    method = _Extractor.__dict__.get("visit_" + cls.__name__)  # not NodeVisitor's shims
    if method is not None:
        handler: Callable[[_Extractor, Any], None] = method
    elif not issubclass(cls, ast.AST) or issubclass(cls, _LEAVES):
        handler = _leaf  # also str, int, None: the values of plain fields
    else:
        handler = _generic
    _DISPATCH[cls] = handler
    return handler


def _fields_for(cls: type) -> tuple[str, ...]:
    """The fields of a node class that may hold a fact (``()`` for a class without any)."""
    fields = tuple(
        name
        for name in getattr(cls, "_fields", ())
        if name not in _SKIPPED_FIELDS and name not in _PLAIN_FIELDS
    )
    _FIELDS[cls] = fields
    return fields


def _is_cuda_literal(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and bool(_CUDA_LITERAL.match(node.value))
    )


def _open_mode(node: ast.Call) -> Mode:
    mode_node = node.args[1] if len(node.args) > 1 else None
    for kw in node.keywords:
        if kw.arg == "mode":
            mode_node = kw.value
    mode = _literal(mode_node) or "r"
    return "w" if any(c in mode for c in "wax+") else "r"


def _looks_like_path(text: str) -> bool:
    if not text or len(text) > 300 or any(c in text for c in "\n\t ") or "://" in text:
        return False
    return "/" in text or bool(re.search(r"\.[A-Za-z0-9]{1,10}$", text))


def _is_availability_check(test: ast.expr) -> bool:
    """True for ``if is_x_available():``, ``if find_spec("x"):`` and their negation-free kin."""
    for node in ast.walk(test):
        if isinstance(node, ast.Call):
            last = _dotted(node.func).rpartition(".")[2]
            if _AVAILABILITY.match(last):
                return True
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return False  # ``if not is_x_available(): raise``: the body is the fallback
    return False


def _sys_path_entry(node: ast.expr) -> str | None:
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
        right = _literal(node.right)
        return None if base is None or right is None else _join(base, right)
    if isinstance(node, ast.Call):
        return _file_relative_call(node)
    return None


def _joined(first: str, args: list[ast.expr]) -> str | None:
    """``os.path.join(<file-relative>, "a", "b")``: None when a part is not a literal."""
    for arg in args:
        part = _literal(arg)
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
        last = _dotted(node.func).rpartition(".")[2]
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
