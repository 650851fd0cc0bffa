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
    from typing import Literal

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
    if resolver == "uv":
        from mlpack.lock.stamp import LOCK_FILE, is_current

        if is_current(root, "check" if check else "lock"):
            shown = LOCK_FILE if root == "." else f"{root.rstrip('/')}/{LOCK_FILE}"
            suffix = "" if check else " (inputs unchanged)"
            sys.stdout.write(f"{shown} is up to date{suffix}\n")
            return 0
    from pathlib import Path

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


def lock_command(
    root: Path,
    *,
    check: bool,
    upgrade: bool,
    packages: tuple[str, ...],
    resolver: Literal["uv", "pip-tools"],
    platform: Literal["linux/amd64", "linux/arm64"] | None,
    ca_cert: Path | None,
    say: Callable[[str], None],
    note: Callable[[str], None],
) -> None:
    """The ``lock`` command: check, no-op or resolve; ``say`` prints results, ``note`` notices.

    Raises MlpackError (a stale lock under ``check`` is a LockError).
    """
    from mlpack.config import load_config
    from mlpack.errors import LockError
    from mlpack.lock.locker import inputs_from_config, lock_path_for, stale_reason
    from mlpack.progress import using

    # The no-op memo serves only what the no-op path reads: no options besides --check.
    memo = _Memo(root) if not upgrade and resolver == "uv" and platform is None else None
    config = load_config(root)
    inputs = inputs_from_config(config, resolver=resolver, platform=platform)
    path = lock_path_for(root)
    if check:
        reason = stale_reason(inputs, path)
        if reason is not None:
            raise LockError(f"mlpack.lock is stale: {reason}", hint="run `mlpack lock` and commit")
        if memo is not None:
            memo.remember("check")
        say(f"{path} is up to date")
        return
    from mlpack.lock.locker import lock as run_lock

    with using(_NoticePrinter(note)):
        result = run_lock(
            inputs,
            path,
            root=root,
            upgrade=upgrade and not packages,
            upgrade_packages=packages,
            ca_cert=ca_cert,
        )
    if memo is not None:
        if result.resolved:
            from mlpack.lock.lockfile import dumps

            memo.remember("lock", written=dumps(result.lock).encode("utf-8"))
        else:
            memo.remember("lock")
    if not result.resolved:
        say(f"{path} is up to date (inputs unchanged)")
        return
    n = len(result.lock.packages)
    target = result.lock.target
    say(
        f"wrote {path}: {n} packages for Python {target.python} on {target.platform} "
        f"({result.lock.resolver})"
    )
