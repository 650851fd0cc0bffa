"""The ``mlpack`` typer application: global options, command routing and the usage errors.

Each command group lives in its own module with a ``register(app)`` function. Only the module
of the command being run is imported (``COMMANDS``); help and unknown commands load them all.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated, Final

import typer

from mlpack import __version__
from mlpack.cli.boundary import guarded
from mlpack.cli.output import say
from mlpack.errors import ConfigError

HELP: Final = "Package an ML repository into a reproducible image and run it, without a daemon."
# command -> module under mlpack.cli that registers it
COMMANDS: Final = {
    "analyze": "analyze",
    "lock": "lock",
    "why": "lock",
    "fetch": "lock",
    "pull": "images",
    "push": "images",
    "images": "images",
    "rmi": "images",
    "prune": "images",
    "export": "images",
    "import": "images",
    "base": "images",
    "store": "images",
    "run": "containers",
    "runs": "runs",
    "rerun": "runs",
    "serve": "runs",
    "ps": "containers",
    "stop": "containers",
    "logs": "containers",
    "doctor": "containers",
    "runtime": "containers",
    "build": "build",
    "render": "build",
    "verify": "build",
    "k8s": "k8s",
    "sbom": "build",
    "slurm": "slurm",
}


@dataclass(kw_only=True)
class Flags:
    """The global options, as the root callback parsed them (the boundary reads ``debug``)."""

    debug: bool = False


def _version(value: bool) -> None:
    if value:
        say(f"mlpack {__version__}")
        raise typer.Exit


def _root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug detail on errors.")
    ] = False,
    version: Annotated[  # handled by its eager callback
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Package an ML repository into a reproducible image and run it, without a daemon."""
    ctx.ensure_object(Flags).debug = debug
    from mlpack.home import mlpack_home
    from mlpack.runtime.options import check_home

    check_home(str(mlpack_home()))


def build(argv: list[str]) -> typer.Typer:
    """The application with the command ``argv`` names registered (all of them for help)."""
    app = typer.Typer(
        name="mlpack",
        help=HELP,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(_root)
    word = next((a for a in argv if not a.startswith("-")), None)
    if word in COMMANDS:
        wanted = [COMMANDS[word]]
    else:  # only the root's help lists the commands; --version and errors need none
        wanted = list(dict.fromkeys(COMMANDS.values())) if "--help" in argv else []
    for name in wanted:
        importlib.import_module(f"mlpack.cli.{name}").register(app)
    if word in COMMANDS:
        _keep_only(app, word)
    return app


def _keep_only(app: typer.Typer, word: str) -> None:
    """Drop the commands other than ``word`` that its module registered: typer inspects the
    signature of every registered command when it builds the command line (milliseconds each),
    and ``mlpack WORD ...`` runs only one of them.
    """
    from typer.main import get_command_name

    app.registered_commands = [
        c
        for c in app.registered_commands
        if (c.name or (c.callback and get_command_name(c.callback.__name__))) == word
    ]
    app.registered_groups = [g for g in app.registered_groups if g.name == word]


def _usage(exc: typer.TyperException) -> ConfigError:
    """A usage error (unknown option, bad choice, missing argument) as an error and a hint."""
    context = getattr(exc, "ctx", None)
    where = context.command_path if context is not None else "mlpack"
    return ConfigError(exc.format_message(), hint=f"see `{where} --help`")


def _invoke(app: typer.Typer, argv: list[str], flags: Flags) -> int:
    command = typer.main.get_command(app)
    try:
        with command.make_context("mlpack", list(argv), obj=flags) as ctx:
            command.invoke(ctx)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort as exc:  # click's word for Ctrl-C at a prompt
        raise KeyboardInterrupt from exc
    except typer.TyperException as exc:
        raise _usage(exc) from exc
    return 0


def run_app(argv: list[str], app: typer.Typer | None = None) -> int:
    """Run ``mlpack ARGV`` and return the exit code (``app``: a prebuilt application)."""
    flags = Flags()

    def work() -> int:
        return _invoke(build(argv) if app is None else app, argv, flags)

    return guarded(work, debug=lambda: flags.debug)
