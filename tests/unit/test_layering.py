"""The package layering of ARCHITECTURE.md, checked on the source: data flows one way.

Every import of every module under ``mlpack/`` is read with ``ast`` (module level, function level
and ``TYPE_CHECKING`` blocks alike: a type is a dependency too) and checked against ``LAYERS``, an
ordered list from the bottom up, and against ``FORBIDDEN``, the rules that an order alone cannot
say. To place a new package (``build``, ``spec``, ``deploy``, ``runs`` are already placed), add
it to the layer it belongs to; a module that belongs to no layer fails ``test_every_module_has_a_layer``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import pytest

PACKAGE: Final = Path(__file__).resolve().parents[2] / "mlpack"
ROOT: Final = "mlpack"  # the package's __init__ (``__version__``): anyone may import it

# Bottom first. A package may import its own modules and the packages of lower layers; packages
# of one layer know nothing of each other.
LAYERS: Final[tuple[tuple[str, ...], ...]] = (
    ("mlpack.oslib",),
    ("mlpack.errors", "mlpack.progress", "mlpack.home"),
    ("mlpack.paths", "mlpack.vocabulary"),
    ("mlpack.oci", "mlpack.analyze"),
    ("mlpack.runtime", "mlpack.base", "mlpack.config"),
    ("mlpack.lock",),
    ("mlpack.spec",),
    ("mlpack.render", "mlpack.provenance"),  # both read an ImageSpec's types
    ("mlpack.build", "mlpack.deploy", "mlpack.runs", "mlpack.serve"),
    ("mlpack.pipeline",),
    ("mlpack.cli",),
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Rule:
    """``importer`` (a package or module) must not import ``imported`` (nor its submodules)."""

    importer: str
    imported: str
    why: str


# Backends the locker is handed (ARCHITECTURE: "through its Protocol, handed to them by
# pipeline.py") and therefore never imports.
LOCK_RECEIVES: Final = (
    "mlpack.oci",
    "mlpack.base",
    "mlpack.runtime.embedded",
    "mlpack.runtime.docker",
)

# What the order above allows but the architecture does not.
FORBIDDEN: Final[tuple[Rule, ...]] = (
    Rule(
        importer="mlpack.runtime",
        imported="mlpack.analyze",
        why="the runtime knows nothing of analysis",
    ),
    Rule(
        importer="mlpack.runtime.docker",
        imported="mlpack.runtime.embedded",
        why="the Docker backend does not import the embedded backend",
    ),
    *(
        Rule(
            importer="mlpack.lock",
            imported=backend,
            why="the locker receives the base resolver and the runtime from mlpack.pipeline",
        )
        for backend in LOCK_RECEIVES
    ),
)

# Rules that fail today and are being fixed on another branch: strict, so each flips to a
# failure ("XPASS(strict)") the day its fix lands, and then its entry here must go.
PENDING: Final[dict[tuple[str, str], str]] = {}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@cache
def imports_of(module: str) -> tuple[tuple[str, int], ...]:
    """(imported mlpack module, line) for each import anywhere in ``module``'s source."""
    path = modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative (banned by ruff, resolved anyway)
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # ``from mlpack import fastjson`` imports a module; ``from x import name`` does not.
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in modules() else base, node.lineno))
    return tuple((name, line) for name, line in found if _within(name, ROOT))


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the package ``module`` belongs to (longest prefix wins)."""
    best: tuple[int, int] | None = None
    for index, layer in enumerate(LAYERS):
        for package in layer:
            if _within(module, package) and (best is None or len(package) > best[1]):
                best = (index, len(package))
    return None if best is None else best[0]


def package_of(module: str) -> str | None:
    """The LAYERS entry ``module`` belongs to."""
    matches = [p for layer in LAYERS for p in layer if _within(module, p)]
    return max(matches, key=len) if matches else None


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in modules() if m != ROOT and layer_of(m) is None]
    assert not unplaced, f"add these modules' packages to LAYERS: {unplaced}"


def _layer_violations(package: str) -> list[str]:
    own = layer_of(package)
    assert own is not None
    bad = []
    for module in (m for m in modules() if package_of(m) == package):
        for imported, line in imports_of(module):
            target = package_of(imported)
            if imported == ROOT or target == package:
                continue
            target_layer = layer_of(imported)
            if target_layer is None or target_layer >= own:
                bad.append(f"{module}:{line} imports {imported}")
    return bad


@pytest.mark.parametrize("package", [p for layer in LAYERS for p in layer])
def test_packages_import_only_lower_layers(package: str) -> None:
    assert not _layer_violations(package), (
        f"{package} may import only packages below its layer in LAYERS"
    )


def _rule_param(rule: Rule) -> object:
    reason = PENDING.get((rule.importer, rule.imported))
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(rule, id=f"{rule.importer}-x-{rule.imported}", marks=marks)


@pytest.mark.parametrize("rule", [_rule_param(r) for r in FORBIDDEN])
def test_forbidden_imports(rule: Rule) -> None:
    bad = [
        f"{module}:{line} imports {imported}"
        for module in modules()
        if _within(module, rule.importer)
        for imported, line in imports_of(module)
        if _within(imported, rule.imported)
    ]
    assert not bad, f"{rule.why}: {bad}"


def test_oslib_imports_only_the_standard_library() -> None:
    """The runtime's helper imports mlpack.oslib under ``python -I -S``: no site-packages."""
    bad = []
    for module, path in modules().items():
        if not _within(module, "mlpack.oslib"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if not (top in sys.stdlib_module_names or _within(name, "mlpack.oslib")):
                    bad.append(f"{module}:{node.lineno} imports {name}")
    assert not bad, f"mlpack.oslib must import only the standard library: {bad}"


def test_the_checker_sees_every_kind_of_import() -> None:
    """A function-level, a TYPE_CHECKING and a ``from package import module`` import all count."""
    seen = {name for name, _ in imports_of("mlpack.config")}
    assert "mlpack.analyze.analysis" in seen  # under TYPE_CHECKING
    assert "mlpack.analyze.requirements" in seen  # inside a function
    assert "mlpack.oslib.fs" in seen  # from mlpack.oslib.fs import atomic_write
    # ``from mlpack.lock import stamp`` imports a module, not a name of the package
    assert "mlpack.lock.stamp" in {name for name, _ in imports_of("mlpack.pipeline")}
    assert layer_of("mlpack.cli.app") == len(LAYERS) - 1
    assert package_of("mlpack.runtime.embedded.helper") == "mlpack.runtime"


def test_a_lower_package_importing_a_higher_one_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fake(module: str) -> tuple[tuple[str, int], ...]:
        return (("mlpack.cli.app", 3), ("mlpack.errors", 4)) if module == "mlpack.oci.store" else ()

    monkeypatch.setitem(globals(), "imports_of", fake)
    assert _layer_violations("mlpack.oci") == ["mlpack.oci.store:3 imports mlpack.cli.app"]
