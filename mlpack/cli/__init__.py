"""The command line: the only place that prints, shows progress and chooses exit codes."""

from __future__ import annotations

import sys

from mlpack import __version__

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

ISSUES_URL = "https://github.com/mlpack-env/mlpack/issues"


def bug_report(exc: BaseException) -> str:
    """The text shown for an unexpected exception: the traceback and where to report it."""
    import traceback  # not at module level: every command imports this module

    return (
        "".join(traceback.format_exception(exc))
        + f"error: this is a bug in mlpack {__version__}; please report it with the traceback "
        f"above at {ISSUES_URL}\n"
    )


def _fast_path(args: Sequence[str]) -> Callable[[list[str]], int | None] | None:
    # Commands on hot paths skip typer and rich (~0.3 s of imports): the container exec path
    # (BENCHMARKS B1) and `analyze --json`, which scripts and benchmarks call in loops (B3).
    if args[:1] in (["run"], ["runtime"]):
        from mlpack.cli.fastrun import dispatch

        return dispatch
    if args[:1] == ["lock"]:  # an unchanged re-lock (B4-noop) answers from the no-op memo
        from mlpack.cli.fastlock import dispatch as dispatch_lock

        return dispatch_lock
    if args[:1] == ["analyze"]:
        from mlpack.cli.fastanalyze import dispatch as dispatch_analyze

        return dispatch_analyze
    if args[:1] == ["pull"]:  # captured output (scripts, CI): no bars to draw
        from mlpack.cli.fastpull import dispatch as dispatch_pull

        return dispatch_pull
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mlpack`` command.

    A fast path returns None when it cannot handle the arguments (e.g. ``--help``); the typer
    application in ``mlpack.cli.app`` then handles them.
    """
    args = sys.argv[1:] if argv is None else argv
    fast = _fast_path(args)
    if fast is not None:
        try:
            code = fast(list(args))
        except Exception as exc:  # noqa: BLE001 - anything unexpected is a bug, reported as one
            sys.stderr.write(bug_report(exc))
            code = 70
        if code is not None:
            sys.exit(code)
    from mlpack.cli.app import run_app

    sys.exit(run_app(args))
