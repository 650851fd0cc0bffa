"""The command line: the only place that prints, shows progress and chooses exit codes."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mlpack`` command.

    Heavy imports (typer, rich) happen inside ``mlpack.cli.app`` so that fast paths can
    be added here later without paying for them.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["run"], ["runtime"]):
        # The container exec path: argparse only, no typer/rich/docker imports (BENCHMARKS B1).
        from mlpack.cli.fastrun import dispatch

        code = dispatch(args)
        if code is not None:
            sys.exit(code)
    from mlpack.cli.app import run_app

    sys.exit(run_app(args))
