"""Parse pip requirement files (and single requirement lines) into DeclaredRequirements."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from mlpack.analyze._declfile import inside, load_toml, read_text, rel
from mlpack.analyze._setup_static import read_setup_cfg, read_setup_py
from mlpack.analyze.analysis import DeclaredIndex, DeclaredRequirement

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# pip's own rule: a "#" at the start of a line or after whitespace starts a comment.
_COMMENT: Final = re.compile(r"(^|\s+)#.*$")
_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_VCS: Final = ("git+", "hg+", "svn+", "bzr+")
_ARCHIVES: Final = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar")

# option name -> what mlpack does with it. Options with a value consume the next token.
_SHORT: Final = {"-r": "requirement", "-c": "constraint", "-e": "editable", "-i": "index-url"}
_SHORT_IGNORED: Final = {"-f": "find-links"}
_VALUED: Final = frozenset(
    {
        "requirement",
        "constraint",
        "editable",
        "index-url",
        "extra-index-url",
        "find-links",
        "trusted-host",
        "only-binary",
        "no-binary",
        "use-feature",
        "config-settings",
        "global-option",
        "hash",
    }
)
_FLAGS: Final = frozenset({"no-index", "pre", "prefer-binary", "require-hashes"})


@dataclass
class _State:
    """One top-level parse: what it found and which files it is inside."""

    group: str | None
    requirements: list[DeclaredRequirement] = field(default_factory=list)
    constraints: list[tuple[str, str]] = field(default_factory=list)
    visited: set[Path] = field(default_factory=set)
    stack: list[Path] = field(default_factory=list)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations and drop comments, as pip does; keep first line numbers."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\") and not _COMMENT.search(raw):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line = _COMMENT.sub("", "".join(pending)).strip()
        pending = []
        if line:
            out.append((start, line))
    if pending:
        line = _COMMENT.sub("", "".join(pending)).strip()
        if line:
            out.append((start, line))
    return out


def merge_specifiers(*specifiers: str) -> str:
    """Return the intersection of PEP 440 specifier strings (all already valid)."""
    # packaging's parsers are imported where a declaration is read: most of them cost start-up,
    # which a repository without declarations need not pay.
    from packaging.specifiers import SpecifierSet

    merged = SpecifierSet()
    for spec in specifiers:
        merged &= SpecifierSet(spec)
    return str(merged)


def redact_index(url: str) -> tuple[str, bool]:
    """The index URL without its credentials (literal or ``${VAR}``), and whether it had any.

    Credentials never reach mlpack.toml or the lock: ``mlpack lock`` takes them from
    ``~/.netrc`` or a keyring (mlpack expands no variables in index URLs, so a repository's
    config cannot send an environment variable to a host it names).
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, False
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])), True


_INDEX_CREDENTIALS: Final = (
    "credentials in the index URL are not recorded; mlpack lock reads them from ~/.netrc "
    "or a keyring"
)


def local_project_name(root: Path, directory: Path) -> str | None:
    """Read a local project's name statically (pyproject.toml, setup.cfg, setup.py)."""
    quiet: list[str] = []  # problems in those files are reported where they are read for real
    pyproject = directory / "pyproject.toml"
    if pyproject.is_file():
        loaded = load_toml(root, pyproject, warnings=quiet)
        if loaded is not None:
            doc = loaded[0]
            for table in (doc.get("project"), doc.get("tool", {}).get("poetry")):
                if isinstance(table, dict) and isinstance(table.get("name"), str):
                    return str(table["name"])
    for filename, reader in (("setup.cfg", read_setup_cfg), ("setup.py", read_setup_py)):
        if (directory / filename).is_file():
            info = reader(root, directory / filename, warnings=quiet)
            if info is not None and info.name:
                return info.name
    return None


class RequirementsReader:
    """Parse requirement files and lines inside one repository, never leaving it."""

    def __init__(self, root: Path, warnings: list[str], *, own_files: Iterable[Path] = ()) -> None:
        self._root = root
        self._warnings = warnings
        # Files read on their own (with their own group): a -r to one of them is not followed.
        self._own = frozenset(p.resolve() for p in own_files)
        self.indexes: list[DeclaredIndex] = []

    def add_index(self, url: str, *, primary: bool, source: str, keep: bool = True) -> None:
        """An index a file names: its credentials dropped (with a warning), and, when ``keep``
        (the main requirements'), kept once in ``indexes``.
        """
        url, redacted = redact_index(url)
        if redacted:
            self._warnings.append(f"{source}: {_INDEX_CREDENTIALS}")
        if keep and url not in {i.url for i in self.indexes}:
            self.indexes.append(DeclaredIndex(url=url, primary=primary, source=source))

    def read_file(self, path: Path, *, group: str | None) -> list[DeclaredRequirement]:
        """Parse a top-level requirements file; ``-r`` includes join its group."""
        state = _State(group=group)
        self._file(path, state, constraint=False, source=None)
        return _constrained(state)

    def read_lines(
        self, lines: Sequence[tuple[int, str]], *, origin: str, base: Path, group: str | None
    ) -> list[DeclaredRequirement]:
        """Parse requirement lines that live in another file (environment.yml's ``pip:``)."""
        state = _State(group=group)
        self._lines(lines, origin=origin, base=base, state=state, constraint=False)
        return _constrained(state)

    def _file(self, path: Path, state: _State, *, constraint: bool, source: str | None) -> None:
        name = rel(self._root, path)
        resolved = path.resolve()
        if resolved in state.stack:
            chain = " -> ".join(rel(self._root, p) for p in [*state.stack, resolved])
            self._warnings.append(f"{source}: include cycle {chain}; not followed")
            return
        if resolved in state.visited:
            return  # included twice (a diamond): once is enough
        if source is not None and not inside(self._root, path):
            self._warnings.append(
                f"{source}: include {name} escapes the repository; refused (not read)"
            )
            return
        problems: list[str] = []
        text = read_text(self._root, path, warnings=problems)
        # Name the line that asked for an included file: "requirements.txt:3: x.in: not found".
        self._warnings.extend(f"{source}: {p}" if source else p for p in problems)
        if text is None:
            return
        state.visited.add(resolved)
        state.stack.append(resolved)
        try:
            self._lines(
                logical_lines(text),
                origin=name,
                base=path.parent,
                state=state,
                constraint=constraint,
            )
        finally:
            state.stack.pop()

    def _lines(
        self,
        lines: Iterable[tuple[int, str]],
        *,
        origin: str,
        base: Path,
        state: _State,
        constraint: bool,
    ) -> None:
        for number, line in lines:
            source = f"{origin}:{number}"
            if line.startswith("-"):
                self._option(line, source=source, base=base, state=state, constraint=constraint)
                continue
            # pip: the requirement ends where the first " -" / " --" option (e.g. --hash) starts.
            words = line.split(" ")
            index = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
            text = " ".join(words[:index]).strip()
            req = self.requirement(text, source=source, base=base, group=state.group)
            if req is None:
                continue
            if constraint:
                if req.url is None:
                    state.constraints.append((req.name, req.specifier))
            else:
                state.requirements.append(req)

    def _option(
        self, line: str, *, source: str, base: Path, state: _State, constraint: bool
    ) -> None:
        try:
            tokens = shlex.split(line)
        except ValueError as exc:
            self._warnings.append(f"{source}: cannot split options ({exc}); line ignored")
            return
        while tokens:
            token = tokens.pop(0)
            option, value = token, None
            if token.startswith("--"):
                option, has_value, inline = token[2:].partition("=")
                if has_value:
                    value = inline
            elif token[:2] in _SHORT or token[:2] in _SHORT_IGNORED:
                option = {**_SHORT, **_SHORT_IGNORED}[token[:2]]
                value = token[2:].lstrip("=") or None
            else:
                self._warnings.append(f"{source}: unknown option {token!r}; ignored")
                return
            if option in _FLAGS:
                continue
            if option not in _VALUED:
                self._warnings.append(f"{source}: unknown option {token!r}; ignored")
                return
            if value is None:
                if not tokens:
                    self._warnings.append(f"{source}: option {token!r} needs a value; ignored")
                    return
                value = tokens.pop(0)
            self._apply(option, value, source=source, base=base, state=state, constraint=constraint)

    def _apply(
        self, option: str, value: str, *, source: str, base: Path, state: _State, constraint: bool
    ) -> None:
        if option in {"requirement", "constraint"}:
            if _URL.match(value):
                self._warnings.append(f"{source}: remote include {value!r} is never fetched")
                return
            target = base / value
            if option == "requirement" and target.resolve() in self._own and not constraint:
                return  # read on its own, under its own group
            # A constraint file only narrows versions; whatever it includes does too.
            as_constraint = constraint or option == "constraint"
            self._file(target, state, constraint=as_constraint, source=source)
        elif option == "editable":
            req = self.requirement(
                value, source=source, base=base, group=state.group, editable=True
            )
            if req is not None and not constraint:
                state.requirements.append(req)
        elif option in {"index-url", "extra-index-url"}:
            primary = option == "index-url"
            self.add_index(value, primary=primary, source=source, keep=state.group is None)
        # find-links, --hash, --trusted-host, ...: not about which packages are needed

    def requirement(
        self, text: str, *, source: str, base: Path, group: str | None, editable: bool = False
    ) -> DeclaredRequirement | None:
        """Parse one requirement (PEP 508, URL, VCS link or local path); warn and skip if bad."""
        if editable or _URL.match(text) or text.startswith((*_VCS, ".", "/", "~")):
            return self._link(text, source=source, base=base, group=group, editable=editable)
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            if "/" in text or text.endswith(_ARCHIVES):
                return self._link(text, source=source, base=base, group=group, editable=editable)
            reason = str(exc).splitlines()[0]
            self._warnings.append(f"{source}: invalid requirement {text!r} ({reason}); skipped")
            return None
        return DeclaredRequirement(
            name=canonicalize_name(req.name),
            specifier=str(req.specifier),
            extras=tuple(sorted(canonicalize_name(e) for e in req.extras)),
            marker=str(req.marker) if req.marker is not None else None,
            url=req.url,
            source=source,
            group=group,
            editable=editable,
        )

    def _link(
        self, text: str, *, source: str, base: Path, group: str | None, editable: bool
    ) -> DeclaredRequirement | None:
        link, _, marker_text = text.partition(";")
        link = link.strip()
        marker: str | None = None
        if marker_text.strip():
            from packaging.markers import InvalidMarker, Marker

            try:
                marker = str(Marker(marker_text.strip()))
            except InvalidMarker:
                self._warnings.append(f"{source}: invalid marker in {text!r}; skipped")
                return None
        extras: tuple[str, ...] = ()
        if _URL.match(link) or link.startswith(_VCS):
            found = _name_from_url(link)
            if found is None:
                self._warnings.append(
                    f"{source}: cannot tell the package name of {link!r}; skipped "
                    "(write 'name @ url' or add '#egg=name')"
                )
                return None
            name, extras = found
            url = link
        else:
            # pip accepts extras after a local path: ".[dev]", "./pkg[a,b]"
            split = re.fullmatch(r"(.*?)(\[[^\]]*\])?", link)
            path_text = split.group(1) if split else link
            if split and split.group(2):
                extras = tuple(sorted(canonicalize_name(e) for e in _extras(split.group(2))))
            path = base / path_text
            if path_text.startswith("~") or not inside(self._root, path):
                self._warnings.append(f"{source}: {path_text!r} is outside the repository; skipped")
                return None
            local = self._local_name(path, source)
            if local is None:
                return None
            name = local
            relative = path.resolve().relative_to(self._root.resolve()).as_posix()
            url = "." if relative == "." else f"./{relative}"
        return DeclaredRequirement(
            name=canonicalize_name(name),
            specifier="",
            extras=extras,
            marker=marker,
            url=url,
            source=source,
            group=group,
            editable=editable,
        )

    def _local_name(self, path: Path, source: str) -> str | None:
        if path.is_dir():
            name = local_project_name(self._root, path)
            if name is None:
                self._warnings.append(
                    f"{source}: cannot tell the name of the project in "
                    f"{rel(self._root, path) or '.'}; skipped"
                )
            return name
        name = _name_from_filename(path.name)
        if name is None:
            what = "not found" if not path.exists() else "not a wheel, sdist or project folder"
            self._warnings.append(f"{source}: {rel(self._root, path)!r} is {what}; skipped")
        return name


def _extras(text: str) -> list[str]:
    return [e.strip() for e in text.strip("[]").split(",") if e.strip()]


def _name_from_filename(filename: str) -> str | None:
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[0])
        return str(parse_sdist_filename(filename)[0])
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def _name_from_url(url: str) -> tuple[str, tuple[str, ...]] | None:
    parts = urlsplit(url)
    egg = parse_qs(parts.fragment).get("egg")
    if egg:
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?", egg[0])
        if match is None:
            return None
        extras = tuple(sorted(canonicalize_name(e) for e in _extras(match.group(2) or "")))
        return match.group(1), extras
    name = _name_from_filename(Path(parts.path).name)
    return (name, ()) if name is not None else None


def _constrained(state: _State) -> list[DeclaredRequirement]:
    if not state.constraints:
        return state.requirements
    by_name: dict[str, list[str]] = {}
    for name, spec in state.constraints:
        by_name.setdefault(name, []).append(spec)
    return [
        replace(req, specifier=merge_specifiers(req.specifier, *by_name[req.name]))
        if req.name in by_name and req.url is None
        else req
        for req in state.requirements
    ]
