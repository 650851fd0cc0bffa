"""``analyze``: read a repository (never run it) and decide what its image needs, with sources.

The orchestrator: walk the files once, extract each source file's facts once (cached by content
hash), then let each concept module decide: Python version, declared requirements, imports to
distributions, environment variables, layout, entrypoints, CUDA need and system packages. A file
that cannot be read or parsed never stops the analysis; it is listed in ``warnings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlpack.errors import AnalyzeError

if TYPE_CHECKING:
    from mlpack.analyze.analysis import ProjectAnalysis
    from mlpack.analyze.imports import ImportSettings

__all__ = ["analyze"]


def analyze(
    root: Path, *, cache_dir: Path | None = None, settings: ImportSettings | None = None
) -> ProjectAnalysis:
    """Analyse the repository at ``root``.

    :param cache_dir: where per-file facts are cached (default ``<mlpack home>/cache/analyze``);
        a missing or corrupt cache only costs time.
    :param settings: the user's ``ignore-imports``, ``import-map`` and ``exclude``.
    :raises AnalyzeError: when ``root`` is not a readable directory, or declared files conflict.
    """
    from mlpack.analyze.accelerators import analyze_accelerator
    from mlpack.analyze.analysis import ProjectAnalysis
    from mlpack.analyze.debian import analyze_system_packages
    from mlpack.analyze.entrypoints import analyze_entrypoints, main_entrypoints
    from mlpack.analyze.envvars import analyze_env
    from mlpack.analyze.factcache import collect_facts
    from mlpack.analyze.imports import analyze_imports, with_launchers
    from mlpack.analyze.installed import installed_evidence, repo_environments
    from mlpack.analyze.layout import analyze_layout, library_outputs
    from mlpack.analyze.python_version import detect_python
    from mlpack.analyze.reach import reach
    from mlpack.analyze.requirements import declarations, image_packages
    from mlpack.analyze.walk import walk_repo
    from mlpack.vocabulary import DEFAULT_GROUPS

    root = _check_root(Path(root))
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    facts = collect_facts(tree, cache_dir=cache_dir, warnings=warnings)
    python = detect_python(root, warnings=warnings)
    declared, indexes = declarations(root, warnings=warnings)
    environments = repo_environments(root)
    installed = installed_evidence(environments or None)
    entrypoints = analyze_entrypoints(tree, facts, warnings=warnings)
    reached = reach(tree, facts, main_entrypoints(entrypoints))
    imports = analyze_imports(
        tree,
        facts,
        python_version=python.version,
        declared=declared,
        installed=installed,
        warnings=warnings,
        reach=reached,
        settings=settings,
    )
    packages = with_launchers(imports.packages, entrypoints, settings)
    libraries = library_outputs(facts, reached)
    env = analyze_env(tree, facts, warnings=warnings, reach=reached, library_outputs=libraries)
    layout = analyze_layout(tree, facts, reach=reached, library_outputs=libraries)
    accelerator = analyze_accelerator(facts, packages, reach=reached)
    system_packages = analyze_system_packages(image_packages(packages, DEFAULT_GROUPS))
    if not tree.files:
        warnings.append(f"{root}: no files to analyse (empty repository?); using defaults")
    return ProjectAnalysis(
        root=str(root),
        python=python,
        packages=packages,
        ambiguous=imports.ambiguous,
        env=env,
        layout=layout,
        entrypoints=entrypoints,
        accelerator=accelerator,
        system_packages=system_packages,
        indexes=indexes,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _check_root(root: Path) -> Path:
    if not root.exists():
        msg = f"cannot analyse {root}: it does not exist"
        raise AnalyzeError(msg, hint="pass the path of the repository folder (default: .)")
    if not root.is_dir():
        msg = f"cannot analyse {root}: it is not a directory"
        raise AnalyzeError(
            msg, hint="pass the repository's folder, not a file inside it (e.g. `mlpack analyze .`)"
        )
    try:
        next(iter(root.iterdir()), None)
    except OSError as exc:
        msg = f"cannot analyse {root}: the folder cannot be read ({exc.strerror})"
        raise AnalyzeError(
            msg, hint="check its permissions, or run as a user who can read it"
        ) from exc
    return root.resolve()
