"""What ``mlpack.lock`` holds, as frozen values (the file format is in ``lockfile.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from mlpack.vocabulary import BaseImage, EnvSpec, Platform, ResolverName

LOCK_FORMAT: Final = 1
PackageKind = Literal["index", "vcs", "path", "url"]
BuildWhere = Literal["wheel", "image"]


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where the lock is valid: the base image's interpreter and the image platform."""

    python: str  # "3.11.2": the base image's interpreter
    platform: Platform

    @property
    def python_minor(self) -> str:
        """The "3.11" form."""
        return ".".join(self.python.split(".")[:2])


@dataclass(frozen=True, kw_only=True)
class LockedFile:
    """One file of a pinned release, by name and content hash."""

    name: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class LockedPackage:
    """One pinned distribution and why it is in the image.

    ``via`` lists the inputs that asked for it (``"requirements.txt:3"``,
    ``"import: train.py:4"``) and, prefixed with ``"pkg:"``, the packages that pulled it in.
    """

    name: str  # canonical
    version: str
    kind: PackageKind = "index"
    hashes: tuple[str, ...] = ()  # sha256 hex of every file of this version the index has
    files: tuple[LockedFile, ...] = ()  # filenames for those hashes, when the index listed them
    via: tuple[str, ...] = ()
    url: str | None = None  # VCS / path / direct URL, userinfo stripped; VCS pinned to a commit
    commit: str | None = None
    build: BuildWhere = "wheel"  # "image": an sdist, a VCS checkout or a path, built in the base

    @property
    def parents(self) -> tuple[str, ...]:
        """Packages that depend on this one."""
        return tuple(v[4:] for v in self.via if v.startswith("pkg:"))

    @property
    def inputs(self) -> tuple[str, ...]:
        """Declared files or imports that asked for this one directly."""
        return tuple(v for v in self.via if not v.startswith("pkg:"))


@dataclass(frozen=True, kw_only=True)
class SystemPackagePin:
    """A Debian package of the image, pinned to the exact ``.deb`` the build installs.

    Resolved inside the base image at lock time, dependencies included (``requested`` is False
    for those). A package the base already has carries no ``url``: the base, pinned by digest,
    provides it. An empty ``version`` is a lock from before system packages were pinned.
    """

    name: str
    version: str = ""
    architecture: str = ""
    url: str = ""
    size: int = 0
    sha256: str = ""
    requested: bool = True

    @property
    def pinned(self) -> bool:
        """True when the lock knows this package's exact version."""
        return bool(self.version)

    @property
    def filename(self) -> str:
        """Apt's name for the file: ``name_version_arch.deb``, an epoch's colon as ``%3a``."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


@dataclass(frozen=True, kw_only=True)
class TorchDecision:
    """Which PyTorch build the lock chose, why, and what the host needs for it."""

    variant: str  # "cpu", "cu124", ...
    reason: str
    cuda_runtime: str | None = None  # "12.4": the CUDA runtime the wheels bring
    min_driver: str | None = None  # the host driver that runtime needs


@dataclass(frozen=True, kw_only=True)
class DroppedPackage:
    """An inferred package left out of the lock: the index lacks it or it cannot be resolved.

    Recorded so a build, ``why`` and a reviewer see what the import asked for and why it is not
    in the image.
    """

    name: str  # canonical
    requirement: str
    source: str  # the import that inferred it: "train.py:4"
    reason: str


@dataclass(frozen=True, kw_only=True)
class Lock:
    """Everything a build needs to reproduce the environment, and the hash of what made it."""

    format: int = LOCK_FORMAT
    input_hash: str
    resolver: ResolverName
    target: Target
    base: BaseImage  # its python_full is target.python
    index_url: str
    extra_index_urls: tuple[str, ...] = ()
    packages: tuple[LockedPackage, ...] = ()
    system_packages: tuple[SystemPackagePin, ...] = ()
    env: tuple[EnvSpec, ...] = ()  # a secret never carries a default
    torch: TorchDecision | None = None
    notes: tuple[str, ...] = field(default=())
    dropped: tuple[DroppedPackage, ...] = ()

    def package(self, name: str) -> LockedPackage | None:
        """The pin for canonical ``name``, if any."""
        for pkg in self.packages:
            if pkg.name == name:
                return pkg
        return None
