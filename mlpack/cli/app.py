"""The typer application, the global options and the one error path."""

from __future__ import annotations

import traceback
from typing import Annotated

import typer
from rich.console import Console

from mlpack import __version__
from mlpack.cli import bug_report
from mlpack.errors import EXIT_BUG, EXIT_INTERRUPTED, MlpackError

# emoji=False: image tags such as `repo:100:` must print verbatim, never as rich emoji codes.
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

app = typer.Typer(
    name="mlpack",
    help="Package an ML repository into a reproducible image and run it, without a daemon.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _State:
    debug: bool = False


state = _State()


def _version(value: bool) -> None:
    if value:
        out.print(f"mlpack {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug detail on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Package an ML repository into a reproducible image and run it, without a daemon."""
    state.debug = debug


def _register() -> None:
    # Each stage keeps its commands in its own module; they only compose library calls.
    from mlpack.cli import analyze, build, containers, images, lock

    for module in (analyze, images, lock, containers, build):
        module.register(app)


def report_error(exc: MlpackError) -> int:
    """Print one ``error:`` line and one ``hint:`` line; return the stage's exit code."""
    if state.debug:
        err.print("".join(traceback.format_exception(exc)), markup=False)
    err.print(f"error: {exc.message}", markup=False, style="bold red")
    if exc.hint:
        err.print(f"hint: {exc.hint}", markup=False, style="yellow")
    return exc.exit_code


def run_app(argv: list[str]) -> int:
    """Run the CLI on ``argv`` and return the exit code instead of exiting."""
    state.debug = "--debug" in argv
    _register()
    try:
        # standalone mode: typer/click print usage errors and raise SystemExit themselves.
        app(args=argv, prog_name="mlpack", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except MlpackError as exc:
        return report_error(exc)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - anything else is a bug and is reported as one
        err.print(bug_report(exc), markup=False, end="")
        return EXIT_BUG
    return 0
