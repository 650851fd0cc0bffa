"""The JSON form of a ProjectAnalysis (the contract of ``mlpack analyze --json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlpack.analyze.analysis import PathUse, ProjectAnalysis


def _path_use(use: PathUse) -> dict[str, Any]:
    return {"path": use.path, "kind": use.kind, "source": use.source, "exists": use.exists}


def to_json(analysis: ProjectAnalysis) -> dict[str, Any]:
    """Return exactly the documented keys, in a stable order."""
    layout = analysis.layout
    return {
        "python": {"version": analysis.python.version, "source": analysis.python.source},
        "packages": [
            {
                "name": p.name,
                "specifier": p.specifier,
                "source": p.source,
                "imports": list(p.imports),
                "optional": p.optional,
                "declared": p.declared,
                "group": p.usage,
                "reached_from": (
                    {
                        "entrypoint": p.reached_from[0].rpartition(":")[0],
                        "chain": list(p.reached_from),
                    }
                    if p.reached_from
                    else None
                ),
            }
            for p in analysis.packages
        ],
        "env": [
            {
                "name": v.name,
                "default": None if v.secret else v.default,
                "secret": v.secret,
                "locations": list(v.locations),
            }
            for v in analysis.env
        ],
        "layout": {
            "inputs": [_path_use(u) for u in layout.inputs],
            "outputs": [_path_use(u) for u in layout.outputs],
            "code": list(layout.code),
            "large_files": [{"path": f.path, "size": f.size} for f in layout.large_files],
        },
        "entrypoints": [
            {"kind": e.kind, "command": list(e.command), "path": e.path}
            for e in analysis.entrypoints
        ],
        "indexes": [
            {"url": i.url, "primary": i.primary, "source": i.source} for i in analysis.indexes
        ],
        "accelerator": {
            "level": analysis.accelerator.level,
            "cuda": analysis.accelerator.cuda,
            "source": analysis.accelerator.source,
        },
        "system_packages": sorted({s.name for s in analysis.system_packages}),
        "warnings": list(analysis.warnings),
    }
