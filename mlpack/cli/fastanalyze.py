"""``mlpack analyze PATH --json`` without typer or rich: JSON out, error/hint on failure."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def dispatch(args: list[str]) -> int | None:
    """Handle ``analyze [PATH] --json [--debug]``; return None for anything else."""
    rest = args[1:]
    if "--json" not in rest:
        return None
    debug = "--debug" in rest
    paths = [a for a in rest if a not in ("--json", "--debug")]
    if len(paths) > 1 or any(p.startswith("-") for p in paths):
        return None  # other options (--write, --help): the full CLI handles them
    from mlpack.analyze import analyze
    from mlpack.analyze.report import to_json
    from mlpack.errors import MlpackError

    try:
        result = analyze(Path(paths[0]) if paths else Path())
    except MlpackError as exc:
        if debug:
            sys.stderr.write("".join(traceback.format_exception(exc)))
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        return exc.exit_code
    sys.stdout.write(json.dumps(to_json(result), indent=2, ensure_ascii=False) + "\n")
    return 0
