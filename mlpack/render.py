"""Render the Jinja2 templates shipped with mlpack (Dockerfile, .dockerignore, Slurm, k8s)."""

from __future__ import annotations

import json
import shlex
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from mlpack import __version__
from mlpack.errors import BuildError
from mlpack.oslib.fs import atomic_write

if TYPE_CHECKING:
    from mlpack.spec import ImageSpec, WheelStep


def templates_dir() -> Path:
    """Return the templates folder: inside the installed wheel, else the source checkout's."""
    packaged = Path(str(resources.files("mlpack") / "templates"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def docker_quote(value: str) -> str:
    r"""A double-quoted Dockerfile word: ``\``, ``"`` and ``$`` escaped (no variable expansion).

    Not jinja2's ``tojson``: that escapes ``'<>&`` as ``\u00XX``, which Docker does not decode.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def json_array(values: Any) -> str:
    r"""A JSON array for the exec form of CMD and VOLUME (UTF-8, not ``\u`` escapes)."""
    return json.dumps(list(values), ensure_ascii=False)


def environment() -> jinja2.Environment:
    """A strict environment: an undefined variable is an error, never an empty string."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    env.filters["dquote"] = docker_quote
    env.filters["json_array"] = json_array
    env.filters["q"] = shlex.quote  # POSIX shell quoting, for the Slurm batch script
    return env


def render_template(name: str, **context: Any) -> str:
    """Render ``templates/<name>`` with ``context`` (plus ``mlpack_version``)."""
    return environment().get_template(name).render(mlpack_version=__version__, **context)


def render_dockerfile(spec: ImageSpec) -> str:
    """The spec as a classic-builder Dockerfile (REPRODUCIBILITY.md §8)."""
    from mlpack.spec import EJECT_DIR, commands

    venv = next((s.name for s in spec.steps if s.role == "interpreter"), "")
    return render_template(
        "Dockerfile.j2",
        spec=spec,
        venv_stage=venv,
        eject_dir=EJECT_DIR,
        compile_command=partial(compile_command, spec),
        debs_dir=commands.DEBS,
        out_dir=commands.OUT,
        log_dir=commands.LOG,
        install=commands.INSTALL,
        checksums=commands.CHECKSUMS,
        deleted=commands.DELETED,
    )


def compile_command(spec: ImageSpec, step: WheelStep, staged: str) -> str:
    """The shell command that compiles ``step``'s site-packages staged under ``staged`` (the
    same script and interpreter as the embedded builder, so the same .pyc bytes).
    """
    from mlpack.spec.commands import compile_command as command

    folder = staged + step.site_packages.removeprefix(step.prefix)
    return command(spec.interpreter, folder, step.site_packages)


def render_dockerignore(spec: ImageSpec) -> str:
    """The code step's exclusions as a .dockerignore."""
    from mlpack.spec import CodeStep

    code = next((s for s in spec.steps if isinstance(s, CodeStep)), None)
    return render_template("dockerignore.j2", excludes=code.excludes if code else ())


def context_files(spec: ImageSpec) -> dict[str, bytes]:
    """The files under ``.mlpack/`` that the Dockerfile's builder stages read, by context path
    (the fetched wheels and .deb files aside): requirements per wheel step, the system stage's
    install script and checksums.
    """
    from mlpack.spec import EJECT_DIR, SystemStep, WheelStep
    from mlpack.spec.commands import system_files

    files: dict[str, bytes] = {}
    for step in spec.steps:
        if isinstance(step, WheelStep):
            files[f"{EJECT_DIR}/requirements/{step.name}.txt"] = step.requirements().encode()
        elif isinstance(step, SystemStep):
            for name, data in system_files(
                tuple((d.filename, d.sha256) for d in step.debs)
            ).items():
                files[f"{EJECT_DIR}/debs/{name}"] = data
    return files


def eject(spec: ImageSpec, out: Path) -> tuple[Path, ...]:
    """Write Dockerfile, .dockerignore, .mlpack/requirements/<group>.txt and the system stage's
    .mlpack/debs/ script and checksums into ``out``.

    Returns the paths written. The requirements and the wheelhouse live under ``.mlpack/`` of
    the build context, which the .dockerignore keeps out of the code layer (but not out of the
    context: the builder stages COPY them, and the final stage never does).
    """
    files = {
        "Dockerfile": render_dockerfile(spec).encode("utf-8"),
        ".dockerignore": render_dockerignore(spec).encode("utf-8"),
        **context_files(spec),
    }
    written = []
    try:
        for rel, data in files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
            written.append(path)
    except OSError as exc:
        msg = f"cannot write the rendered files into {out}: {exc.strerror}"
        raise BuildError(msg, hint="choose a writable folder with -o") from exc
    return tuple(written)
