"""The code layer's tree: the project folder less what the ignore rules leave out.

Patterns follow .dockerignore (moby/patternmatcher): relative to the root, ``*`` and ``?``
within one path component, ``**`` across components, ``!`` re-includes, the last match wins,
and a pattern that matches a folder excludes everything in it. The project's .dockerignore and
.mlpackignore come first and the plan's exclusions last, so secrets, VCS data and the layout's
folders stay out whatever the project's files say.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Final

from mlpack.errors import BuildError

if TYPE_CHECKING:
    from pathlib import Path

IGNORE_FILES: Final = (".dockerignore", ".mlpackignore")
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Pattern:
    """One ignore rule, compiled."""

    regex: re.Pattern[str]
    negated: bool
    text: str  # cleaned, without the "!"


@cache
def compile_pattern(raw: str) -> Pattern | None:
    """Compile one .dockerignore line; None for blanks and comments."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    text = "/".join(p for p in line.lstrip("!").strip().split("/") if p not in ("", "."))
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if text.startswith("**", i):
            i += 2
            if text.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = text.find("]", i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                out.append("[" + text[i + 1 : end].replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return Pattern(regex=re.compile("".join(out) + r"\Z"), negated=negated, text=text)


class IgnoreRules:
    """An ordered list of patterns; ``excluded(rel)`` answers for one relative path."""

    def __init__(self, lines: tuple[str, ...]) -> None:
        self.patterns = tuple(p for p in map(compile_pattern, lines) if p is not None)

    def excluded(self, rel: str) -> bool:
        """Whether ``rel`` (or a folder above it) is excluded by the last matching rule."""
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for pattern in self.patterns:
            if any(pattern.regex.match(p) for p in prefixes):
                result = not pattern.negated
        return result

    def may_reinclude(self, rel_dir: str) -> bool:
        """Whether some ``!`` rule could bring back a path under the excluded folder."""
        return any(
            p.negated and ("**" in p.text or p.text.startswith(rel_dir + "/"))
            for p in self.patterns
        )


def project_rules(root: Path, plan_excludes: tuple[str, ...]) -> IgnoreRules:
    """The project's ignore files first, then the plan's exclusions (which therefore win)."""
    lines: list[str] = []
    for name in IGNORE_FILES:
        path = root / name
        try:
            lines.extend(path.read_text(encoding="utf-8").splitlines())
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"cannot read {path}: {exc}"
            raise BuildError(msg, hint="fix the file's permissions or encoding (UTF-8)") from exc
    return IgnoreRules((*lines, *plan_excludes))


@dataclass(frozen=True, kw_only=True)
class CodeEntry:
    """A path the code layer holds: a folder, a file (exec bit kept) or a symlink."""

    rel: str
    kind: str  # "dir" | "file" | "symlink"
    executable: bool = False
    target: str = ""


def select(root: Path, rules: IgnoreRules) -> tuple[CodeEntry, ...]:
    """Walk ``root`` (never following links) and return what the rules keep, sorted.

    Excluded folders are not descended into unless a ``!`` rule could reach inside them, so
    a large ignored data folder costs nothing. Virtualenvs and conda environments (found by
    their pyvenv.cfg or conda-meta/, whatever their names) and devices, FIFOs and sockets are
    left out.
    """
    kept: list[CodeEntry] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                children = [(e.name, e.stat(follow_symlinks=False)) for e in it]
        except OSError as exc:
            msg = f"cannot read {root / rel_dir}: {exc.strerror}"
            raise BuildError(msg, hint="check the project folder's permissions") from exc
        for name, st in children:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if stat.S_ISDIR(st.st_mode):
                if _is_virtualenv(root / rel):
                    continue  # a virtualenv, whatever its name: never code
                if not rules.excluded(rel):
                    kept.append(CodeEntry(rel=rel, kind="dir"))
                    stack.append(rel)
                elif rules.may_reinclude(rel):
                    stack.append(rel)
            elif rules.excluded(rel):
                continue
            elif stat.S_ISREG(st.st_mode):
                kept.append(CodeEntry(rel=rel, kind="file", executable=bool(st.st_mode & 0o111)))
            elif stat.S_ISLNK(st.st_mode):
                # Path.readlink() would normalise the target; it must stay verbatim.
                link = os.readlink(root / rel)  # noqa: PTH115
                kept.append(CodeEntry(rel=rel, kind="symlink", target=link))
    return tuple(sorted(_with_parents(kept), key=lambda e: e.rel.split("/")))


def _is_virtualenv(path: Path) -> bool:
    return (path / "pyvenv.cfg").is_file() or (path / "conda-meta").is_dir()


def _with_parents(entries: list[CodeEntry]) -> list[CodeEntry]:
    """Add the folders of files a ``!`` rule brought back from inside excluded folders."""
    have = {e.rel for e in entries}
    for entry in list(entries):
        parts = entry.rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in have:
                have.add(parent)
                entries.append(CodeEntry(rel=parent, kind="dir"))
    return entries


def tree_hash(root: Path, entries: tuple[CodeEntry, ...]) -> str:
    """sha256 over names, kinds, exec bits, link targets and file contents: the code's key."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(
            f"{entry.kind}\0{entry.rel}\0{int(entry.executable)}\0{entry.target}\0".encode()
        )
        if entry.kind == "file":
            file_digest = hashlib.sha256()
            with (root / entry.rel).open("rb") as fh:
                while block := fh.read(_CHUNK):
                    file_digest.update(block)
            digest.update(file_digest.digest())
    return digest.hexdigest()


def stage(root: Path, entries: tuple[CodeEntry, ...], dest: Path) -> None:
    """Copy the selected entries into ``dest`` (contents, exec bits and link targets only)."""
    for entry in entries:
        target = dest / entry.rel
        if entry.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif entry.kind == "symlink":
            target.symlink_to(entry.target)
        else:
            shutil.copyfile(root / entry.rel, target, follow_symlinks=False)
            target.chmod(0o755 if entry.executable else 0o644)
