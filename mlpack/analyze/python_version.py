"""Pin the image's Python version (X.Y) from every file that declares one."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from mlpack.analyze._constraints import (
    ConstraintError,
    conda_specifier,
    poetry_alternatives,
    split_conda,
)
from mlpack.analyze._declfile import load_toml, read_text, toml_line, where
from mlpack.analyze._environment_yml import ENVIRONMENT_FILES, read_environment
from mlpack.analyze._setup_static import read_setup_cfg, read_setup_py
from mlpack.analyze.analysis import PythonDecision
from mlpack.errors import AnalyzeError

if TYPE_CHECKING:
    from pathlib import Path

    from packaging.specifiers import SpecifierSet

SUPPORTED_PYTHONS: Final[tuple[str, ...]] = ("3.9", "3.10", "3.11", "3.12", "3.13")  # oldest first
DEFAULT_PYTHON: Final = "3.11"  # Debian 12's python: the debian base provider can build it offline

_SUPPORTED_TEXT: Final = ", ".join(SUPPORTED_PYTHONS)
# A range allows X.Y when it allows some X.Y.z; patch releases beyond this are not expected.
_PATCHES: Final = range(40)
_EXACT: Final = re.compile(r"^(?:python-?|cpython-)?(\d+)\.(\d+)(?:\.(\d+))?(?:[a-z0-9.+-]*)$")


@dataclass(frozen=True, kw_only=True)
class _Constraint:
    source: str
    text: str
    exact: str | None = None  # "3.10" for a pin
    alternatives: tuple[SpecifierSet, ...] = ()  # a range: the union of these sets
    key: str = ""  # the setting that holds a range: "requires-python", "python_requires"...

    def allows(self, version: str) -> bool:
        if self.exact is not None:
            return self.exact == version
        return any(
            any(alt.contains(f"{version}.{patch}") for patch in _PATCHES)
            for alt in self.alternatives
        )

    def describe(self) -> str:
        kind = "pins" if self.exact is not None else "requires"
        return f"{self.source} {kind} {self.text!r}"


def detect_python(root: Path, *, warnings: list[str]) -> PythonDecision:
    """Pick the newest supported Python that every declared constraint allows.

    Raise ``AnalyzeError`` when the files disagree; fall back to ``DEFAULT_PYTHON`` (with a
    warning) when no file says anything. A file that allows no supported version counts as a
    pin to the nearest one, with a warning (``_nearest_supported``).
    """
    found = [_nearest_supported(c, warnings) for c in _declared(root, warnings)]
    seen = tuple((c.source, c.text) for c in found)
    if not found:
        warnings.append(
            f"no Python version declared (.python-version, pyproject.toml requires-python, ...); "
            f"using {DEFAULT_PYTHON}"
        )
        return PythonDecision(version=DEFAULT_PYTHON, source="rule: default", constraints=())
    exact = [c for c in found if c.exact is not None]
    for first in found:
        for second in found:
            if first is not second and not _overlap(first, second):
                _conflict(first, second)
    candidates = [v for v in SUPPORTED_PYTHONS if all(c.allows(v) for c in found)]
    if not candidates:
        msg = "the declared Python constraints together allow no supported version: " + "; ".join(
            c.describe() for c in found
        )
        raise AnalyzeError(msg, hint=f"make them overlap on one of {_SUPPORTED_TEXT}")
    version = candidates[-1]
    if exact:
        deciding = exact[0]
    else:
        # The most restrictive range: the one that allows the fewest supported versions.
        deciding = min(found, key=lambda c: sum(c.allows(v) for v in SUPPORTED_PYTHONS))
    return PythonDecision(version=version, source=deciding.source, constraints=seen)


def _nearest_supported(constraint: _Constraint, warnings: list[str]) -> _Constraint:
    """A constraint that allows no supported version, as a pin to the nearest one (the oldest
    for ``3.8`` or ``<3.9``, the newest for ``3.14``), said in a warning. An old repository
    pinned to an end-of-life Python is still analysed and locked; the lock names any package
    that has no wheels for the version it gets.
    """
    if any(constraint.allows(v) for v in SUPPORTED_PYTHONS):
        return constraint
    oldest = int(SUPPORTED_PYTHONS[0].split(".")[1])
    if constraint.exact is not None:
        older = int(constraint.exact.split(".")[1]) < oldest
    else:
        older = any(constraint.allows(f"3.{minor}") for minor in range(oldest))
    nearest = SUPPORTED_PYTHONS[0] if older else SUPPORTED_PYTHONS[-1]
    warnings.append(
        f"{constraint.describe()}, which no supported Python matches ({_SUPPORTED_TEXT}); "
        f"using {nearest}, the nearest (`mlpack lock` names any package without wheels for it)"
    )
    return replace(constraint, exact=nearest, alternatives=())


def unpinned_versions(root: Path) -> tuple[str, ...]:
    """The supported versions the project's declarations allow, newest first; () when pinned.

    ``mlpack lock`` takes the newest of these for which the packages resolve with wheels.
    """
    found = _declared(root, [])
    if any(c.exact is not None for c in found):
        return ()
    return tuple(v for v in reversed(SUPPORTED_PYTHONS) if all(c.allows(v) for c in found))


def python_allowance(root: Path) -> str:
    """Which declarations let the lock choose among Python versions, in words for its note.

    ``"pyproject.toml:4 requires-python >=3.9"``; ``"no file pins a Python version"`` when
    none declares a range.
    """
    found = [c for c in _declared(root, []) if c.exact is None]
    if not found:
        return "no file pins a Python version"
    return ", ".join(" ".join(filter(None, (c.source, c.key, c.text))) for c in found)


def _declared(root: Path, warnings: list[str]) -> list[_Constraint]:
    """The constraints of the repository's files, then those of its subprojects (``backend/``
    with a pyproject.toml: one interpreter runs all of its code).

    A subproject's constraint that no supported version shares with the ones before it, or
    that allows no supported version, is left out with a warning: the repository's own files
    decide, and a subproject never stops the analysis.
    """
    from mlpack.analyze.requirements import subprojects

    found = [c for reader in _READERS for c in reader(root, warnings)]
    for folder in subprojects(root):
        problems: list[str] = []
        for reader in _READERS:
            for constraint in reader(root / folder, problems):
                c = replace(constraint, source=f"{folder}/{constraint.source}")
                clash = next((f for f in found if not _overlap(f, c)), None)
                if clash is not None:
                    warnings.append(f"{c.describe()}: ignored, as {clash.describe()}")
                elif not any(c.allows(v) for v in SUPPORTED_PYTHONS):
                    warnings.append(f"{c.describe()}: ignored, no supported Python allows it")
                else:
                    found.append(c)
        warnings.extend(f"{folder}/{p}" for p in problems)
    return found


def _overlap(first: _Constraint, second: _Constraint) -> bool:
    return any(first.allows(v) and second.allows(v) for v in SUPPORTED_PYTHONS)


def _conflict(first: _Constraint, second: _Constraint) -> None:
    msg = f"conflicting Python versions: {first.describe()} but {second.describe()}"
    hint = (
        f"make the two files agree (edit or delete one of {first.source.split(':')[0]} and "
        f"{second.source.split(':')[0]}); supported versions are {_SUPPORTED_TEXT}"
    )
    raise AnalyzeError(msg, hint=hint)


def _exact(source: str, text: str, warnings: list[str]) -> list[_Constraint]:
    match = _EXACT.match(text.strip())
    if match is None:
        warnings.append(f"{source}: {text!r} is not a CPython version; ignored")
        return []
    return [_Constraint(source=source, text=text.strip(), exact=f"{match[1]}.{match[2]}")]


def _range(source: str, text: str, warnings: list[str], *, key: str) -> list[_Constraint]:
    # packaging's parsers are imported where a constraint is read: they cost start-up.
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        spec = SpecifierSet(text)
    except InvalidSpecifier:
        warnings.append(f"{source}: {text!r} is not a valid version specifier; ignored")
        return []
    return [_Constraint(source=source, text=text.strip(), alternatives=(spec,), key=key)]


def _first_line(text: str) -> tuple[int, str] | None:
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            return number, stripped
    return None


def _python_version_file(root: Path, warnings: list[str]) -> list[_Constraint]:
    path = root / ".python-version"
    if not path.exists() and not path.is_symlink():
        return []
    text = read_text(root, path, warnings=warnings)
    first = _first_line(text) if text is not None else None
    if first is None:
        return []
    # pyenv accepts several lines (fallbacks); the first is the one used.
    return _exact(f".python-version:{first[0]}", first[1].split()[0], warnings)


def _runtime_txt(root: Path, warnings: list[str]) -> list[_Constraint]:
    path = root / "runtime.txt"
    if not path.exists() and not path.is_symlink():
        return []
    text = read_text(root, path, warnings=warnings)
    first = _first_line(text) if text is not None else None
    if first is None:
        return []
    if not first[1].startswith("python-"):
        warnings.append(f"runtime.txt:{first[0]}: {first[1]!r} is not 'python-X.Y[.Z]'; ignored")
        return []
    return _exact(f"runtime.txt:{first[0]}", first[1], warnings)


def _tool_versions(root: Path, warnings: list[str]) -> list[_Constraint]:
    path = root / ".tool-versions"  # asdf / mise
    if not path.exists() and not path.is_symlink():
        return []
    text = read_text(root, path, warnings=warnings)
    for number, line in enumerate((text or "").splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "python":
            return _exact(f".tool-versions:{number}", words[1], warnings)
    return []


def _pyproject(root: Path, warnings: list[str]) -> list[_Constraint]:
    path = root / "pyproject.toml"
    if not path.exists() and not path.is_symlink():
        return []
    loaded = load_toml(root, path, warnings=warnings)
    if loaded is None:
        return []
    doc, text = loaded
    lines = text.splitlines()
    out: list[_Constraint] = []
    project = doc.get("project")
    if isinstance(project, dict) and "requires-python" in project:
        value = project["requires-python"]
        source = where("pyproject.toml", toml_line(lines, "project", "requires-python"))
        if isinstance(value, str):
            out.extend(_range(source, value, warnings, key="requires-python"))
        else:
            warnings.append(f"{source}: requires-python is not a string; ignored")
    tool = doc.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    deps = poetry.get("dependencies") if isinstance(poetry, dict) else None
    if isinstance(deps, dict) and "python" in deps:
        value = deps["python"]
        source = where("pyproject.toml", toml_line(lines, "tool.poetry.dependencies", "python"))
        if not isinstance(value, str):
            warnings.append(f"{source}: python is not a string; ignored")
            return out
        from packaging.specifiers import SpecifierSet

        try:
            alternatives = tuple(SpecifierSet(a) for a in poetry_alternatives(value))
        except ConstraintError as exc:
            warnings.append(f"{source}: {exc}; ignored")
            return out
        out.append(_Constraint(source=source, text=value, alternatives=alternatives, key="python"))
    return out


def _setup(root: Path, warnings: list[str]) -> list[_Constraint]:
    out: list[_Constraint] = []
    for filename, reader in (("setup.cfg", read_setup_cfg), ("setup.py", read_setup_py)):
        path = root / filename
        if not path.exists() and not path.is_symlink():
            continue
        info = reader(root, path, warnings=warnings)
        if info is None:
            continue
        if info.python_requires is not None:
            source = where(filename, info.python_requires.line)
            out.extend(_range(source, info.python_requires.text, warnings, key="python_requires"))
    return out


def _pipfile(root: Path, warnings: list[str]) -> list[_Constraint]:
    path = root / "Pipfile"
    if not path.exists() and not path.is_symlink():
        return []
    loaded = load_toml(root, path, warnings=warnings)
    if loaded is None:
        return []
    doc, text = loaded
    requires = doc.get("requires")
    if not isinstance(requires, dict):
        return []
    lines = text.splitlines()
    # python_full_version is the more precise of the two; both name the same X.Y when valid.
    for key in ("python_full_version", "python_version"):
        value = requires.get(key)
        if value is None:
            continue
        source = where("Pipfile", toml_line(lines, "requires", key))
        if isinstance(value, str):
            return _exact(source, value, warnings)
        warnings.append(f"{source}: {key} is not a string; ignored")
    return []


def _environment(root: Path, warnings: list[str]) -> list[_Constraint]:
    out: list[_Constraint] = []
    for filename in ENVIRONMENT_FILES:
        path = root / filename
        if not path.exists() and not path.is_symlink():
            continue
        for entry in read_environment(root, path, warnings=warnings):
            if entry.pip:
                continue
            try:
                name, version = split_conda(entry.text)
            except ConstraintError:
                continue
            if name != "python" or not version:
                continue
            source = f"{filename}:{entry.line}"
            try:
                spec = conda_specifier(version)
            except ConstraintError as exc:
                warnings.append(f"{source}: {exc}; ignored")
                continue
            from packaging.specifiers import SpecifierSet

            out.append(
                _Constraint(source=source, text=entry.text, alternatives=(SpecifierSet(spec),))
            )
    return out


_READERS: Final = (
    _python_version_file,
    _runtime_txt,
    _tool_versions,
    _pyproject,
    _setup,
    _pipfile,
    _environment,
)
