"""Render the Jinja2 templates shipped with mlpack (Dockerfile, .dockerignore, Slurm, k8s)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from mlpack import __version__


def templates_dir() -> Path:
    """Return the templates folder: inside the installed wheel, else the source checkout's."""
    packaged = Path(str(resources.files("mlpack") / "templates"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def environment() -> jinja2.Environment:
    """A strict environment: an undefined variable is an error, never an empty string."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


def render_template(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context`` (plus ``mlpack_version``)."""
    return environment().get_template(name).render(mlpack_version=__version__, **context)
