"""The ``registry`` base provider: the official ``python:X.Y-slim`` image, pinned by digest."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mlpack.oci.documents import Platform as OciPlatform
from mlpack.oci.registry import pull
from mlpack.oci.registry_config import RegistryOptions
from mlpack.vocabulary import BaseImage

if TYPE_CHECKING:
    from mlpack.oci.store import Store
    from mlpack.vocabulary import Platform


def official_reference(python: str) -> str:
    """The official image for ``python`` (X.Y)."""
    return f"docker.io/library/python:{python}-slim"


def python_version(env: tuple[str, ...], fallback: str) -> str:
    """The full Python version from the image's ``PYTHON_VERSION`` variable (official images)."""
    for item in env:
        if item.startswith("PYTHON_VERSION="):
            return item.partition("=")[2] or fallback
    return fallback


def for_platform(options: RegistryOptions | None, platform: Platform) -> RegistryOptions:
    """``options`` that select ``platform``'s manifest from a multi-platform index."""
    return replace(options or RegistryOptions(), platform=OciPlatform.parse(platform))


def registry_base(
    python: str, store: Store, *, platform: Platform, options: RegistryOptions | None = None
) -> BaseImage:
    """Pull ``python:X.Y-slim`` for ``platform`` (through MLPACK_REGISTRY_MIRROR when set)."""
    result = pull(official_reference(python), store, options=for_platform(options, platform))
    return official_base(python, store, result.digest)


def official_base(python: str, store: Store, digest: str) -> BaseImage:
    """The stored official image ``digest`` as the base for ``python`` (X.Y)."""
    return BaseImage(
        reference=official_reference(python),
        digest=digest,
        provider="registry",
        python_full=python_version(store.image(digest).config.env, python),
    )
