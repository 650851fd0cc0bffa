"""Commands for the image store, registries, export/import and base images (pull, push, images, rmi, prune, store, export, import, base)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
