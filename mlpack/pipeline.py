"""Composition only: each stage gets the store, the base resolver and the runtime it needs here.

The stages import no concrete backend (tests/unit/test_layering.py checks it): ``lock`` is
handed a base resolver and a way to run pip-compile inside the base image, both picked below.
The CLI calls these functions and prints what they return.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlpack.config import config_from_analysis, config_location, import_settings, load_config
from mlpack.errors import BuildError, ConfigError, LockError, MlpackError
from mlpack.home import mlpack_home
from mlpack.lock import stamp
from mlpack.lock.inputs import LockInputs, inputs_from_config, stale_reason
from mlpack.lock.locker import LockResult, lock
from mlpack.lock.lockfile import dumps, read_lock
from mlpack.lock.runner import ImageRunner
from mlpack.paths import CONFIG_FILE, LOCK_FILE
from mlpack.progress import reporter

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mlpack.build.protocol import Builder, BuildResult, StepRunner
    from mlpack.build.verify import Verification
    from mlpack.config import ProjectConfig
    from mlpack.lock.indexes import Indexes
    from mlpack.lock.lockdata import Lock
    from mlpack.lock.locker import BaseResolver
    from mlpack.lock.runner import Runner
    from mlpack.lock.wheelhouse import Wheelhouse
    from mlpack.oci.store import Store
    from mlpack.spec import ImageSpec
    from mlpack.vocabulary import Backend, BaseImage, Compression, Platform, ResolverName

# Where Debian and most distributions keep the system's CA bundle.
_SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


class StoreBaseResolver:
    """Base images through ``mlpack.base`` (registry, else a Debian build) into the OCI store."""

    def __init__(self, store: Store | None = None) -> None:
        """:param store: where base images go (default: the store in mlpack's home)."""
        self._store = store

    def resolve(self, python: str, *, explicit: str | None, platform: Platform) -> BaseImage:
        """The pinned base for Python ``python`` (X.Y) on ``platform``, or ``explicit``'s."""
        # Imported here: a lock that keeps its base never loads the registry client or store.
        from mlpack.base.resolve import resolve_base
        from mlpack.oci.store import Store

        return resolve_base(
            python, explicit=explicit, store=self._store or Store.default(), platform=platform
        )


def embedded_image_runner(image: str, tools: Path) -> Runner:
    """A runner inside ``image`` on the embedded runtime, with the host's CA bundle."""
    # Imported here: only pip-tools on a host without the target's Python needs the runtime.
    from mlpack.runtime.embedded import EmbeddedRuntime

    ca = Path(os.environ.get("SSL_CERT_FILE", _SYSTEM_CA))
    return ImageRunner(
        EmbeddedRuntime(), image, tools_dir=tools, ca_bundle=ca if ca.exists() else None
    )


def store_rootfs(image: str) -> Path:
    """The merged files of ``image`` in the default store (where the lock's bases go)."""
    from mlpack.oci.snapshots import rootfs
    from mlpack.oci.store import Store

    return rootfs(Store.default(), image)


def lock_path(root: Path) -> Path:
    """Where a project's lock lives."""
    return root / LOCK_FILE


def project_lock_inputs(
    root: Path, *, resolver: ResolverName = "uv", platform: str | None = None
) -> LockInputs:
    """The lock inputs of the project at ``root``: its mlpack.toml, else its analysis."""
    config = project_config(root, note=reporter().notice)
    return config_lock_inputs(root, config, resolver=resolver, platform=platform)


def config_lock_inputs(
    root: Path,
    config: ProjectConfig,
    *,
    resolver: ResolverName = "uv",
    platform: str | None = None,
) -> LockInputs:
    """The lock inputs of ``config`` (``lock`` and ``build`` agree on them, so on staleness)."""
    from mlpack.analyze.python_version import python_allowance

    python, fallback = python_choice(root, config)
    return inputs_from_config(
        replace(config, python=python),
        resolver=resolver,
        platform=platform,
        fallback_pythons=fallback,
        python_allowed_by=python_allowance(root) if fallback else "",
        # The config's python wins over the file it was taken from, once the config exists.
        python_pinned_in=CONFIG_FILE if has_config(root) else config.python_source,
    )


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
        base_rootfs=store_rootfs,
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
    """The no-op memo serves only what ``stamp.is_current`` reads: no options but ``check``."""
    if upgrade or resolver != "uv" or platform is not None or not has_config(root):
        return None  # without a config the inputs are the code, which the memo does not read
    return stamp.Memo(root)


def fetch_project(root: Path, *, ca_cert: Path | None = None) -> Wheelhouse:
    """Download every file the project's lock pins for its target into the wheelhouse."""
    return fetch_lock(root, read_lock(lock_path(root)), ca_cert=ca_cert)


def fetch_lock(
    root: Path,
    lock_file: Lock,
    *,
    config: ProjectConfig | None = None,
    ca_cert: Path | None = None,
) -> Wheelhouse:
    """Download every file ``lock_file`` pins into the wheelhouse, with the project's indexes.

    :param config: the project's config when the caller has it (else it is read, or analysed).
    """
    # Imported here: only builds fetch, and its HTTP client would delay every lock's resolve.
    from mlpack.lock.wheelhouse import fetch

    # Credentials come from mlpack.toml / pip's configuration at fetch time, never the lock.
    # Only the indexes are needed: the lock inputs' Python choice (which reads the project's
    # version files) is not.
    indexes: Indexes | None
    try:
        config = config or project_config(root, note=reporter().notice)
        indexes = inputs_from_config(config).indexes
    except ConfigError:
        indexes = None
    locked = (lock_file.index_url, *lock_file.extra_index_urls)
    if indexes is not None and indexes.public().all != locked:
        indexes = None  # the config moved on: fetch from the lock's own (public) indexes
    return fetch(lock_file, home=Path(mlpack_home()), indexes=indexes, ca_cert=ca_cert)


def project_config(root: Path, *, note: Callable[[str], None]) -> ProjectConfig:
    """The project's config; without one, the analysis's, in memory (said in one line).

    A command reads it once and hands it to each stage (lock, plan, fetch, layout), so the
    analysis runs once per command and a long-lived caller that asks again sees an edited tree.
    """
    if has_config(root):
        config = load_config(root)
        drift = python_drift(root, config)
        if drift:
            note(drift)
        return config
    from mlpack.analyze import analyze

    note(f"no {CONFIG_FILE}: analysing the project in memory (`mlpack analyze --write` keeps it)")
    return config_from_analysis(root, analyze(root, settings=import_settings(root)))


def python_drift(root: Path, config: ProjectConfig) -> str | None:
    """What to say when the file the config's Python was taken from now says another one: the
    config wins (``analyze --write`` never changes a value), which an edit of the file alone
    would not show.
    """
    source = config.python_source
    if source == CONFIG_FILE or source.startswith("rule:"):
        return None
    from mlpack.analyze.python_version import detect_python

    try:
        now = detect_python(root, warnings=[])
    except MlpackError:
        return None  # the files conflict now: analyze says so
    if now.version == config.python or now.source.startswith("rule:"):
        return None
    return (
        f"{CONFIG_FILE} sets Python {config.python}, taken from {source}; the project's files "
        f"now say {now.version} ({now.source}): {CONFIG_FILE} wins, so edit its python line "
        f"to follow them"
    )


def project_lock(
    root: Path,
    config: ProjectConfig,
    *,
    frozen: bool,
    note: Callable[[str], None],
    platform: str | None = None,
) -> Lock:
    """The project's lock; when missing or stale, a fresh one in memory (or, ``frozen``, an error).

    :param platform: the target platform (default: the config's); a lock for another one is stale.
    """
    path = lock_path(root)
    inputs = config_lock_inputs(root, config, platform=platform)
    reason = stale_reason(inputs, path)
    if reason is None:
        return read_lock(path)
    if frozen:
        msg = f"--frozen needs an up-to-date {LOCK_FILE}: {reason}"
        raise LockError(msg, hint="run `mlpack lock` and commit it, or build without --frozen")
    note(f"{reason}: locking in memory (`mlpack lock` keeps the lock)")
    with tempfile.TemporaryDirectory(prefix="mlpack-lock-") as tmp:
        return lock(
            inputs,
            Path(tmp) / LOCK_FILE,
            root=root,
            home=Path(mlpack_home()),
            base_resolver=StoreBaseResolver(),
            image_runner=embedded_image_runner,
            base_rootfs=store_rootfs,
        ).lock


def plan_project(
    root: Path,
    config: ProjectConfig,
    *,
    frozen: bool,
    note: Callable[[str], None],
    platform: str | None = None,
) -> tuple[ImageSpec, Lock]:
    """The lock and provenance of the project at ``root``, planned with ``config``."""
    from mlpack.provenance import read_provenance
    from mlpack.spec import plan

    lock_file = project_lock(root, config, frozen=frozen, note=note, platform=platform)
    return plan(lock_file, config, provenance=read_provenance(root)), lock_file


def render_project(
    root: Path, out: Path, *, frozen: bool, note: Callable[[str], None]
) -> tuple[Path, ...]:
    """Write the project's Dockerfile, .dockerignore and requirements files into ``out``."""
    from mlpack.render import eject

    spec, _ = plan_project(root, project_config(root, note=note), frozen=frozen, note=note)
    return eject(spec, out)


def ensure_base(
    lock_file: Lock, config: ProjectConfig, store: Store, resolver: BaseResolver | None = None
) -> None:
    """Put the lock's base image into ``store`` (pulled or rebuilt) unless it is there."""
    if store.has_blob(lock_file.base.digest):
        return
    resolver = resolver or StoreBaseResolver(store)
    base = resolver.resolve(
        lock_file.target.python_minor, explicit=config.base, platform=lock_file.target.platform
    )
    if base.digest != lock_file.base.digest:
        msg = (
            f"the base image {lock_file.base.reference} is no longer {lock_file.base.digest} "
            f"(now {base.digest})"
        )
        raise BuildError(msg, hint="re-lock against the current base: `mlpack lock --upgrade`")


def build_project(
    root: Path,
    *,
    tag: str | None = None,
    frozen: bool = False,
    backend: Backend = "embedded",
    note: Callable[[str], None],
    config: ProjectConfig | None = None,
    platform: str | None = None,
    compression: Compression | None = None,
) -> BuildResult:
    """Plan, fetch and build the project at ``root`` with ``backend``; tag the image.

    :param config: the project's config when the caller has it (else it is read, or analysed).
    :param platform: the target platform (default: the config's, else linux/amd64).
    :param compression: of the layers the embedded builder writes (default: the config's).
    """
    from mlpack.build.sbom import attach_sbom
    from mlpack.oci.store import Store

    config = config or project_config(root, note=note)
    spec, lock_file = plan_project(root, config, frozen=frozen, note=note, platform=platform)
    wheels = {f.sha256: f.path for f in fetch_lock(root, lock_file, config=config).files}
    store = Store.default()
    ensure_base(lock_file, config, store)
    builder = make_builder(backend, store, wheels, compression or config.compression)
    result = builder.build(spec, context=root, tag=tag or spec.default_tag)
    return dataclasses.replace(result, sbom=attach_sbom(store, result, spec, wheels))


def make_builder(
    backend: Backend,
    store: Store,
    wheels: Mapping[str, Path],
    compression: Compression = "gzip",
) -> Builder:
    """The builder registered under ``backend``, its prerequisites checked up front."""
    if backend == "embedded":
        from mlpack.build.embedded import EmbeddedBuilder

        runner = embedded_step_runner()
        return EmbeddedBuilder(store, wheels=wheels, runner=runner, compression=compression)
    if compression != "gzip":
        msg = f"the docker backend writes gzip layers, not {compression}"
        raise BuildError(msg, hint="build zstd layers with the embedded backend (the default)")
    import docker

    from mlpack.build.docker import DockerBuilder
    from mlpack.runtime.dockersock import docker_host, require_docker

    require_docker()  # a missing socket, no permission and a hung engine each say their fix
    client = docker.DockerClient(base_url=docker_host(), timeout=600)
    builder = DockerBuilder(store, client=client, wheels=wheels)
    builder.check_available()
    return builder


def embedded_step_runner() -> StepRunner | None:
    """Build steps in a container of the base on the embedded runtime; None where it cannot run."""
    from mlpack.runtime.embedded import EmbeddedRuntime
    from mlpack.runtime.protocol import Mount, RunConfig

    runtime = EmbeddedRuntime()
    try:
        runtime.check_available()
    except MlpackError:
        return None

    def run(
        *,
        image: str,
        argv: tuple[str, ...],
        mounts: tuple[tuple[str, Path], ...],
        readonly: tuple[tuple[str, Path], ...],
        network: bool,
    ) -> int:
        config = RunConfig(
            image=image,
            command=argv,
            mounts=(
                *(Mount(source=source, target=target) for target, source in mounts),
                *(Mount(source=s, target=t, read_only=True) for t, s in readonly),
            ),
            network="host" if network else "none",
            user="0:0",
            env=(("LC_ALL", "C.UTF-8"), ("TZ", "UTC")),
        )
        return runtime.run(config).exit_code

    return run


def verify_project(
    root: Path, *, frozen: bool = False, note: Callable[[str], None]
) -> Verification:
    """Build the project, then again from scratch in a temporary store, and compare the two."""
    from mlpack.build.verify import compare
    from mlpack.oci.store import Store

    config = project_config(root, note=note)
    spec, lock_file = plan_project(root, config, frozen=frozen, note=note)
    wheels = {f.sha256: f.path for f in fetch_lock(root, lock_file, config=config).files}
    store = Store.default()
    ensure_base(lock_file, config, store)

    def build(into: Store) -> BuildResult:  # as `mlpack build` writes this project's layers
        builder = make_builder("embedded", into, wheels, config.compression)
        return builder.build(spec, context=root, tag=spec.default_tag)

    first = build(store)
    with store.staging("verify") as tmp:
        scratch = Store(tmp)
        copy_image(store, scratch, spec.base_digest)
        return compare(store, first, scratch, build(scratch))


def copy_image(source: Store, target: Store, digest: str) -> None:
    """Copy one image's blobs (layers, config, manifest) into another store, untagged."""
    image = source.image(digest)
    for desc in (*image.manifest.layers, image.manifest.config):
        target.put_file(source.blob_path(desc.digest), digest=desc.digest)
    target.put_file(source.blob_path(image.digest), digest=image.digest)
    target.add_untagged(image.digest)
