"""The analysis result: what the repo needs, each decision with the source that made it.

``source`` strings are ``"<relative/posix/path>:<line>"`` when a file decided, ``"<path>"`` when
the whole file did, or ``"rule: <why>"`` when a rule decided (e.g. ``"rule: default"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

EntrypointKind = Literal["training", "inference"]


@dataclass(frozen=True, kw_only=True)
class PythonDecision:
    """The pinned Python version ("3.11" form) and why."""

    version: str
    source: str
    # Every constraint seen, as (source, text), e.g. ("pyproject.toml:4", ">=3.9,<3.13").
    constraints: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class DeclaredRequirement:
    """One requirement from a declared file, parsed with ``packaging``."""

    name: str  # canonical (PEP 503) distribution name
    specifier: str  # "" when unconstrained; e.g. ">=1.3,<2"
    extras: tuple[str, ...] = ()
    marker: str | None = None
    url: str | None = None  # direct reference (VCS, file, https) when given
    source: str  # "requirements.txt:3"
    group: str | None = None  # optional group / extra / dev group name; None = main deps
    editable: bool = False


@dataclass(frozen=True, kw_only=True)
class DeclaredIndex:
    """A package index a dependency file names for the main requirements."""

    url: str  # without credentials (literal or ${VAR}): mlpack lock reads them from ~/.netrc
    primary: bool  # --index-url (instead of PyPI), not --extra-index-url or a Pipfile source
    source: str  # "requirements.txt:1", "backend/Pipfile"


@dataclass(frozen=True, kw_only=True)
class Package:
    """A distribution the image needs, with its provenance."""

    name: str  # canonical distribution name
    specifier: str  # "" when unconstrained
    source: str  # declared file:line, or the first import location
    imports: tuple[str, ...]  # import names that map to this distribution
    optional: bool
    declared: bool  # True when a declared file asks for it (declared beats inferred)
    used: bool  # True when some import maps to it
    extras: tuple[str, ...] = ()
    marker: str | None = None
    url: str | None = None
    group: str | None = None  # the declared group (extra, dev group); None: main or inferred
    # Where the code uses it (``mlpack.analyze.reach.GROUPS``): "runtime" when the entrypoints
    # import it through the repository's own modules, else "optional", "test", "script"...
    usage: str = "runtime"
    # The import locations from the entrypoint to the import: ("train.py:3", "model.py:7").
    reached_from: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Ambiguity:
    """An import name that several distributions provide; reported, never guessed silently."""

    module: str
    candidates: tuple[str, ...]
    locations: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class EnvVar:
    """An environment variable the code reads."""

    name: str
    default: str | None  # literal default when one is given in code or in .env.example
    secret: bool
    locations: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class PathUse:
    """A folder or file the project reads (input) or writes (output)."""

    path: str  # relative posix path, e.g. "data" or "outputs"
    kind: str  # data | models | configs | outputs | checkpoints | logs | runs | ...
    source: str  # "rule: folder exists" or "train.py:40"
    exists: bool


@dataclass(frozen=True, kw_only=True)
class LargeFile:
    """A large file (weights, datasets) to mount or put in its own layer, not the code layer."""

    path: str
    size: int


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Inputs, outputs, code and large files."""

    inputs: tuple[PathUse, ...]
    outputs: tuple[PathUse, ...]
    code: tuple[str, ...]  # packages, modules, scripts and notebooks (relative posix paths)
    large_files: tuple[LargeFile, ...]


@dataclass(frozen=True, kw_only=True)
class Entrypoint:
    """A way to start training or inference."""

    kind: EntrypointKind
    command: tuple[str, ...]  # argv, e.g. ("python", "train.py")
    path: str  # the file that defines it
    source: str  # why it was chosen: "train.py:57" (__main__ guard), "Procfile:1", ...
    name: str  # short name: "train", "serve", ...


AcceleratorLevel = Literal["required", "optional", "none"]


@dataclass(frozen=True, kw_only=True)
class Accelerator:
    """How the code uses a GPU, and which evidence said so.

    ``level``: ``required`` (unguarded GPU use), ``optional`` (only under an availability check:
    ``"cuda" if torch.cuda.is_available() else "cpu"``) or ``none``. ``cuda`` is ``level ==
    "required"``, the flag the lock reads to choose CUDA wheels.
    """

    cuda: bool
    source: str | None  # "model.py:12" for `.cuda()`, or None when CPU-only
    level: AcceleratorLevel = "none"


@dataclass(frozen=True, kw_only=True)
class SystemPackage:
    """A Debian package a Python package needs at run time (e.g. libgl1 for opencv-python)."""

    name: str
    required_by: str  # distribution name


@dataclass(frozen=True, kw_only=True)
class ProjectAnalysis:
    """Everything ``mlpack analyze`` decided about a repository."""

    root: str
    python: PythonDecision
    packages: tuple[Package, ...]
    ambiguous: tuple[Ambiguity, ...]
    env: tuple[EnvVar, ...]
    layout: Layout
    entrypoints: tuple[Entrypoint, ...]
    accelerator: Accelerator
    system_packages: tuple[SystemPackage, ...]
    indexes: tuple[DeclaredIndex, ...] = ()
    warnings: tuple[str, ...] = field(default=())
