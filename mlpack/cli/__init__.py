"""The command line: the only place that prints, shows progress and chooses exit codes."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from typing import NoReturn


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the ``mlpack`` command."""
    from mlpack.cli.app import run_app

    sys.exit(run_app(sys.argv[1:] if argv is None else argv))
