"""``mlpack lock`` without typer or rich, and the command's body that both CLI paths share.

typer, rich and what they pull in cost ~0.15 s before any work (BENCHMARKS B4), which is most
of mlpack's overhead over a bare ``uv pip compile``. So the common forms, ``lock [--check]
[--resolver uv|pip-tools] [PATH]``, run here: an unchanged re-lock answers from the no-op memo
(``mlpack.lock.stamp``) with nothing but ``os`` imported; otherwise ``lock_command`` runs, the
same function the typer command calls. Errors are printed by the full CLI's ``report_error``
(imported only then), so text and exit codes are the same on both paths. Anything else
(``--upgrade``, ``--platform``, ``--ca-cert``, ``--help``, a path that is not a folder) returns
None and the typer application handles it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: typing costs ~2 ms to import on the no-op path
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mlpack.lock.lockdata import ResolverName
    from mlpack.vocabulary import Platform

_RESOLVERS = ("uv", "pip-tools")


def _pure_path(arg: str) -> str | None:
    """``str(Path(arg))`` without pathlib (~2.5 ms to import); None for forms not handled."""
    if not arg or arg.startswith("//"):
        return None
    parts = [p for p in arg.split("/") if p not in ("", ".")]
    text = "/".join(parts)
    if arg.startswith("/"):
        return "/" + text
    return text or "."


def _parse(rest: list[str]) -> tuple[str, bool, str] | None:
    """(root, check, resolver) for the forms handled here; None for anything else."""
    check = False
    resolver: str | None = None
    paths: list[str] = []
    items = iter(rest)
    for arg in items:
        if arg == "--check" and not check:
            check = True
        elif arg == "--resolver" and resolver is None:
            resolver = next(items, None)
            if resolver not in _RESOLVERS:
                return None
        elif arg.startswith("--resolver=") and resolver is None:
            resolver = arg.split("=", 1)[1]
            if resolver not in _RESOLVERS:
                return None
        elif arg.startswith("-") or paths:
            return None
        else:
            paths.append(arg)
    root = "."
    if paths:
        pure = _pure_path(paths[0])
        if pure is None or not os.path.isdir(pure):  # noqa: PTH112 - no pathlib here
            return None  # not a folder: the full command explains
        root = pure
    return root, check, resolver or "uv"


def dispatch(args: list[str]) -> int | None:
    """Handle ``lock [--check] [--resolver R] [PATH]``; None for other forms."""
    parsed = _parse(args[1:])
    if parsed is None:
        return None
    root, check, resolver = parsed
    from pathlib import Path

    if resolver == "uv":
        from mlpack.lock.stamp import is_current
        from mlpack.paths import LOCK_FILE

        if is_current(Path(root), "check" if check else "lock"):
            shown = LOCK_FILE if root == "." else f"{root.rstrip('/')}/{LOCK_FILE}"
            suffix = "" if check else " (inputs unchanged)"
            sys.stdout.write(f"{shown} is up to date{suffix}\n")
            return 0

    from mlpack.errors import EXIT_INTERRUPTED, MlpackError

    def write(stream: str) -> Callable[[str], None]:
        def emit(text: str) -> None:
            target = sys.stdout if stream == "out" else sys.stderr
            target.write(f"{text}\n")
            target.flush()

        return emit

    try:
        lock_command(
            Path(root),
            check=check,
            upgrade=False,
            packages=(),
            resolver=resolver,  # type: ignore[arg-type]  # checked against _RESOLVERS
            platform=None,
            ca_cert=None,
            say=write("out"),
            note=write("err"),
        )
    except MlpackError as exc:
        from mlpack.cli.app import report_error

        return report_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    return 0


class _NoticePrinter:
    """Prints the library's notices as they happen (a base build can take a minute)."""

    def __init__(self, note: Callable[[str], None]) -> None:
        self.note = note

    def notice(self, message: str) -> None:
        self.note(f"note: {message}")

    def start(self, task: str, total: int | None) -> None:
        pass

    def advance(self, task: str, amount: int) -> None:
        pass

    def finish(self, task: str) -> None:
        pass


def lock_command(
    root: Path,
    *,
    check: bool,
    upgrade: bool,
    packages: tuple[str, ...],
    resolver: ResolverName,
    platform: Platform | None,
    ca_cert: Path | None,
    say: Callable[[str], None],
    note: Callable[[str], None],
) -> None:
    """The ``lock`` command: check, no-op or resolve; ``say`` prints results, ``note`` notices.

    Raises MlpackError (a stale lock under ``check`` is a LockError).
    """
    from mlpack.pipeline import check_lock, lock_project
    from mlpack.progress import using

    if check:
        say(f"{check_lock(root, resolver=resolver, platform=platform)} is up to date")
        return
    with using(_NoticePrinter(note)):
        result = lock_project(
            root,
            upgrade=upgrade,
            packages=packages,
            resolver=resolver,
            platform=platform,
            ca_cert=ca_cert,
        )
    path = result.path
    if not result.resolved:
        say(f"{path} is up to date (inputs unchanged)")
        return
    n = len(result.lock.packages)
    target = result.lock.target
    say(
        f"wrote {path}: {n} packages for Python {target.python} on {target.platform} "
        f"({result.lock.resolver})"
    )
