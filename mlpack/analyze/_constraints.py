"""Translate Poetry and conda version constraints into PEP 440 specifier strings."""

from __future__ import annotations

import re
from typing import Final

_OPS: Final = ("===", "~=", "==", "!=", "<=", ">=", "<", ">")
_VERSION: Final = re.compile(r"^v?\d+(\.\d+)*(\.\*)?([a-zA-Z0-9.+!-]*)$")


class ConstraintError(ValueError):
    """A constraint mlpack cannot translate; the message says why (for a warning)."""


def _release(version: str) -> list[int]:
    parts = re.match(r"^v?(\d+(?:\.\d+)*)", version)
    if parts is None:
        msg = f"{version!r} is not a version"
        raise ConstraintError(msg)
    return [int(p) for p in parts.group(1).split(".")]


def _bump(release: list[int], index: int) -> str:
    upper = [*release[:index], release[index] + 1]
    return ".".join(str(p) for p in upper)


def _caret(version: str) -> str:
    # Poetry: ^1.2.3 -> >=1.2.3,<2.0.0; ^0.2.3 -> <0.3.0; ^0.0.3 -> <0.0.4; ^0 -> <1
    release = _release(version)
    index = next((i for i, p in enumerate(release) if p != 0), len(release) - 1)
    return f">={version},<{_bump(release, index)}"


def _tilde(version: str) -> str:
    # Poetry: ~1.2.3 -> >=1.2.3,<1.3.0; ~1.2 -> <1.3; ~1 -> <2
    release = _release(version)
    index = 0 if len(release) == 1 else 1
    return f">={version},<{_bump(release, index)}"


def _one_poetry(term: str) -> str:
    term = term.strip()
    if term in {"", "*"}:
        return ""
    if term.startswith("^"):
        return _caret(term[1:].strip())
    if term.startswith("~") and not term.startswith("~="):
        return _tilde(term[1:].strip())
    if term.startswith(_OPS):
        op = next(o for o in _OPS if term.startswith(o))
        return op + term[len(op) :].strip()
    if term.startswith("="):
        return "==" + term[1:].strip()
    if _VERSION.match(term):
        return "==" + term
    msg = f"{term!r} is not a Poetry version constraint"
    raise ConstraintError(msg)


def poetry_alternatives(constraint: str) -> tuple[str, ...]:
    """Return the PEP 440 specifier sets whose union is the Poetry ``constraint``.

    ``||`` separates alternatives (PEP 440 has no "or"); within one alternative, terms are
    separated by commas or spaces. Raise ``ConstraintError`` when a term is not understood.
    """
    result: list[str] = []
    for alternative in constraint.split("||"):
        # ">= 1.2, < 2" and ">=1.2 <2" are both valid Poetry: glue operators to their versions.
        glued = re.sub(r"(\^|~=?|[<>!=]=?|===)\s+", r"\1", alternative.strip())
        terms = [t for t in re.split(r"[,\s]+", glued) if t]
        specs = [s for s in (_one_poetry(t) for t in terms) if s]
        result.append(_normalized(",".join(specs)))
    return tuple(result)


def poetry_specifier(constraint: str) -> str:
    """Return the PEP 440 specifier for a Poetry constraint; "" means any version."""
    alternatives = poetry_alternatives(constraint)
    if len(alternatives) > 1:
        msg = f"{constraint!r} has '||' alternatives, which PEP 440 cannot express"
        raise ConstraintError(msg)
    return alternatives[0]


def _normalized(text: str) -> str:
    """Return the specifier set in packaging's canonical order, so merged and unmerged agree."""
    # Imported where a constraint is read: packaging's parsers cost start-up.
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return str(SpecifierSet(text))
    except InvalidSpecifier as exc:
        raise ConstraintError(str(exc)) from exc


def _one_conda(term: str) -> str:
    term = term.strip()
    if term in {"", "*"}:
        return ""
    if term.startswith(_OPS):
        op = next(o for o in _OPS if term.startswith(o))
        version = term[len(op) :].strip()
        if op == "==" and version.endswith("*"):
            version = version.rstrip("*").rstrip(".") + ".*"
        return op + version
    if term.startswith("="):
        # conda's "=1.24" is a fuzzy prefix match: 1.24, 1.24.0, 1.24.3, ...
        return "==" + term[1:].strip().rstrip("*").rstrip(".") + ".*"
    if term.endswith("*"):
        return "==" + term.rstrip("*").rstrip(".") + ".*"
    if _VERSION.match(term):
        return "==" + term
    msg = f"{term!r} is not a conda version constraint"
    raise ConstraintError(msg)


def conda_specifier(version: str) -> str:
    """Return the PEP 440 specifier for a conda version spec (``1.24``, ``>=1.2,<2``, ``1.2.*``).

    The version part is what follows the name: ``=1.24`` (from ``numpy=1.24``) is a prefix match.
    Raise ``ConstraintError`` for ``|`` alternatives, which PEP 440 cannot express.
    """
    if "|" in version:
        msg = f"{version!r} has '|' alternatives, which PEP 440 cannot express"
        raise ConstraintError(msg)
    specs = [s for s in (_one_conda(t) for t in version.split(",")) if s]
    return _normalized(",".join(specs))


# [channel::]name[ version[ build]] or name=version[=build] or name>=version,...
_CONDA: Final = re.compile(
    r"^\s*(?:(?P<channel>[^\s:]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*(?P<rest>.*?)\s*$"
)


def split_conda(spec: str) -> tuple[str, str]:
    """Split a conda match spec into (name, version part); the build string is dropped."""
    match = _CONDA.match(spec)
    if match is None or "[" in spec:
        msg = f"{spec!r} is not a conda package spec mlpack understands"
        raise ConstraintError(msg)
    name, rest = match.group("name"), match.group("rest")
    if not rest:
        return name, ""
    if rest.startswith("=") and not rest.startswith("=="):
        # name=version=build: drop the build string
        return name, "=" + rest[1:].split("=")[0]
    if rest[0] in "<>!=~":
        return name, rest.split()[0]
    # "name 1.2.* build": version is the first word
    return name, rest.split()[0]
