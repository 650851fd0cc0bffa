"""The syntax-tree walk that records what one file says (``pyfacts.FileFacts``).

One pass over a module's (or a chunk's, or a notebook cell's) tree records every concept's raw
facts: imports with their flags, environment variables, paths read and written, ``__main__``
guards and server starts, web apps, GPU use and ``sys.path`` insertions. Nothing is executed.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any, Final

from mlpack.analyze import triggers
from mlpack.analyze.pyexpr import (
    dotted,
    is_availability_check,
    is_cuda_literal,
    is_main_guard,
    is_type_checking,
    literal,
    looks_like_path,
    open_mode,
    path_literal,
    sys_path_entry,
)
from mlpack.analyze.pyfacts import GUARDED, LAZY, NAMESPACE_ROOTS, OPTIONAL, FileFacts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from mlpack.analyze.pyfacts import Import, Mode

_RECEIVER_CALLS: Final = frozenset(
    {"mkdir", "write_text", "write_bytes", "read_text", "read_bytes"}
)
_APP_CLASSES: Final = {"FastAPI": "fastapi", "Flask": "flask", "Starlette": "starlette"}
# torch.cuda.<name>(...) and torch.accelerator.<name>(...) calls that do not need a GPU
# (queries, seeds, no-ops on CPU).
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
# A mode string passed to ``x.open(...)``: never a path.
_FILE_MODE: Final = re.compile(r"[rwaxbtU+]{1,4}$")
_LEAVES: Final = (ast.Name, ast.Constant, ast.expr_context, ast.operator, ast.cmpop, ast.unaryop)
_SKIPPED_FIELDS: Final = frozenset({"annotation", "returns", "type_comment", "ctx", "type_params"})
# Fields that never hold a node (identifiers, numbers, flags): not worth a look.
_PLAIN_FIELDS: Final = frozenset(
    {"id", "attr", "name", "arg", "asname", "module", "level", "kind", "is_async", "simple"}
)
# A lean dispatch: NodeVisitor's generic machinery (and its visit_Constant shim for the removed
# ast.Num/ast.Str) dominates the cost on large trees.
_DISPATCH: dict[type, Callable[[Extractor, Any], None]] = {}
_FIELDS: dict[type, tuple[str, ...]] = {}


_GPU_CHECK_ATTRS: Final = frozenset(
    {
        "is_available",
        "device_count",
        "cuda",
        "is_cuda",
        "device",
        "list_physical_devices",
        "gpu_device_name",
        "is_built_with_cuda",
        "get_backend",
        "NCCL",
    }
)
# Names of a GPU flag, a device, or a distributed launch (GPU use only when launched so).
_GPU_CHECK_NAMES: Final = (
    "cuda", "gpu", "device", "rank", "world_size", "ddp", "distributed", "accel",
)  # fmt: skip
_DEVICE_NAMES: Final = frozenset({"cuda", "cpu", "gpu", "mps", "xpu", "nccl"})
# Any word that ``_mentions_gpu_check`` looks for, in source bytes: pyfacts scans lines for it
# to find an early exit on the device that a chunked parse could split from its GPU use.
GPU_CHECK_WORD: Final = re.compile(
    "|".join(
        map(re.escape, sorted({*_GPU_CHECK_ATTRS, *_GPU_CHECK_NAMES, *_DEVICE_NAMES}))
    ).encode(),
    re.IGNORECASE,
)


def _mentions_gpu_check(test: ast.expr) -> bool:
    """True when a condition asks whether a GPU is there, which device runs the code or
    whether it was launched distributed: ``torch.cuda.is_available()``,
    ``x.device.type == "cpu"``, ``if has_gpu:``, ``args.cuda``, ``if LOCAL_RANK != -1:``,
    ``dist.get_backend() == "nccl"``. GPU use under it adapts to how the code is run: there
    is a path without a GPU.
    """
    for node in ast.walk(test):
        if isinstance(node, ast.Attribute) and node.attr in _GPU_CHECK_ATTRS:
            return True
        if isinstance(node, ast.Name) and any(w in node.id.lower() for w in _GPU_CHECK_NAMES):
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value.lower()
            if value in _DEVICE_NAMES or value.startswith("cuda:"):
                return True
    return False


def _leaves_block(body: list[ast.stmt]) -> bool:
    """The block ends by leaving its function or loop another way (not by raising)."""
    return isinstance(body[-1], ast.Return | ast.Continue | ast.Break)


def _handles_import_error(handlers: Iterable[ast.ExceptHandler]) -> bool:
    for handler in handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(dotted(t).rpartition(".")[2] in _IMPORT_ERRORS for t in types):
            return True
    return False


class Extractor(ast.NodeVisitor):
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
                self._visit_block(value)
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
        """An import, with its flags; an ``os`` alias for the environment reads."""
        for alias in node.names:
            self.imports.append((alias.name, self._line(node), self._flags(), ()))
            if alias.name == "os":
                self._os.add(alias.asname or "os")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        """A from-import: relative ones keep their dots; namespace roots name the submodule.

        A star import keeps its ``*``: the names of the module it reads become the file's own
        (``from helpers import *`` of a module that does ``import streamlit as st``).
        """
        line, flags = self._line(node), self._flags()
        names = tuple(alias.name for alias in node.names)
        if node.level:
            self.imports.append(("." * node.level + (node.module or ""), line, flags, names))
            return
        if not node.module:
            return
        if node.module.split(".", 1)[0] in NAMESPACE_ROOTS:
            # `from google.cloud import storage` imports google.cloud.storage.
            for name in names:
                if name != "*":
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
        """A try: its body's imports are optional when a handler catches ImportError."""
        self._visit_try(node.body, node.handlers, node.orelse, node.finalbody)

    def visit_TryStar(self, node: ast.TryStar) -> None:
        """A ``try``/``except*``: as a try."""
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
        self._visit_block(body)
        self._optional -= soft
        for handler in handlers:
            self.visit(handler)
        self._visit_block(orelse)
        self._visit_block(finalbody)

    def _visit_block(self, items: list[Any]) -> None:
        """A list of nodes (a block of statements, arguments...): an early exit's condition
        (``visit_If``) holds to the end of the block it is in, and no further.
        """
        depth = len(self._conditions)
        dispatch = _DISPATCH
        for item in items:
            handler = dispatch.get(item.__class__) or _handler_for(item.__class__)
            if handler is _generic:
                self.generic_visit(item)
            elif handler is not _leaf:
                handler(self, item)
        del self._conditions[depth:]

    def visit_If(self, node: ast.If) -> None:
        """An if: a TYPE_CHECKING block (left out), a __main__ guard or an availability check."""
        if is_type_checking(node.test):
            self._visit_block(node.orelse)  # the runtime branch
            return
        if self._scope == 0 and is_main_guard(node.test) and not self.main:
            self.main = self._line(node)
        self.visit(node.test)
        self._conditions.append(node.test)
        guarded = is_availability_check(node.test)
        self._guarded += guarded
        self._visit_block(node.body)
        self._guarded -= guarded
        self._visit_block(node.orelse)
        self._conditions.pop()
        if not node.orelse and _leaves_block(node.body) and _mentions_gpu_check(node.test):
            # `if device.type == "cpu": return`: what follows in the block runs only on a GPU
            # path, so its GPU use is guarded (a `raise` instead says the GPU is needed).
            self._conditions.append(node.test)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        """``"cuda" if torch.cuda.is_available() else "cpu"``: GPU use that is optional."""
        if not self.cuda_optional and is_cuda_literal(node.body) and _mentions_gpu_check(node.test):
            self.cuda_optional = self._line(node)  # "cuda" if torch.cuda.is_available() else ...
        self._conditions.append(node.test)
        self.generic_visit(node)
        self._conditions.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        """A function body: its imports only run when it is called (``LAZY``)."""
        self._function += 1
        self._visit_scope(node)
        self._function -= 1

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        """An async function body: as a function's."""
        self._function += 1
        self._visit_scope(node)
        self._function -= 1

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        """A class: a pydantic ``BaseSettings`` one's fields are environment variables."""
        if any(dotted(b).rpartition(".")[2] == "BaseSettings" for b in node.bases):
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
                    prefix = literal(getattr(sub, "value", None)) or prefix
        for stmt in node.body:
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and not stmt.target.id.startswith("_")
                and stmt.target.id != "model_config"
                and "ClassVar" not in ast.unparse(stmt.annotation)
            ):
                name = (prefix + stmt.target.id).upper()
                self.env.append((name, self._line(stmt), literal(stmt.value)))

    def _visit_scope(self, node: ast.AST) -> None:
        self._scope += 1
        self.generic_visit(node)
        self._scope -= 1

    # --- apps (module-level FastAPI()/Flask()/Starlette()) ---
    def visit_Assign(self, node: ast.Assign) -> None:
        """An assignment: ``app = FastAPI()`` names a web app; ``device = "cuda"`` uses a GPU."""
        self._app_assign(node.targets, node.value, node)
        self._device_assign(node.targets, node.value, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        """An annotated assignment: as an assignment."""
        if node.value is not None:
            self._app_assign([node.target], node.value, node)
            self._device_assign([node.target], node.value, node)
        self.generic_visit(node)

    def _device_assign(self, targets: list[ast.expr], value: ast.expr, node: ast.AST) -> None:
        """``device = "cuda"`` (nanoGPT's config): the device the code runs on by default, as
        an ``add_argument("--device", default="cuda")`` is.
        """
        if not is_cuda_literal(value):
            return
        for target in targets:
            name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", "")
            if "device" in name.lower():
                self._gpu_evidence(node, f'{name} = "cuda"')
                return

    def _app_assign(self, targets: list[ast.expr], value: ast.expr, node: ast.AST) -> None:
        if not isinstance(value, ast.Call):
            return
        framework = _APP_CLASSES.get(dotted(value.func).rpartition(".")[2])
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
        """``os.environ["X"]``: a variable read without a default."""
        if isinstance(node.ctx, ast.Load) and self._is_environ(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                self.env.append((key.value, self._line(node), None))
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        """``"X" in os.environ``: a variable read."""
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
        self.env.append((key.value, self._line(node), literal(default_node)))
        return True

    # --- calls: dynamic imports, env, paths, servers, cuda ---
    def visit_Call(self, node: ast.Call) -> None:
        """A call: sys.path insertions, env reads, dynamic imports, paths, servers and GPU use."""
        func = node.func
        name = dotted(func)
        last = name.rpartition(".")[2] if name else getattr(func, "attr", "")
        if name in {"sys.path.insert", "sys.path.append"} and node.args:
            where = sys_path_entry(node.args[-1])
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
            path = path_literal(node.args[0])
            if path is not None:
                self.paths.append((path, line, "p"))
        elif last in triggers.WRITE_CALLS or last in triggers.READ_CALLS:
            mode = "w" if last in triggers.WRITE_CALLS else "r"
            if last in {"copy", "copyfile", "copytree"}:
                args = node.args[1:2]  # the destination
            else:
                args = node.args[:2]
            for arg in args:
                path = path_literal(arg)
                if path is not None and looks_like_path(path):
                    self.paths.append((path, line, mode))
                    break
        for kw in node.keywords:
            if kw.arg == "filename" and "download" in last:
                continue  # the file's name at the source or under ``root=``, not a path here
            if kw.arg in triggers.WRITE_KEYWORDS or kw.arg in triggers.READ_KEYWORDS:
                path = path_literal(kw.value)
                if path is not None and looks_like_path(path):
                    self.paths.append(
                        (path, line, "w" if kw.arg in triggers.WRITE_KEYWORDS else "r")
                    )

    def _opened_path(self, node: ast.Call, name: str, last: str, line: int) -> bool:
        """Record ``open(p)``, ``Path(p).open("w")`` and ``Path(p).read_text()``-style calls.

        True when the call was one of these, so nothing else in it is a path.
        """
        if last == "open" and isinstance(node.func, ast.Attribute):
            receiver = path_literal(node.func.value)
            if receiver is not None:  # Path("x").open("w")
                mode_arg = literal(node.args[0]) if node.args else None
                mode = "w" if mode_arg and any(c in mode_arg for c in "wax+") else "r"
                self.paths.append((receiver, line, mode))
                return True
        if name in {"open", "io.open", "codecs.open"} or (last == "open" and name != "open"):
            if node.args:
                path = path_literal(node.args[0])
                if path is not None and not _FILE_MODE.match(path):
                    self.paths.append((path, line, open_mode(node)))
            return True
        if last in _RECEIVER_CALLS and isinstance(node.func, ast.Attribute):
            path = path_literal(node.func.value)
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
        if what:
            self._gpu_evidence(node, what)

    def _gpu_evidence(self, node: ast.AST, what: str) -> None:
        """A GPU use: optional under a condition on the device (or GPU, or launch), else a need."""
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
    """``.cuda()``, a ``torch.cuda`` or ``torch.accelerator`` call other than queries, or
    ``.to("cuda")``.

    None when the call has none of these shapes; "" when it has one but uses no GPU.
    """
    if last == "cuda" and isinstance(node.func, ast.Attribute) and name != "torch.cuda":
        return ".cuda()"
    if name.startswith(("torch.cuda.", "torch.accelerator.")):
        return name if name.split(".")[2] not in _CUDA_HARMLESS else ""
    if name in {"torch.device", "device"} or last == "to":
        return f'{name or last}("cuda")' if node.args and is_cuda_literal(node.args[0]) else ""
    return None


def _other_gpu_call(node: ast.Call, name: str, last: str) -> str:
    """TensorFlow and JAX GPU devices, and an NCCL process group."""
    if name in {"tf.device", "tensorflow.device"} and node.args:
        lit = literal(node.args[0])
        return name if lit is not None and "gpu" in lit.lower() else ""
    if name.startswith(("tf.config.", "tensorflow.config.")) and (
        "memory_growth" in name
        or any(literal(a) is not None and str(literal(a)).upper() == "GPU" for a in node.args)
    ):
        return name
    if name in {"jax.devices", "jax.local_devices"} and node.args:
        lit = literal(node.args[0])
        return name if lit is not None and lit.lower() in {"gpu", "cuda"} else ""
    if last == "init_process_group" and any(
        literal(a) == "nccl" for a in [*node.args[:1], *(k.value for k in node.keywords)]
    ):
        return "nccl process group"
    return ""


def _gpu_keyword(node: ast.Call, last: str) -> str:
    """``device="cuda"``, ``device_map="cuda"`` or ``add_argument("--device", default="cuda")``.

    With such a flag default the script runs on a GPU unless told otherwise.
    """
    for kw in node.keywords:
        if kw.arg in {"device", "device_map"} and is_cuda_literal(kw.value):
            return f'{kw.arg}="cuda"'
    if last == "add_argument" and node.args:
        flag = literal(node.args[0]) or ""
        for kw in node.keywords:
            if kw.arg == "default" and "device" in flag and is_cuda_literal(kw.value):
                return "--device default cuda"
    return ""


def _generic(extractor: Extractor, node: ast.AST) -> None:
    """Marker: walk the children."""


def _leaf(extractor: Extractor, node: ast.AST) -> None:
    """Marker: nothing below can hold a fact."""


def _handler_for(cls: type) -> Callable[[Extractor, Any], None]:
    """The handler of a class: its own ``visit_<Class>``, ``_generic`` or ``_leaf``."""
    method = Extractor.__dict__.get("visit_" + cls.__name__)  # not NodeVisitor's shims
    if method is not None:
        handler: Callable[[Extractor, Any], None] = method
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
