"""``mlpack lock``: inputs -> resolve for the target -> mlpack.lock, skipped when inputs are unchanged."""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlpack.errors import LockError, MlpackError
from mlpack.lock import torch as torch_mod
from mlpack.lock.files import Listings, choose_file, is_sdist, name_files
from mlpack.lock.indexes import Indexes, choose_indexes, redact, strip_userinfo
from mlpack.lock.lockfile import LOCK_FILE, loads, write_lock
from mlpack.lock.model import (
    BaseRef,
    BuildWhere,
    EnvEntry,
    Lock,
    LockedFile,
    LockedPackage,
    PackageKind,
    Platform,
    ResolverName,
    SystemPackagePin,
    Target,
)
from mlpack.lock.resolvers import InputRequirement, KnownFiles, Pin, Resolver, ResolveRequest
from mlpack.lock.stamp import ALGORITHM
from mlpack.lock.vcs import is_vcs, normalize, relative_file_url
from mlpack.oslib.fs import atomic_write
from mlpack.progress import reporter

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mlpack.config import ProjectConfig
    from mlpack.lock.runner import Runner


@dataclass(frozen=True, kw_only=True)
class ResolvedBase:
    """What base resolution tells the lock."""

    reference: str
    digest: str
    provider: str
    python_full: str  # "3.11.2"


class BaseResolver(Protocol):
    """Finds the base image for a Python version (the store engineer's ``resolve_base``)."""

    def resolve(self, python: str, *, explicit: str | None) -> ResolvedBase:
        """Return the pinned base; raise MlpackError when no base provides ``python``."""
        ...


class DefaultBaseResolver:
    """Adapts ``mlpack.base.resolve.resolve_base`` with the default store."""

    def resolve(self, python: str, *, explicit: str | None) -> ResolvedBase:
        """Resolve through the base-image providers."""
        try:
            from mlpack.base.resolve import resolve_base  # type: ignore[import-not-found,unused-ignore]
            from mlpack.oci.store import Store
        except ImportError as exc:
            msg = "base-image resolution is not available in this mlpack build"
            raise LockError(msg, hint="reinstall mlpack-env") from exc
        image = resolve_base(python, explicit=explicit, store=Store.default())
        return ResolvedBase(
            reference=str(image.reference),
            digest=str(image.digest),
            provider=str(image.provider),
            python_full=str(image.python_full),
        )


@dataclass(frozen=True, kw_only=True)
class LockInputs:
    """Everything that decides a lock; its hash makes an unchanged re-lock a no-op."""

    requirements: tuple[InputRequirement, ...]
    python: str  # "3.11"
    platform: Platform
    base: str | None = None
    indexes: Indexes = field(default_factory=Indexes)
    system_packages: tuple[str, ...] = ()
    env: tuple[EnvEntry, ...] = ()
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
    config: ProjectConfig, *, resolver: ResolverName = "uv", platform: str | None = None
) -> LockInputs:
    """The lock inputs of a project config (``platform`` overrides the config's)."""
    chosen = platform or config.platform
    if chosen not in ("linux/amd64", "linux/arm64"):
        msg = f"platform {chosen!r} is not supported"
        raise LockError(msg, hint="use linux/amd64 or linux/arm64")
    return LockInputs(
        requirements=tuple(
            InputRequirement(requirement=p.requirement, source=p.source) for p in config.packages
        ),
        python=config.python,
        platform=chosen,  # type: ignore[arg-type]
        base=config.base,
        indexes=torch_mod.torch_indexes(
            choose_indexes(config.index_url, config.extra_index_urls),
            variant=config.torch_variant,
        ),
        system_packages=config.system_packages,
        env=tuple(EnvEntry(name=e.name, default=e.default, secret=e.secret) for e in config.env),
        cuda=config.cuda,
        torch_variant=config.torch_variant,
        resolver=resolver,
    )


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
            sorted(p.name for p in old.system_packages) != sorted(set(inputs.system_packages)),
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


def validate_requirements(requirements: tuple[InputRequirement, ...]) -> None:
    """LockError naming the file and line of the first malformed requirement."""
    for r in requirements:
        try:
            Requirement(r.requirement)
        except InvalidRequirement as exc:
            msg = f"malformed requirement {r.requirement!r} at {r.source}: {exc}"
            raise LockError(msg, hint=f"fix line {r.source} (PEP 508 syntax)") from exc


@dataclass(frozen=True, kw_only=True)
class LockResult:
    """What ``lock`` did: the lock and whether it resolved (False: inputs unchanged)."""

    lock: Lock
    path: Path
    resolved: bool


def make_resolver(name: ResolverName, *, home: Path, image: str) -> Resolver:
    """The resolver registered under ``name``; pip-tools may run inside ``image``."""
    if name == "uv":
        from mlpack.lock.uv import UvResolver

        return UvResolver()
    from mlpack.lock.piptools import PipToolsResolver

    return PipToolsResolver(tools_home=home / "tools", image_runner=_image_runner(image))


def _image_runner(image: str) -> Callable[[Path], Runner] | None:
    """In-image runners on the embedded runtime, when this mlpack has one."""
    try:
        from mlpack.runtime.embedded import EmbeddedRuntime  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None

    def make(tools: Path) -> Runner:
        from mlpack.lock.runner import ImageRunner

        ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
        return ImageRunner(
            EmbeddedRuntime(), image, tools_dir=tools, ca_bundle=ca if ca.exists() else None
        )

    return make


def mlpack_home() -> Path:
    """mlpack.home.mlpack_home() as a Path."""
    from mlpack.home import mlpack_home as home

    return Path(home())


def lock(
    inputs: LockInputs,
    lock_path: Path,
    *,
    root: Path,
    base_resolver: BaseResolver | None = None,
    resolver: Resolver | None = None,
    upgrade: bool = False,
    upgrade_packages: tuple[str, ...] = (),
    ca_cert: Path | None = None,
    home: Path | None = None,
) -> LockResult:
    """Write ``lock_path`` for ``inputs``; a no-op (no resolve) when they are unchanged.

    Nothing is written unless every step succeeded: the lock is replaced atomically.
    """
    validate_requirements(inputs.requirements)
    digest = inputs.digest()
    previous: Lock | None = None
    if lock_path.exists():
        try:
            previous = loads(lock_path.read_text(encoding="utf-8"), where=str(lock_path))
        except (LockError, OSError):
            previous = None
    if previous is not None and previous.input_hash == digest and not (upgrade or upgrade_packages):
        return LockResult(lock=previous, path=lock_path, resolved=False)

    home = home or mlpack_home()
    rep = reporter()
    if inputs.indexes.source not in ("mlpack.toml", "default"):
        urls = ", ".join(inputs.indexes.public().all)
        rep.notice(f"using the package indexes from {inputs.indexes.source}: {urls}")
    # Both resolvers name the target's files through uv; the index is listed only for pins
    # they could not name.
    listings = Listings(ca_cert=ca_cert)
    try:
        with tempfile.TemporaryDirectory(prefix="mlpack-lock-") as tmp:
            base, chosen, pins, commits, requirements = _base_and_pins(
                inputs,
                previous,
                root=root,
                tmp=Path(tmp),
                home=home,
                base_resolver=base_resolver,
                resolver=resolver,
                upgrade=upgrade,
                upgrade_packages=upgrade_packages,
                ca_cert=ca_cert,
            )
    except BaseException:
        listings.close()
        raise
    rep.finish("resolve")
    try:
        packages = _packages(
            pins,
            requirements=requirements,
            commits=commits,
            inputs=inputs,
            base=base,
            root=root,
            home=home,
            ca_cert=ca_cert,
            listings=listings,
        )
    finally:
        listings.close()
    decision = torch_mod.decide(
        pins,
        cuda=inputs.cuda,
        variant=inputs.torch_variant,
        indexes=inputs.indexes,
        platform=inputs.platform,
    )
    public = inputs.indexes.public()
    result = Lock(
        input_hash=digest,
        resolver=chosen.name,
        target=Target(python=base.python_full, platform=inputs.platform),
        base=BaseRef(reference=base.reference, digest=base.digest, provider=base.provider),
        index_url=public.index_url,
        extra_index_urls=public.extra_index_urls,
        packages=packages,
        system_packages=tuple(
            SystemPackagePin(name=n) for n in sorted(set(inputs.system_packages))
        ),
        env=tuple(
            EnvEntry(name=e.name, default=None if e.secret else e.default, secret=e.secret)
            for e in inputs.env
        ),
        torch=decision,
    )
    if decision is not None and decision.variant != "cpu" and not inputs.cuda:
        rep.notice(f"torch: {decision.reason}")
    write_lock(lock_path, result)
    return LockResult(lock=result, path=lock_path, resolved=True)


def _base_and_pins(
    inputs: LockInputs,
    previous: Lock | None,
    *,
    root: Path,
    tmp: Path,
    home: Path,
    base_resolver: BaseResolver | None,
    resolver: Resolver | None,
    upgrade: bool,
    upgrade_packages: tuple[str, ...],
    ca_cert: Path | None,
) -> tuple[ResolvedBase, Resolver, tuple[Pin, ...], dict[str, str], tuple[InputRequirement, ...]]:
    """The base and the resolved pins; uv may start before the base is known.

    Resolving the base (when the lock has none to keep) imports the registry client and may
    probe a registry: ~0.2 s. uv needs only the base's Python X.Y.Z, so when an earlier lock
    remembered it for the same settings, uv runs on that guess meanwhile; a wrong guess (the
    base moved to a new patch release) just resolves again with the right version.
    """
    rep = reporter()

    def request_for(python_full: str, sub: str) -> ResolveRequest:
        workdir = tmp / sub
        workdir.mkdir()
        return ResolveRequest(
            requirements=requirements,
            python=python_full,
            platform=inputs.platform,
            indexes=inputs.indexes,
            workdir=workdir,
            previous=tuple((p.name, p.version) for p in previous.packages if p.kind == "index")
            if previous is not None
            else (),
            upgrade=upgrade,
            upgrade_packages=tuple(canonicalize_name(n) for n in upgrade_packages),
            ca_cert=ca_cert,
            known_files=_known_files(previous, python_full, inputs.platform),
        )

    base = _reused_base(inputs, previous, upgrade=upgrade)
    guess_file = _guess_file(home, inputs)
    guess = None
    if base is None and resolver is None and inputs.resolver == "uv":
        guess = _read_guess(guess_file)
    if guess is None:
        base = base or _resolve_base(inputs, base_resolver or DefaultBaseResolver())
        requirements, commits = _normalize(inputs.requirements, root)
        chosen = resolver or make_resolver(inputs.resolver, home=home, image=base.reference)
        rep.start("resolve", None)
        pins = chosen.resolve(request_for(base.python_full, "resolve"))
        _write_guess(guess_file, base.python_full)
        return base, chosen, pins, commits, requirements
    requirements, commits = _normalize(inputs.requirements, root)
    chosen = make_resolver("uv", home=home, image="")
    rep.start("resolve", None)
    early = _Early(lambda: chosen.resolve(request_for(guess, "early")))
    try:
        base = _resolve_base(inputs, base_resolver or DefaultBaseResolver())
    except BaseException:
        early.wait()
        raise
    _write_guess(guess_file, base.python_full)
    if base.python_full == guess:
        return base, chosen, early.result(), commits, requirements
    early.wait()
    return (
        base,
        chosen,
        chosen.resolve(request_for(base.python_full, "resolve")),
        commits,
        requirements,
    )


def _known_files(previous: Lock | None, python_full: str, platform: str) -> tuple[KnownFiles, ...]:
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


class _Early:
    """Runs a resolve in a thread (it mostly waits on uv) with the caller's context."""

    def __init__(self, work: Callable[[], tuple[Pin, ...]]) -> None:
        self._work = work
        self._context = contextvars.copy_context()
        self._value: tuple[Pin, ...] = ()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlpack-early-resolve")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._context.run(self._work)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def wait(self) -> None:
        """Wait for the thread; its outcome is not needed."""
        self._thread.join()

    def result(self) -> tuple[Pin, ...]:
        """The pins, or the resolve's exception raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _guess_file(home: Path, inputs: LockInputs) -> Path:
    key = f"{inputs.python}|{inputs.platform}|{inputs.base or ''}"
    name = hashlib.sha256(key.encode()).hexdigest()[:24]
    return home / "cache" / "lock-base-python" / name


def _read_guess(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text if text.count(".") == 2 and text.replace(".", "").isdigit() else None


def _write_guess(path: Path, python_full: str) -> None:
    """Remember the base's Python X.Y.Z for the next lock with these settings (best effort)."""
    if _read_guess(path) == python_full:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, python_full + "\n")
    except OSError:
        pass


def _reused_base(
    inputs: LockInputs, previous: Lock | None, *, upgrade: bool
) -> ResolvedBase | None:
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
    return ResolvedBase(
        reference=previous.base.reference,
        digest=previous.base.digest,
        provider=previous.base.provider,
        python_full=previous.target.python,
    )


def _resolve_base(inputs: LockInputs, resolver: BaseResolver) -> ResolvedBase:
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
    requirements: tuple[InputRequirement, ...], root: Path
) -> tuple[tuple[InputRequirement, ...], dict[str, str]]:
    out: list[InputRequirement] = []
    commits: dict[str, str] = {}
    for r in requirements:
        text, commit = normalize(r.requirement, source=r.source, root=root)
        out.append(InputRequirement(requirement=text, source=r.source))
        if commit is not None:
            commits[r.name] = commit
    return tuple(out), commits


def _sources(requirements: tuple[InputRequirement, ...]) -> Mapping[str, tuple[str, ...]]:
    by_name: dict[str, list[str]] = {}
    for r in requirements:
        by_name.setdefault(r.name, [])
        if r.source not in by_name[r.name]:
            by_name[r.name].append(r.source)
    return {k: tuple(v) for k, v in by_name.items()}


def _packages(
    pins: tuple[Pin, ...],
    *,
    requirements: tuple[InputRequirement, ...],
    commits: Mapping[str, str],
    inputs: LockInputs,
    base: ResolvedBase,
    root: Path,
    home: Path,
    ca_cert: Path | None,
    listings: Listings,
) -> tuple[LockedPackage, ...]:
    sources = _sources(requirements)
    listed = name_files(
        tuple(
            (p.name, p.version, p.hashes)
            for p in pins
            if p.url is None and p.hashes and not p.files
        ),
        indexes=inputs.indexes,
        cache_root=home / "cache" / "index-files",
        ca_cert=ca_cert,
        listings=listings,
    )
    packages = []
    for pin in pins:
        via: list[str] = []
        for item in pin.via:
            if item == "-r":
                via.extend(sources.get(pin.name, ("mlpack.toml",)))
            elif f"pkg:{item}" not in via:
                via.append(f"pkg:{item}")
        if pin.name in sources and not any(v in via for v in sources[pin.name]):
            via[:0] = sources[pin.name]
        files = tuple(LockedFile(name=n, sha256=h) for n, h in pin.files) or tuple(
            LockedFile(name=f.filename, sha256=f.sha256)
            for f in listed.get(pin.name, ("", ()))[1]
            if f.sha256
        )
        if pin.url is not None:
            url = redact(pin.url)
            kind: PackageKind = (
                "vcs" if is_vcs(url) else ("path" if url.startswith("file:") else "url")
            )
            packages.append(
                LockedPackage(
                    name=pin.name,
                    version=pin.version,
                    kind=kind,
                    hashes=pin.hashes,
                    via=tuple(via),
                    url=relative_file_url(url, root) if kind == "path" else strip_userinfo(url),
                    commit=commits.get(pin.name),
                    build="image",
                )
            )
            continue
        chosen = choose_file(tuple(f.name for f in files), base.python_full, inputs.platform)
        build: BuildWhere = "image" if chosen is not None and is_sdist(chosen) else "wheel"
        packages.append(
            LockedPackage(
                name=pin.name,
                version=pin.version,
                hashes=pin.hashes,
                files=files,
                via=tuple(via),
                build=build,
            )
        )
    return tuple(packages)


def lock_path_for(root: Path) -> Path:
    """Where a project's lock lives."""
    return root / LOCK_FILE
