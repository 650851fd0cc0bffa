"""Commands for analysing a repository (analyze)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlpack.cli.output import note, say, table
from mlpack.runtime.options import parse_path

if TYPE_CHECKING:
    from mlpack.analyze.analysis import Package, ProjectAnalysis


def analyze(
    path: Annotated[
        Path,
        typer.Argument(
            parser=parse_path, help="The repository to analyse (default: the current directory)."
        ),
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
        sys.stdout.write(json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n")
    else:
        _summary(result)
    if write:
        from mlpack.config import write_config

        config_path, notes = write_config(path, result)
        for text in notes:
            note(f"note: {text}")
        (note if as_json else say)(f"wrote {config_path}")


def _package_row(p: Package) -> tuple[str, str, str, str]:
    marks = (
        ("undeclared", not p.declared),
        ("not imported", not p.used),
        (p.usage, p.usage != "runtime"),
    )
    flags = [text for text, on in marks if on]
    name = p.name + (f" ({', '.join(flags)})" if flags else "")
    return (name, p.specifier or "-", p.source, ", ".join(p.imports) or "-")


def _summary(result: ProjectAnalysis) -> None:
    say(f"python {result.python.version}  ({result.python.source})")
    header = ("package", "specifier", "source", "imports")
    table(header, [_package_row(p) for p in result.packages], title="packages")
    if result.env:
        rows = [
            (v.name, "secret" if v.secret else (v.default or "-"), ", ".join(v.locations[:3]))
            for v in result.env
        ]
        table(("variable", "default", "read at"), rows, title="environment")
    layout = result.layout
    say("inputs  " + (", ".join(u.path for u in layout.inputs) or "-"))
    say("outputs " + (", ".join(u.path for u in layout.outputs) or "-"))
    for big in layout.large_files:
        say(f"large   {big.path} ({big.size / 2**20:.1f} MiB)")
    for e in result.entrypoints:
        say(f"{e.kind} {' '.join(e.command)}  ({e.source})")
    accel = result.accelerator
    source = f"  ({accel.source})" if accel.source else ""
    say(f"gpu {accel.level}: {'CUDA wheels' if accel.cuda else 'CPU wheels'}{source}")
    if result.system_packages:
        needed = ", ".join(f"{s.name} ({s.required_by})" for s in result.system_packages)
        say(f"system packages {needed}")
    for index in result.indexes:
        say(f"{'index' if index.primary else 'extra index'} {index.url}  ({index.source})")
    for warning in result.warnings:
        note(f"warning: {warning}", style="warning")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(analyze)
