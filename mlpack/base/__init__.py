"""Base images: the official python image from a registry, or a Debian rootfs built locally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Provider = Literal["registry", "debian", "explicit"]

# Debian suites whose default python3 is the given X.Y; the debian provider serves only these.
DEBIAN_SUITES: dict[str, str] = {"3.11": "bookworm", "3.13": "trixie"}


@dataclass(frozen=True, kw_only=True)
class BaseImage:
    """The base an image is built on, pinned by digest, and where it came from."""

    reference: str
    digest: str
    provider: Provider
    python_full: str
