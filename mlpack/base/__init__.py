"""Base images: the official python image from a registry, or a Debian rootfs built locally.

The providers return a ``mlpack.vocabulary.BaseImage``, the type every stage shares.
"""

from __future__ import annotations

# Debian suites whose default python3 is the given X.Y; the debian provider serves only these.
DEBIAN_SUITES: dict[str, str] = {"3.11": "bookworm", "3.13": "trixie"}
