"""What decides a lock, and its hash: an unchanged hash makes a re-lock a no-op."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from packaging.requirements import InvalidRequirement, Requirement

from mlpack.analyze.debian import same_names
from mlpack.errors import LockError
from mlpack.lock import torch as torch_mod
from mlpack.lock.indexes import Indexes, choose_indexes
from mlpack.lock.lockfile import loads
from mlpack.lock.stamp import ALGORITHM
from mlpack.vocabulary import PLATFORMS, as_platform

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.config import ProjectConfig
    from mlpack.vocabulary import EnvSpec, PackageSpec, Platform, ResolverName


@dataclass(frozen=True, kw_only=True)
class LockInputs:
    """Everything that decides a lock; its hash makes an unchanged re-lock a no-op."""

    requirements: tuple[PackageSpec, ...]
    python: str  # "3.11": the version tried first
    # Older versions the lock may choose, newest first, when ``python`` is not pinned: the
    # lock takes the newest for which the packages resolve (with wheels). Empty: pinned.
    fallback_pythons: tuple[str, ...] = ()
    # The declarations that allowed those versions, for the note (explains; not in the digest).
    python_allowed_by: str = ""
    # Where a pinned ``python`` is set, for the hint when it cannot resolve: "mlpack.toml" or
    # the file that pins it (".python-version:1"; explains; not in the digest).
    python_pinned_in: str = ""
    platform: Platform
    base: str | None = None
    indexes: Indexes = field(default_factory=Indexes)
    system_packages: tuple[str, ...] = ()
    env: tuple[EnvSpec, ...] = ()
    cuda: bool = False
    torch_variant: str | None = None
    resolver: ResolverName = "uv"

    def digest(self) -> str:
        """sha256 of the canonical JSON of the inputs, credentials stripped."""
        public = self.indexes.public()
        doc: dict[str, Any] = {
            "algorithm": ALGORITHM,
            "requirements": sorted([r.requirement, r.source] for r in self.requirements),
            "python": self.python,
            "fallback-pythons": list(self.fallback_pythons),
            "platform": self.platform,
            "base": self.base,
            "indexes": [public.index_url, *public.extra_index_urls],
            "system": sorted(self.system_packages),
            "env": sorted([e.name, None if e.secret else e.default, e.secret] for e in self.env),
            "cuda": self.cuda,
            "torch_variant": self.torch_variant,
            "resolver": self.resolver,
        }
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def inputs_from_config(
    config: ProjectConfig,
    *,
    resolver: ResolverName = "uv",
    platform: str | None = None,
    fallback_pythons: tuple[str, ...] = (),
    python_allowed_by: str = "",
    python_pinned_in: str = "",
) -> LockInputs:
    """The lock inputs of a project config (``platform`` overrides the config's).

    :param fallback_pythons: older versions to try, newest first, when the config's Python was
        not pinned by the project (see ``LockInputs.fallback_pythons``).
    :param python_allowed_by: the declarations that allowed them, for the lock's note.
    :param python_pinned_in: where a pinned version is set, for the hint when it fails.
    """
    chosen = as_platform(platform) if platform is not None else config.platform
    if chosen is None:
        msg = f"platform {platform!r} is not supported"
        raise LockError(msg, hint=f"use one of {', '.join(PLATFORMS)}")
    return LockInputs(
        requirements=config.packages,
        python=config.python,
        fallback_pythons=fallback_pythons,
        python_allowed_by=python_allowed_by,
        python_pinned_in=python_pinned_in,
        platform=chosen,
        base=config.base,
        indexes=torch_mod.torch_indexes(
            choose_indexes(config.index_url, config.extra_index_urls),
            variant=config.torch_variant,
        ),
        system_packages=config.system_packages,
        env=config.env,
        cuda=config.cuda,
        torch_variant=config.torch_variant,
        resolver=resolver,
    )


# Files an inferred requirement's source never names: declarations written in Python.
_DECLARING_SCRIPTS: Final = frozenset({"setup.py", "noxfile.py", "conanfile.py"})


def is_inferred(spec: PackageSpec) -> bool:
    """True when ``spec`` came from an import in the code rather than a declaration.

    Analysis records an inferred package's first import as its source (``train.py:4``, older
    configs ``import: train.py:4``); a declared one names its file (``requirements.txt:3``).
    """
    if spec.source.startswith("import"):
        return True
    name = spec.source.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return name.endswith((".py", ".pyw", ".ipynb")) and name not in _DECLARING_SCRIPTS


def validate_requirements(requirements: tuple[PackageSpec, ...]) -> None:
    """LockError naming the file and line of the first malformed requirement."""
    for r in requirements:
        try:
            Requirement(r.requirement)
        except InvalidRequirement as exc:
            msg = f"malformed requirement {r.requirement!r} at {r.source}: {exc}"
            raise LockError(msg, hint=f"fix line {r.source} (PEP 508 syntax)") from exc


def stale_reason(inputs: LockInputs, lock_path: Path) -> str | None:
    """None when ``lock_path`` was made from ``inputs``; else a one-line reason."""
    if not lock_path.exists():
        return f"{lock_path.name} does not exist"
    try:
        text = lock_path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"{lock_path.name} cannot be read ({exc.strerror})"
    # Fast path: find the hash line without parsing the whole file.
    for line in text.splitlines()[:8]:
        if line.startswith("input-hash = "):
            recorded = json.loads(line.split("=", 1)[1].strip())
            if recorded == inputs.digest():
                return None
            return f"{_what_changed(inputs, text)} since {lock_path.name} was written"
    return f"{lock_path.name} has no input hash"


def _what_changed(inputs: LockInputs, text: str) -> str:
    """Name the first input that differs from what the lock records (best effort)."""
    try:
        old = loads(text)
    except LockError:
        return "the inputs changed"
    public = inputs.indexes.public()
    checks = (
        (old.target.python_minor != inputs.python, f"python changed to {inputs.python}"),
        (old.target.platform != inputs.platform, f"platform changed to {inputs.platform}"),
        (old.resolver != inputs.resolver, f"the resolver changed to {inputs.resolver}"),
        (
            (old.index_url, *old.extra_index_urls) != public.all,
            "the package indexes changed",
        ),
        (
            not same_names(
                (p.name for p in old.system_packages if p.requested), inputs.system_packages
            ),
            "the system packages changed",
        ),
        (
            sorted((e.name, e.default, e.secret) for e in old.env)
            != sorted((e.name, None if e.secret else e.default, e.secret) for e in inputs.env),
            "the environment variables changed",
        ),
    )
    for changed, why in checks:
        if changed:
            return why
    locked = {v for p in old.packages for v in p.inputs}
    for r in inputs.requirements:
        if r.source not in locked:
            return f"the requirements changed ({r.requirement} at {r.source})"
    return "the requirements or settings changed"
