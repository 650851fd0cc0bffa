"""The Resolver seam: inputs in, pins with hashes and "via" out; one output parser for both tools.

Both uv and pip-tools write the same requirements.txt dialect (``--generate-hashes``,
``--annotation-style split``), so one parser turns either into ``Pin`` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlpack.errors import LockError

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.lock.indexes import Indexes
    from mlpack.vocabulary import PackageSpec, Platform, ResolverName

INPUT_FILE: Final = "requirements.in"
OUTPUT_FILE: Final = "requirements.txt"


@dataclass(frozen=True, kw_only=True)
class ResolveRequest:
    """What a resolver needs; the same request gives the same lock with either resolver."""

    requirements: tuple[PackageSpec, ...]  # VCS references already pinned to a commit
    python: str  # the target's "3.11.2"
    platform: Platform
    indexes: Indexes
    workdir: Path  # an empty scratch folder
    previous: tuple[tuple[str, str], ...] = ()  # (name, version) pins to prefer
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    ca_cert: Path | None = None
    # (name, version, hashes, files) from a lock made for this same target: a pin with the same
    # version and hashes has the same files, so no uv run is needed to name them.
    known_files: tuple[KnownFiles, ...] = ()

    @property
    def python_minor(self) -> str:
        """The "3.11" form."""
        return ".".join(self.python.split(".")[:2])

    def compile_args(self) -> list[str]:
        """The options pip-compile and ``uv pip compile`` take alike: indexes and upgrades."""
        args = ["--index-url", self.indexes.index_url]
        for url in self.indexes.extra_index_urls:
            args += ["--extra-index-url", url]
        if self.upgrade:
            args.append("--upgrade")
        for name in self.upgrade_packages:
            args += ["--upgrade-package", name]
        return args


@dataclass(frozen=True, kw_only=True)
class Pin:
    """One resolved distribution as the tool wrote it."""

    name: str  # canonical
    version: str  # "" for a direct reference the tool could not version
    url: str | None = None
    hashes: tuple[str, ...] = ()
    via: tuple[str, ...] = ()  # "-r" (a direct input) or canonical parent names
    # (filename, sha256) of the target's files when the resolver knows them (uv does), so the
    # locker need not ask the index; empty: list them from the index.
    files: tuple[tuple[str, str], ...] = ()
    uploaded: str | None = None  # ISO time of the release's newest file, when the resolver says


KnownFiles = tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...]]


def reuse_files(pins: tuple[Pin, ...], known: tuple[KnownFiles, ...]) -> tuple[Pin, ...]:
    """``pins`` with the files of ``known`` entries of the same version and the same hashes."""
    if not known:
        return pins
    by_pin = {(name, version, frozenset(hashes)): files for name, version, hashes, files in known}
    out = []
    for pin in pins:
        files = by_pin.get((pin.name, pin.version, frozenset(pin.hashes)))
        if pin.url is None and not pin.files and files:
            pin = replace(pin, files=files)
        out.append(pin)
    return tuple(out)


class Resolver(Protocol):
    """Resolves a request for its target; uv and pip-tools implement it."""

    name: ResolverName

    def resolve(self, request: ResolveRequest) -> tuple[Pin, ...]:
        """Resolve ``request``; LockError (with the tool's reason) when it cannot."""
        ...


def write_inputs(request: ResolveRequest) -> tuple[Path, Path]:
    """Write requirements.in and a preference requirements.txt (previous pins) to the workdir."""
    infile = request.workdir / INPUT_FILE
    lines = [r.requirement for r in request.requirements]
    infile.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    outfile = request.workdir / OUTPUT_FILE
    # Both tools read an existing output file as preferences: unchanged inputs keep their pins.
    outfile.write_text(
        "".join(f"{name}=={version}\n" for name, version in request.previous if version),
        encoding="utf-8",
    )
    return infile, outfile


_HASH_RE: Final = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(kw_only=True)
class _Entry:
    name: str
    version: str
    url: str | None
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)

    def pin(self) -> Pin:
        return Pin(
            name=self.name,
            version=self.version,
            url=self.url,
            hashes=tuple(self.hashes),
            via=tuple(self.via),
        )


def _logical_lines(text: str) -> list[str]:
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    if buffer:
        logical.append(buffer)
    return logical


def parse_output(text: str) -> tuple[Pin, ...]:
    """Parse ``--generate-hashes --annotation-style split`` output from uv or pip-compile."""
    entries: list[_Entry] = []
    in_via = False
    for line in _logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            in_via = False
            continue
        if stripped.startswith("#"):
            comment = stripped.lstrip("#").strip()
            if not entries:
                continue
            via = entries[-1].via
            if comment == "via":
                in_via = True
            elif comment.startswith("via "):
                via.extend(_via_items(comment[4:]))
                in_via = False
            elif in_via and line.startswith("    #   "):
                via.extend(_via_items(comment))
            else:
                in_via = False
            continue
        in_via = False
        spec = stripped.partition(" --hash")[0].strip()
        name, version, url = _parse_spec(spec)
        entries.append(
            _Entry(name=name, version=version, url=url, hashes=_HASH_RE.findall(stripped))
        )
    return tuple(e.pin() for e in entries)


def _parse_spec(spec: str) -> tuple[str, str, str | None]:
    try:
        req = Requirement(spec)
    except InvalidRequirement:
        # pip-compile writes editable/path lines as "-e file:///..." or a bare URL.
        msg = f"cannot read the resolver's output line {spec!r}"
        raise LockError(msg, hint="report this as a bug with the line above") from None
    name = canonicalize_name(req.name)
    if req.url:
        return name, "", req.url
    version = ""
    for s in req.specifier:
        if s.operator in ("==", "==="):
            version = s.version
    return name, version, None


def _via_items(text: str) -> list[str]:
    items = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.startswith("-r "):
            items.append("-r")
        elif part.startswith(("-c ", "--")):
            continue
        else:
            items.append(canonicalize_name(part.split("[", 1)[0].split(" ", 1)[0]))
    return items
