"""The Builder seam: what every backend (embedded, docker) accepts and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.spec import ImageSpec, StepRole
    from mlpack.vocabulary import Backend


@dataclass(frozen=True, kw_only=True)
class LayerResult:
    """One layer of a built image, base layers included, and whether the cache served it."""

    step: str  # "base", or the plan step's name
    role: StepRole | None  # None for the base's layers
    digest: str
    diff_id: str
    size: int
    cached: bool
    # .pyc left out because two compiles gave different bytes (in-image paths; this build's)
    pyc_dropped: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    """What a build produced: the tagged image and its layers, base first."""

    backend: Backend
    reference: str
    digest: str  # the manifest's
    config_digest: str
    platform: str
    base: str  # reference@digest
    layers: tuple[LayerResult, ...]
    skipped: tuple[str, ...] = ()  # plan steps this backend could not execute (each noticed)
    sbom: str | None = None  # the digest of the SBOM artifact referring to the image

    @property
    def size(self) -> int:
        """Compressed bytes of all layers."""
        return sum(layer.size for layer in self.layers)


class StepRunner(Protocol):
    """Runs a command as root in a container of ``image`` with host folders mounted; returns
    its exit status. The pipeline hands one to the embedded builder for steps that must execute
    in the image (dpkg), so the builder never imports a runtime. It may be called from two
    threads at once (the two bytecode compiles): each call is its own container.
    """

    def __call__(
        self,
        *,
        image: str,
        argv: tuple[str, ...],
        mounts: tuple[tuple[str, Path], ...],
        readonly: tuple[tuple[str, Path], ...],
        network: bool,
    ) -> int:
        """Run ``argv``; ``mounts`` and ``readonly`` are (container path, host folder) pairs;
        ``network``: the host's network, else none at all.
        """
        ...


class Builder(Protocol):
    """A build backend."""

    name: str

    def check_available(self) -> None:
        """Raise BuildError naming the missing piece and the fix, before any work."""

    def build(self, spec: ImageSpec, *, context: Path, tag: str) -> BuildResult:
        """Build ``spec`` from the project folder ``context`` and tag the image ``tag``."""
