"""``mlpack lock``: inputs -> base and pins for the target -> mlpack.lock; a no-op when unchanged.

The locker is handed what it uses (ARCHITECTURE: ``mlpack.pipeline`` composes the stages): the
base resolver, and for pip-tools a way to run inside the base image. It imports no backend.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from packaging.utils import canonicalize_name

from mlpack.errors import LockError, MlpackError
from mlpack.lock.assemble import assemble, locked_packages
from mlpack.lock.failure import ResolveFailure
from mlpack.lock.inputs import validate_requirements
from mlpack.lock.lockfile import loads, write_lock
from mlpack.lock.resolver_registry import ResolverSetup, make_resolver
from mlpack.lock.resolvers import KnownFiles, Pin, Resolver, ResolveRequest
from mlpack.lock.risks import old_pin_warnings, source_build_warning, wrong_project_warnings
from mlpack.lock.soft import also_missing, drop_warning, pinned_hint, python_note, to_drop, why_not
from mlpack.lock.speculate import EarlyResolve, guess_file, read_guess, write_guess
from mlpack.lock.system import pin_system
from mlpack.lock.vcs import normalize
from mlpack.paths import tools_folder
from mlpack.progress import reporter
from mlpack.vocabulary import BaseImage, PackageSpec

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlpack.lock.host_apt import RootfsFactory
    from mlpack.lock.inputs import LockInputs
    from mlpack.lock.lockdata import DroppedPackage, Lock, LockedPackage
    from mlpack.lock.runner import ImageRunnerFactory
    from mlpack.vocabulary import Platform


class BaseResolver(Protocol):
    """Finds the base image for a Python version (``mlpack.pipeline`` hands one over)."""

    def resolve(self, python: str, *, explicit: str | None, platform: Platform) -> BaseImage:
        """Return the pinned base for ``platform``; MlpackError when none provides ``python``.

        A base of another architecture never serves: the image would not run on the target.
        """
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
    notes: tuple[str, ...] = ()
    dropped: tuple[DroppedPackage, ...] = ()


def lock(  # noqa: PLR0913  the library entry point: one keyword-only seam or option each
    inputs: LockInputs,
    lock_path: Path,
    *,
    root: Path,
    home: Path,
    base_resolver: BaseResolver,
    image_runner: ImageRunnerFactory | None = None,
    base_rootfs: RootfsFactory | None = None,
    resolver: Resolver | None = None,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    ca_cert: Path | None = None,
) -> LockResult:
    """Write ``lock_path`` for ``inputs``; a no-op (no resolve) when they are unchanged.

    :param image_runner: runs pip-tools inside the base image when the host lacks its Python.
    :param base_rootfs: the base's files, for pinning a foreign base's Debian packages with
        the host's apt where the base cannot run here.
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
        if inputs.indexes.machine_local:
            local = ", ".join(inputs.indexes.machine_local)
            rep.notice(f"also this machine's local indexes (not written into the lock): {local}")
    job = _Job(
        inputs=inputs,
        previous=previous,
        root=root,
        home=home,
        upgrade=upgrade,
        upgrade_packages=upgrade_packages,
        ca_cert=ca_cert,
    )
    with tempfile.TemporaryDirectory(prefix="mlpack-lock-") as tmp:
        resolved = _resolve_soft(
            job,
            Path(tmp),
            base_resolver=base_resolver,
            image_runner=image_runner,
            resolver=resolver,
        )
        system = pin_system(
            inputs.system_packages,
            base=resolved.base,
            platform=inputs.platform,
            previous=previous,
            upgrade=upgrade,
            image_runner=image_runner,
            base_rootfs=base_rootfs,
            workdir=Path(tmp) / "system",
        )
    rep.finish("resolve")
    # Both resolvers name the target's files through uv; the index is listed only for pins
    # they could not name.
    packages = locked_packages(
        resolved.pins,
        requirements=resolved.requirements,
        commits=resolved.commits,
        inputs=inputs,
        base=resolved.base,
        root=root,
        home=home,
        ca_cert=ca_cert,
    )
    warnings = _warnings(resolved, packages, inputs=inputs, root=root, ca_cert=ca_cert)
    for line in warnings:
        rep.notice(line)
    result = assemble(
        inputs,
        resolver=resolved.resolver.name,
        base=resolved.base,
        packages=packages,
        pins=resolved.pins,
        system=system,
        notes=(*resolved.notes, *warnings),
        dropped=resolved.dropped,
    )
    write_lock(lock_path, result)
    return LockResult(lock=result, path=lock_path, resolved=True)


def _warnings(
    resolved: _Resolved,
    packages: tuple[LockedPackage, ...],
    *,
    inputs: LockInputs,
    root: Path,
    ca_cert: Path | None,
) -> tuple[str, ...]:
    """What resolved but may not be what the code needs: wrong projects, old pins, builds."""
    python = ".".join(resolved.base.python_full.split(".")[:2])
    built = source_build_warning(packages, python=python)
    return (
        *wrong_project_warnings(resolved.requirements, packages, python=python, root=root),
        *old_pin_warnings(
            resolved.pins,
            resolved.requirements,
            index_url=inputs.indexes.index_url,
            ca_cert=ca_cert,
        ),
        *([built] if built else []),
    )


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


class NoBaseImage(LockError):
    """No base image provides the Python version: an unpinned lock tries an older one."""


def _resolve_soft(
    job: _Job,
    tmp: Path,
    *,
    base_resolver: BaseResolver,
    image_runner: ImageRunnerFactory | None,
    resolver: Resolver | None,
) -> _Resolved:
    """Pins for the newest Python that resolves, without the inferred names that cannot.

    An inferred name the index lacks, or one an unsatisfiable resolution blames on every
    Python, is dropped (one warning each) and the resolve starts again; a declared one fails.
    """
    dropped: list[DroppedPackage] = []
    counter = itertools.count()
    while True:
        gone_keys = {(d.name, d.source) for d in dropped}
        kept = tuple(r for r in job.inputs.requirements if (r.name, r.source) not in gone_keys)
        outcome = _newest_python(
            job,
            kept,
            tmp,
            counter,
            base_resolver=base_resolver,
            image_runner=image_runner,
            resolver=resolver,
        )
        if isinstance(outcome, _Resolved):
            return replace(outcome, dropped=tuple(dropped))
        for entry in outcome:
            reporter().notice(drop_warning(entry, root=job.root))
        dropped.extend(outcome)


def _newest_python(
    job: _Job,
    kept: tuple[PackageSpec, ...],
    tmp: Path,
    counter: Iterator[int],
    *,
    base_resolver: BaseResolver,
    image_runner: ImageRunnerFactory | None,
    resolver: Resolver | None,
) -> _Resolved | tuple[DroppedPackage, ...]:
    """The resolve for the newest Python that works, or the inferred requirements to drop."""
    pythons = (job.inputs.python, *job.inputs.fallback_pythons)
    failures: list[tuple[str, ResolveFailure]] = []
    skipped: list[tuple[str, str]] = []  # (python, why not) for the note
    for python in pythons:
        workdir = tmp / f"try-{next(counter)}"
        workdir.mkdir()
        try:
            if len(pythons) > 1:
                _probe(job, workdir / "probe", python, kept, resolver=resolver)
            resolved = _base_and_pins(
                replace(job, inputs=replace(job.inputs, python=python, requirements=kept)),
                workdir,
                base_resolver=base_resolver,
                image_runner=image_runner,
                resolver=resolver,
            )
        except NoBaseImage as exc:
            if python == pythons[-1]:
                raise
            skipped.append((python, f"no base image ({exc.message})"[:160]))
            continue
        except ResolveFailure as failure:
            gone = to_drop(failure, kept)
            if gone and failure.kind == "missing":
                missing = frozenset(g.name for g in gone)
                return (*gone, *_also_missing(job, kept, missing))
            if gone and failure.kind != "conflict":
                return gone  # unbuildable on any Python: drop it first
            if failure.kind != "conflict":
                raise
            failures.append((python, failure))
            skipped.append((python, why_not(failure)))
            continue
        if len(pythons) == 1:
            return resolved
        note = python_note(python, tuple(skipped), job.inputs.python_allowed_by)
        reporter().notice(note)
        return replace(resolved, notes=(note,))
    gone = to_drop(failures[0][1], kept)
    if gone:
        return gone
    raise _unsatisfiable(job, tmp, failures[0], kept, resolver=resolver)


def _also_missing(
    job: _Job, kept: tuple[PackageSpec, ...], missing: frozenset[str]
) -> tuple[DroppedPackage, ...]:
    """The other inferred names no index has (so one resolve drops them all)."""
    return also_missing(kept, job.inputs.indexes, ca_cert=job.ca_cert, known_missing=missing)


def _probe(
    job: _Job,
    workdir: Path,
    python: str,
    requirements: tuple[PackageSpec, ...],
    *,
    resolver: Resolver | None,
) -> None:
    """Resolve for Python X.Y without a base image: a version the packages do not resolve for
    costs no base (a Debian build takes about a minute). ResolveFailure when they do not.
    """
    chosen = resolver or make_resolver("uv", ResolverSetup(tools=tools_folder(job.home), image=""))
    chosen.resolve(job.request(python, workdir, _normalize(requirements, job.root)[0]))


def _unsatisfiable(
    job: _Job,
    tmp: Path,
    first: tuple[str, ResolveFailure],
    kept: tuple[PackageSpec, ...],
    *,
    resolver: Resolver | None,
) -> ResolveFailure:
    """The newest Python's failure; for packages without wheels, the newest Python that works."""
    python, failure = first
    if not failure.no_wheels:
        return failure
    # Imported here: the no-op re-lock imports this module and never needs the analysis.
    from mlpack.analyze.python_version import SUPPORTED_PYTHONS

    chosen = resolver or make_resolver("uv", ResolverSetup(tools=tools_folder(job.home), image=""))
    tried = {python, *job.inputs.fallback_pythons}
    works = None
    for candidate in reversed(SUPPORTED_PYTHONS):
        if candidate in tried:
            continue
        workdir = tmp / f"probe-{candidate}"
        try:
            chosen.resolve(job.request(candidate, workdir, _normalize(kept, job.root)[0]))
        except LockError:
            continue
        works = candidate
        break
    failure.hint = pinned_hint(python, failure, works, job.inputs.python_pinned_in)
    return failure


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
        return resolver.resolve(inputs.python, explicit=inputs.base, platform=inputs.platform)
    except LockError:
        raise
    except MlpackError as exc:
        msg = f"no base image for Python {inputs.python}: {exc.message}"
        raise NoBaseImage(
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
