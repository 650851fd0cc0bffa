"""Commands for locking (lock, why, fetch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpack.cli.output import progress, say
from mlpack.errors import ConfigError
from mlpack.paths import LOCK_FILE
from mlpack.runtime.options import parse_path
from mlpack.vocabulary import Platform, ResolverName


def _split_args(args: list[str] | None, upgrade: bool) -> tuple[Path, tuple[str, ...]]:
    """``[PATH] [PKG ...]``: the first argument is the project when it is a folder."""
    items = list(args or [])
    root = Path()
    if items and parse_path(items[0]).is_dir():
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
    from mlpack.lock import stamp

    root, packages = _split_args(args, upgrade)
    # The no-op memo answers only what it recorded: no options besides --check. It reads bytes
    # and imports nothing of the locker (mlpack.pipeline), so an unchanged re-lock costs little
    # more than the command line's start (BENCHMARKS B4-noop).
    plain = not upgrade and resolver == "uv" and platform is None and ca_cert is None
    if plain and stamp.is_current(root, "check" if check else "lock"):
        say(f"{root / LOCK_FILE} is up to date" + ("" if check else " (inputs unchanged)"))
        return
    from mlpack.pipeline import check_lock, lock_project

    if check:
        say(f"{check_lock(root, resolver=resolver, platform=platform)} is up to date")
        return
    with progress(notice_prefix="note: "):
        result = lock_project(
            root,
            upgrade=upgrade,
            packages=packages,
            resolver=resolver,
            platform=platform,
            ca_cert=ca_cert,
        )
    if not result.resolved:
        say(f"{result.path} is up to date (inputs unchanged)")
        return
    target = result.lock.target
    say(
        f"wrote {result.path}: {len(result.lock.packages)} packages for Python {target.python} "
        f"on {target.platform} ({result.lock.resolver})"
    )


def why(
    package: Annotated[str, typer.Argument(help="The package to explain.")],
    path: Annotated[
        Path, typer.Argument(parser=parse_path, help="The project (default: current directory).")
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
        say(f"{' -> '.join(names)}  (from {source})")
    if pkg is not None:
        say(f"{pkg.name}=={pkg.version or pkg.url}")


def fetch(
    path: Annotated[
        Path, typer.Argument(parser=parse_path, help="The project (default: current directory).")
    ] = Path(),
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            parser=parse_path,
            help="Extra CA bundle (PEM) for a TLS-intercepting proxy.",
        ),
    ] = None,
) -> None:
    """Download every pinned file for the target into the hash-checked wheelhouse.

    Later builds install from there and need no network for Python packages.
    """
    from mlpack.pipeline import fetch_project

    house = fetch_project(path, ca_cert=ca_cert)
    say(f"{len(house.files)} files in {house.root} ({house.downloaded} downloaded now)")
    if house.to_build:
        say(f"built in the image: {', '.join(house.to_build)}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(lock)
    app.command()(why)
    app.command()(fetch)
