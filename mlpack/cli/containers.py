"""Commands for running containers (run, ps, stop, doctor, runtime)."""

from __future__ import annotations

from typing import Annotated

import typer

from mlpack.cli.app import out

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _run(ctx: typer.Context) -> None:
    """Run a command in a new container (mlpack run --help for the flags)."""
    from mlpack.cli.app import state
    from mlpack.cli.fastrun import main_run

    raise typer.Exit(main_run((["--debug"] if state.debug else []) + list(ctx.args)))


def _runtime(ctx: typer.Context) -> None:
    """The OCI runtime command line: create, start, state, kill, delete, run (see --help)."""
    from mlpack.cli.app import state
    from mlpack.cli.fastrun import main_runtime

    raise typer.Exit(main_runtime((["--debug"] if state.debug else []) + list(ctx.args)))


def _ps(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Also show stopped containers.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print ids.")] = False,
) -> None:
    """List containers started by mlpack run (stale ones are cleaned up first)."""
    from mlpack.runtime.embedded import list_containers

    rows = [r for r in list_containers() if all_ or r.status in ("running", "created")]
    if quiet:
        for r in rows:
            out.print(r.id, markup=False)
        return
    out.print(
        f"{'CONTAINER ID':<14}{'NAME':<16}{'IMAGE':<30}{'STATUS':<10}{'CREATED':<22}COMMAND",
        markup=False,
    )
    for r in rows:
        cmd = " ".join(r.command)
        cmd = cmd if len(cmd) <= 40 else cmd[:37] + "..."
        out.print(
            f"{r.id:<14}{r.name:<16}{r.image[-29:]:<30}{r.status:<10}{r.created:<22}{cmd}",
            markup=False,
        )


def _stop(
    containers: Annotated[list[str], typer.Argument(help="Container ids or names.")],
    time_: Annotated[
        float, typer.Option("--time", "-t", help="Seconds to wait before SIGKILL.")
    ] = 10.0,
) -> None:
    """Stop running containers: SIGTERM to pid 1, then SIGKILL after --time seconds."""
    from mlpack.runtime.embedded import stop

    for c in containers:
        stop(c, timeout=time_)
        out.print(c, markup=False)


def _doctor() -> None:
    """Check this host for the runtimes: namespaces, overlayfs, cgroups, seccomp, Docker, GPUs.

    One line per check: status, what was found, and the fix. Exits 1 only when something the
    default (embedded) runtime needs is missing.
    """
    from mlpack.runtime.doctor import doctor

    styles = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "dim"}
    report = doctor()
    for check in report.checks:
        line = f"{check.status:<4}  {check.name}: {check.summary}"
        if check.fix:
            line += f" -> fix: {check.fix}"
        out.print(line, markup=False, style=styles[check.status])
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("run", context_settings=_PASSTHROUGH, add_help_option=False)(_run)
    app.command("runtime", context_settings=_PASSTHROUGH, add_help_option=False)(_runtime)
    app.command("ps")(_ps)
    app.command("stop")(_stop)
    app.command("doctor")(_doctor)
