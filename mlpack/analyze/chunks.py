"""Statement chunks: the parts of a large source file worth parsing, found without parsing it.

Parsing a whole large file costs far more than the facts in it are worth (a 5,000-line model
file has a dozen imports). Cheap regular expressions nominate the lines that may hold a fact
(an import, ``environ``, ``cuda``, a literal path...: ``triggers``); each nominated line is
widened to the statement that holds it: the whole top-level statement, or, inside a long one, the innermost
``def``/``class``, and inside a long ``def``/``class`` the statement of its body (parsed under a
stand-in ``def _():``/``class _:`` line, so the scope stays the same). Only those chunks are parsed with :mod:`ast`, so every fact still comes from a
real syntax tree. The heuristics only choose *what* to parse: whenever they are unsure (a triple
quote inside a comment or a one-line string, a chunk that does not parse), the caller falls back
to parsing the whole file.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Final

from mlpack.analyze.triggers import trigger_positions

if TYPE_CHECKING:
    from collections.abc import Callable

# Column-0 lines that may start a top-level statement (continuations are filtered below).
_TOP: Final = re.compile(r"^(?![ \t\r\n#)\]}]|else\b|elif\b|except\b|finally\b)", re.MULTILINE)
_TOP_AFTER_NEWLINE: Final = re.compile(r"\n(?![ \t\r\n#)\]}]|else\b|elif\b|except\b|finally\b)")
_DEF_WORDS: Final = (re.compile("def "), re.compile("class "))
# Signs of a file that will not parse (merge conflicts, Python 2), checked before chunking so that
# such a file is reported as unparseable rather than half read. Each pattern starts with a
# literal, so the regex engine skips ahead instead of trying every position.
_PY2_PRINT: Final = re.compile(r"print[ \t]+[\"'\w]")
_PY2_EXCEPT: Final = re.compile(r"except[ \t]+[\w.]+[ \t]*,[ \t]*\w+[ \t]*:")
_MERGE_MARKERS: Final = ("\n<<<<<<< ", "\n>>>>>>> ", "\n=======\n")
_CODING: Final = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
_STRINGS: Final = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
_CLAUSE: Final = re.compile(r"(?:else|elif|except|finally)\b")
LONG_STATEMENT: Final = 40  # lines; longer top-level statements are narrowed to a def/class


@dataclass(frozen=True)
class Chunk:
    """Lines ``[start, end)`` (0-based) of the file, dedented by ``indent`` columns.

    A statement of a def or class body is not dedented but parsed under a ``def _():`` or
    ``class _:`` line (``wrapped``), so that it keeps its scope; its lines count from ``offset``.
    """

    start: int
    end: int
    indent: int
    text: str
    wrapped: bool = False

    @property
    def offset(self) -> int:
        """What to add to a line number of ``text`` to get the file's line number."""
        return self.start - 1 if self.wrapped else self.start


class Unsure(Exception):
    """The cheap scan cannot vouch for its chunks: parse the whole file instead."""


@cache
def _closing(indent: int) -> re.Pattern[str]:
    """A line indented at most ``indent`` that starts a statement (ends a block)."""
    return re.compile(rf"^[ \t]{{0,{indent}}}(?![ \t\r\n#)\]}}])", re.MULTILINE)


def chunks(text: str) -> list[Chunk]:
    """Return the chunks to parse, in file order; raise :class:`Unsure` when in doubt."""
    coding = _CODING.search(text[: text.find("\n", text.find("\n") + 1) + 1])
    if coding and coding.group(1).lower().replace("_", "-") not in {"utf-8", "utf8"}:
        raise Unsure
    if _suspect(text):
        raise Unsure  # let the whole-file parse report the syntax error
    lines = text.split("\n")
    starts = [0, *itertools.accumulate(map((1).__add__, map(len, lines)))]
    masked = _masked_lines(text, starts, len(lines))

    def line_of(pos: int) -> int:
        return bisect.bisect_right(starts, pos) - 1

    tops = [0] if _TOP.match(text) else []
    tops.extend(line_of(m.end()) for m in _TOP_AFTER_NEWLINE.finditer(text))
    tops = [i for i in tops if i < len(lines) and not masked[i]]
    # A def/class (and any further decorator) under a decorator belongs to the first one's
    # statement.
    boundaries = [i for k, i in enumerate(tops) if not (k and lines[tops[k - 1]].startswith("@"))]
    candidates = sorted(i for i in (line_of(p) for p in trigger_positions(text)) if not masked[i])
    if not candidates:
        return []
    defs: _Defs | None = None  # found on first need: most files never need them
    chosen: set[tuple[int, int, int, str]] = set()
    for i in candidates:
        k = bisect.bisect_right(boundaries, i) - 1
        start = boundaries[k] if k >= 0 else 0
        end = boundaries[k + 1] if k + 1 < len(boundaries) else len(lines)
        span = (start, end, 0, "")
        if end - start > LONG_STATEMENT:
            if defs is None:
                headers = _def_lines(text, line_of, masked)
                defs = _Defs(headers=headers, lines=[d[0] for d in headers])
            span = _narrow(
                text, starts=starts, masked=masked, lines=lines, defs=defs, span=span, line=i
            )
        chosen.add(span)
    return _assemble(chosen, lines)


@dataclass(kw_only=True)
class _Defs:
    """A file's def/class headers ``(line, indent)``, and the block ends computed so far."""

    headers: list[tuple[int, int]]
    lines: list[int]  # the header lines alone, for bisect
    ends: dict[int, int] = field(default_factory=dict)


def _narrow(
    text: str,
    *,
    starts: list[int],
    masked: bytearray,
    lines: list[str],
    defs: _Defs,
    span: tuple[int, int, int, str],
    line: int,
) -> tuple[int, int, int, str]:
    """Narrow a long statement to the innermost def/class around ``line``.

    One still too long is narrowed to the statement of its body that holds ``line``.
    """
    found = _innermost_def(
        text, starts=starts, masked=masked, lines=lines, defs=defs, line=line, floor=span[0]
    )
    if found is not None:
        span = (*found, "")
    if span[1] - span[0] > LONG_STATEMENT:
        span = _body_statement(lines, masked, span, line) or span
    return span


def _assemble(chosen: set[tuple[int, int, int, str]], lines: list[str]) -> list[Chunk]:
    """The chunks in file order: nested spans dropped, adjacent top-level statements joined."""
    result: list[Chunk] = []
    covered_until = -1
    for start, end, indent, wrapped in sorted(chosen, key=lambda s: (s[0], -s[1])):
        if end <= covered_until:
            continue  # inside a chunk already taken
        if wrapped:
            text = wrapped + "\n" + "\n".join(lines[start:end])
            result.append(Chunk(start, end, indent, text, wrapped=True))
            covered_until = max(covered_until, end)
            continue
        first = start
        if result and indent == 0 and result[-1].indent == 0 and result[-1].end == start:
            first = result.pop().start  # adjacent top-level statements: parse them together
        result.append(Chunk(first, end, indent, _dedent(lines[first:end], indent)))
        covered_until = max(covered_until, end)
    return result


def _body_statement(
    lines: list[str], masked: bytearray, span: tuple[int, int, int, str], line: int
) -> tuple[int, int, int, str] | None:
    """The statement of a long def's or class's body that holds ``line``, or None when unsure.

    Long classes (a ``Trainer``, a dataclass of 200 fields) and functions would otherwise be
    parsed whole for one import or one ``"cuda"`` in their body. The statement is parsed under a
    ``class _:`` or ``def _():`` line (the last item), so it keeps its scope; statements nested
    in an ``if``/``try`` of the body come with it, so their conditions are kept too. A narrowed
    statement that does not parse still makes the caller parse the whole file.
    """
    start, end, indent, _ = span
    found = _def_header(lines, masked, start, indent, line)
    if found is None:
        return None
    header, wrapper = found
    body = _body_indent(lines, masked, header, line, indent)
    if body < 0:
        return None
    first = _statement_start(lines, masked, header, line, body)
    if first < 0:
        return None
    return (first, _statement_end(lines, masked, first, end, body), body, wrapper)


def _def_header(
    lines: list[str], masked: bytearray, start: int, indent: int, line: int
) -> tuple[int, str] | None:
    """The last header line of the def/class at ``start`` (after its decorators) and wrapper.

    The wrapper is the line its body statements parse under; None when unsure.
    """
    header, wrapper = -1, ""
    for h in range(start, min(line, start + LONG_STATEMENT)):
        text = lines[h]
        if masked[h] or text[:indent].strip():
            continue
        head = text[indent : indent + 10]
        if head.startswith("class "):
            header, wrapper = h, "class _:"
        elif head.startswith(("def ", "async def ")):
            header, wrapper = h, "def _():"
        if header >= 0 or (head and head[0] != "@"):
            break  # the first line that is not a decorator decides
    if header < 0 or "\t" in lines[header][:indent]:
        return None
    header = _header_end(lines, masked, header, line)
    return None if header < 0 else (header, wrapper)


def _body_indent(lines: list[str], masked: bytearray, header: int, line: int, indent: int) -> int:
    """The indent of the body's first line, or -1 when unsure (tabs, or not indented)."""
    for j in range(header + 1, line + 1):
        stripped = lines[j].lstrip(" ")
        if masked[j] or not stripped or stripped[0] == "#":
            continue
        body = len(lines[j]) - len(stripped)
        return -1 if stripped[0] == "\t" or body <= indent else body
    return -1


def _statement_start(lines: list[str], masked: bytearray, header: int, line: int, body: int) -> int:
    """The first line (decorators included) of the body statement holding ``line``, or -1."""
    first = -1
    for j in range(line, header, -1):
        stripped = lines[j].lstrip(" \t")
        if masked[j] or not stripped or stripped[0] == "#":
            continue
        level = len(lines[j]) - len(stripped)
        if level < body:
            return -1
        if level == body and _starts_statement(stripped):
            first = j
            break
    if first < 0:
        return -1
    while first - 1 > header and not masked[first - 1] and lines[first - 1][body:].startswith("@"):
        first -= 1
    return first


def _statement_end(lines: list[str], masked: bytearray, first: int, end: int, body: int) -> int:
    """The line after the body statement that starts at ``first`` (at most ``end``)."""
    j = first + 1
    if lines[first][body:].startswith("@"):  # through the decorated def/class line
        while j < end and (masked[j] or _level(lines[j], body) != body or lines[j][body] == "@"):
            j += 1
        j += 1
    while j < end:
        stripped = lines[j].lstrip(" \t")
        if not masked[j] and stripped and stripped[0] != "#":
            level = len(lines[j]) - len(stripped)
            if (level < body and stripped[0] not in ")]}") or (
                level == body and _starts_statement(stripped)
            ):
                break
        j += 1
    return min(j, end)


def _header_end(lines: list[str], masked: bytearray, header: int, line: int) -> int:
    """The last line of a def/class header (its signature may span lines) before ``line``.

    -1 when unsure: brackets that do not balance (after blanking strings and comments), or a
    header that is not over before ``line``.
    """
    depth = 0
    for h in range(header, line):
        if masked[h]:
            return -1
        code = _STRINGS.sub('""', lines[h]).partition("#")[0].rstrip()
        depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
        if depth < 0:
            return -1
        if depth == 0:
            return h if code.endswith(":") else -1
    return -1


def _level(line: str, body: int) -> int:
    """``body`` when ``line`` starts a statement-like line at exactly that indent, else -1."""
    stripped = line.lstrip(" \t")
    if not stripped or stripped[0] == "#" or len(line) - len(stripped) != body:
        return -1
    return body if stripped[0] not in ")]}" else -1


def _starts_statement(stripped: str) -> bool:
    """Whether a line (without its indent) can start a statement (not a clause or a closer)."""
    return stripped[0] not in ")]}" and _CLAUSE.match(stripped) is None


def _innermost_def(
    text: str,
    *,
    starts: list[int],
    masked: bytearray,
    lines: list[str],
    defs: _Defs,
    line: int,
    floor: int,
) -> tuple[int, int, int] | None:
    """The innermost def/class that encloses ``line`` (with its decorators), or None."""
    def_lines, ends = defs.lines, defs.ends
    k = bisect.bisect_right(def_lines, line) - 1
    while k >= 0 and def_lines[k] > floor:
        j, indent = defs.headers[k]
        k -= 1
        if indent == 0:
            continue
        end = ends.get(j)
        if end is None:
            end = ends[j] = _block_end(text, starts, masked, j, indent)
        if end <= line:
            continue
        start = j
        while start - 1 > floor and lines[start - 1].strip().startswith("@"):
            start -= 1
        return (start, end, indent)
    return None


def _block_end(text: str, starts: list[int], masked: bytearray, header: int, indent: int) -> int:
    pattern = _closing(indent)
    pos = starts[header + 1] if header + 1 < len(starts) else len(text)
    while True:
        match = pattern.search(text, pos)
        if match is None:
            return len(starts) - 1
        i = bisect.bisect_right(starts, match.start()) - 1
        if not masked[i]:
            return i
        pos = starts[i + 1]


def _dedent(lines: list[str], indent: int) -> str:
    if not indent:
        return "\n".join(lines)
    out = []
    for line in lines:
        head = line[:indent]
        out.append(line[indent:] if not head.strip() else line.lstrip())
    return "\n".join(out)


def _masked_lines(text: str, starts: list[int], count: int) -> bytearray:
    """Mark the lines that begin inside a triple-quoted string; raise Unsure on odd quoting."""
    masked = bytearray(count + 1)
    # Two plain searches, each redone only once passed: a regex alternation of the two
    # delimiters would try every quote character of the file.
    double, single = text.find('"""'), text.find("'''")
    while True:
        if double < 0 and single < 0:
            return masked
        if single < 0 or 0 <= double < single:
            start, delimiter = double, '"""'
        else:
            start, delimiter = single, "'''"
        line_start = text.rfind("\n", 0, start) + 1
        prefix = text[line_start:start]
        if "#" in prefix or (prefix.count('"') + prefix.count("'")) % 2:
            raise Unsure  # a triple quote inside a comment or a one-line string
        close = start + 3
        while True:
            close = text.find(delimiter, close)
            if close < 0:
                raise Unsure  # unterminated: let the real parser say so
            before = close - 1
            while before >= 0 and text[before] == "\\":
                before -= 1
            if (close - 1 - before) % 2 == 0:  # not an escaped quote
                break
            close += 1
        first = bisect.bisect_right(starts, start)  # the line after the opening
        last = bisect.bisect_right(starts, close) - 1
        if last >= first:
            masked[first : last + 1] = b"\x01" * (last - first + 1)
        pos = close + 3
        if 0 <= double < pos:
            double = text.find('"""', pos)
        if 0 <= single < pos:
            single = text.find("'''", pos)


def _def_lines(
    text: str, line_of: Callable[[int], int], masked: bytearray
) -> list[tuple[int, int]]:
    """(line, indent) of every def/class header, in order."""
    found = []
    for pattern in _DEF_WORDS:
        for match in pattern.finditer(text):
            pos = match.start()
            line_start = text.rfind("\n", 0, pos) + 1
            prefix = text[line_start:pos]
            stripped = prefix.lstrip(" \t")
            if stripped not in {"", "async "}:
                continue
            line = line_of(pos)
            if not masked[line]:
                found.append((line, len(prefix) - len(stripped)))
    found.sort()
    return found


def _suspect(text: str) -> bool:
    """True when the file shows merge-conflict markers or Python 2 syntax at a line start."""
    # Every conflict has a "=======" line: one scan for it, the precise check only then.
    if "=======" in text and (
        text.startswith(("<<<<<<< ", ">>>>>>> ")) or any(m in text for m in _MERGE_MARKERS)
    ):
        return True
    for pattern in (_PY2_PRINT, _PY2_EXCEPT):
        for match in pattern.finditer(text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            if pattern is _PY2_EXCEPT or not text[line_start : match.start()].strip():
                return True
    return 'exec "' in text and re.search(r"^[ \t]*exec[ \t]+[\"']", text, re.MULTILINE) is not None
