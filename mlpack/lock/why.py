"""``mlpack why``: the chains of packages that lead from an input to a pin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

from mlpack.errors import LockError

if TYPE_CHECKING:
    from mlpack.lock.lockdata import Lock


def why(lock: Lock, name: str, *, limit: int = 20) -> tuple[tuple[str, ...], ...]:
    """Chains ``(input, pkg, ..., name)`` that brought ``name`` in, shortest first.

    ``input`` is the declared file or import (``"requirements.txt:3"``) that asked for the
    first package. At most ``limit`` chains (wide graphs have many).
    """
    target = canonicalize_name(name)
    by_name = {p.name: p for p in lock.packages}
    dropped = next((d for d in lock.dropped if d.name == target), None)
    if target not in by_name and dropped is not None:
        msg = f"{name} is not in mlpack.lock: the lock left it out ({dropped.reason})"
        hint = (
            f"it was inferred from the import at {dropped.source}; declare the distribution "
            "that provides it, or list the import in [dependencies] ignore-imports"
        )
        raise LockError(msg, hint=hint)
    if target not in by_name:
        msg = f"{name} is not in mlpack.lock"
        close = [p for p in by_name if target in p or p in target]
        hint = f"did you mean {', '.join(sorted(close)[:3])}?" if close else "check the name"
        raise LockError(msg, hint=hint)
    chains: list[tuple[str, ...]] = []

    def walk(pkg: str, path: tuple[str, ...]) -> None:
        if len(chains) >= limit * 5:
            return
        entry = by_name.get(pkg)
        if entry is None:
            return
        for source in entry.inputs:
            chains.append((source, pkg, *path))
        for parent in entry.parents:
            if parent not in path and parent != pkg:
                walk(parent, (pkg, *path))

    walk(target, ())
    unique = sorted(set(chains), key=lambda c: (len(c), c))
    return tuple(unique[:limit])
