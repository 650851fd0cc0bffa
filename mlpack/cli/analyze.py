"""Commands for analysing a repository (analyze)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mlpack.analyze.analysis import ProjectAnalysis
from mlpack.cli.app import err, out


def analyze(
    path: Annotated[
        Path, typer.Argument(help="The repository to analyse (default: the current directory).")
    ] = Path(),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print exactly one JSON object instead of a summary.")
    ] = False,
    write: Annotated[
        bool,
        typer.Option(
            "--write",
            help="Create or update mlpack.toml (or [tool.mlpack]); existing values are kept.",
        ),
    ] = False,
) -> None:
    """Pin the Python version, packages, env vars, layout and entrypoints of a repo, with sources.

    Nothing in the repo is executed and the network is never used. Files that cannot be read or
    parsed are skipped and listed under warnings.
    """
    from mlpack.analyze import analyze as run_analysis
    from mlpack.analyze.report import to_json
    from mlpack.config import import_settings

    result = run_analysis(path, settings=import_settings(path))
    if as_json:
        # Plain print: rich would wrap long lines and break the JSON.
        print(json.dumps(to_json(result), indent=2, ensure_ascii=False))
    else:
        _summary(result)
    if write:
        from mlpack.config import write_config

        config_path, notes = write_config(path, result)
        for note in notes:
            err.print(f"note: {note}", markup=False)
        (err if as_json else out).print(f"wrote {config_path}", markup=False)


def _summary(result: ProjectAnalysis) -> None:
    out.print(f"[bold]python[/bold] {result.python.version}  [dim]({result.python.source})[/dim]")
    table = Table(
        "package", "specifier", "source", "imports", title="packages", title_justify="left"
    )
    for p in result.packages:
        flags = []
        if not p.declared:
            flags.append("undeclared")
        if not p.used:
            flags.append("not imported")
        if p.usage != "runtime":
            flags.append(p.usage)
        name = p.name + (f" [dim]({', '.join(flags)})[/dim]" if flags else "")
        table.add_row(name, p.specifier or "-", p.source, ", ".join(p.imports) or "-")
    out.print(table)
    if result.env:
        env = Table("variable", "default", "read at", title="environment", title_justify="left")
        for v in result.env:
            default = "[red]secret[/red]" if v.secret else (v.default or "-")
            env.add_row(v.name, default, ", ".join(v.locations[:3]))
        out.print(env)
    layout = result.layout
    out.print("[bold]inputs[/bold]  " + (", ".join(u.path for u in layout.inputs) or "-"))
    out.print("[bold]outputs[/bold] " + (", ".join(u.path for u in layout.outputs) or "-"))
    for big in layout.large_files:
        out.print(f"[bold]large[/bold]   {big.path} ({big.size / 2**20:.1f} MiB)")
    for e in result.entrypoints:
        out.print(f"[bold]{e.kind}[/bold] {' '.join(e.command)}  [dim]({e.source})[/dim]")
    accel = result.accelerator
    wheels = "CUDA wheels" if accel.cuda else "CPU wheels"
    src = f"  [dim]({accel.source})[/dim]" if accel.source else ""
    out.print(f"[bold]gpu[/bold] {accel.level}: {wheels}{src}")
    if result.system_packages:
        out.print(
            "[bold]system packages[/bold] "
            + ", ".join(f"{s.name} ({s.required_by})" for s in result.system_packages)
        )
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False, style="yellow")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(analyze)
