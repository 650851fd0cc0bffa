"""Repository file discovery: which files analyze may read, their sizes, and what it must skip.

Rules (in this order, for every directory entry):

- never descended into: ``.git`` (and other VCS folders), ``node_modules``, ``__pycache__``,
  ``site-packages``, tool caches, and any folder that holds ``pyvenv.cfg`` (a virtual
  environment) or ``conda-meta`` (a conda environment), whatever its name;
- ``.gitignore`` files (at any depth, deeper ones win), ``.git/info/exclude`` and
  ``.mlpackignore`` files, with git's semantics (negation, dir-only ``/``, anchored patterns,
  ``**``) through the ``pathspec`` library; an ignored folder is not entered, as in git;
- symbolic links are never followed: a link out of the repository, a broken link or a loop is
  listed in ``warnings``; a link inside it is skipped silently (its target is walked anyway);
- sockets, FIFOs and devices are skipped with a warning; unreadable folders too.

Nothing is opened here except the ignore files; the facts stage reads file contents.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pathspec

SKIPPED_DIRS: Final[frozenset[str]] = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".bzr",
        "node_modules",
        "__pycache__",
        "site-packages",
        "dist-packages",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        ".eggs",
        ".hypothesis",
    }
)
# A folder holding one of these is an environment, not project code (pipreqs #420, #214).
ENV_MARKERS: Final[tuple[str, ...]] = ("pyvenv.cfg", "conda-meta")
IGNORE_FILES: Final[tuple[str, ...]] = (".gitignore", ".mlpackignore")
_ANY_DEPTH: Final = "^(?:.+/)?"  # how pathspec starts a pattern that matches at any depth


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    """One regular file of the repository, with what the facts cache keys on."""

    path: str  # relative posix path
    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True, kw_only=True)
class RepoTree:
    """The files and folders analyze may look at."""

    root: Path
    files: tuple[FileEntry, ...]  # sorted by path
    dirs: frozenset[str]  # relative posix paths of every walked folder ("" is the root)

    def with_suffix(self, *suffixes: str) -> tuple[FileEntry, ...]:
        """Return the files whose name ends with one of ``suffixes`` (e.g. ``".py"``)."""
        return tuple(f for f in self.files if f.path.endswith(suffixes))

    @cached_property
    def paths(self) -> frozenset[str]:
        """The set of relative paths of all files."""
        return frozenset(f.path for f in self.files)

    def names(self) -> frozenset[str]:
        """Return the set of relative paths of all files."""
        return self.paths


@dataclass(frozen=True)
class _Ignore:
    """The patterns of one ignore file, relative to the folder that holds it."""

    base: str  # "" for the root, else "sub/dir/"
    lines: tuple[str, ...]
    # Every pattern in one regex: most paths match none, which one search tells, where the
    # spec tries each pattern in turn (most of a walk's time with a 100-line .gitignore).
    any_pattern: re.Pattern[str] | None

    @cached_property
    def spec(self) -> pathspec.GitIgnoreSpec:
        """The precise git rules, built when a path first matches ``any_pattern``.

        Building it compiles each pattern on its own (about 0.1 ms each): a tree where no
        path matches never pays for that.
        """
        import pathspec

        return pathspec.GitIgnoreSpec.from_lines(self.lines)


def walk_repo(root: Path, *, warnings: list[str]) -> RepoTree:
    """List the repository's files under the rules in this module's docstring."""
    root = root.resolve()
    files: list[FileEntry] = []
    dirs: set[str] = set()
    root_ignores: list[_Ignore] = []
    exclude = _load_ignore(root / ".git" / "info" / "exclude", "", ".git/info/exclude", warnings)
    if exclude is not None:
        root_ignores.append(exclude)
    stack: list[tuple[str, tuple[_Ignore, ...]]] = [("", tuple(root_ignores))]
    while stack:
        rel_dir, ignores = stack.pop()
        folder = root / rel_dir if rel_dir else root
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            warnings.append(
                f"{rel_dir.rstrip('/') or '.'}: unreadable folder, skipped ({exc.strerror})"
            )
            continue
        dirs.add(rel_dir.rstrip("/"))
        active = _folder_ignores(folder, rel_dir, {e.name for e in entries}, ignores, warnings)
        subdirs: list[str] = []
        for entry in entries:
            found = _visit(root, entry, rel_dir + entry.name, active, warnings)
            if isinstance(found, FileEntry):
                files.append(found)
            elif found is not None:
                subdirs.append(found)
        # Reverse so that popping visits folders in sorted order (stable warnings order).
        stack.extend((sub, active) for sub in reversed(subdirs))
    files.sort(key=lambda f: f.path)
    return RepoTree(root=root, files=tuple(files), dirs=frozenset(dirs))


def _folder_ignores(
    folder: Path, rel_dir: str, names: set[str], ignores: tuple[_Ignore, ...], warnings: list[str]
) -> tuple[_Ignore, ...]:
    """The ignore rules in force inside ``folder``: its parents' plus its own ignore files."""
    local = list(ignores)
    for ignore_name in IGNORE_FILES:
        if ignore_name in names:
            loaded = _load_ignore(folder / ignore_name, rel_dir, rel_dir + ignore_name, warnings)
            if loaded is not None:
                local.append(loaded)
    return tuple(local)


def _visit(
    root: Path, entry: os.DirEntry[str], rel: str, active: tuple[_Ignore, ...], warnings: list[str]
) -> FileEntry | str | None:
    """A file to analyse, a folder to walk (``rel/``), or None for what is skipped or ignored."""
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        warnings.append(f"{rel}: cannot stat, skipped ({exc.strerror})")
        return None
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        _check_link(root, Path(entry.path), rel, warnings)
    elif stat.S_ISDIR(mode):
        skipped = entry.name in SKIPPED_DIRS or _is_environment(entry.path)
        if not skipped and not _ignored(active, rel, is_dir=True):
            return rel + "/"
    elif not stat.S_ISREG(mode):
        warnings.append(f"{rel}: not a regular file (socket, FIFO or device), skipped")
    elif not _ignored(active, rel, is_dir=False):
        return FileEntry(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)
    return None


def _is_environment(path: str) -> bool:
    return any(os.path.lexists(f"{path}/{marker}") for marker in ENV_MARKERS)


def _check_link(root: Path, link: Path, rel: str, warnings: list[str]) -> None:
    """Warn about links that leave the repository, dangle or loop; links inside are fine."""
    try:
        target = Path(os.path.realpath(link, strict=True))
    except OSError as exc:
        why = "symlink loop" if "loop" in str(exc).lower() else "broken symlink"
        warnings.append(f"{rel}: {why}, skipped")
        return
    except RuntimeError:  # pragma: no cover - older Pythons raise this on loops
        warnings.append(f"{rel}: symlink loop, skipped")
        return
    if target != root and root not in target.parents:
        warnings.append(f"{rel}: symlink to {target} outside the repository, not followed")


def _load_ignore(path: Path, base: str, rel: str, warnings: list[str]) -> _Ignore | None:
    try:
        if not path.is_file():
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        warnings.append(f"{rel}: unreadable ignore file, not applied ({exc.strerror})")
        return None
    lines = text.splitlines()
    if not any(line.strip() and not line.startswith("#") for line in lines):
        return None
    try:
        regexes = _translate(lines)
    except (ValueError, TypeError) as exc:
        warnings.append(f"{rel}: invalid pattern, file not applied ({exc})")
        return None
    return _Ignore(base=base, lines=tuple(lines), any_pattern=_any_pattern(regexes))


def _translate(lines: list[str]) -> list[tuple[str | None, bool | None]]:
    """Each pattern line as the regex text ``GitIgnoreSpec`` compiles, and whether it includes.

    Only translated here (the spec compiles on first need); raises ValueError on a bad pattern.
    """
    # Only here: pathspec's import costs start-up, and many trees have no ignore file.
    try:  # the pattern class GitIgnoreSpec uses, pathspec >= 1.0
        from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern as Pattern
    except ImportError:  # pragma: no cover - pathspec 0.12
        from pathspec.patterns.gitwildmatch import GitWildMatchPattern as Pattern
    return [Pattern.pattern_to_regex(line) for line in lines]


def _any_pattern(regexes: list[tuple[str | None, bool | None]]) -> re.Pattern[str] | None:
    """One regex that matches where some pattern does; None when it cannot be made.

    Most patterns match at any depth (``^(?:.+/)?name``): that prefix is tried once for all.
    """
    anywhere: list[str] = []
    others: list[str] = []
    for text, include in regexes:
        if include is None:
            continue  # a blank line or a comment
        if not isinstance(text, str):
            return None
        # The patterns' named groups (pathspec marks a folder match with one) would clash.
        text = re.sub(r"[(][?]P<[^>]*>", "(?:", text)
        if text.startswith(_ANY_DEPTH):
            anywhere.append(f"(?:{text.removeprefix(_ANY_DEPTH)})")
        else:
            others.append(f"(?:{text})")
    if anywhere:
        others.append(f"{_ANY_DEPTH}(?:{'|'.join(anywhere)})")
    try:
        return re.compile("|".join(others)) if others else None
    except re.error:
        return None


def _ignored(ignores: Iterable[_Ignore], rel: str, *, is_dir: bool) -> bool:
    """Apply git's precedence: the deepest ignore file with a matching pattern decides."""
    for ignore in reversed(tuple(ignores)):
        sub = rel[len(ignore.base) :] if ignore.base else rel
        sub = sub + "/" if is_dir else sub
        if ignore.any_pattern is not None and ignore.any_pattern.match(sub) is None:
            continue
        result = ignore.spec.check_file(sub)
        if result.include is not None:
            return bool(result.include)
    return False
