"""Commands for locking (lock, why, fetch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpack.cli.app import err, out
from mlpack.errors import ConfigError
from mlpack.lock.lockdata import ResolverName
from mlpack.vocabulary import Platform


def _split_args(args: list[str] | None, upgrade: bool) -> tuple[Path, tuple[str, ...]]:
    """``[PATH] [PKG ...]``: the first argument is the project when it is a folder."""
    items = list(args or [])
    root = Path()
    if items and Path(items[0]).is_dir():
        root = Path(items.pop(0))
    if items and not upgrade:
        msg = f"unexpected arguments {' '.join(items)!r} (no such folder)"
        raise ConfigError(msg, hint="package names go after --upgrade: mlpack lock --upgrade PKG")
    return root, tuple(items)


def lock(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PATH] [PKG...]",
            help="The project (default: the current directory); with --upgrade, the packages "
            "to upgrade (default: all).",
            show_default=False,
        ),
    ] = None,
    *,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit non-zero, with the reason, when mlpack.lock is stale."),
    ] = False,
    upgrade: Annotated[
        bool,
        typer.Option("--upgrade", help="Re-resolve to the newest versions (all, or PKG...)."),
    ] = False,
    resolver: Annotated[
        ResolverName,
        typer.Option("--resolver", help="uv (default; any target) or pip-tools (the reference)."),
    ] = "uv",
    platform: Annotated[
        Platform | None,
        typer.Option("--platform", help="Target platform (default: mlpack.toml's, linux/amd64)."),
    ] = None,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            help="Extra CA bundle (PEM) for a TLS-intercepting proxy; used at lock time only.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Resolve the project's packages for the target image and write mlpack.lock.

    The lock pins every package with the sha256 of all its files and says why each one is
    there. Re-running with unchanged inputs does nothing (the input hash matches).
    """
    from mlpack.cli.fastlock import lock_command

    root, packages = _split_args(args, upgrade)
    lock_command(
        root,
        check=check,
        upgrade=upgrade,
        packages=packages,
        resolver=resolver,
        platform=platform,
        ca_cert=ca_cert,
        say=lambda text: out.print(text, markup=False),
        note=lambda text: err.print(text, markup=False),
    )


def why(
    package: Annotated[str, typer.Argument(help="The package to explain.")],
    path: Annotated[
        Path, typer.Argument(help="The project (default: current directory).")
    ] = Path(),
) -> None:
    """Print the chains that brought PACKAGE into the lock (input -> ... -> PACKAGE)."""
    from mlpack.lock.lockfile import read_lock
    from mlpack.lock.why import why as chains
    from mlpack.pipeline import lock_path

    lock_file = read_lock(lock_path(path))
    pkg = lock_file.package(package.lower().replace("_", "-"))
    for chain in chains(lock_file, package):
        source, *names = chain
        out.print(f"{' -> '.join(names)}  (from {source})", markup=False)
    if pkg is not None:
        out.print(f"{pkg.name}=={pkg.version or pkg.url}", markup=False)


def fetch(
    path: Annotated[
        Path, typer.Argument(help="The project (default: current directory).")
    ] = Path(),
    ca_cert: Annotated[
        Path | None,
        typer.Option("--ca-cert", help="Extra CA bundle (PEM) for a TLS-intercepting proxy."),
    ] = None,
) -> None:
    """Download every pinned file for the target into the hash-checked wheelhouse.

    Later builds install from there and need no network for Python packages.
    """
    from mlpack.pipeline import fetch_project

    house = fetch_project(path, ca_cert=ca_cert)
    out.print(
        f"{len(house.files)} files in {house.root} ({house.downloaded} downloaded now)",
        markup=False,
    )
    if house.to_build:
        out.print(f"built in the image: {', '.join(house.to_build)}", markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(lock)
    app.command()(why)
    app.command()(fetch)
