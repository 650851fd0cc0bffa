"""Commands for running containers (run, ps, stop, doctor, runtime)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
