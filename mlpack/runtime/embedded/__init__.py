"""The embedded runtime: runC's role in Python, through a single-threaded helper process.

The package imports nothing itself, because the helper (``python -I -S``, standard library and
``mlpack.oslib`` only) is a subpackage of it: the names below load from ``runtime`` on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # the helper (python -I -S) imports this package: no typing (mypy: True)

if TYPE_CHECKING:
    from mlpack.runtime.embedded.launcher import relaying
    from mlpack.runtime.embedded.runtime import (
        ContainerInfo,
        EmbeddedRuntime,
        ResolvedImage,
        list_containers,
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
    if name == "relaying":
        from mlpack.runtime.embedded import launcher

        return launcher.relaying
    if name in __all__:
        from mlpack.runtime.embedded import runtime

        return getattr(runtime, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
