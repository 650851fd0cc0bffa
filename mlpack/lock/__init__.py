"""Locking: resolve for the target image, write mlpack.lock, fetch the pinned files."""

from __future__ import annotations

from mlpack.lock.locker import (
    BaseResolver,
    LockInputs,
    LockResult,
    ResolvedBase,
    inputs_from_config,
    lock,
    stale_reason,
)
from mlpack.lock.lockfile import LOCK_FILE, dumps, loads, read_lock, write_lock
from mlpack.lock.model import (
    BaseRef,
    EnvEntry,
    Lock,
    LockedFile,
    LockedPackage,
    SystemPackagePin,
    Target,
    TorchDecision,
)
from mlpack.lock.resolvers import InputRequirement, Resolver, ResolveRequest
from mlpack.lock.wheelhouse import FetchedFile, Wheelhouse, fetch
from mlpack.lock.why import why

__all__ = [
    "LOCK_FILE",
    "BaseRef",
    "BaseResolver",
    "EnvEntry",
    "FetchedFile",
    "InputRequirement",
    "Lock",
    "LockInputs",
    "LockResult",
    "LockedFile",
    "LockedPackage",
    "ResolveRequest",
    "ResolvedBase",
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
