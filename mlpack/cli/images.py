"""Commands for the image store, registries, export/import and base images.

pull, push, images, rmi, prune, store check, export, import, base.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from mlpack.cli.output import human_bytes, note, progress, say, table
from mlpack.errors import ConfigError, ImageError
from mlpack.runtime.options import parse_path

if TYPE_CHECKING:
    from mlpack.oci.registry_config import RegistryOptions

CaCert = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        parser=parse_path,
        metavar="PEM",
        help="CA certificate (PEM) to trust for the registry's TLS.",
    ),
]
Insecure = Annotated[
    list[str] | None,
    typer.Option(
        "--insecure-registry",
        help="Allow plain HTTP to this host[:port] (repeatable; also MLPACK_INSECURE_REGISTRIES).",
    ),
]
PlatformOpt = Annotated[
    str, typer.Option("--platform", help="Platform to select from a multi-platform image.")
]


def _options(
    ca_cert: Path | None, insecure: list[str] | None, platform: str = "linux/amd64"
) -> RegistryOptions:
    from mlpack.oci.documents import Platform
    from mlpack.oci.registry_config import RegistryOptions, insecure_hosts

    if ca_cert is not None and not ca_cert.is_file():
        msg = f"--ca-cert {ca_cert} is not a file"
        raise ConfigError(msg, hint="pass the PEM file of the CA that signed the registry's cert")
    return RegistryOptions(
        ca_cert=ca_cert,
        insecure=insecure_hosts() | frozenset(insecure or ()),
        platform=Platform.parse(platform),
    )


def pull_cmd(
    reference: Annotated[str, typer.Argument(help="Image to pull, e.g. python:3.11-slim.")],
    platform: PlatformOpt = "linux/amd64",
    ca_cert: CaCert = None,
    insecure_registry: Insecure = None,
) -> None:
    """Pull an image from a registry into the local store and print its digest."""
    from mlpack.oci.registry import pull
    from mlpack.oci.store import Store

    options = _options(ca_cert, insecure_registry, platform)
    with progress():
        result = pull(reference, Store.default(), options=options)
    say(f"{result.reference}: {result.digest}")
    if result.index_digest:
        say(f"index: {result.index_digest}")


def push_cmd(
    image: Annotated[str, typer.Argument(help="Image in the local store (name or digest).")],
    reference: Annotated[str, typer.Argument(help="Where to push, e.g. 127.0.0.1:5000/app:1.")],
    ca_cert: CaCert = None,
    insecure_registry: Insecure = None,
) -> None:
    """Push a stored image to a registry (blobs it already has are not sent again)."""
    from mlpack.oci.registry import push
    from mlpack.oci.store import Store

    options = _options(ca_cert, insecure_registry)
    with progress():
        result = push(Store.default(), image, reference, options=options)
    say(
        f"{result.reference}: {result.digest} ({result.blobs_uploaded} uploaded, "
        f"{result.blobs_skipped} already there, {result.blobs_mounted} mounted, "
        f"{human_bytes(result.bytes_sent)} sent)"
    )


def images_cmd() -> None:
    """List the images in the local store."""
    from mlpack.oci.store import Store

    rows = [
        (row.reference, row.digest[:19], human_bytes(row.size), row.created)
        for row in Store.default().images()
    ]
    table(("REFERENCE", "DIGEST", "SIZE", "CREATED"), rows)


def rmi_cmd(
    images: Annotated[list[str], typer.Argument(help="Names or digests to remove.")],
) -> None:
    """Remove image names from the store (space is reclaimed by prune)."""
    from mlpack.oci.store import Store

    store = Store.default()
    for image in images:
        store.remove(image)
        say(f"untagged: {image}")


def prune_cmd() -> None:
    """Remove blobs and unpacked layers that no named image uses; report the bytes freed."""
    from mlpack.oci.store import Store

    result = Store.default().prune()
    say(
        f"removed {result.blobs} blobs and {result.layers} unpacked trees; "
        f"freed {human_bytes(result.bytes_freed)} ({result.bytes_freed} bytes)"
    )
    for failure in result.failures:
        note(f"warning: {failure}", style="warning")
    if result.failures:
        msg = f"prune could not finish {len(result.failures)} cleanup steps (the others ran)"
        raise ImageError(msg, hint="see the warnings above; fix their cause and prune again")


def store_check_cmd() -> None:
    """Re-hash every blob in the store and report corrupt or missing ones."""
    from mlpack.oci.store import Store

    result = Store.default().check()
    for digest in result.corrupt:
        note(f"corrupt: {digest}")
    for digest in result.missing:
        note(f"missing: {digest}")
    if not result.ok:
        msg = f"the store has {len(result.corrupt)} corrupt and {len(result.missing)} missing blobs"
        raise ImageError(msg, hint="remove the affected images (mlpack rmi), prune, and pull again")
    say(f"ok: {result.checked} blobs verified")


def export_cmd(
    image: Annotated[str, typer.Argument(help="Image in the local store (name or digest).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", parser=parse_path, help="Tarball to write.")
    ],
    fmt: Annotated[
        str,
        typer.Option("--format", help="oci, docker, or both (an OCI layout with manifest.json)."),
    ] = "both",
    tag: Annotated[str | None, typer.Option("--tag", help="Name to record in the tarball.")] = None,
) -> None:
    """Write an image as a tarball that docker load, podman load and skopeo accept."""
    from mlpack.oci.archive import export_image
    from mlpack.oci.store import Store

    if fmt not in ("oci", "docker", "both"):
        msg = f"unknown --format {fmt!r}"
        raise ConfigError(msg, hint="use oci, docker or both")
    chosen: Literal["oci", "docker", "both"] = fmt  # type: ignore[assignment]
    digest = export_image(Store.default(), image, output, fmt=chosen, tag=tag)
    say(f"{output}: {digest}")


def import_cmd(
    path: Annotated[
        Path,
        typer.Argument(parser=parse_path, help="OCI layout (dir or tar) or docker save tarball."),
    ],
    digest: Annotated[
        str | None,
        typer.Option("--digest", metavar="sha256:...", help="Only this image of an OCI layout."),
    ] = None,
) -> None:
    """Import images from an OCI layout or a docker save tarball into the store."""
    from mlpack.oci.archive import import_archive
    from mlpack.oci.documents import check_digest
    from mlpack.oci.store import Store

    if digest is not None:
        check_digest(digest)
    for image in import_archive(Store.default(), path, digest=digest):
        say(f"{image.reference or '<none>'}: {image.digest}")


def base_cmd(
    python: Annotated[str, typer.Option("--python", help="Python version X.Y.")] = "3.11",
    base: Annotated[
        str | None, typer.Option("--base", help="Explicit base image (wins over the rest).")
    ] = None,
    ca_cert: CaCert = None,
    insecure_registry: Insecure = None,
    platform: Annotated[
        str, typer.Option("--platform", help="Target platform: linux/amd64 or linux/arm64.")
    ] = "linux/amd64",
) -> None:
    """Show (and prefetch) the base image a build for this Python version would use."""
    from mlpack.base.resolve import resolve_base
    from mlpack.oci.store import Store
    from mlpack.vocabulary import PLATFORMS, as_platform

    target = as_platform(platform)
    if target is None:
        msg = f"platform {platform!r} is not supported"
        raise ConfigError(msg, hint=f"use one of {', '.join(PLATFORMS)}")
    options = _options(ca_cert, insecure_registry)
    with progress():
        chosen = resolve_base(
            python, explicit=base, store=Store.default(), platform=target, options=options
        )
    say(f"provider:  {chosen.provider}")
    say(f"reference: {chosen.reference}")
    say(f"digest:    {chosen.digest}")
    say(f"python:    {chosen.python_full}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("pull")(pull_cmd)
    app.command("push")(push_cmd)
    app.command("images")(images_cmd)
    app.command("rmi")(rmi_cmd)
    app.command("prune")(prune_cmd)
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
    app.command("base")(base_cmd)
    store_app = typer.Typer(help="Inspect the local image store.")
    store_app.command("check")(store_check_cmd)
    app.add_typer(store_app, name="store")
