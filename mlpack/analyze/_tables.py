"""Poetry and Pipfile dependency tables: ``name = "spec"`` or ``name = {...}`` as requirements.

Versions in Poetry's caret and tilde syntax or Pipfile's, ``python``/``platform`` and marker keys
as PEP 508 markers, ``git``/``path``/``url`` entries as direct references (a path must stay
inside the repository), ``extras`` and ``develop``/``editable``. An entry that cannot be read is
skipped with a warning naming its file and line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from packaging.utils import canonicalize_name

from mlpack.analyze._constraints import ConstraintError, poetry_alternatives, poetry_specifier
from mlpack.analyze._declfile import inside
from mlpack.analyze.analysis import DeclaredRequirement

if TYPE_CHECKING:
    from pathlib import Path

# Pipfile tables may carry PEP 508 marker variables as keys: {sys_platform = "== 'linux'"}.
_MARKER_KEYS: Final = frozenset(
    {
        "os_name",
        "sys_platform",
        "platform_machine",
        "platform_python_implementation",
        "platform_release",
        "platform_system",
        "platform_version",
        "python_version",
        "python_full_version",
        "implementation_name",
        "implementation_version",
    }
)


class _SkipEntry(Exception):
    """A dependency-table entry that cannot be used; a warning has been given."""


class DependencyTables:
    """Reads the dependency table entries of one repository's files."""

    def __init__(self, root: Path, warnings: list[str]) -> None:
        self._root = root
        self._warnings = warnings

    def requirement(
        self, name: str, value: object, *, source: str, group: str | None, style: str
    ) -> DeclaredRequirement | None:
        """Turn a Poetry or Pipfile ``name = "spec"`` / ``name = {...}`` entry into a requirement."""
        if isinstance(value, list):  # Poetry "multiple constraints"
            tables = [v for v in value if isinstance(v, dict)]
            if not tables:
                self._warnings.append(f"{source}: {name}: unexpected value; skipped")
                return None
            self._warnings.append(f"{source}: {name} has several constraints; using the first one")
            value = tables[0]
        if isinstance(value, str):
            value = {"version": value}
        if not isinstance(value, dict):
            self._warnings.append(f"{source}: {name}: unexpected value {value!r}; skipped")
            return None
        specifier = self._version(name, value.get("version", "*"), source=source, style=style)
        markers: list[str] = []
        if isinstance(value.get("markers"), str):
            markers.append(value["markers"])
        if style == "poetry":
            if isinstance(value.get("python"), str):
                markers.extend(self._python_markers(name, value["python"], source))
            if isinstance(value.get("platform"), str):
                markers.append(f'sys_platform == "{value["platform"]}"')
        else:
            markers.extend(
                f"{key} {value[key]}"
                for key in sorted(_MARKER_KEYS)
                if isinstance(value.get(key), str)
            )
        try:
            marker = self._marker(markers, source)
            url = self._table_url(value, source)
        except _SkipEntry:
            return None
        raw_extras = value.get("extras", [])
        extras = (
            tuple(sorted(canonicalize_name(e) for e in raw_extras if isinstance(e, str)))
            if isinstance(raw_extras, list)
            else ()
        )
        editable = value.get("develop") is True or value.get("editable") is True
        return DeclaredRequirement(
            name=canonicalize_name(name),
            specifier=specifier if url is None else "",
            extras=extras,
            marker=marker,
            url=url,
            source=source,
            group=canonicalize_name(group) if group is not None else None,
            editable=editable,
        )

    def _version(self, name: str, version: object, *, source: str, style: str) -> str:
        if not isinstance(version, str):
            self._warnings.append(f"{source}: {name}: version is not a string; any version used")
            return ""
        # packaging's parsers are imported where a declaration is read (see merge_specifiers).
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            if style == "poetry":
                return poetry_specifier(version)
            text = version.strip()
            if text in {"", "*"}:
                return ""
            if re.match(r"^\d", text):  # Pipfile "1.2" means "==1.2"
                text = "==" + text
            return str(SpecifierSet(text))
        except (ConstraintError, InvalidSpecifier) as exc:
            self._warnings.append(f"{source}: {name}: {exc}; any version used")
            return ""

    def _python_markers(self, name: str, constraint: str, source: str) -> list[str]:
        from packaging.specifiers import SpecifierSet

        try:
            alternatives = poetry_alternatives(constraint)
        except ConstraintError as exc:
            self._warnings.append(f"{source}: {name}: python = {constraint!r}: {exc}; ignored")
            return []
        ors: list[str] = []
        for alternative in alternatives:
            terms = []
            for spec in SpecifierSet(alternative):
                var = "python_full_version" if spec.version.count(".") >= 2 else "python_version"
                terms.append(f'{var} {spec.operator} "{spec.version}"')
            if not terms:
                return []
            ors.append(" and ".join(terms))
        if len(ors) == 1:
            return ors
        return [" or ".join(f"({o})" for o in ors)]

    def _marker(self, markers: list[str], source: str) -> str | None:
        if not markers:
            return None
        text = " and ".join(f"({m})" for m in markers) if len(markers) > 1 else markers[0]
        from packaging.markers import InvalidMarker, Marker

        try:
            return str(Marker(text))
        except InvalidMarker:
            self._warnings.append(f"{source}: invalid marker {text!r}; skipped")
            raise _SkipEntry from None

    def _table_url(self, value: dict[str, Any], source: str) -> str | None:
        if isinstance(value.get("git"), str):
            url = value["git"]
            url = url if url.startswith("git+") else f"git+{url}"
            ref = next(
                (
                    value[k]
                    for k in ("rev", "tag", "branch", "ref")
                    if isinstance(value.get(k), str)
                ),
                None,
            )
            if ref:
                url += f"@{ref}"
            if isinstance(value.get("subdirectory"), str):
                url += f"#subdirectory={value['subdirectory']}"
            return str(url)
        for key in ("path", "file", "url"):
            target = value.get(key)
            if not isinstance(target, str):
                continue
            if key == "url" or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", target):
                return target
            path = self._root / target
            if not inside(self._root, path):
                self._warnings.append(f"{source}: {target!r} is outside the repository; skipped")
                raise _SkipEntry
            relative = path.resolve().relative_to(self._root).as_posix()
            return "." if relative == "." else f"./{relative}"
        return None


def poetry_extra_of(poetry: dict[str, Any]) -> dict[str, str]:
    """Each optional dependency's first extra (canonical names): Poetry's ``[extras]`` table."""
    extras = poetry.get("extras") if isinstance(poetry.get("extras"), dict) else {}
    assert isinstance(extras, dict)
    extra_of: dict[str, str] = {}
    for extra, names in extras.items():
        for name in names if isinstance(names, list) else []:
            if isinstance(name, str):
                extra_of.setdefault(canonicalize_name(name), extra)
    return extra_of


def poetry_tables(poetry: dict[str, Any]) -> list[tuple[str, str | None, object]]:
    """(table name, group, table) for the main, the old dev and every named Poetry group."""
    tables: list[tuple[str, str | None, object]] = [
        ("tool.poetry.dependencies", None, poetry.get("dependencies")),
        ("tool.poetry.dev-dependencies", "dev", poetry.get("dev-dependencies")),
    ]
    poetry_groups = poetry.get("group")
    if isinstance(poetry_groups, dict):
        for group, body in poetry_groups.items():
            deps = body.get("dependencies") if isinstance(body, dict) else None
            tables.append((f"tool.poetry.group.{group}.dependencies", group, deps))
    return tables
