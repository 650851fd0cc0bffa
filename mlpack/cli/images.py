"""Commands for the image store, registries, export/import and base images.

pull, push, images, rmi, prune, store check, export, import, base.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from mlpack.cli.app import err, out
from mlpack.errors import ConfigError, ImageError
from mlpack.progress import using

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlpack.oci.registry_config import RegistryOptions

CaCert = Annotated[
    Path | None,
    typer.Option("--ca-cert", help="CA certificate (PEM) to trust for the registry's TLS."),
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


class _RichReporter:
    """Feeds the library's reporter seam into rich progress bars on stderr."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def notice(self, message: str) -> None:
        """Print one notice line."""
        self._progress.console.print(message, markup=False, style="cyan")

    def start(self, task: str, total: int | None) -> None:
        """Add a bar."""
        with self._lock:
            self._tasks[task] = self._progress.add_task(task, total=total)

    def advance(self, task: str, amount: int) -> None:
        """Move a bar."""
        with self._lock:
            task_id = self._tasks.get(task)
        if task_id is not None:
            self._progress.advance(task_id, amount)

    def finish(self, task: str) -> None:
        """Complete a bar."""
        with self._lock:
            task_id = self._tasks.pop(task, None)
        if task_id is not None:
            total = self._progress.tasks[task_id].total
            if total is not None:
                self._progress.update(task_id, completed=total)


@contextmanager
def _progress() -> Iterator[None]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )
    with progress, using(_RichReporter(progress)):
        yield


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


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


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
    with _progress():
        result = pull(reference, Store.default(), options=options)
    # emoji=False: a tag like ":100" would otherwise print as an emoji (rich's ":100:" code).
    out.print(f"{result.reference}: {result.digest}", markup=False, emoji=False)
    if result.index_digest:
        out.print(f"index: {result.index_digest}", markup=False, emoji=False)


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
    with _progress():
        result = push(Store.default(), image, reference, options=options)
    out.print(
        f"{result.reference}: {result.digest} ({result.blobs_uploaded} uploaded, "
        f"{result.blobs_skipped} already there, {result.blobs_mounted} mounted, "
        f"{_size(result.bytes_sent)} sent)",
        markup=False,
    )


def images_cmd() -> None:
    """List the images in the local store."""
    from rich.table import Table

    from mlpack.oci.store import Store

    header = ("REFERENCE", "DIGEST", "SIZE", "CREATED")
    rows = [
        (row.reference, row.digest[:19], _size(row.size), row.created)
        for row in Store.default().images()
    ]
    if not out.is_terminal:
        # Scripts read this: full references, never truncated to a table's width.
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        for r in (header, *rows):
            line = "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True))
            out.print(line.rstrip(), markup=False)
        return
    table = Table(*header, box=None, pad_edge=False)
    for r in rows:
        table.add_row(*r)
    out.print(table)


def rmi_cmd(
    images: Annotated[list[str], typer.Argument(help="Names or digests to remove.")],
) -> None:
    """Remove image names from the store (space is reclaimed by prune)."""
    from mlpack.oci.store import Store

    store = Store.default()
    for image in images:
        store.remove(image)
        out.print(f"untagged: {image}", markup=False)


def prune_cmd() -> None:
    """Remove blobs and unpacked layers that no named image uses; report the bytes freed."""
    from mlpack.oci.store import Store

    result = Store.default().prune()
    out.print(
        f"removed {result.blobs} blobs and {result.layers} unpacked trees; "
        f"freed {_size(result.bytes_freed)} ({result.bytes_freed} bytes)",
        markup=False,
    )
    for failure in result.failures:
        err.print(f"warning: {failure}", markup=False)
    if result.failures:
        msg = f"prune could not finish {len(result.failures)} cleanup steps (the others ran)"
        raise ImageError(msg, hint="see the warnings above; fix their cause and prune again")


def store_check_cmd() -> None:
    """Re-hash every blob in the store and report corrupt or missing ones."""
    from mlpack.oci.store import Store

    result = Store.default().check()
    for digest in result.corrupt:
        err.print(f"corrupt: {digest}", markup=False)
    for digest in result.missing:
        err.print(f"missing: {digest}", markup=False)
    if not result.ok:
        msg = f"the store has {len(result.corrupt)} corrupt and {len(result.missing)} missing blobs"
        raise ImageError(msg, hint="remove the affected images (mlpack rmi), prune, and pull again")
    out.print(f"ok: {result.checked} blobs verified", markup=False)


def export_cmd(
    image: Annotated[str, typer.Argument(help="Image in the local store (name or digest).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Tarball to write.")],
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
    out.print(f"{output}: {digest}", markup=False)


def import_cmd(
    path: Annotated[Path, typer.Argument(help="OCI layout (dir or tar) or docker save tarball.")],
) -> None:
    """Import images from an OCI layout or a docker save tarball into the store."""
    from mlpack.oci.archive import import_archive
    from mlpack.oci.store import Store

    for image in import_archive(Store.default(), path):
        out.print(f"{image.reference or '<none>'}: {image.digest}", markup=False)


def base_cmd(
    python: Annotated[str, typer.Option("--python", help="Python version X.Y.")] = "3.11",
    base: Annotated[
        str | None, typer.Option("--base", help="Explicit base image (wins over the rest).")
    ] = None,
    ca_cert: CaCert = None,
    insecure_registry: Insecure = None,
) -> None:
    """Show (and prefetch) the base image a build for this Python version would use."""
    from mlpack.base.resolve import resolve_base
    from mlpack.oci.store import Store

    options = _options(ca_cert, insecure_registry)
    with _progress():
        chosen = resolve_base(python, explicit=base, store=Store.default(), options=options)
    out.print(f"provider:  {chosen.provider}", markup=False)
    out.print(f"reference: {chosen.reference}", markup=False)
    out.print(f"digest:    {chosen.digest}", markup=False)
    out.print(f"python:    {chosen.python_full}", markup=False)


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
    store_app = typer.Typer(help="Inspect the local image store.", no_args_is_help=True)
    store_app.command("check")(store_check_cmd)
    app.add_typer(store_app, name="store")
