"""Commands for building images (build, render, verify)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from mlpack.build.protocol import BuildResult
from mlpack.cli.output import human_bytes, note, progress, say
from mlpack.vocabulary import Backend, Compression

ProjectArg = Annotated[
    Path, typer.Argument(help="The project (default: the current directory).", show_default=False)
]
FrozenOpt = Annotated[
    bool,
    typer.Option("--frozen", help="Fail when mlpack.lock is missing or stale (as in CI)."),
]


def _note(text: str) -> None:
    note(f"note: {text}")


def _as_json(result: BuildResult) -> dict[str, object]:
    return {
        "image": result.reference,
        "digest": result.digest,
        "layers": [
            {
                "digest": x.digest,
                "size": x.size,
                "role": x.role or "base",
                "cached": x.cached,
                "pyc_dropped": list(x.pyc_dropped),
            }
            for x in result.layers
        ],
        "backend": result.backend,
        "base": result.base,
        "platform": result.platform,
        "skipped": list(result.skipped),
        "sbom": result.sbom,
    }


def build(
    path: ProjectArg = Path(),
    *,
    tag: Annotated[
        str | None,
        typer.Option("--tag", "-t", help="Image name (default: localhost/<project>:<lock hash>)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    frozen: FrozenOpt = False,
    backend: Annotated[
        Backend,
        typer.Option("--backend", help="embedded (default: no daemon) or docker (the SDK)."),
    ] = "embedded",
    push: Annotated[
        str | None,
        typer.Option("--push", help="Push the image to this reference after the build."),
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="Target OS/ARCH (default: mlpack.toml's, linux/amd64)."),
    ] = None,
    compression: Annotated[
        Compression | None,
        typer.Option(
            "--compression",
            help="Layer compression: gzip (default, read everywhere) or zstd (Docker 23+, "
            "containerd 1.5+; smaller, much faster to write).",
        ),
    ] = None,
) -> None:
    """Build the project's image in the mlpack store, bit-for-bit reproducibly, with no daemon.

    Analysis and locking run in memory when mlpack.toml or an up-to-date mlpack.lock is missing.
    """
    from mlpack.pipeline import build_project

    started = time.monotonic()
    with progress(notice_prefix="note: "):
        result = build_project(
            path, tag=tag, frozen=frozen, backend=backend, note=_note, platform=platform,
            compression=compression,
        )  # fmt: skip
        pushed = _push(result, push) if push else None
    if as_json:
        say(json.dumps({**_as_json(result), "pushed": pushed}, ensure_ascii=False))
        return
    for layer in result.layers:
        origin = "cached" if layer.cached else "built"
        say(
            f"  {layer.step:<10} {human_bytes(layer.size, binary=True):>10}  {origin:<6}  {layer.digest}"
        )
    say(
        f"{result.reference}  {result.digest}  {human_bytes(result.size, binary=True)} in "
        f"{time.monotonic() - started:.1f} s"
    )
    if result.sbom:
        say(f"  sbom {result.sbom} (`mlpack sbom {result.reference}`)")


def _push(result: BuildResult, target: str) -> str:
    """Push the built image, then its SBOM, with the registry client; return ``target@digest``.

    A registry that refuses the SBOM artifact leaves the image pushed: a notice says so.
    """
    from mlpack.build.sbom import push_sbom
    from mlpack.errors import MlpackError
    from mlpack.oci.registry import push
    from mlpack.oci.store import Store

    store = Store.default()
    pushed = push(store, result.digest, target)
    note(f"pushed {pushed.reference} ({pushed.digest})")
    if result.sbom:
        try:
            push_sbom(store, result.sbom, target)
        except MlpackError as exc:
            note(f"note: the registry did not take the SBOM ({exc.message}); the image is pushed")
        else:
            note(f"pushed the SBOM ({result.sbom})")
    return f"{pushed.reference}@{pushed.digest}"


def render(
    path: ProjectArg = Path(),
    *,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the files (created).")
    ] = Path("mlpack-render"),
    frozen: FrozenOpt = False,
) -> None:
    """Write the project's Dockerfile, .dockerignore and hash-checked requirements files.

    The Dockerfile uses classic-builder syntax only, so any engine builds it (docker-py too).
    """
    from mlpack.pipeline import render_project

    for written in render_project(path, output, frozen=frozen, note=_note):
        say(f"wrote {written}")


def verify(path: ProjectArg = Path(), *, frozen: FrozenOpt = False) -> None:
    """Build the project, rebuild it from scratch in a temporary store, and compare.

    Prints ``identical`` and the digest, or each differing layer with the first differing
    files and fields; exits 1 then.
    """
    from mlpack.pipeline import verify_project

    with progress(notice_prefix="note: "):
        result = verify_project(path, frozen=frozen, note=_note)
    if result.identical:
        say(f"identical {result.first}")
        return
    say(f"different: {result.first} != {result.second}")
    for layer in result.layers:
        say(f"  layer {layer.step}: {layer.first} != {layer.second}")
        for diff in layer.files:
            say(f"    {diff.path}: {diff.field}")
    raise typer.Exit(1)


def sbom(
    image: Annotated[str, typer.Argument(help="The image: a name or a digest in the store.")],
) -> None:
    """Print the CycloneDX SBOM (JSON) that `mlpack build` attached to IMAGE."""
    from mlpack.build.sbom import read_sbom
    from mlpack.oci.store import Store

    say(read_sbom(Store.default(), image).decode("utf-8"))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(build)
    app.command()(sbom)
    app.command()(render)
    app.command()(verify)
