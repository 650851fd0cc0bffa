"""Composition only: each stage gets the store, the base resolver and the runtime it needs here.

The stages import no concrete backend (tests/unit/test_layering.py checks it): ``lock`` is
handed a base resolver and a way to run pip-compile inside the base image, both picked below.
The CLI calls these functions and prints what they return.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlpack.config import config_from_analysis, config_location, import_settings, load_config
from mlpack.errors import ConfigError, LockError
from mlpack.home import mlpack_home
from mlpack.lock import stamp
from mlpack.lock.inputs import LockInputs, inputs_from_config, stale_reason
from mlpack.lock.locker import LockResult, lock
from mlpack.lock.lockfile import dumps, read_lock
from mlpack.lock.runner import ImageRunner
from mlpack.lock.wheelhouse import Wheelhouse, fetch
from mlpack.paths import CONFIG_FILE, LOCK_FILE
from mlpack.progress import reporter

if TYPE_CHECKING:
    from mlpack.config import ProjectConfig
    from mlpack.lock.indexes import Indexes
    from mlpack.lock.lockdata import ResolverName
    from mlpack.lock.runner import Runner
    from mlpack.oci.store import Store
    from mlpack.vocabulary import BaseImage

# Where Debian and most distributions keep the system's CA bundle.
_SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


class StoreBaseResolver:
    """Base images through ``mlpack.base`` (registry, else a Debian build) into the OCI store."""

    def __init__(self, store: Store | None = None) -> None:
        """:param store: where base images go (default: the store in mlpack's home)."""
        self._store = store

    def resolve(self, python: str, *, explicit: str | None) -> BaseImage:
        """The pinned base for Python ``python`` (X.Y), or the ``explicit`` reference."""
        # Imported here: a lock that keeps its base never loads the registry client or store.
        from mlpack.base.resolve import resolve_base
        from mlpack.oci.store import Store

        return resolve_base(python, explicit=explicit, store=self._store or Store.default())


def embedded_image_runner(image: str, tools: Path) -> Runner:
    """A runner inside ``image`` on the embedded runtime, with the host's CA bundle."""
    # Imported here: only pip-tools on a host without the target's Python needs the runtime.
    from mlpack.runtime.embedded import EmbeddedRuntime

    ca = Path(os.environ.get("SSL_CERT_FILE", _SYSTEM_CA))
    return ImageRunner(
        EmbeddedRuntime(), image, tools_dir=tools, ca_bundle=ca if ca.exists() else None
    )


def lock_path(root: Path) -> Path:
    """Where a project's lock lives."""
    return root / LOCK_FILE


def lock_is_current(root: Path, *, check: bool) -> bool:
    """True when the no-op memo says ``root``'s lock is up to date (reads bytes only)."""
    return stamp.is_current(root, "check" if check else "lock")


def project_lock_inputs(
    root: Path, *, resolver: ResolverName = "uv", platform: str | None = None
) -> LockInputs:
    """The lock inputs of the project at ``root``: its mlpack.toml, else its analysis."""
    config = project_config(root)
    python, fallback = python_choice(root, config)
    return inputs_from_config(
        replace(config, python=python),
        resolver=resolver,
        platform=platform,
        fallback_pythons=fallback,
    )


def project_config(root: Path) -> ProjectConfig:
    """The project's config; without one, what ``analyze --write`` would write, in memory."""
    if has_config(root):
        return load_config(root)
    from mlpack.analyze import analyze

    reporter().notice(
        f"no {CONFIG_FILE} in {root}: using its analysis in memory "
        "(`mlpack analyze --write` saves it for review)"
    )
    return config_from_analysis(root, analyze(root, settings=import_settings(root)))


def has_config(root: Path) -> bool:
    """True when ``root`` has mlpack.toml or a [tool.mlpack] table."""
    return config_location(root)[0].exists()


def python_choice(root: Path, config: ProjectConfig) -> tuple[str, tuple[str, ...]]:
    """The Python to lock for first and the older ones to try, newest first.

    A version the user wrote into the config, or a file pins, is kept as it is. One the
    analysis chose (the default, or the newest a range such as ``>=3.8`` allows) is the lock's
    to choose: the newest supported version for which the packages resolve with wheels.
    """
    from mlpack.analyze.python_version import DEFAULT_PYTHON, unpinned_versions

    if config.python_source == CONFIG_FILE:
        return config.python, ()
    versions = unpinned_versions(root)
    chosen_by_analysis = DEFAULT_PYTHON if config.python_source.startswith("rule:") else None
    if not versions or config.python != (chosen_by_analysis or versions[0]):
        return config.python, ()  # pinned by a file, or edited by hand
    return versions[0], versions[1:]


def check_lock(root: Path, *, resolver: ResolverName = "uv", platform: str | None = None) -> Path:
    """The project's lock path when it is up to date; LockError with the reason when stale."""
    memo = _memo(root, upgrade=False, resolver=resolver, platform=platform)
    path = lock_path(root)
    reason = stale_reason(project_lock_inputs(root, resolver=resolver, platform=platform), path)
    if reason is not None:
        msg = f"{LOCK_FILE} is stale: {reason}"
        raise LockError(msg, hint="run `mlpack lock` and commit")
    if memo is not None:
        memo.remember("check")
    return path


def lock_project(
    root: Path,
    *,
    upgrade: bool = False,
    packages: tuple[str, ...] = (),
    resolver: ResolverName = "uv",
    platform: str | None = None,
    ca_cert: Path | None = None,
) -> LockResult:
    """Lock the project at ``root`` (a no-op when its inputs are unchanged).

    :param packages: with ``upgrade``, upgrade only these (default: all).
    """
    memo = _memo(root, upgrade=upgrade, resolver=resolver, platform=platform)
    result = lock(
        project_lock_inputs(root, resolver=resolver, platform=platform),
        lock_path(root),
        root=root,
        home=Path(mlpack_home()),
        base_resolver=StoreBaseResolver(),
        image_runner=embedded_image_runner,
        upgrade=upgrade and not packages,
        upgrade_packages=packages,
        ca_cert=ca_cert,
    )
    if memo is not None:
        memo.remember("lock", written=dumps(result.lock) if result.resolved else None)
    return result


def _memo(
    root: Path, *, upgrade: bool, resolver: ResolverName, platform: str | None
) -> stamp.Memo | None:
    """The no-op memo serves only what ``lock_is_current`` reads: no options but ``check``."""
    if upgrade or resolver != "uv" or platform is not None or not has_config(root):
        return None  # without a config the inputs are the code, which the memo does not read
    return stamp.Memo(root)


def fetch_project(root: Path, *, ca_cert: Path | None = None) -> Wheelhouse:
    """Download every file the project's lock pins for its target into the wheelhouse."""
    lock_file = read_lock(lock_path(root))
    # Credentials come from mlpack.toml / pip's configuration at fetch time, never the lock.
    indexes: Indexes | None
    try:
        indexes = project_lock_inputs(root).indexes
    except ConfigError:
        indexes = None
    locked = (lock_file.index_url, *lock_file.extra_index_urls)
    if indexes is not None and indexes.public().all != locked:
        indexes = None  # the config moved on: fetch from the lock's own (public) indexes
    return fetch(lock_file, home=Path(mlpack_home()), indexes=indexes, ca_cert=ca_cert)
