"""Choose the base image: explicit wins, else the registry image, else the Debian build."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpack.base import DEBIAN_SUITES
from mlpack.base.debian import build_debian_base
from mlpack.base.registry import (
    for_platform,
    official_base,
    official_reference,
    python_version,
    registry_base,
)
from mlpack.errors import ImageError
from mlpack.oci.reference import parse as parse_reference
from mlpack.oci.registry import pull
from mlpack.oci.registry_errors import RegistryUnreachable
from mlpack.progress import reporter
from mlpack.vocabulary import BaseImage

if TYPE_CHECKING:
    from mlpack.oci.registry_config import RegistryOptions
    from mlpack.oci.store import Store
    from mlpack.vocabulary import Platform


def stored_for(store: Store, text: str, platform: Platform) -> str | None:
    """The digest of the image stored as ``text`` when it is ``platform``'s, else None.

    A name in the store points at the last platform pulled or built under it: an image of
    another architecture must never serve as this platform's base.
    """
    try:
        image = store.image(text)
    except ImageError:
        return None
    os_, _, arch = platform.partition("/")
    ok = (image.config.os, image.config.architecture) == (os_, arch)
    return image.digest if ok else None


def _explicit(
    text: str, python: str, store: Store, options: RegistryOptions | None, platform: Platform
) -> BaseImage:
    """The user's base, pinned; its Python from ``PYTHON_VERSION``, else the project's ``python``.

    An image that does not say its Python (most non-official images) would otherwise give the
    resolver an empty target version; the project's choice is the best word left, and said.
    """
    ref = parse_reference(text)
    digest = stored_for(store, text, platform)
    if digest is None:
        digest = pull(text, store, options=for_platform(options, platform)).digest
        config = store.image(digest).config
        if f"{config.os}/{config.architecture}" != platform:
            # A single-platform image is what it is: the registry had no other to choose.
            msg = f"base {text} is {config.os}/{config.architecture}, not {platform}"
            raise ImageError(msg, hint=f"set base = ... to an image for {platform}")
    full = python_version(store.image(digest).config.env, "")
    if not full:
        reporter().notice(
            f"base {text} does not declare PYTHON_VERSION; locking for Python {python} "
            "(set python = ... in mlpack.toml if the image has another)"
        )
    return BaseImage(
        reference=str(ref.with_tag(ref.tag)) if ref.tag else str(ref),
        digest=digest,
        provider="explicit",
        python_full=full or python,
    )


def resolve_base(
    python: str,
    *,
    explicit: str | None = None,
    store: Store,
    platform: Platform,
    options: RegistryOptions | None = None,
) -> BaseImage:
    """Return the base for ``python`` (X.Y) on ``platform`` per ARCHITECTURE decision 1,
    fetched into ``store``.
    """
    if explicit:
        return _explicit(explicit, python, store, options, platform)
    try:
        return registry_base(python, store, platform=platform, options=options)
    except RegistryUnreachable as exc:
        # Offline: a previously pulled official image of this platform still serves.
        digest = stored_for(store, official_reference(python), platform)
        if digest is not None:
            return official_base(python, store, digest)
        if python not in DEBIAN_SUITES:
            msg = f"no registry is reachable for python:{python}-slim, and no Debian suite has Python {python}"
            raise ImageError(
                msg, hint="set MLPACK_REGISTRY_MIRROR, set base = ..., or use Python 3.11 or 3.13"
            ) from exc
        reporter().notice(
            f"no registry reachable ({exc.message}); using the debian base provider for "
            f"Python {python}"
        )
        return build_debian_base(python, store, platform=platform)
