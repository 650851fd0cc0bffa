"""``mlpack lock``: inputs -> base and pins for the target -> mlpack.lock; a no-op when unchanged.

The locker is handed what it uses (ARCHITECTURE: ``mlpack.pipeline`` composes the stages): the
base resolver, and for pip-tools a way to run inside the base image. It imports no backend.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from packaging.utils import canonicalize_name

from mlpack.errors import LockError, MlpackError
from mlpack.lock.assemble import assemble, locked_packages
from mlpack.lock.files import Listings
from mlpack.lock.inputs import validate_requirements
from mlpack.lock.lockfile import loads, write_lock
from mlpack.lock.resolver_registry import ResolverSetup, make_resolver
from mlpack.lock.resolvers import KnownFiles, Pin, Resolver, ResolveRequest
from mlpack.lock.speculate import EarlyResolve, guess_file, read_guess, write_guess
from mlpack.lock.system import pin_system
from mlpack.lock.vcs import normalize
from mlpack.paths import tools_folder
from mlpack.progress import reporter
from mlpack.vocabulary import BaseImage, PackageSpec

if TYPE_CHECKING:
    from mlpack.lock.inputs import LockInputs
    from mlpack.lock.lockdata import Lock
    from mlpack.lock.runner import ImageRunnerFactory
    from mlpack.vocabulary import Platform


class BaseResolver(Protocol):
    """Finds the base image for a Python version (``mlpack.pipeline`` hands one over)."""

    def resolve(self, python: str, *, explicit: str | None) -> BaseImage:
        """Return the pinned base; raise MlpackError when no base provides ``python``."""
        ...


@dataclass(frozen=True, kw_only=True)
class LockResult:
    """What ``lock`` did: the lock and whether it resolved (False: inputs unchanged)."""

    lock: Lock
    path: Path
    resolved: bool


@dataclass(frozen=True, kw_only=True)
class _Resolved:
    """The base, the resolver that ran, its pins, and the normalized requirements."""

    base: BaseImage
    resolver: Resolver
    pins: tuple[Pin, ...]
    requirements: tuple[PackageSpec, ...]
    commits: dict[str, str]


def lock(
    inputs: LockInputs,
    lock_path: Path,
    *,
    root: Path,
    home: Path,
    base_resolver: BaseResolver,
    image_runner: ImageRunnerFactory | None = None,
    resolver: Resolver | None = None,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    ca_cert: Path | None = None,
) -> LockResult:
    """Write ``lock_path`` for ``inputs``; a no-op (no resolve) when they are unchanged.

    :param image_runner: runs pip-tools inside the base image when the host lacks its Python.
    :param resolver: use this resolver instead of the one ``inputs`` name.

    Nothing is written unless every step succeeded: the lock is replaced atomically.
    """
    validate_requirements(inputs.requirements)
    previous = _previous(lock_path)
    if (
        previous is not None
        and previous.input_hash == inputs.digest()
        and not (upgrade or upgrade_packages)
        and all(p.pinned for p in previous.system_packages)  # else: from before Debian pins
    ):
        return LockResult(lock=previous, path=lock_path, resolved=False)

    rep = reporter()
    if inputs.indexes.source not in ("mlpack.toml", "default"):
        urls = ", ".join(inputs.indexes.public().all)
        rep.notice(f"using the package indexes from {inputs.indexes.source}: {urls}")
    job = _Job(
        inputs=inputs,
        previous=previous,
        root=root,
        home=home,
        upgrade=upgrade,
        upgrade_packages=upgrade_packages,
        ca_cert=ca_cert,
    )
    # Both resolvers name the target's files through uv; the index is listed only for pins
    # they could not name.
    listings = Listings(ca_cert=ca_cert)
    try:
        with tempfile.TemporaryDirectory(prefix="mlpack-lock-") as tmp:
            resolved = _base_and_pins(
                job,
                Path(tmp),
                base_resolver=base_resolver,
                image_runner=image_runner,
                resolver=resolver,
            )
            system = pin_system(
                inputs.system_packages,
                base=resolved.base,
                previous=previous,
                upgrade=upgrade,
                image_runner=image_runner,
                workdir=Path(tmp) / "system",
            )
        rep.finish("resolve")
        packages = locked_packages(
            resolved.pins,
            requirements=resolved.requirements,
            commits=resolved.commits,
            inputs=inputs,
            base=resolved.base,
            root=root,
            home=home,
            ca_cert=ca_cert,
            listings=listings,
        )
    finally:
        listings.close()
    result = assemble(
        inputs,
        resolver=resolved.resolver.name,
        base=resolved.base,
        packages=packages,
        pins=resolved.pins,
        system=system,
    )
    write_lock(lock_path, result)
    return LockResult(lock=result, path=lock_path, resolved=True)


def _previous(lock_path: Path) -> Lock | None:
    """The lock already there, if it can be read."""
    if not lock_path.exists():
        return None
    try:
        return loads(lock_path.read_text(encoding="utf-8"), where=str(lock_path))
    except (LockError, OSError):
        return None


@dataclass(frozen=True, kw_only=True)
class _Job:
    """One lock's inputs, its predecessor and its settings, as the resolve steps need them."""

    inputs: LockInputs
    previous: Lock | None
    root: Path
    home: Path
    upgrade: bool
    upgrade_packages: tuple[str, ...]
    ca_cert: Path | None

    def request(
        self, python_full: str, workdir: Path, requirements: tuple[PackageSpec, ...]
    ) -> ResolveRequest:
        """The resolve request for the base's ``python_full``; creates ``workdir``, empty."""
        workdir.mkdir()
        previous = self.previous
        return ResolveRequest(
            requirements=requirements,
            python=python_full,
            platform=self.inputs.platform,
            indexes=self.inputs.indexes,
            workdir=workdir,
            previous=tuple((p.name, p.version) for p in previous.packages if p.kind == "index")
            if previous is not None
            else (),
            upgrade=self.upgrade,
            upgrade_packages=tuple(canonicalize_name(n) for n in self.upgrade_packages),
            ca_cert=self.ca_cert,
            known_files=_known_files(previous, python_full, self.inputs.platform),
        )


def _base_and_pins(
    job: _Job,
    tmp: Path,
    *,
    base_resolver: BaseResolver,
    image_runner: ImageRunnerFactory | None,
    resolver: Resolver | None,
) -> _Resolved:
    """The base and the resolved pins; uv starts on a remembered guess of the base's Python."""
    inputs = job.inputs
    requirements, commits = _normalize(inputs.requirements, job.root)
    base = _reused_base(inputs, job.previous, upgrade=job.upgrade)
    guess_path = guess_file(job.home, inputs)
    guess = None
    if base is None and resolver is None and inputs.resolver == "uv":
        guess = read_guess(guess_path)
    if guess is None:
        base = base or _resolve_base(inputs, base_resolver)
        chosen = resolver or make_resolver(
            inputs.resolver,
            ResolverSetup(
                tools=tools_folder(job.home), image=base.reference, image_runner=image_runner
            ),
        )
        reporter().start("resolve", None)
        pins = chosen.resolve(job.request(base.python_full, tmp / "resolve", requirements))
        write_guess(guess_path, base.python_full)
        return _Resolved(
            base=base, resolver=chosen, pins=pins, requirements=requirements, commits=commits
        )
    chosen = make_resolver("uv", ResolverSetup(tools=tools_folder(job.home), image=""))
    reporter().start("resolve", None)
    early = EarlyResolve(lambda: chosen.resolve(job.request(guess, tmp / "early", requirements)))
    try:
        base = _resolve_base(inputs, base_resolver)
    except BaseException:
        early.wait()
        raise
    write_guess(guess_path, base.python_full)
    if base.python_full == guess:
        pins = early.result()
    else:
        early.wait()
        pins = chosen.resolve(job.request(base.python_full, tmp / "resolve", requirements))
    return _Resolved(
        base=base, resolver=chosen, pins=pins, requirements=requirements, commits=commits
    )


def _known_files(
    previous: Lock | None, python_full: str, platform: Platform
) -> tuple[KnownFiles, ...]:
    """The previous lock's file names, when it was made for this same target."""
    if previous is None or previous.target.python != python_full:
        return ()
    if previous.target.platform != platform:
        return ()
    return tuple(
        (p.name, p.version, p.hashes, tuple((f.name, f.sha256) for f in p.files))
        for p in previous.packages
        if p.kind == "index" and p.files
    )


def _reused_base(inputs: LockInputs, previous: Lock | None, *, upgrade: bool) -> BaseImage | None:
    """The previous lock's base while the Python version and ``base`` setting are unchanged.

    A lock keeps its base until asked (``--upgrade``), so re-locking after a requirements edit
    does not move the image to a newer base digest behind the user's back.
    """
    if previous is None or upgrade:
        return None
    if previous.target.python_minor != inputs.python or previous.target.platform != inputs.platform:
        return None
    if inputs.base is not None and previous.base.reference != inputs.base:
        return None
    if inputs.base is None and previous.base.provider == "explicit":
        return None
    return previous.base


def _resolve_base(inputs: LockInputs, resolver: BaseResolver) -> BaseImage:
    try:
        return resolver.resolve(inputs.python, explicit=inputs.base)
    except LockError:
        raise
    except MlpackError as exc:
        msg = f"no base image for Python {inputs.python}: {exc.message}"
        raise LockError(
            msg, hint=exc.hint or "pick a Python version a base image provides"
        ) from exc


def _normalize(
    requirements: tuple[PackageSpec, ...], root: Path
) -> tuple[tuple[PackageSpec, ...], dict[str, str]]:
    """VCS references pinned to a commit (recorded by name), paths made project-relative."""
    out: list[PackageSpec] = []
    commits: dict[str, str] = {}
    for r in requirements:
        text, commit = normalize(r.requirement, source=r.source, root=root)
        out.append(PackageSpec(requirement=text, source=r.source))
        if commit is not None:
            commits[r.name] = commit
    return tuple(out), commits
