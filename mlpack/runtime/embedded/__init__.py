"""The embedded runtime: runC's role in Python, through a single-threaded helper process.

The package imports nothing itself: ``mlpack run`` imports ``spawn`` first thing to start the
helper interpreter early (BENCHMARKS B1), and the rest of the runtime loads from ``runtime`` on
first use of the names below.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    from mlpack.runtime.embedded.runtime import (
        ContainerInfo,
        EmbeddedRuntime,
        ResolvedImage,
        list_containers,
        relaying,
        stop,
    )

__all__ = [
    "ContainerInfo",
    "EmbeddedRuntime",
    "ResolvedImage",
    "list_containers",
    "relaying",
    "stop",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from mlpack.runtime.embedded import runtime

        return getattr(runtime, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
