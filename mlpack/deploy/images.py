"""The image a cluster pulls: a registry reference pinned by digest, never this machine's store.

Slurm nodes and Kubernetes pods cannot read the local store and a tag can move, so every deploy
target names ``REGISTRY/REPO@sha256:...``. One function decides it, so both targets accept the
same ``--image-ref`` forms and refuse a local-only image with the same ``mlpack push`` hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpack.errors import DeployError, MlpackError
from mlpack.oci.reference import parse as parse_reference

if TYPE_CHECKING:
    from mlpack.oci.reference import Reference
    from mlpack.oci.store import Store


def push_hint(image: str) -> str:
    """The exact command that makes ``image`` pullable, and how to name it afterwards."""
    return (
        f"push it first: `mlpack push {image} REGISTRY/REPO:TAG`, then pass "
        "--image-ref REGISTRY/REPO (or REGISTRY/REPO@sha256:DIGEST, the digest push printed)"
    )


def pinned(image: str, *, image_ref: str | None, store: Store, other_ways: str = "") -> str:
    """``REGISTRY/REPO@sha256:...`` that a cluster pulls for ``image``; DeployError otherwise.

    ``image_ref`` names the registry repository the image was pushed to: its digest is used as
    given, else the local image's digest pins it. Without it, ``image`` itself must name a
    registry: a digest is used as given, a tag is pinned to the digest the store recorded.
    ``other_ways``: what else the target offers a local-only image, added to that error's hint.
    """
    try:
        if image_ref is not None:
            target = _in_registry(image_ref, image=image, other_ways=other_ways)
        else:
            target = _in_registry(image, image=image, other_ways=other_ways)
            if target.digest is None and image.split("/", 1)[0] != target.registry:
                # a bare name: Docker Hub only by default, not pushed
                raise _local_only(image, other_ways)
        if target.digest is not None:
            return str(target)
        return str(target.with_digest(store.resolve(image)))
    except DeployError:
        raise
    except MlpackError as exc:
        raise DeployError(exc.message, hint=exc.hint) from exc


def _in_registry(text: str, *, image: str, other_ways: str) -> Reference:
    """``text`` parsed; DeployError when it names this machine's ``localhost`` registry."""
    ref = parse_reference(text, default_tag=None)
    if ref.registry == "localhost":
        raise _local_only(image, other_ways)
    return ref


def _local_only(image: str, other_ways: str) -> DeployError:
    msg = f"image {image} exists only in the local store; a cluster cannot pull it from there"
    return DeployError(msg, hint=push_hint(image) + (f"; or {other_ways}" if other_ways else ""))
