"""The CLI's one error boundary: what every command's failure looks like, and its exit code.

- an MlpackError: one ``error:`` line (what failed and why), one ``hint:`` line (what to try),
  the stage's exit code; ``--debug`` adds the traceback above them;
- Ctrl-C: ``interrupted``, exit 130;
- the reader of our output went away (``mlpack images | head``): nothing more, exit 141 as a
  process killed by SIGPIPE, which is what shells and ``set -o pipefail`` expect;
- anything else is a bug: the traceback and where to report it, exit 70.

Both console scripts (``mlpack`` and ``mlpack-runtime``) run their work through ``guarded``.
The output module is imported only when there is something to say: ``mlpack-runtime`` says
nothing on success (BENCHMARKS B1).
"""

from __future__ import annotations

import sys

from mlpack import __version__
from mlpack.errors import EXIT_BROKEN_PIPE, EXIT_BUG, EXIT_INTERRUPTED, MlpackError

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final

ISSUES_URL: Final = "https://github.com/mlpack-env/mlpack/issues"


def bug_report(exc: BaseException) -> str:
    """The text shown for an unexpected exception: the traceback and where to report it."""
    import traceback  # only on a failure: not on every successful container start

    return (
        "".join(traceback.format_exception(exc))
        + f"error: this is a bug in mlpack {__version__}; please report it with the traceback "
        f"above at {ISSUES_URL}"
    )


def report_error(exc: MlpackError, *, debug: bool) -> int:
    """Print the ``error:`` and ``hint:`` lines (after the traceback with ``debug``)."""
    from mlpack.cli.output import note

    if debug:
        import traceback

        note("".join(traceback.format_exception(exc)).rstrip("\n"))
    note(f"error: {exc.message}", style="error")
    if exc.hint:
        note(f"hint: {exc.hint}", style="hint")
    return exc.exit_code


def guarded(work: Callable[[], int], *, debug: Callable[[], bool]) -> int:
    """Run ``work`` and return its exit code, or the code of the failure it ended with.

    ``debug`` is asked only after a failure: the command line that sets it is parsed by
    ``work`` itself.
    """
    try:
        code = work()
        sys.stdout.flush()  # here, not at exit: a reader gone away is then seen below
        return code
    except MlpackError as exc:
        return report_error(exc, debug=debug())
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        from mlpack.cli.output import note

        note("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - anything else is a bug, reported as one
        from mlpack.cli.output import note

        note(bug_report(exc))
        return EXIT_BUG


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
