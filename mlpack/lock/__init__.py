"""Locking: resolve for the target image, write mlpack.lock, fetch the pinned files."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: `mlpack lock` on unchanged inputs imports this package
if TYPE_CHECKING:
    from typing import Any

    from mlpack.lock.inputs import LockInputs, inputs_from_config, stale_reason
    from mlpack.lock.lockdata import (
        Lock,
        LockedFile,
        LockedPackage,
        SystemPackagePin,
        Target,
        TorchDecision,
    )
    from mlpack.lock.locker import BaseResolver, LockResult, lock
    from mlpack.lock.lockfile import dumps, loads, read_lock, write_lock
    from mlpack.lock.resolvers import Resolver, ResolveRequest
    from mlpack.lock.wheelhouse import FetchedFile, Wheelhouse, fetch
    from mlpack.lock.why import why

__all__ = [
    "BaseResolver",
    "FetchedFile",
    "Lock",
    "LockInputs",
    "LockResult",
    "LockedFile",
    "LockedPackage",
    "ResolveRequest",
    "Resolver",
    "SystemPackagePin",
    "Target",
    "TorchDecision",
    "Wheelhouse",
    "dumps",
    "fetch",
    "inputs_from_config",
    "loads",
    "lock",
    "read_lock",
    "stale_reason",
    "why",
    "write_lock",
]

# Lazy re-exports: `mlpack lock` on unchanged inputs must not pay for ssl, urllib and the
# resolvers; each name is imported from its module on first use.
_HOME = {
    "dumps": "lockfile", "loads": "lockfile", "read_lock": "lockfile", "write_lock": "lockfile",
    "BaseResolver": "locker", "LockResult": "locker", "lock": "locker",
    "LockInputs": "inputs", "inputs_from_config": "inputs", "stale_reason": "inputs",
    "Lock": "lockdata", "LockedFile": "lockdata", "LockedPackage": "lockdata",
    "SystemPackagePin": "lockdata", "Target": "lockdata", "TorchDecision": "lockdata",
    "Resolver": "resolvers", "ResolveRequest": "resolvers",
    "FetchedFile": "wheelhouse", "Wheelhouse": "wheelhouse", "fetch": "wheelhouse",
    "why": "why",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        msg = f"module 'mlpack.lock' has no attribute {name!r}"
        raise AttributeError(msg)
    import importlib

    return getattr(importlib.import_module(f"mlpack.lock.{module}"), name)
