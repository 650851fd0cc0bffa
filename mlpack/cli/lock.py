"""Commands for locking (lock, why, fetch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from mlpack.cli.output import progress, say
from mlpack.errors import ConfigError, LockError
from mlpack.runtime.options import parse_path

ResolverChoice = Literal["uv", "pip-tools"]
PlatformChoice = Literal["linux/amd64", "linux/arm64"]


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
        ResolverChoice,
        typer.Option("--resolver", help="uv (default; any target) or pip-tools (the reference)."),
    ] = "uv",
    platform: Annotated[
        PlatformChoice | None,
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
    root, packages = _split_args(args, upgrade)
    # The no-op memo answers only what it recorded: no options besides --check.
    memo_able = not upgrade and resolver == "uv" and platform is None and ca_cert is None
    if memo_able and _up_to_date(root, check=check):
        return
    memo = _Memo(root) if memo_able else None
    if check:
        _check(root, resolver, platform, memo)
    else:
        _lock(
            root,
            packages,
            upgrade=upgrade,
            resolver=resolver,
            platform=platform,
            ca_cert=ca_cert,
            memo=memo,
        )


def _up_to_date(root: Path, *, check: bool) -> bool:
    """Answer an unchanged re-lock from the no-op memo (``mlpack.lock.stamp``)."""
    from mlpack.lock.stamp import LOCK_FILE, is_current

    if not is_current(str(root), "check" if check else "lock"):
        return False
    say(f"{root / LOCK_FILE} is up to date" + ("" if check else " (inputs unchanged)"))
    return True


class _Memo:
    """Records an up-to-date outcome for the no-op path (``mlpack.lock.stamp``).

    The input bytes are fingerprinted before the config is read and again after the outcome;
    only an unchanged pair is recorded, so a concurrent edit never records a wrong answer.
    """

    def __init__(self, root: Path) -> None:
        from mlpack.lock import stamp

        self.root = str(root)
        self.inputs = stamp.inputs_key(self.root)
        self.lock = stamp.lock_key(self.root)

    def remember(self, mode: Literal["lock", "check"], *, written: bytes | None = None) -> None:
        """Record ``mode`` as up to date; ``written``: the bytes this run wrote to the lock."""
        import hashlib

        from mlpack.lock import stamp

        lock_now = stamp.lock_key(self.root)
        expected = self.lock if written is None else hashlib.sha256(written).hexdigest()
        if lock_now is None or lock_now != expected or stamp.inputs_key(self.root) != self.inputs:
            return
        stamp.record(self.root, mode, self.inputs, lock_now)


def _check(
    root: Path, resolver: ResolverChoice, platform: PlatformChoice | None, memo: _Memo | None
) -> None:
    """``lock --check``: a stale lock is a LockError with the reason."""
    from mlpack.config import load_config
    from mlpack.lock.locker import inputs_from_config, lock_path_for, stale_reason

    inputs = inputs_from_config(load_config(root), resolver=resolver, platform=platform)
    path = lock_path_for(root)
    reason = stale_reason(inputs, path)
    if reason is not None:
        raise LockError(f"mlpack.lock is stale: {reason}", hint="run `mlpack lock` and commit")
    if memo is not None:
        memo.remember("check")
    say(f"{path} is up to date")


def _lock(
    root: Path,
    packages: tuple[str, ...],
    *,
    upgrade: bool,
    resolver: ResolverChoice,
    platform: PlatformChoice | None,
    ca_cert: Path | None,
    memo: _Memo | None,
) -> None:
    """Resolve (or find the lock up to date) and write mlpack.lock."""
    from mlpack.config import load_config
    from mlpack.lock.locker import inputs_from_config, lock_path_for
    from mlpack.lock.locker import lock as run_lock

    inputs = inputs_from_config(load_config(root), resolver=resolver, platform=platform)
    path = lock_path_for(root)
    with progress(notice_prefix="note: "):
        result = run_lock(
            inputs,
            path,
            root=root,
            upgrade=upgrade and not packages,
            upgrade_packages=packages,
            ca_cert=ca_cert,
        )
    if memo is not None:
        from mlpack.lock.lockfile import dumps

        memo.remember("lock", written=dumps(result.lock).encode() if result.resolved else None)
    if not result.resolved:
        say(f"{path} is up to date (inputs unchanged)")
        return
    target = result.lock.target
    say(
        f"wrote {path}: {len(result.lock.packages)} packages for Python {target.python} on "
        f"{target.platform} ({result.lock.resolver})"
    )


def why(
    package: Annotated[str, typer.Argument(help="The package to explain.")],
    path: Annotated[
        Path, typer.Argument(parser=parse_path, help="The project (default: current directory).")
    ] = Path(),
) -> None:
    """Print the chains that brought PACKAGE into the lock (input -> ... -> PACKAGE)."""
    from mlpack.lock.locker import lock_path_for
    from mlpack.lock.lockfile import read_lock
    from mlpack.lock.why import why as chains

    lock_file = read_lock(lock_path_for(path))
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
    from mlpack.config import load_config
    from mlpack.lock.indexes import Indexes
    from mlpack.lock.locker import inputs_from_config, lock_path_for, mlpack_home
    from mlpack.lock.lockfile import read_lock
    from mlpack.lock.wheelhouse import fetch as run_fetch

    lock_file = read_lock(lock_path_for(path))
    # Credentials come from mlpack.toml / pip's configuration at fetch time, never the lock.
    indexes: Indexes | None
    try:
        config = load_config(path)
        indexes = inputs_from_config(config).indexes
        if indexes.public().all != (lock_file.index_url, *lock_file.extra_index_urls):
            indexes = None
    except ConfigError:
        indexes = None
    house = run_fetch(lock_file, home=mlpack_home(), indexes=indexes, ca_cert=ca_cert)
    say(f"{len(house.files)} files in {house.root} ({house.downloaded} downloaded now)")
    if house.to_build:
        say(f"built in the image: {', '.join(house.to_build)}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(lock)
    app.command()(why)
    app.command()(fetch)
