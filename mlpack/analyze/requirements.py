"""Collect the packages a repository declares, from every dependency file format it may use.

Files are read in this order (the first declaration of a package in a group keeps its source):
``requirements*.txt`` and ``requirement*.txt`` (singular too) and ``requirements/*.txt`` (a lone
file there is the main one: ``requirements/pt2.txt``), ``pyproject.toml``, ``Pipfile``,
``setup.cfg``, ``setup.py`` (static AST only, never run) and ``environment.yml`` (or
``conda.yaml``, MLflow's name). Then the same files of each subproject: a top-level folder with
its own ``pyproject.toml``, ``setup.py`` or ``setup.cfg`` (``backend/`` of a web app), outside
tests, docs, examples, benchmarks and scripts; their sources keep the folder
(``backend/pyproject.toml:12``). When the root declares nothing and has no subproject, the one
top-level folder with a requirements file is the project's (``app/requirements.txt``); several
such folders are independent projects, named in a warning and not read. Nothing is ever
executed, nothing outside the repository is read, and ``.env`` files are never opened.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from packaging.utils import NormalizedName, canonicalize_name

from mlpack.analyze._constraints import (
    ConstraintError,
    conda_specifier,
    split_conda,
)
from mlpack.analyze._declfile import inside, load_toml, quoted_line, toml_line, where
from mlpack.analyze._environment_yml import ENVIRONMENT_FILES, read_environment
from mlpack.analyze._indexes import pipfile_indexes, tool_indexes
from mlpack.analyze._reqfile import RequirementsReader, merge_specifiers
from mlpack.analyze._setup_static import SetupInfo, read_setup_cfg, read_setup_py
from mlpack.analyze._tables import DependencyTables, poetry_extra_of, poetry_tables
from mlpack.analyze.analysis import DeclaredIndex, DeclaredRequirement, Package
from mlpack.errors import AnalyzeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

DEV_GROUPS: Final[frozenset[str]] = frozenset(
    {
        "dev",
        "devel",
        "develop",
        "development",
        "test",
        "tests",
        "testing",
        "doc",
        "docs",
        "documentation",
        "lint",
        "linting",
        "linters",
        "style",
        "format",
        "typing",
        "types",
        "mypy",
        "type-check",
        "typecheck",
        "ci",
        "coverage",
        "pre-commit",
        "release",
        "bench",
        "benchmark",
        "benchmarks",
        "notebooks",
    }
)


def image_packages(packages: Iterable[Package], groups: Iterable[str]) -> tuple[Package, ...]:
    """The packages that go into the image, by evidence.

    Main declared dependencies always; a named group (extra, requirements-<x>.txt) only when the
    code imports it and it is not a development group; undeclared imports when their usage group
    (``runtime``: the entrypoints import them) is one of ``groups``.
    """
    wanted = set(groups)

    def goes_in(p: Package) -> bool:
        if p.declared:
            return p.group is None or (p.used and p.group not in DEV_GROUPS)
        return p.usage in wanted

    return tuple(p for p in packages if goes_in(p))


# requirements files whose packages are the main dependencies (group None).
_MAIN_FILES: Final = frozenset(
    {"", "base", "main", "common", "core", "requirements", "requirement"}
)
_REQUIREMENTS_FILE: Final = re.compile(r"^requirements?(?:[-_.](?P<group>.+))?\.txt$")
_PROJECT_FILES: Final = ("pyproject.toml", "setup.py", "setup.cfg")
_PIPFILE_TABLES: Final = frozenset({"source", "requires", "pipenv", "scripts"})


@dataclass(frozen=True, kw_only=True)
class _CondaMap:
    rename: dict[NormalizedName, str]
    skip: frozenset[str]


def _conda_map() -> _CondaMap:
    from importlib import resources  # only here: it costs start-up, and few repos use conda

    text = resources.files("mlpack.analyze").joinpath("data/conda_map.toml").read_text("utf-8")
    doc = tomllib.loads(text)
    rename = {canonicalize_name(k): str(v) for k, v in doc.get("rename", {}).items()}
    skip = frozenset(canonicalize_name(n) for n in doc.get("skip", {}).get("names", []))
    return _CondaMap(rename=rename, skip=skip)


def declarations(
    root: Path, *, warnings: list[str]
) -> tuple[tuple[DeclaredRequirement, ...], tuple[DeclaredIndex, ...]]:
    """Every declared requirement, one per (name, group), sorted by (group, name); and the
    package indexes the files name for the main requirements, in the order read.

    A package declared in several places keeps its first source; the specifiers are intersected.
    Subprojects' declarations follow the root's, their sources prefixed with the folder. Bad
    files and lines become warnings (``"requirements.txt:7: ..."``), never exceptions.
    """
    found: list[DeclaredRequirement] = []
    indexes: list[DeclaredIndex] = []

    def read(folder: str) -> None:
        collector = _Collector(root / folder, warnings)
        prefix = f"{folder}/" if folder else ""
        found.extend(replace(r, source=prefix + r.source) for r in collector.collect())
        indexes.extend(
            replace(i, source=prefix + i.source)
            for i in collector.indexes
            if i.url not in {have.url for have in indexes}
        )

    read("")
    folders = subprojects(root)
    for folder in folders or (() if found else _requirements_folder(root, warnings)):
        read(folder)
    return tuple(found), tuple(indexes)


def subprojects(root: Path) -> tuple[str, ...]:
    """Top-level folders that are projects of their own (``backend/`` with a pyproject.toml)."""
    return tuple(
        f.name for f in _code_folders(root) if any((f / n).is_file() for n in _PROJECT_FILES)
    )


def _code_folders(root: Path) -> list[Path]:
    """Top-level folders that may hold a project: not hidden, not tests, docs, examples..."""
    from mlpack.analyze.reach import area_of  # the same areas as reachability

    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    return [
        f
        for f in folders
        if not f.name.startswith(".")
        and f.name != "requirements"
        and area_of(f"{f.name}/x.py") is None
    ]


def _requirements_folder(root: Path, warnings: list[str]) -> tuple[str, ...]:
    """For a root that declares nothing and has no subproject: the one top-level folder with a
    requirements file (the app's folder: its file is the project's). Several such folders are
    independent projects (pytorch/examples: ``mnist/``, ``vae/``...): merging them could join
    ``torch<2.6`` with ``torch>=2.6``, so a warning says to analyse one of them instead.
    """
    found = tuple(f.name for f in _code_folders(root) if _has_requirements_file(f))
    if len(found) <= 1:
        return found
    shown = ", ".join(f"{f}/" for f in found[:5]) + (", ..." if len(found) > 5 else "")
    warnings.append(
        f"{len(found)} folders hold projects of their own ({shown}), each with its own "
        f"requirements file; none is read: analyse one of them (`mlpack analyze {found[0]}`)"
    )
    return ()


def _has_requirements_file(folder: Path) -> bool:
    try:
        return any(_REQUIREMENTS_FILE.match(p.name) and p.is_file() for p in folder.iterdir())
    except OSError:  # unreadable: the analysis goes on without it
        return False


def requirements_group(filename: str, *, folder: bool) -> str | None:
    """Return the group of a requirements file: None for the main one, else its suffix."""
    if folder:
        stem = filename.removesuffix(".txt")
    else:
        match = _REQUIREMENTS_FILE.match(filename)
        stem = (match.group("group") or "") if match else filename
    group = canonicalize_name(stem) if stem else ""
    if group in _MAIN_FILES or group.startswith("prod"):
        return None
    return group


class _Collector:
    """Walk the declaration files of one repository."""

    def __init__(self, root: Path, warnings: list[str]) -> None:
        if not root.is_dir():
            msg = f"{root} is not a directory"
            raise AnalyzeError(msg, hint="run mlpack in (or point it at) the project's folder")
        self._root = root.resolve()
        self._warnings = warnings
        self._found: list[DeclaredRequirement] = []
        self._project_names: set[str] = set()
        self.indexes: list[DeclaredIndex] = []
        self._tables = DependencyTables(self._root, warnings)

    def _exists(self, name: str) -> Path | None:
        path = self._root / name
        return path if path.exists() or path.is_symlink() else None

    def collect(self) -> tuple[DeclaredRequirement, ...]:
        files = self._requirement_files()
        reader = RequirementsReader(self._root, self._warnings, own_files=[p for p, _ in files])
        for path, group in files:
            self._found.extend(reader.read_file(path, group=group))
        self._pyproject(reader)
        self._pipfile(reader)
        self._setup()
        self._environment(reader)
        self.indexes.extend(reader.indexes)
        return self._merged()

    # -- requirements*.txt -------------------------------------------------------------------

    def _requirement_files(self) -> list[tuple[Path, str | None]]:
        found: list[tuple[Path, str | None]] = []
        try:
            names = sorted(p.name for p in self._root.iterdir())
        except OSError as exc:
            msg = f"cannot list {self._root}: {exc.strerror}"
            raise AnalyzeError(msg, hint="check the folder's permissions") from exc
        names.sort(key=lambda n: n != "requirements.txt")
        for name in names:
            if _REQUIREMENTS_FILE.match(name):
                found.append((self._root / name, requirements_group(name, folder=False)))
        folder = self._root / "requirements"
        if folder.is_dir():
            if not inside(self._root, folder):
                self._warnings.append(
                    "requirements: a symlink leading outside the repository; not followed"
                )
                return found
            try:
                entries = sorted(p.name for p in folder.iterdir())
            except OSError as exc:
                self._warnings.append(f"requirements: cannot be listed ({exc.strerror}); skipped")
                return found
            texts = [name for name in entries if name.endswith(".txt")]
            for name in texts:
                # A lone file is the main one, whatever its name (requirements/pt2.txt).
                group = None if len(texts) == 1 else requirements_group(name, folder=True)
                found.append((folder / name, group))
        return found

    # -- pyproject.toml ----------------------------------------------------------------------

    def _pyproject(self, reader: RequirementsReader) -> None:
        path = self._exists("pyproject.toml")
        loaded = load_toml(self._root, path, warnings=self._warnings) if path else None
        if loaded is None:
            return
        doc, text = loaded
        lines = text.splitlines()
        project = doc.get("project")
        if isinstance(project, dict):
            if isinstance(project.get("name"), str):
                self._project_names.add(canonicalize_name(project["name"]))
            if "dependencies" in project:
                self._strings(
                    project["dependencies"], "project", "dependencies", None, lines, reader
                )
            optional = project.get("optional-dependencies", {})
            for extra, items in optional.items() if isinstance(optional, dict) else ():
                self._strings(items, "project.optional-dependencies", extra, extra, lines, reader)
        groups = doc.get("dependency-groups", {})
        for group, items in groups.items() if isinstance(groups, dict) else ():
            self._strings(items, "dependency-groups", group, group, lines, reader)
        tool = doc.get("tool")
        tool = tool if isinstance(tool, dict) else {}
        for url, primary in tool_indexes(tool):
            source = where("pyproject.toml", quoted_line(lines, url))
            reader.add_index(url, primary=primary, source=source)
        if isinstance(tool.get("poetry"), dict):
            self._poetry(tool["poetry"], lines)
        pdm = tool.get("pdm")
        pdm_dev = pdm.get("dev-dependencies", {}) if isinstance(pdm, dict) else {}
        for group, items in pdm_dev.items() if isinstance(pdm_dev, dict) else ():
            self._strings(items, "tool.pdm.dev-dependencies", group, group, lines, reader)
        uv = tool.get("uv")
        if isinstance(uv, dict) and "dev-dependencies" in uv:
            self._strings(
                uv["dev-dependencies"], "tool.uv", "dev-dependencies", "dev", lines, reader
            )

    def _strings(
        self,
        items: object,
        table: str,
        key: str,
        group: str | None,
        lines: Sequence[str],
        reader: RequirementsReader,
    ) -> None:
        """Parse a TOML array of PEP 508 strings (PDM also allows ``-e`` lines)."""
        if not isinstance(items, list):
            self._warnings.append(f"pyproject.toml: {table}.{key} is not an array; skipped")
            return
        group = canonicalize_name(group) if group is not None else None
        for item in items:
            if isinstance(item, dict) and "include-group" in item:
                continue  # PEP 735: the included group is listed on its own
            if not isinstance(item, str):
                self._warnings.append(
                    f"pyproject.toml: {table}.{key}: {item!r} is not a string; skipped"
                )
                continue
            source = where("pyproject.toml", toml_line(lines, table, key, item))
            text, editable = item.strip(), False
            if text.startswith("-e "):
                text, editable = text[3:].strip(), True
            req = reader.requirement(
                text, source=source, base=self._root, group=group, editable=editable
            )
            if req is not None:
                self._found.append(req)

    def _poetry(self, poetry: dict[str, Any], lines: Sequence[str]) -> None:
        if isinstance(poetry.get("name"), str):
            self._project_names.add(canonicalize_name(poetry["name"]))
        extra_of = poetry_extra_of(poetry)
        for table, group, deps in poetry_tables(poetry):
            if deps is None:
                continue
            if not isinstance(deps, dict):
                self._warnings.append(f"pyproject.toml: {table} is not a table; skipped")
                continue
            for name, value in deps.items():
                if canonicalize_name(name) == "python":
                    continue
                source = where("pyproject.toml", toml_line(lines, table, name))
                req = self._tables.requirement(
                    name, value, source=source, group=group, style="poetry"
                )
                if req is None:
                    continue
                if group is None and isinstance(value, dict) and value.get("optional") is True:
                    # Poetry installs an optional dependency only through an extra that lists it.
                    if req.name not in extra_of:
                        continue
                    req = replace(req, group=canonicalize_name(extra_of[req.name]))
                self._found.append(req)

    # -- Pipfile -----------------------------------------------------------------------------

    def _pipfile(self, reader: RequirementsReader) -> None:
        path = self._exists("Pipfile")
        loaded = load_toml(self._root, path, warnings=self._warnings) if path else None
        if loaded is None:
            return
        doc, text = loaded
        lines = text.splitlines()
        for url, primary in pipfile_indexes(doc.get("source")):
            reader.add_index(url, primary=primary, source=where("Pipfile", quoted_line(lines, url)))
        for table, deps in doc.items():
            if table in _PIPFILE_TABLES or not isinstance(deps, dict):
                continue
            group = {"packages": None, "dev-packages": "dev"}.get(table, table)
            for name, value in deps.items():
                source = where("Pipfile", toml_line(lines, table, name))
                req = self._tables.requirement(
                    name, value, source=source, group=group, style="pipfile"
                )
                if req is not None:
                    self._found.append(req)

    # -- setup.cfg and setup.py --------------------------------------------------------------

    def _setup(self) -> None:
        for filename, read in (("setup.cfg", read_setup_cfg), ("setup.py", read_setup_py)):
            path = self._exists(filename)
            info = read(self._root, path, warnings=self._warnings) if path else None
            if info is not None:
                self._setup_info(filename, info)

    def _setup_info(self, filename: str, info: SetupInfo) -> None:
        if info.name:
            self._project_names.add(canonicalize_name(info.name))
        reader = RequirementsReader(self._root, self._warnings)
        groups: list[tuple[str | None, Iterable[Any]]] = [(None, info.install_requires)]
        groups.extend(info.extras_require)
        for group, values in groups:
            # extras_require keys may carry a marker: "gpu:platform_system=='Linux'"
            extra, _, marker = (group or "").partition(":")
            for value in values:
                text = value.text
                if marker.strip():
                    spec, _, own = text.partition(";")
                    both = f"({own.strip()}) and ({marker.strip()})" if own.strip() else marker
                    text = f"{spec.strip()} ; {both.strip()}"
                req = reader.requirement(
                    text,
                    source=where(filename, value.line),
                    base=self._root,
                    group=canonicalize_name(extra) if extra else None,
                )
                if req is not None:
                    self._found.append(req)

    # -- environment.yml ---------------------------------------------------------------------

    def _environment(self, reader: RequirementsReader) -> None:
        conda: _CondaMap | None = None
        for filename in ENVIRONMENT_FILES:
            path = self._exists(filename)
            if path is None:
                continue
            entries = read_environment(self._root, path, warnings=self._warnings)
            pip_lines = [(e.line, e.text) for e in entries if e.pip]
            self._found.extend(
                reader.read_lines(pip_lines, origin=filename, base=self._root, group=None)
            )
            for entry in entries:
                if entry.pip:
                    continue
                conda = conda or _conda_map()
                req = self._conda(entry.text, f"{filename}:{entry.line}", conda)
                if req is not None:
                    self._found.append(req)

    def _conda(self, text: str, source: str, conda: _CondaMap) -> DeclaredRequirement | None:
        try:
            name, version = split_conda(text)
        except ConstraintError as exc:
            self._warnings.append(f"{source}: {exc}; skipped")
            return None
        key = canonicalize_name(name)
        if key in conda.skip:
            return None
        try:
            specifier = conda_specifier(version) if version else ""
        except ConstraintError as exc:
            self._warnings.append(f"{source}: {name}: {exc}; any version used")
            specifier = ""
        return DeclaredRequirement(
            name=canonicalize_name(conda.rename.get(key, name)),
            specifier=specifier,
            source=source,
        )

    # -- merging -----------------------------------------------------------------------------

    def _merged(self) -> tuple[DeclaredRequirement, ...]:
        merged: dict[tuple[str, str | None], DeclaredRequirement] = {}
        for req in self._found:
            if req.name in self._project_names and req.url is None:
                continue  # "myproject[extra]" inside the project's own extras
            key = (req.name, req.group)
            first = merged.get(key)
            if first is None:
                merged[key] = req
                continue
            merged[key] = replace(
                first,
                specifier=merge_specifiers(first.specifier, req.specifier),
                extras=tuple(sorted({*first.extras, *req.extras})),
                marker=first.marker if first.marker is not None else req.marker,
                url=first.url if first.url is not None else req.url,
                editable=first.editable or req.editable,
            )
            self._check_pins(merged[key], first, req)
        return tuple(sorted(merged.values(), key=lambda r: (r.group or "", r.name)))

    def _check_pins(
        self, merged: DeclaredRequirement, first: DeclaredRequirement, other: DeclaredRequirement
    ) -> None:
        from packaging.specifiers import SpecifierSet  # where a declaration is read

        spec = SpecifierSet(merged.specifier)
        for item in spec:
            pinned = item.operator in {"==", "==="} and not item.version.endswith("*")
            if pinned and not spec.contains(item.version, prereleases=True):
                self._warnings.append(
                    f"{other.source}: {merged.name}{other.specifier} conflicts with "
                    f"{first.source}: {merged.name}{first.specifier}; no version satisfies both"
                )
                return
