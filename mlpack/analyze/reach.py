"""Reachability: which of the repository's own files the entrypoints run, and so which imports
the image needs.

The repository's module graph has one edge per import of a local module. An absolute import
``a.b`` resolves against the import roots: the repository root, ``src/``, every subproject
(a folder with its own ``pyproject.toml``, ``setup.py`` or ``setup.cfg``, such as ``backend/``),
the folder above the outermost package of the importing file (``backend/`` for
``backend/app/main.py`` importing ``app.core``), the importing script's own folder when it is
not a package (``python folder/script.py`` puts it on ``sys.path``), and every folder a file adds
to ``sys.path``. Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too; ``from
a import b`` may import the submodule ``a/b.py``. Relative imports resolve against the package.

From the runtime roots (the first training and the first inference entrypoint in the project's
code or its ``scripts/`` and ``tools/``, not in tests, docs, examples or benchmarks, and the
data preparation scripts there, ``prepare*``/``preprocess*``/``download*``, which a training
image runs first; every module of a ``src/`` package, or of every top-level package when no
such entrypoint exists; else the first entrypoint of each kind; and the modules the project's
configuration files name as classes to instantiate, see below), a walk over the edges that
always run marks the *runtime* files: plain
imports, and imports inside a function of a root (``def main(): from .cli import run``). A
second walk that also takes optional edges (``try/except ImportError``, availability checks,
imports inside functions of other modules) marks the *optional* files. Each third-party import
then gets the group of the closest use: ``runtime`` (a plain import in a runtime file; inside
a function only in a module beside the scripts, such as nanoGPT's ``model.py``), ``optional``
(a guarded import, an import inside a function of a package's module: a feature its callers
may never use, or a file only optional edges reach), else where the file lies (``AREAS``), ``script`` for other scripts (a ``__main__``
guard or top-level code), ``optional`` for the rest of the project's code.

Config targets: many training codebases build their models from YAML configs through a string
(``target: pkg.models.diffusion.DiffusionEngine`` for latent-diffusion's
``instantiate_from_config``, Hydra's ``_target_``, Lightning CLI's ``class_path``), imported with
``importlib`` at run time, so no ``import`` statement leads there. A ``target``, ``_target_`` or
``class_path`` value in a ``.yaml``/``.yml`` file of the project (not in tests, docs, examples or
benchmarks) that names one of the repository's own modules (not one of those either) makes that
module a runtime root, reached from the config line, after the entrypoints' walk (their chains
win). Names of other distributions are left alone: a config may name a class of an unpublished
package, and the imports decide the packages.
"""

from __future__ import annotations

import posixpath
import re
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Final

from mlpack.analyze.pyfacts import GUARDED, LAZY, OPTIONAL

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlpack.analyze.analysis import Entrypoint
    from mlpack.analyze.pyfacts import FileFacts
    from mlpack.analyze.walk import RepoTree
    from mlpack.vocabulary import Group

# Folder names that say what the files below are for (any depth; the first one decides).
AREAS: Final[dict[str, Group]] = {
    "tests": "test",
    "test": "test",
    "testing": "test",
    "docs": "docs",
    "doc": "docs",
    "examples": "examples",
    "example": "examples",
    "demo": "examples",
    "demos": "examples",
    "tutorials": "examples",
    "tutorial": "examples",
    "benchmarks": "benchmarks",
    "benchmark": "benchmarks",
    "bench": "benchmarks",
    "scripts": "script",
    "tools": "script",
    "bin": "script",
    "hooks": "dev",
    "ci": "dev",
}
DEV_FILES: Final = frozenset(
    {"setup.py", "noxfile.py", "tasks.py", "fabfile.py", "conftest.py", "hatch_build.py", "conf.py"}
)
PROJECT_FILES: Final = ("pyproject.toml", "setup.py", "setup.cfg")
_SOFT: Final = OPTIONAL | GUARDED
# Where the entrypoints a project is run by live: its code, and its scripts/ and tools/ folders
# (not examples, benchmarks, docs, tests or tooling).
_RUNNABLE: Final = frozenset({None, "script"})
# Data preparation scripts: roots beside the training entrypoint (the image prepares its data).
PREPARE_PREFIXES: Final = ("prepare", "preprocess", "download")
_PY_TOKEN: Final = re.compile(r"[\w./-]+\.py\b")
CONFIG_SUFFIXES: Final = (".yaml", ".yml")  # JSON holds data and results far more than configs
MAX_CONFIG_BYTES: Final = 2**18  # larger ones are data, not configs
_CONFIG_KEYS: Final = (b"target", b"class_path")
_CONFIG_TARGET: Final = re.compile(
    r"""(?:^|[{,])[ \t-]*["']?(?:_target_|target|class_path)["']?[ \t]*:[ \t]*["']?"""
    r"""([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?=["'\s,}#]|$)""",
    re.MULTILINE,
)


def area_of(path: str) -> Group | None:
    """The group a file's place gives it (tests, docs, scripts...), or None for project code."""
    parts = path.split("/")
    name = parts[-1]
    if name.endswith(".ipynb"):
        return "notebook"
    if (
        name.startswith("test_")
        or name.endswith("_test.py")
        or (name == "conftest.py" and len(parts) > 1)
    ):
        return "test"
    for part in parts[:-1]:
        if part.startswith("."):
            return "dev"  # .github/, .copier/, .circleci/: tooling
        found = AREAS.get(part.lower())
        if found is not None:
            return found
    if name in DEV_FILES:
        return "dev"
    return None


Edge = tuple[str, int, int]  # (local file imported, line of the import, import flags)


@dataclass(frozen=True, kw_only=True)
class Reach:
    """The files each walk reached, each with its chain of import locations from a root."""

    runtime: Mapping[str, tuple[str, ...]]  # file -> ("train.py:12", "model.py:3", ...)
    optional: Mapping[str, tuple[str, ...]]
    roots: tuple[str, ...]
    scripts: frozenset[str] = frozenset()  # files that run as scripts (guard or top-level code)
    packaged: frozenset[str] = frozenset()  # modules inside a package (its folder has __init__)

    def group_of(self, path: str, line: int, flags: int) -> tuple[Group, tuple[str, ...]]:
        """The group of one import at ``path:line`` and the chain that reaches it."""
        chain = self.runtime.get(path)
        if chain is not None:
            here = (*chain, f"{path}:{line}")
            if flags & _SOFT or (flags & LAZY and path in self.packaged):
                return "optional", here
            return "runtime", here
        chain = self.optional.get(path)
        if chain is not None:
            return "optional", (*chain, f"{path}:{line}")
        return area_of(path) or ("script" if path in self.scripts else "optional"), ()


def module_index(tree: RepoTree, facts: Mapping[str, FileFacts]) -> ModuleIndex:
    """The index that resolves the repository's imports of its own modules, shared roots included."""
    return ModuleIndex(tree.names(), tree.dirs, shared=tuple(_shared_roots(tree, facts)))


def module_graph(index: ModuleIndex, facts: Mapping[str, FileFacts]) -> dict[str, list[Edge]]:
    """Return each file's edges to the repository's own modules it imports."""
    graph: dict[str, list[Edge]] = {}
    for path, file_facts in facts.items():
        if not path.endswith(".py") and not path.endswith(".ipynb"):
            continue
        graph[path] = [
            (target, line, flags)
            for module, line, flags, names in file_facts.imports
            for target in index.targets(path, module, names)
            if target != path
        ]
    return graph


def _shared_roots(tree: RepoTree, facts: Mapping[str, FileFacts]) -> list[str]:
    """Roots for every file: the root, ``src/``, subprojects and ``sys.path`` insertions."""
    roots = ["", "src"] if "src" in tree.dirs else [""]
    for entry in tree.files:
        folder, _, name = entry.path.rpartition("/")
        if folder and name in PROJECT_FILES and area_of(entry.path) is None:
            roots.append(folder)
            if f"{folder}/src" in tree.dirs:
                roots.append(f"{folder}/src")
    for path, file_facts in facts.items():
        folder = path.rpartition("/")[0]
        for added in file_facts.sys_path:
            kind, _, rel = added.partition(":")
            base = folder if kind == "file" else ""
            where = posixpath.normpath(posixpath.join(base, rel)) if rel else base
            if where == ".":
                where = ""
            if not where.startswith(".."):
                roots.append(where)
    return list(dict.fromkeys(roots))


def _own_roots(path: str, files: frozenset[str]) -> list[str]:
    """The script's own folder, and the folder above its outermost package."""
    folder = path.rpartition("/")[0]
    top = folder
    while top and f"{top}/__init__.py" in files:
        top = top.rpartition("/")[0]
    return list(dict.fromkeys((folder, top)))


@dataclass(frozen=True)
class ModuleIndex:
    """The repository's files and folders, to find the files an import of its own modules runs."""

    files: frozenset[str]
    dirs: frozenset[str]
    shared: tuple[str, ...] = ("",)  # roots of every file's imports, after its own

    @cached_property
    def _from_shared(self) -> dict[tuple[str, tuple[str, ...]], list[str]]:
        """The shared roots answer the same import the same way in every file (numpy, torch...)."""
        return {}

    @cached_property
    def names(self) -> dict[str, set[str]]:
        """Folder -> the names a module path may go on with there: its folders and .py stems.

        Most imports name another distribution (torch, numpy): one lookup rejects them.
        """
        names: dict[str, set[str]] = {}
        for path in (*self.dirs, *(f.removesuffix(".py") for f in self.files if f.endswith(".py"))):
            folder, _, name = path.rpartition("/")
            names.setdefault(folder, set()).add(name)
        return names

    def module_file(self, base: str, dotted: str) -> str | None:
        """The file of module ``dotted`` below ``base``: ``x.py`` or ``x/__init__.py``."""
        stem = posixpath.join(base, dotted.replace(".", "/"))
        for candidate in (f"{stem}.py", f"{stem}/__init__.py"):
            if candidate in self.files:
                return candidate
        return None

    def resolve_in(self, base: str, module: str, names: tuple[str, ...]) -> list[str]:
        """Files that ``from module import names`` runs below ``base`` (empty: not there)."""
        parts = module.split(".") if module else []
        if parts and parts[0] not in self.names.get(base, ()):
            return []
        found: list[str] = []
        for size in range(1, len(parts) + 1):
            target = self.module_file(base, ".".join(parts[:size]))
            if target is not None:
                found.append(target)
            elif posixpath.join(base, *parts[:size]) not in self.dirs:
                return found  # not a module, nor a namespace folder to go on in
        for name in names:
            target = self.module_file(base, f"{module}.{name}" if module else name)
            if target is not None:
                found.append(target)
        return found

    def absolute(self, module: str, names: tuple[str, ...], roots: Iterable[str]) -> list[str]:
        """The files an absolute import runs, below the first of ``roots`` that has them."""
        for root in roots:
            found = self.resolve_in(root, module, names)
            if found:
                return found
        return []

    def targets(self, path: str, module: str, names: tuple[str, ...]) -> list[str]:
        """The files one import of ``path`` runs: relative to it, else below its own roots,
        else below the shared ones.
        """
        if module.startswith("."):
            return self.relative(path, module, names)
        found = self.absolute(module, names, _own_roots(path, self.files))
        if found:
            return found
        key = (module, names)
        if key not in self._from_shared:
            self._from_shared[key] = self.absolute(module, names, self.shared)
        return self._from_shared[key]

    def relative(self, path: str, module: str, names: tuple[str, ...]) -> list[str]:
        """The files a relative import (``..pkg``) of ``path`` runs."""
        level = len(module) - len(module.lstrip("."))
        base = path.rpartition("/")[0]
        for _ in range(level - 1):
            base = base.rpartition("/")[0]
        return self.resolve_in(base, module[level:], names)


def runtime_roots(
    tree: RepoTree, entrypoints: Iterable[Entrypoint], facts: Mapping[str, FileFacts]
) -> tuple[str, ...]:
    """The files the image runs first: the entrypoints, and a library's own packages."""
    files = tree.names()
    entries = list(entrypoints)
    chosen: list[str] = []
    kinds: set[str] = set()
    for entry in entries:
        found = [f for f in _entry_files(tree, entry, files) if area_of(f) in _RUNNABLE]
        stem = entry.path.rpartition("/")[2].lower()
        if found and (entry.kind not in kinds or stem.startswith(PREPARE_PREFIXES)):
            kinds.add(entry.kind)
            chosen.extend(found)
    # A library (a src/ layout, or no entrypoint to run at all): every module of its own
    # packages may be imported by its users.
    chosen.extend(_library_modules(files, src_only=bool(chosen)))
    if not chosen:
        for entry in entries:
            if entry.kind not in kinds:
                kinds.add(entry.kind)
                chosen.extend(_entry_files(tree, entry, files))
    if not chosen:
        chosen = [p for p in sorted(facts) if p.endswith(".py") and area_of(p) is None]
    return tuple(dict.fromkeys(chosen))


def _library_modules(files: frozenset[str], *, src_only: bool) -> list[str]:
    def package_of(path: str) -> str:
        return "/".join(path.split("/")[: 2 if path.startswith("src/") else 1])

    packages = {
        p.rpartition("/")[0]
        for p in files
        if p.endswith("/__init__.py")
        and p.count("/") == (2 if p.startswith("src/") else 1)
        and area_of(p) is None
        and (p.startswith("src/") or not src_only)
    }
    return [
        p
        for p in sorted(files)
        if p.endswith(".py") and package_of(p) in packages and area_of(p) is None
    ]


def _entry_files(tree: RepoTree, entry: Entrypoint, files: frozenset[str]) -> list[str]:
    """The Python files an entrypoint starts (a shell script or Makefile names them).

    A file run by its path is a script; one imported as a module (``python -m pkg.mod``,
    ``uvicorn pkg.mod:app``, a console script) runs its packages' ``__init__.py`` first.
    """
    if entry.path.endswith(".py"):
        if entry.path in entry.command:
            return [entry.path]
        return [*_package_inits(entry.path, files), entry.path]
    words = list(entry.command)
    if entry.path in files:
        try:
            text = (tree.root / entry.path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        words.extend(_PY_TOKEN.findall(text[: 2**20]))
    index = ModuleIndex(files, tree.dirs)
    found: list[str] = []
    for i, word in enumerate(words):
        if word.endswith(".py"):
            candidate = posixpath.normpath(word.removeprefix("./"))
            if candidate in files:
                found.append(candidate)
        elif i and words[i - 1] == "-m":
            found.extend(index.absolute(word, (), ("", "src")))
        elif ":" in word and not word.startswith("-"):
            found.extend(index.absolute(word.partition(":")[0], (), ("", "src")))
    return found


def _package_inits(path: str, files: frozenset[str]) -> list[str]:
    """The ``__init__.py`` files importing the module at ``path`` runs, outermost first."""
    inits: list[str] = []
    folder = path.rpartition("/")[0]
    while folder and f"{folder}/__init__.py" in files:
        inits.append(f"{folder}/__init__.py")
        folder = folder.rpartition("/")[0]
    return [p for p in reversed(inits) if p != path]


def reach(
    tree: RepoTree, facts: Mapping[str, FileFacts], entrypoints: Iterable[Entrypoint]
) -> Reach:
    """Walk the module graph from the runtime roots."""
    index = module_index(tree, facts)
    graph = module_graph(index, facts)
    roots = runtime_roots(tree, entrypoints, facts)
    targets = config_targets(tree, index)
    return Reach(
        runtime=_walk(graph, roots, targets, soft=False),
        optional=_walk(graph, roots, targets, soft=True),
        roots=roots,
        scripts=frozenset(p for p, f in facts.items() if f.main or f.script),
        packaged=frozenset(
            p for p in facts if "/" in p and f"{p.rpartition('/')[0]}/__init__.py" in tree.names()
        ),
    )


def config_targets(tree: RepoTree, index: ModuleIndex) -> dict[str, str]:
    """The own modules the project's configs name as targets -> the first ``config:line``."""
    found: dict[str, str] = {}
    for entry in tree.with_suffix(*CONFIG_SUFFIXES):
        if entry.size > MAX_CONFIG_BYTES or area_of(entry.path) not in _RUNNABLE:
            continue
        try:
            data = (tree.root / entry.path).read_bytes()
        except OSError:
            continue  # unreadable: the walk warned about what it could not list
        if not any(key in data for key in _CONFIG_KEYS):
            continue
        text = data.decode("utf-8", "replace")
        for match in _CONFIG_TARGET.finditer(text):
            module, _, name = match.group(1).rpartition(".")
            where = f"{entry.path}:{text.count(chr(10), 0, match.start()) + 1}"
            for target in index.absolute(module, (name,), index.shared):
                if area_of(target) in _RUNNABLE:  # not a test helper or an example
                    found.setdefault(target, where)
    return found


def _walk(
    graph: Mapping[str, list[Edge]],
    roots: tuple[str, ...],
    targets: Mapping[str, str],
    *,
    soft: bool,
) -> dict[str, tuple[str, ...]]:
    """Walk from the entry ``roots``, then from the config ``targets`` they did not reach (so a
    file's chain starts at an entrypoint where one leads there); lazy imports run in roots only.
    """
    seen: dict[str, tuple[str, ...]] = dict.fromkeys(roots, ())
    queue = deque(seen)
    later = deque((target, (where,)) for target, where in targets.items())
    while queue or later:
        if not queue:
            target, chain = later.popleft()
            if target not in seen:
                seen[target] = chain
                queue.append(target)
            continue
        here = queue.popleft()
        for target, line, flags in graph.get(here, ()):
            hard = not flags & _SOFT and (not flags & LAZY or here in roots)
            if target in seen or not (hard or soft):
                continue
            seen[target] = (*seen[here], f"{here}:{line}")
            queue.append(target)
    return seen
