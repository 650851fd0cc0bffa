"""Read a declared file safely: inside the repo, regular, small, text; never crash, warn instead."""

from __future__ import annotations

import codecs
import os
import re
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Sequence

# A declaration file bigger than this is not a real one (or is hostile): skip it with a warning.
MAX_BYTES: Final = 5 * 1024 * 1024

# (BOM, codec); UTF-32 before UTF-16 because the UTF-32-LE BOM starts with the UTF-16-LE one.
# `pip freeze > requirements.txt` in Windows PowerShell writes UTF-16-LE with a BOM.
_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def rel(root: Path, path: Path) -> str:
    """Return ``path`` relative to ``root`` in posix form (``..`` folded, symlinks kept)."""
    path = Path(os.path.normpath(path))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def where(relpath: str, line: int | None) -> str:
    """Format a source: ``"file:line"``, or ``"file"`` when the line is unknown."""
    return f"{relpath}:{line}" if line else relpath


def inside(root: Path, path: Path) -> bool:
    """Tell whether ``path``, symlinks and ``..`` resolved, stays inside the resolved ``root``."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on Python < 3.13
        return False


class _Skipped(Exception):
    """A file that must not be read; the message is the warning that says why."""


def read_text(root: Path, path: Path, *, warnings: list[str]) -> str | None:
    """Return the text of ``path``, or ``None`` (with a warning) when it must not be read.

    Refuses what resolves outside ``root`` (symlinks are not followed out of the repo), anything
    that is not a regular file, files over ``MAX_BYTES``, binary and non-UTF-8 content.
    """
    name = rel(root, path)
    try:
        _check_readable(root, path, name)
        data = _read_regular(path, name)
    except _Skipped as skipped:
        warnings.append(str(skipped))
        return None
    return _decode(name, data, warnings)


def _check_readable(root: Path, path: Path, name: str) -> None:
    """Refuse, before opening, secrets, escapes from the repository, non-files and big files."""
    if path.name == ".env" or path.name.startswith(".env."):
        raise _Skipped(f"{name}: .env files hold secrets; mlpack never reads them")
    if not inside(root, path):
        what = "a symlink leading" if path.is_symlink() else "a path"
        raise _Skipped(f"{name}: {what} outside the repository; not followed")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _Skipped(f"{name}: not found (or a dangling symlink); skipped") from None
    except OSError as exc:
        raise _Skipped(f"{name}: cannot be read ({exc.strerror}); skipped") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _KINDS if test(st.st_mode)), "not a regular file")
        raise _Skipped(f"{name}: is {kind}, not a regular file; skipped")
    if st.st_size > MAX_BYTES:
        raise _Skipped(f"{name}: {st.st_size} bytes, over the {MAX_BYTES} byte limit; skipped")


def _read_regular(path: Path, name: str) -> bytes:
    """Read at most ``MAX_BYTES``, refusing a file that stopped being a regular file or grew."""
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO after the stat, open must not hang.
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path.resolve(), flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _Skipped(f"{name}: changed while being read; skipped")
            data = _read_at_most(fd, MAX_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _Skipped(f"{name}: cannot be read ({exc.strerror}); skipped") from None
    if len(data) > MAX_BYTES:
        raise _Skipped(f"{name}: over the {MAX_BYTES} byte limit; skipped")
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _decode(name: str, data: bytes, warnings: list[str]) -> str | None:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                warnings.append(f"{name}: starts with a {codec} byte-order mark but is not {codec}")
                return None
    if b"\0" in data:
        warnings.append(f"{name}: binary content (NUL bytes), not a text file; skipped")
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start]
        warnings.append(f"{name}:{line}: not valid UTF-8 (byte 0x{byte:02x}); file skipped")
        return None


def load_toml(root: Path, path: Path, *, warnings: list[str]) -> tuple[dict[str, Any], str] | None:
    """Return ``(document, text)`` of a TOML file, or ``None`` with a warning when unusable."""
    text = read_text(root, path, warnings=warnings)
    if text is None:
        return None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        warnings.append(f"{rel(root, path)}: invalid TOML ({exc}); not read")
        return None
    except RecursionError:
        warnings.append(f"{rel(root, path)}: nested too deeply to parse; not read")
        return None


_HEADER: Final = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")


def _norm_table(header: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in header.split("."))


def toml_line(lines: Sequence[str], table: str, key: str, value: str | None = None) -> int | None:
    """Find the 1-based line of ``key`` in ``[table]``, or of its array element ``value``.

    TOML parsers drop positions, so this scans the text; a miss (dotted or inline tables) gives
    ``None`` and the source falls back to the file name.
    """
    current = ""
    key_re = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    found_key = False
    for number, line in enumerate(lines, 1):
        header = _HEADER.match(line)
        if header:
            if found_key:
                return None
            current = _norm_table(header.group(1))
            continue
        if current != table:
            continue
        if not found_key and key_re.match(line):
            found_key = True
            if value is None:
                return number
        if found_key and value is not None and (f'"{value}"' in line or f"'{value}'" in line):
            return number
    return None


def quoted_line(lines: Sequence[str], value: str) -> int | None:
    """The 1-based line that quotes ``value`` anywhere (an index URL in an array of tables,
    where ``toml_line`` cannot tell one table from the next); None when none does.
    """
    quoted = (f'"{value}"', f"'{value}'")
    return next((n for n, line in enumerate(lines, 1) if any(q in line for q in quoted)), None)
