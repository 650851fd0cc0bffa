"""The values every stage shares: a requirement, an environment variable, a base image, a platform.

Each concept has one type here, so config, lock, spec and build pass the same value along
instead of copying it into a look-alike of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

# The image platforms mlpack targets, as OCI spells them (os/architecture).
Platform = Literal["linux/amd64", "linux/arm64"]
# The same platforms as the machine name of `uname -m` and of wheel platform tags.
MACHINES: Final[Mapping[Platform, str]] = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
PLATFORMS: Final[tuple[Platform, ...]] = tuple(MACHINES)
DEFAULT_PLATFORM: Final[Platform] = "linux/amd64"
# The base images' glibc minor version (Debian bookworm: 2.36): wheels needing a newer one are
# refused, since they would not load in the image.
GLIBC_MINOR: Final = 36

# How the embedded builder compresses layers: gzip (every engine reads it) or zstd (opt-in).
Compression = Literal["gzip", "zstd"]
COMPRESSIONS: Final[tuple[Compression, ...]] = ("gzip", "zstd")

# The resolvers a lock can be made with: uv (the default, any target) or pip-tools (the reference).
ResolverName = Literal["uv", "pip-tools"]

# Where images are built and run: mlpack's own daemonless backends, or a Docker engine.
Backend = Literal["embedded", "docker"]

# Where a package is used (analyze's reachability); ``dependencies.groups`` of mlpack.toml picks
# the groups whose inferred packages go into the image.
Group = Literal[
    "runtime", "optional", "script", "examples", "benchmarks", "docs", "notebook", "test", "dev"
]
GROUPS: Final[tuple[Group, ...]] = (
    "runtime", "optional", "script", "examples", "benchmarks", "docs", "notebook", "test", "dev",
)  # fmt: skip
# The groups whose inferred packages go into the image unless ``dependencies.groups`` says.
DEFAULT_GROUPS: Final[tuple[Group, ...]] = ("runtime",)

BaseProvider = Literal["registry", "debian", "explicit"]
BASE_PROVIDERS: Final[tuple[BaseProvider, ...]] = ("registry", "debian", "explicit")


def as_platform(text: str) -> Platform | None:
    """``text`` as a target platform; None when mlpack does not build for it."""
    return next((p for p in PLATFORMS if p == text), None)


@dataclass(frozen=True, kw_only=True)
class PackageSpec:
    """One requirement for the image and who asked for it."""

    requirement: str  # PEP 508; after locking, a VCS reference is pinned to a commit
    source: str  # "requirements.txt:3", "import: train.py:4", or "mlpack.toml" for user entries

    @property
    def name(self) -> str:
        """Canonical distribution name."""
        # packaging is imported here, not at the top: the CLI's option types come from this
        # module, and `mlpack lock` on unchanged inputs needs no requirement parser.
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        return canonicalize_name(Requirement(self.requirement).name)


# The port a server listens on when its command does not say (uvicorn's and mlpack serve's).
DEFAULT_PORT: Final = 8000


@dataclass(frozen=True, kw_only=True)
class EntrypointSpec:
    """A named way to start the image: ``mlpack run`` uses training ones, ``serve`` inference.

    The config declares them; the image carries them as labels, read back by ``mlpack.runs``.
    """

    name: str
    kind: Literal["training", "inference"]
    command: tuple[str, ...]
    port: int | None = None


@dataclass(frozen=True, kw_only=True)
class EnvSpec:
    """An environment variable the code reads; a secret is declared by name, never by value."""

    name: str
    default: str | None
    secret: bool


@dataclass(frozen=True, kw_only=True)
class BaseImage:
    """The image a project is built on, pinned by digest, where it came from, and its Python."""

    reference: str
    digest: str
    provider: BaseProvider
    python_full: str  # "3.11.2": the base image's interpreter
