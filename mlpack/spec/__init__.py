"""ImageSpec: the image as pure data, planned from the lock and the config (no I/O).

Both builders consume it: the embedded builder executes it step by step, and ``render`` turns
it into a Dockerfile. Steps go from least to most volatile (REPRODUCIBILITY.md §6), so a
code-only edit rewrites the code layer alone and a small new dependency leaves the heavy
wheels' layers as they were.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from packaging.utils import canonicalize_name

from mlpack import __version__
from mlpack.errors import BuildError

if TYPE_CHECKING:
    from mlpack.config import ProjectConfig
    from mlpack.lock.lockdata import Lock, LockedPackage, SystemPackagePin

StepRole = Literal["system", "interpreter", "heavy", "packages", "code"]
PREFIX: Final = "/opt/venv"
WORKDIR: Final = "/app"
USER_ID: Final = 1000  # numeric: a base without a passwd entry for it still runs it
USER: Final = f"{USER_ID}:{USER_ID}"
# That user has no passwd entry, so no home and no name. Runtimes give it HOME=/, which it cannot
# write, and libraries that cache under ~ (Hugging Face, torch hub, matplotlib, pip) fail: /tmp
# is writable wherever the image runs (the base's 1777 folder, a tmpfs on a read-only root,
# Kubernetes' emptyDir). getpass.getuser() raises without a name (torch's inductor and dynamo
# call it: pytorch/pytorch#140765); it reads USER first. A project's own value in [env] wins.
USER_ENV: Final = (("HOME", "/tmp"), ("USER", "mlpack"))
# Every built layer's entries carry this mtime (the fallback SDE, as Jib). The §6 layer keys
# leave SOURCE_DATE_EPOCH out, so a new commit (a new SDE) must not rewrite the dependency
# layers: SDE reaches the config's `created`, the history and the annotations only.
LAYER_MTIME: Final = 1
# Distributions big enough (~100 MB and up) to get a layer of their own: a dependency change
# elsewhere must not re-push them. The `nvidia-*` CUDA libraries share one layer.
HEAVY: Final = frozenset(
    {"torch", "triton", "tensorflow", "tensorflow-cpu", "jaxlib", "xformers", "onnxruntime-gpu"}
)
NVIDIA_GROUP: Final = "nvidia"
# What `mlpack render` adds to a build context (requirements, wheelhouse): in the context for
# the builder stages, never in the code layer (the embedded builder leaves it out; the
# Dockerfile's code stage deletes it before the final stage copies the code).
EJECT_DIR: Final = ".mlpack"
# Never in the code layer, whatever the project's ignore files say (secrets, VCS, caches).
ALWAYS_EXCLUDED: Final = (
    ".git",
    ".hg",
    ".svn",
    "**/__pycache__",
    "**/*.pyc",
    ".venv",
    "venv",
    "**/.ipynb_checkpoints",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".mlpack-cache",
    ".env",
    ".env.*",
    "!.env.example",
    "**/.netrc",
    "**/.pypirc",
    "**/*.pem",
    "**/*.key",
    ".ssh",
    ".aws",
)
ENTRYPOINT_LABEL: Final = "org.mlpack.entrypoint."
LOCK_LABEL: Final = "org.mlpack.lock"
VERSION_LABEL: Final = "org.mlpack.version"


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """What the source tree says about itself: the commit and the build's epoch (SDE)."""

    source_date_epoch: int = 1
    revision: str | None = None
    source_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class WheelPin:
    """One wheel a step installs, by the hash the lock pins."""

    name: str
    version: str
    filename: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class SystemStep:
    """Debian packages installed on the base: the lock's exact ``.deb`` files, by hash."""

    name: str = "system"
    role: StepRole = "system"
    debs: tuple[SystemPackagePin, ...]  # dependencies included; none the base already has

    @property
    def packages(self) -> tuple[tuple[str, str], ...]:
        """(name, version) of every package the step installs."""
        return tuple((d.name, d.version) for d in self.debs)

    def key(self) -> str:
        """The inputs that decide this layer (the base digest is added by the builder)."""
        return json.dumps(["system", sorted([d.name, d.version, d.sha256] for d in self.debs)])


@dataclass(frozen=True, kw_only=True)
class VenvStep:
    """The virtual environment's skeleton: pyvenv.cfg and the bin/python links to the base's."""

    name: str = "venv"
    role: StepRole = "interpreter"
    prefix: str
    python: str  # the base's full version, "3.11.2"
    home: str = "/usr/bin"  # where the base's python3 lives

    @property
    def python_minor(self) -> str:
        """The "3.11" form."""
        return ".".join(self.python.split(".")[:2])

    def key(self) -> str:
        """The inputs that decide this layer."""
        return json.dumps(["venv", self.prefix, self.python, self.home])


@dataclass(frozen=True, kw_only=True)
class WheelStep:
    """Locked wheels installed into the prefix: one heavy wheel, the nvidia group, or the rest."""

    name: str  # "torch", "nvidia", "packages"
    role: StepRole
    prefix: str
    python: str
    wheels: tuple[WheelPin, ...]

    @property
    def site_packages(self) -> str:
        """The in-image site-packages folder (never the host's scheme)."""
        minor = ".".join(self.python.split(".")[:2])
        return f"{self.prefix}/lib/python{minor}/site-packages"

    def key(self) -> str:
        """The inputs that decide this layer: prefix, Python and the sorted (name, hash) pins."""
        pins = sorted((w.name, w.version, w.sha256) for w in self.wheels)
        return json.dumps(["wheels", self.prefix, self.python, pins])

    def requirements(self) -> str:
        """The step's pins as a hash-checked requirements file (pip --require-hashes)."""
        lines = [f"{w.name}=={w.version} --hash=sha256:{w.sha256}" for w in self.wheels]
        return "".join(f"{line}\n" for line in lines)


@dataclass(frozen=True, kw_only=True)
class CodeStep:
    """The project tree at the workdir, less what the ignore rules and the layout leave out."""

    name: str = "code"
    role: StepRole = "code"
    workdir: str
    excludes: tuple[str, ...]  # .dockerignore patterns; the project's own files add to them
    writable_dirs: tuple[str, ...]  # output folders the non-root user writes (relative)

    def key(self) -> str:
        """The plan's part of the key; the builder adds the tree's content hash."""
        return json.dumps(["code", self.workdir, list(self.excludes), list(self.writable_dirs)])


Step = SystemStep | VenvStep | WheelStep | CodeStep


@dataclass(frozen=True, kw_only=True)
class Entrypoint:
    """A named way to start the image, recorded as a label for ``mlpack run``/``serve``."""

    name: str
    kind: Literal["training", "inference"]
    command: tuple[str, ...]
    port: int | None = None


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    """Everything a builder needs, as data: base, ordered steps, and the image config."""

    name: str  # the project's name: the default repository of the tag
    base_reference: str
    base_digest: str
    platform: str  # "linux/amd64"
    python: str
    prefix: str
    steps: tuple[Step, ...]
    env: tuple[tuple[str, str], ...]  # non-secret defaults, in order; PATH is prepended apart
    path_prepend: tuple[str, ...]
    user: str
    workdir: str
    entrypoints: tuple[Entrypoint, ...]
    cmd: tuple[str, ...]
    ports: tuple[int, ...]
    volumes: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    secret_env: tuple[str, ...]  # declared by name only: never a value in the image
    lock_hash: str  # sha256 hex of the lock's canonical text
    created: str  # SDE as YYYY-MM-DDTHH:MM:SSZ

    @property
    def interpreter(self) -> str:
        """The base's python3: the venv links to it, and it compiles the bytecode."""
        home = next((s.home for s in self.steps if isinstance(s, VenvStep)), VenvStep.home)
        return f"{home}/python3"

    @property
    def default_tag(self) -> str:
        """``localhost/<project>:<short lock hash>``."""
        return local_tag(self.name, self.lock_hash)


def lock_hash(lock: Lock) -> str:
    """The sha256 hex of the lock's canonical text: the image's identity for ``local_tag``."""
    from mlpack.lock.lockfile import dumps

    return hashlib.sha256(dumps(lock).encode("utf-8")).hexdigest()


def local_tag(name: str, lock_hash: str) -> str:
    """``localhost/<project>:<short lock hash>``: where ``mlpack build`` stores it by default."""
    return f"localhost/{name}:{lock_hash[:12]}"


def plan(lock: Lock, config: ProjectConfig, *, provenance: Provenance | None = None) -> ImageSpec:
    """Plan the image for ``lock`` and ``config``; pure: the same inputs give the same spec."""
    from mlpack.analyze.layout import is_file_output

    prov = provenance or Provenance()
    python = lock.target.python
    _refuse_source_builds(lock)
    wheel_steps = _wheel_steps(lock, python)
    steps: list[Step] = []
    debs = _system_debs(lock)
    if debs:
        steps.append(SystemStep(debs=debs))
    steps.append(VenvStep(prefix=PREFIX, python=python))
    steps.extend(wheel_steps)
    outputs = tuple(_clean(p) for p in config.outputs)
    inputs = tuple(_clean(p) for p in config.inputs)
    # A file beside the code (model.pkl) is mounted as that file at run time: no folder, and no
    # volume (an engine would make one) may stand at its path in the image.
    folders = tuple(p for p in outputs if not is_file_output(p))
    steps.append(
        CodeStep(
            workdir=WORKDIR,
            excludes=(*ALWAYS_EXCLUDED, *(f"/{p}" for p in (*outputs, *inputs))),
            writable_dirs=folders,
        )
    )
    entrypoints = tuple(
        Entrypoint(name=e.name, kind=e.kind, command=e.command, port=e.port)
        for e in config.entrypoints
    )
    digest = lock_hash(lock)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(prov.source_date_epoch))
    own = tuple((e.name, e.default) for e in lock.env if not e.secret and e.default is not None)
    user = tuple(pair for pair in USER_ENV if pair[0] not in {name for name, _ in own})
    env = (("VIRTUAL_ENV", PREFIX), *user, *own)
    return ImageSpec(
        name=config.name,
        base_reference=lock.base.reference,
        base_digest=lock.base.digest,
        platform=lock.target.platform,
        python=python,
        prefix=PREFIX,
        steps=tuple(steps),
        env=env,
        path_prepend=(f"{PREFIX}/bin",),
        user=USER,
        workdir=WORKDIR,
        entrypoints=entrypoints,
        cmd=_default_command(entrypoints),
        ports=tuple(sorted({e.port for e in entrypoints if e.port is not None})),
        volumes=tuple(f"{WORKDIR}/{p}" for p in (*inputs, *folders)),
        labels=_labels(config.name, entrypoints, digest, created, prov),
        secret_env=tuple(e.name for e in lock.env if e.secret),
        lock_hash=digest,
        created=created,
    )


def _refuse_source_builds(lock: Lock) -> None:
    """sdists, VCS and path packages must be built in the base: not supported by this planner."""
    pending = [p.name for p in lock.packages if p.kind != "index" or p.build == "image"]
    if pending:
        msg = f"building packages from source is not supported yet: {', '.join(pending)}"
        raise BuildError(msg, hint="pin versions that publish wheels for the target, then re-lock")


def _system_debs(lock: Lock) -> tuple[SystemPackagePin, ...]:
    """The ``.deb`` files the system step installs; BuildError for a lock without Debian pins."""
    unpinned = [p.name for p in lock.system_packages if not p.pinned]
    if unpinned:
        msg = f"mlpack.lock names system packages without pinned versions: {', '.join(unpinned)}"
        raise BuildError(msg, hint="re-lock to pin their .deb files: `mlpack lock`")
    return tuple(p for p in lock.system_packages if p.url)


def _pick(pkg: LockedPackage, lock: Lock) -> WheelPin:
    from mlpack.lock.files import choose_file

    chosen = choose_file(tuple(f.name for f in pkg.files), lock.target.python, lock.target.platform)
    if chosen is None or not chosen.endswith(".whl"):
        msg = f"{pkg.name}=={pkg.version} has no wheel for {lock.target.platform} in the lock"
        raise BuildError(
            msg, hint=f"re-lock with the index reachable (`mlpack lock --upgrade {pkg.name}`)"
        )
    sha = next(f.sha256 for f in pkg.files if f.name == chosen)
    return WheelPin(name=pkg.name, version=pkg.version, filename=chosen, sha256=sha)


def _group(name: str) -> str:
    canonical = canonicalize_name(name)
    if canonical in HEAVY:
        return canonical
    if canonical.startswith(f"{NVIDIA_GROUP}-"):
        return NVIDIA_GROUP
    return "packages"


def _wheel_steps(lock: Lock, python: str) -> tuple[WheelStep, ...]:
    """One step per heavy wheel, then the nvidia group, then the rest (a fixed order)."""
    groups: dict[str, list[WheelPin]] = {}
    for pkg in sorted(lock.packages, key=lambda p: p.name):
        groups.setdefault(_group(pkg.name), []).append(_pick(pkg, lock))
    order = sorted(g for g in groups if g not in (NVIDIA_GROUP, "packages"))
    order += [g for g in (NVIDIA_GROUP, "packages") if g in groups]
    return tuple(
        WheelStep(
            name=g,
            role="packages" if g == "packages" else "heavy",
            prefix=PREFIX,
            python=python,
            wheels=tuple(groups[g]),
        )
        for g in order
    )


def _clean(rel: str) -> str:
    return "/".join(p for p in rel.strip("/").split("/") if p not in ("", "."))


def _default_command(entrypoints: tuple[Entrypoint, ...]) -> tuple[str, ...]:
    """The first training entrypoint, else the first inference one (``mlpack run`` with none)."""
    for kind in ("training", "inference"):
        for entry in entrypoints:
            if entry.kind == kind:
                return entry.command
    return ()


def _labels(
    name: str,
    entrypoints: tuple[Entrypoint, ...],
    lock_hash: str,
    created: str,
    prov: Provenance,
) -> tuple[tuple[str, str], ...]:
    """Only values derived from inputs (REPRODUCIBILITY.md §3): never host, user or time."""
    labels = {
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.title": name,
        LOCK_LABEL: f"sha256:{lock_hash}",
        VERSION_LABEL: __version__,
    }
    if prov.revision:
        labels["org.opencontainers.image.revision"] = prov.revision
    if prov.source_url:
        labels["org.opencontainers.image.source"] = prov.source_url
    for entry in entrypoints:
        doc: dict[str, object] = {"kind": entry.kind, "command": list(entry.command)}
        if entry.port is not None:
            doc["port"] = entry.port
        labels[ENTRYPOINT_LABEL + entry.name] = json.dumps(doc, sort_keys=True)
    return tuple(sorted(labels.items()))
