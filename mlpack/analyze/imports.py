"""Imports to distributions: which third-party packages the code uses, mapped from evidence.

Rules, in order, for each absolute import found in the code (see ``pyfacts``):

1. Left out: the standard library of the *target* Python version (``data/stdlib.toml``),
   ``__future__``, the repository's own modules (top-level modules and packages at the root and
   under ``src/``; modules beside the importing file when its folder is not a package, as
   ``python folder/script.py`` sees them; any other folder or module name of the repository
   unless a distribution is known to provide that name (curated, installed or declared), since a
   regular package wins over a namespace portion and unknown names are more often local),
   relative imports and ``if TYPE_CHECKING:`` imports.
2. Declared beats inferred: a declared requirement that provides the import name (by the
   curated map read backwards, by an installed distribution's top-level names, or by its own
   name) takes the import.
3. Installed evidence (``installed``): ``top_level.txt``/``RECORD`` of the distributions in the
   repository's own virtual environment if it has one, else of the interpreter running mlpack.
   When several installed distributions provide a name, the curated entry decides.
4. The curated map ``data/import_map.toml``; several candidates make an ``Ambiguity`` (the first
   candidate is used, and a warning says so) unless step 2 or 3 picked one.
5. Otherwise the import name itself, canonicalized. Only a *suspicious* guess warns (a private,
   one- or two-letter, mixed-case or typical local-module name such as ``utils``): most unknown
   names are simply their distribution's name.

Each undeclared import warns ``undeclared: ...``; each declared main requirement that nothing
imports warns, except distributions that are used without an import (``data/runtime_only.toml``:
servers, engines, CUDA wheels, tools) and editable or local requirements.
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from packaging.utils import canonicalize_name

from mlpack.analyze.analysis import Ambiguity, DeclaredRequirement, Package
from mlpack.analyze.pyfacts import GUARDED, NAMESPACE_ROOTS, OPTIONAL
from mlpack.analyze.reach import Reach, area_of
from mlpack.analyze.requirements import DEV_GROUPS
from mlpack.vocabulary import GROUPS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlpack.analyze.analysis import Entrypoint
    from mlpack.analyze.installed import InstalledEvidence
    from mlpack.analyze.pyfacts import FileFacts
    from mlpack.analyze.walk import RepoTree

GENERIC_LOCAL_NAMES: Final = frozenset(
    {
        "utils",
        "util",
        "helpers",
        "helper",
        "common",
        "config",
        "configs",
        "settings",
        "constants",
        "models",
        "model",
        "data",
        "dataset",
        "lib",
        "core",
        "src",
        "app",
        "main",
        "tools",
        "misc",
        "test",
        "tests",
        "modules",
        "layers",
        "train",
        "trainer",
    }
)
_SOFT: Final = OPTIONAL | GUARDED


@cache
def _load(name: str) -> dict[str, Any]:
    # Beside this module (not importlib.resources, whose import costs more than the read).
    text = (Path(__file__).parent / "data" / name).read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def import_map() -> dict[str, tuple[str, ...]]:
    """Return the curated import name -> candidate distributions (canonical), usual one first."""
    result: dict[str, tuple[str, ...]] = {}
    for key, value in _load("import_map.toml")["imports"].items():
        values = [value] if isinstance(value, str) else list(value)
        result[key] = tuple(canonicalize_name(v) for v in values)
    return result


@cache
def reverse_import_map() -> dict[str, frozenset[str]]:
    """Return distribution -> the import names the curated map says it provides."""
    result: dict[str, set[str]] = {}
    for key, dists in import_map().items():
        for dist in dists:
            result.setdefault(dist, set()).add(key)
    return {k: frozenset(v) for k, v in result.items()}


@cache
def stdlib_modules(version: str) -> frozenset[str]:
    """Return the standard library's top-level names for ``version`` ("3.11"), or the nearest.

    The running interpreter's own list when it is that version (the table's entry was made from
    it), which spares the table's parse at each start.
    """
    if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        return frozenset(sys.stdlib_module_names)
    table = _load("stdlib.toml")

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split(".")[:2] if p.isdigit())

    wanted = key(version)
    if version in table:
        chosen = version
    else:
        chosen = min(table, key=lambda v: abs(key(v)[1] - wanted[1]) if len(wanted) > 1 else 0)
    return frozenset(table[chosen]["modules"])


@cache
def _runtime_only() -> tuple[frozenset[str], tuple[str, ...]]:
    data = _load("runtime_only.toml")
    names = frozenset(canonicalize_name(n) for n in data["distributions"])
    return names, tuple(data["patterns"])


def is_runtime_only(dist: str) -> bool:
    """True for distributions that are used without being imported (servers, engines...)."""
    names, patterns = _runtime_only()
    return dist in names or any(fnmatch.fnmatchcase(dist, p) for p in patterns)


@dataclass
class _Use:
    locations: list[tuple[str, int]] = field(default_factory=list)
    optional: list[bool] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)

    def usage(self, reach: Reach | None) -> tuple[str, tuple[str, ...]]:
        """The closest group of any use (runtime first) and the chain that reaches it."""
        best: tuple[int, int, tuple[str, ...]] | None = None
        for (path, line), flags in zip(self.locations, self.flags, strict=True):
            if reach is None:
                group = area_of(path) or ("optional" if flags & _SOFT else "runtime")
                chain: tuple[str, ...] = ()
            else:
                group, chain = reach.group_of(path, line, flags)
            rank = (GROUPS.index(group), len(chain), chain)
            if best is None or rank < best:
                best = rank
        assert best is not None  # every _Use has a location
        return GROUPS[best[0]], best[2]


@dataclass(frozen=True, kw_only=True)
class ImportAnalysis:
    """The packages the code needs and what could not be decided."""

    packages: tuple[Package, ...]
    ambiguous: tuple[Ambiguity, ...]


def own_modules(tree: RepoTree, known: Iterable[str] = ()) -> frozenset[str]:
    """Return the names importable from the repository root (and ``src/``) that it defines."""
    known_set = set(known)
    own: set[str] = set()
    namespace: set[str] = set()
    for entry in tree.files:
        parts = entry.path.split("/")
        if entry.path == "src/__init__.py":
            own.add("src")  # a package itself (``from src.data import ...``), not a src layout
        if parts[0] == "src" and len(parts) > 1:
            parts = parts[1:]
        if not parts[-1].endswith((".py", ".so", ".pyd")):
            continue
        if len(parts) == 1:
            own.add(parts[0].split(".", 1)[0])
        elif parts[1] == "__init__.py" and len(parts) == 2:
            own.add(parts[0])
        else:
            # Folder and module names deeper down: local unless a distribution is known to
            # provide the name (a conversion script that imports its model's original repo,
            # a sys.path tweak, a script run from its own folder).
            namespace.update(parts[:-1])
            namespace.add(parts[-1].split(".", 1)[0])
    own.update(n for n in namespace if n not in known_set)
    return frozenset(n for n in own if n.isidentifier())


def _siblings(tree: RepoTree) -> dict[str, frozenset[str]]:
    """Folder -> module names beside it, for folders that are not packages (script folders)."""
    result: dict[str, set[str]] = {}
    files = tree.names()
    for entry in tree.files:
        folder, _, name = entry.path.rpartition("/")
        if not folder or f"{folder}/__init__.py" in files:
            continue
        if name.endswith(".py"):
            result.setdefault(folder, set()).add(name[:-3])
        parent, _, sub = folder.rpartition("/")
        if entry.path.endswith(".py") and parent and f"{parent}/__init__.py" not in files:
            result.setdefault(parent, set()).add(sub)
    return {k: frozenset(v) for k, v in result.items()}


def _fmt(locations: Iterable[tuple[str, int]]) -> tuple[str, ...]:
    return tuple(f"{p}:{n}" for p, n in sorted(set(locations)))


def _key_for(module: str, keys: Iterable[Mapping[str, Any]]) -> str:
    """Return the longest dotted prefix of ``module`` known to any mapping, else its top name."""
    parts = module.split(".")
    for size in range(len(parts), 1, -1):
        prefix = ".".join(parts[:size])
        if any(prefix in k for k in keys):
            return prefix
    if parts[0] in NAMESPACE_ROOTS and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def analyze_imports(
    tree: RepoTree,
    facts: Mapping[str, FileFacts],
    *,
    python_version: str,
    declared: tuple[DeclaredRequirement, ...],
    installed: InstalledEvidence,
    warnings: list[str],
    reach: Reach | None = None,
    settings: ImportSettings | None = None,
) -> ImportAnalysis:
    """Map every third-party import to a distribution and merge with the declared ones.

    ``reach`` gives each package its usage group (without it: where the file lies);
    ``settings`` are the user's ``ignore-imports``, ``import-map`` and ``exclude``.
    """
    settings = settings or ImportSettings()
    curated = {**import_map(), **{k: (v,) for k, v in settings.import_map.items()}}
    uses = _third_party_uses(
        tree,
        facts,
        python_version=python_version,
        declared=declared,
        installed=installed,
        curated=curated,
        settings=settings,
    )
    main_decl = _main_declarations(declared)
    ambiguous: list[Ambiguity] = []
    chosen, dist_uses = _choose(
        uses,
        settings=settings,
        providers=_declared_providers(declared, installed),
        installed=installed,
        curated=curated,
        ambiguous=ambiguous,
        warnings=warnings,
    )
    packages: list[Package] = []
    for dist in sorted(set(chosen) | set(main_decl)):
        if dist in settings.exclude:
            continue
        req = main_decl.get(dist)
        dist_use = dist_uses.get(dist)
        imports = tuple(sorted(chosen.get(dist, ())))
        if req is not None:
            packages.append(_declared_package(dist, req, dist_use, imports, reach, warnings))
        elif dist_use is not None:  # every dist is declared or imported
            packages.append(_inferred_package(dist, dist_use, imports, reach, warnings))
    return ImportAnalysis(packages=tuple(packages), ambiguous=tuple(ambiguous))


def _third_party_uses(
    tree: RepoTree,
    facts: Mapping[str, FileFacts],
    *,
    python_version: str,
    declared: tuple[DeclaredRequirement, ...],
    installed: InstalledEvidence,
    curated: Mapping[str, tuple[str, ...]],
    settings: ImportSettings,
) -> dict[str, _Use]:
    """Every import that is not the standard library, the repository's own, or ignored.

    Keyed by the longest dotted name that some mapping knows (``google.protobuf``).
    """
    stdlib = stdlib_modules(python_version) | {"__future__", "__main__", "builtins"}
    known = set(curated) | set(installed.provides)
    known.update(canonicalize_name(d.name).replace("-", "_") for d in declared)
    own = own_modules(tree, {k.split(".")[0] for k in known})
    own |= {m for file_facts in facts.values() for m in file_facts.modules}
    siblings = _siblings(tree)
    uses: dict[str, _Use] = {}
    for path, file_facts in facts.items():
        folder = path.rpartition("/")[0]
        beside = siblings.get(folder, frozenset())
        for module, line, flags, _ in file_facts.imports:
            top = module.split(".")[0]
            if not top.isidentifier() or top in stdlib or top in own or top in beside:
                continue
            if settings.ignores(module):
                continue
            key = _key_for(module, (curated, installed.provides))
            use = uses.setdefault(key, _Use())
            use.locations.append((path, line))
            use.optional.append(bool(flags & _SOFT))
            use.flags.append(flags)
    return uses


def _main_declarations(
    declared: tuple[DeclaredRequirement, ...],
) -> dict[str, DeclaredRequirement]:
    """One declaration per distribution: the first, unless a later one is a main dependency."""
    main_decl: dict[str, DeclaredRequirement] = {}
    for declaration in declared:
        name = canonicalize_name(declaration.name)
        current = main_decl.get(name)
        if current is None or (current.group is not None and declaration.group is None):
            main_decl[name] = declaration
    return main_decl


def _choose(
    uses: Mapping[str, _Use],
    *,
    settings: ImportSettings,
    providers: Mapping[str, list[str]],
    installed: InstalledEvidence,
    curated: Mapping[str, tuple[str, ...]],
    ambiguous: list[Ambiguity],
    warnings: list[str],
) -> tuple[dict[str, list[str]], dict[str, _Use]]:
    """The distribution of each import key: the user's ``import-map`` first, then evidence.

    Returns the import keys of each distribution and the uses of all of its keys together.
    """
    chosen: dict[str, list[str]] = {}
    dist_uses: dict[str, _Use] = {}
    for key in sorted(uses):
        use = uses[key]
        mapped = settings.import_map.get(key) or settings.import_map.get(key.split(".")[0])
        dist = mapped or _resolve(
            key,
            use,
            providers=providers,
            installed=installed,
            curated=curated,
            ambiguous=ambiguous,
            warnings=warnings,
        )
        if dist is None:
            continue
        chosen.setdefault(dist, []).append(key)
        merged = dist_uses.setdefault(dist, _Use())
        merged.locations.extend(use.locations)
        merged.optional.extend(use.optional)
        merged.flags.extend(use.flags)
    return chosen, dist_uses


def _declared_package(
    dist: str,
    req: DeclaredRequirement,
    dist_use: _Use | None,
    imports: tuple[str, ...],
    reach: Reach | None,
    warnings: list[str],
) -> Package:
    """A declared distribution; an unused main one is warned about unless it works unimported."""
    usage, chain = dist_use.usage(reach) if dist_use is not None else ("runtime", ())
    if dist_use is None and req.group is not None:
        usage = "dev" if req.group in DEV_GROUPS else "optional"
    local = req.editable or (req.url or "").startswith(("file:", "."))
    if dist_use is None and req.group is None and not local and not is_runtime_only(dist):
        warnings.append(f"declared but never imported: {dist} ({req.source})")
    return Package(
        name=dist,
        specifier=req.specifier,
        source=req.source,
        imports=imports,
        optional=req.group is not None,
        declared=True,
        used=dist_use is not None,
        extras=req.extras,
        marker=req.marker,
        url=req.url,
        group=req.group,
        usage=usage,
        reached_from=chain,
    )


def _inferred_package(
    dist: str, dist_use: _Use, imports: tuple[str, ...], reach: Reach | None, warnings: list[str]
) -> Package:
    """A distribution that only imports name; its source is the use that decided its group."""
    usage, chain = dist_use.usage(reach)
    decided = chain[-1] if chain else _fmt(dist_use.locations)[0]  # the use that set the group
    kind = "" if usage == "runtime" else f"{usage}, "
    warnings.append(f"undeclared: {dist} ({kind}imported as {', '.join(imports)} at {decided})")
    return Package(
        name=dist,
        specifier="",
        source=decided,
        imports=imports,
        optional=all(dist_use.optional),
        declared=False,
        used=True,
        usage=usage,
        reached_from=chain,
    )


# The program an entrypoint's command starts -> the distribution that provides it.
LAUNCHERS: Final = {
    "uvicorn": "uvicorn",
    "gunicorn": "gunicorn",
    "hypercorn": "hypercorn",
    "streamlit": "streamlit",
    "torchrun": "torch",
    "accelerate": "accelerate",
    "deepspeed": "deepspeed",
    "celery": "celery",
}


def with_launchers(
    packages: tuple[Package, ...],
    entrypoints: Iterable[Entrypoint],
    settings: ImportSettings | None = None,
) -> tuple[Package, ...]:
    """Add the program that starts the first entrypoint of each kind (``uvicorn app.main:app``
    needs uvicorn, which no file imports) to the runtime group.
    """
    exclude = settings.exclude if settings is not None else frozenset()
    by_name = {p.name: p for p in packages}
    kinds: set[str] = set()
    for entry in entrypoints:
        if entry.kind in kinds or area_of(entry.path) not in {None, "script"}:
            continue
        kinds.add(entry.kind)
        dist = LAUNCHERS.get(entry.command[0]) if entry.command else None
        if dist is None or dist in exclude:
            continue
        chain = (entry.source.split(", ")[0],)
        found = by_name.get(dist)
        if found is None:
            by_name[dist] = Package(
                name=dist,
                specifier="",
                source=chain[0],
                imports=(),
                optional=False,
                declared=False,
                used=False,
                usage="runtime",
                reached_from=chain,
            )
        elif found.usage != "runtime":
            by_name[dist] = replace(found, usage="runtime", reached_from=chain)
    return tuple(by_name[name] for name in sorted(by_name))


@dataclass(frozen=True, kw_only=True)
class ImportSettings:
    """The user's word on imports, from mlpack.toml's ``[dependencies]``."""

    ignore_imports: frozenset[str] = frozenset()  # import names (dotted prefixes) to leave out
    import_map: Mapping[str, str] = field(default_factory=dict)  # import name -> distribution
    exclude: frozenset[str] = frozenset()  # canonical distribution names never to add

    def ignores(self, module: str) -> bool:
        """True when ``module`` or one of its dotted parents is ignored."""
        parts = module.split(".")
        return any(".".join(parts[:n]) in self.ignore_imports for n in range(1, len(parts) + 1))


def _declared_providers(
    declared: Iterable[DeclaredRequirement], installed: InstalledEvidence
) -> dict[str, list[str]]:
    """Import name -> declared distributions providing it, in declaration order."""
    reverse = reverse_import_map()
    result: dict[str, list[str]] = {}
    for req in declared:
        dist = canonicalize_name(req.name)
        names = set(reverse.get(dist, ()))
        names.update(installed.top_levels.get(dist, ()))
        names.add(dist.replace("-", "_"))
        names.add(dist.replace("-", "_").replace(".", "_"))
        if dist.startswith("python-"):
            names.add(dist[len("python-") :].replace("-", "_"))
        for name in names:
            providers = result.setdefault(name, [])
            if dist not in providers:
                providers.append(dist)
    return result


def _resolve(
    key: str,
    use: _Use,
    *,
    providers: Mapping[str, list[str]],
    installed: InstalledEvidence,
    curated: Mapping[str, tuple[str, ...]],
    ambiguous: list[Ambiguity],
    warnings: list[str],
) -> str | None:
    top = key.split(".", maxsplit=1)[0]
    # A namespace root ("google") says nothing about which distribution owns a submodule.
    names = (key, key.lower()) if top in NAMESPACE_ROOTS else (key, key.lower(), top, top.lower())
    for name in names:
        if name in providers:
            return providers[name][0]
    locations = _fmt(use.locations)
    picked = _from_evidence(key, top, installed, curated)
    if isinstance(picked, str):
        return picked
    if picked:
        return _ambiguous(key, picked, locations, ambiguous, warnings)
    if top in NAMESPACE_ROOTS and key not in curated:
        warnings.append(
            f"unknown: no evidence says which distribution provides {key} "
            f"(a namespace package; declare it) at {locations[0]}"
        )
        return None
    return _guess(top, locations, warnings)


def _from_evidence(
    key: str, top: str, installed: InstalledEvidence, curated: Mapping[str, tuple[str, ...]]
) -> str | tuple[str, ...]:
    """What installed metadata, else the curated table, says provides ``key``.

    One distribution, the candidates when several remain, or ``()`` when neither knows it.
    Installed metadata wins; the table only narrows its candidates.
    """
    candidates = curated.get(key) or (curated.get(top) if top == key else None)
    found = installed.provides.get(key) or (installed.provides.get(top) if top == key else None)
    if found:
        if len(found) == 1:
            return found[0]
        if candidates:
            narrowed = [c for c in candidates if c in found]
            if len(narrowed) == 1 or (len(candidates) == 1 and narrowed):
                return narrowed[0]
        return tuple(found)
    if candidates:
        return candidates[0] if len(candidates) == 1 else tuple(candidates)
    return ()


def _guess(top: str, locations: tuple[str, ...], warnings: list[str]) -> str:
    """The import name as a distribution name; warned when it looks like a local module."""
    guess = canonicalize_name(top.strip("_")) if top.strip("_") else top
    if top.startswith("_") or len(top) <= 2 or top != top.lower() or top in GENERIC_LOCAL_NAMES:
        warnings.append(
            f"guessed: no evidence maps import {top} to a distribution; assuming {guess} "
            f"({locations[0]}; is it a local module?)"
        )
    return guess


def _ambiguous(
    key: str,
    candidates: tuple[str, ...],
    locations: tuple[str, ...],
    ambiguous: list[Ambiguity],
    warnings: list[str],
) -> str:
    ambiguous.append(Ambiguity(module=key, candidates=candidates, locations=locations))
    warnings.append(
        f"ambiguous: import {key} is provided by {', '.join(candidates)}; using {candidates[0]} "
        "(declare one to choose)"
    )
    return candidates[0]
