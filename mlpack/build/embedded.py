"""The embedded builder: an ImageSpec to an OCI image in the store, with no daemon.

Each step becomes one layer, staged on the host and written by the deterministic layer writer;
a step whose key is in the build cache is reused as is. The base's layers are reused byte for
byte. The image is tagged only after its config and manifest are stored, so an interrupted
build never leaves a half-written image under a name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import installer

from mlpack.build import bytecode, emulation, system
from mlpack.build import context as code_context
from mlpack.build.cache import LEVEL, BuildCache, step_key
from mlpack.build.install import clashes, install_wheel
from mlpack.build.protocol import BuildResult, LayerResult
from mlpack.errors import BuildError, ImageError
from mlpack.oci.digest import file_digest
from mlpack.oci.documents import Descriptor
from mlpack.oci.layer_compression import MEDIA_TYPES, identity
from mlpack.oci.layer_writer import write_layer
from mlpack.oslib.fs import NO_SPACE
from mlpack.oslib.linux import DEFAULT_PATH
from mlpack.paths import cache_folder
from mlpack.progress import reporter
from mlpack.spec import EJECT_DIR, LAYER_MTIME, CodeStep, SystemStep, VenvStep, WheelStep, commands

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from mlpack.build.protocol import StepRunner
    from mlpack.oci.layer_compression import LayerDigests, Output
    from mlpack.oci.store import Store, StoredImage
    from mlpack.spec import ImageSpec, Step
    from mlpack.vocabulary import Compression


class EmbeddedBuilder:
    """Builds into ``store``; ``wheels`` maps each pinned sha256 to its wheelhouse file.

    ``runner`` executes the steps that must run in the image (apt); without one, such a step
    is skipped with a notice (the rendered Dockerfile still has it).
    """

    name = "embedded"

    def __init__(
        self,
        store: Store,
        *,
        wheels: Mapping[str, Path],
        runner: StepRunner | None = None,
        compression: Compression = "gzip",
    ) -> None:
        self.store = store
        self.wheels = wheels
        self.runner = runner
        self.compression = compression  # of the layers it writes (the base's are reused as is)
        self.cache = BuildCache(store)

    def check_available(self) -> None:
        """Nothing to check: the embedded builder needs no daemon and no privileges."""

    def build(self, spec: ImageSpec, *, context: Path, tag: str) -> BuildResult:
        """Build ``spec`` from ``context`` (the project folder) and tag it ``tag``."""
        base = self._base(spec)
        self.store.prepare()
        # A staging folder the store's cleaners leave alone while this process holds it; it is
        # removed on every way out (a full disk included) before the error is reported.
        with (
            _disk_space(self.store.root),
            self.store.writing(),
            self.store.staging("build") as work,
        ):
            layers = [
                LayerResult(step="base", role=None, digest=d.digest, diff_id=diff,
                            size=d.size, cached=True)
                for d, diff in zip(base.manifest.layers, base.config.diff_ids, strict=True)
            ]  # fmt: skip
            skipped: list[str] = []
            if not self._compiles(spec) and any(isinstance(s, WheelStep) for s in spec.steps):
                reporter().notice(
                    "no bytecode compiled into the image: compiling needs the image's own Python "
                    "running on the embedded runtime (root or user namespaces, and the target "
                    "platform or its qemu handler); each container start compiles what it imports"
                )
            for step in spec.steps:
                built = self._step(step, spec=spec, context=context, work=work)
                if built is None:
                    skipped.append(step.name)
                else:
                    layers.append(built)
            config = image_config(spec, base, layers)
            descriptors = [
                Descriptor(media_type=d.media_type, digest=d.digest, size=d.size)
                for d in base.manifest.layers
            ] + [
                Descriptor(media_type=MEDIA_TYPES[self.compression], digest=x.digest, size=x.size)
                for x in layers[len(base.manifest.layers) :]
            ]
            digest = self.store.add_image(config=config, layers=descriptors, ref=tag)
        image = self.store.image(digest)
        return BuildResult(
            backend="embedded",
            reference=tag,
            digest=digest,
            config_digest=image.manifest.config.digest,
            platform=spec.platform,
            base=f"{spec.base_reference}@{spec.base_digest}",
            layers=tuple(layers),
            skipped=tuple(skipped),
        )

    def _base(self, spec: ImageSpec) -> StoredImage:
        try:
            base = self.store.image(spec.base_digest)
        except ImageError as exc:
            msg = f"the base image {spec.base_reference}@{spec.base_digest} is not in the store"
            raise BuildError(msg, hint="run `mlpack lock` or pull the base by digest") from exc
        platform = f"{base.config.os}/{base.config.architecture}"
        if platform != spec.platform:
            msg = f"the base image is {platform}, but the lock targets {spec.platform}"
            raise BuildError(msg, hint="re-lock for the base's platform, or set base = ...")
        return base

    def _step(
        self, step: Step, *, spec: ImageSpec, context: Path, work: Path
    ) -> LayerResult | None:
        if isinstance(step, SystemStep) and self.runner is None:
            names = ", ".join(n for n, _ in step.packages)
            reporter().notice(
                f"system packages ({names}) are not installed: no container runtime here to run "
                "apt in the base (root or user namespaces needed); the rendered Dockerfile does"
            )
            return None
        staging = work / step.name
        recipe = self._recipe(step, spec=spec, context=context, work=work, staging=staging)
        found = self.cache.get(self._compressed(recipe.key))
        hit = found is not None
        if found is None:
            staging.mkdir()
            layer = self._write(step.name, recipe, staging=staging, work=work)
            dropped = recipe.pyc_dropped()
            stored = recipe.stored_key() if recipe.stored_key else recipe.key
            self.cache.put(self._compressed(stored), layer, pyc_dropped=dropped)
        else:
            layer, dropped = found
        return LayerResult(
            step=step.name,
            role=step.role,
            digest=layer.digest,
            diff_id=layer.diff_id,
            size=layer.size,
            cached=hit,
            pyc_dropped=dropped,
        )

    def _compressed(self, key: str) -> str:
        """A recipe's key with the compressor's identity: it decides the blob's bytes."""
        return step_key(key, identity(self.compression, level=LEVEL))

    def _write(self, name: str, recipe: _Recipe, *, staging: Path, work: Path) -> LayerDigests:
        """Stage the step, pack its layer and put the blob into the store.

        The layer's compressed bytes are reported as they are written (bytes and rate).
        """
        whiteouts = recipe.fill()
        task = f"layer {name}"
        reporter().start(task, None)
        blob = work / f"{name}.tar.gz"
        with blob.open("wb") as fh:
            layer = write_layer(
                staging, _Reported(fh, task), source_date_epoch=LAYER_MTIME,
                level=LEVEL if self.compression == "gzip" else None,
                compression=self.compression, blocks=True, modes=recipe.modes, whiteouts=whiteouts,
                preserve_metadata=recipe.preserve, on_special="skip",
            )  # fmt: skip
        reporter().finish(task)
        self.store.put_file(blob, digest=layer.digest)
        return layer

    def _recipe(
        self, step: Step, *, spec: ImageSpec, context: Path, work: Path, staging: Path
    ) -> _Recipe:
        """The step's cache key, how to stage it, and how to pack it."""
        if isinstance(step, SystemStep):
            assert self.runner is not None  # checked by _step
            # The layer is a diff against the base: the base digest is part of its key.
            key = step_key(step.key(), spec.base_digest, commands.SYSTEM_SCRIPT)
            install = partial(system.stage_system, step, self.runner, image=spec.base_digest,
                              cache=cache_folder("debs", home=self.store.root), work=work,
                              staging=staging)  # fmt: skip

            def fill() -> tuple[str, ...]:
                # Only a cache miss executes dpkg in the base: check that it can run here.
                names = ", ".join(f"{n}={v}" for n, v in step.packages)
                emulation.require_execution(
                    spec.platform, f"installing the system packages {names}"
                )
                return install()

            return _Recipe(key=key, fill=fill, preserve=True)
        if isinstance(step, VenvStep):
            return _Recipe(key=step_key(step.key()), fill=_no_whiteouts(stage_venv, step, staging))
        if isinstance(step, WheelStep):
            return self._wheel_recipe(step, spec=spec, staging=staging)
        rules = code_context.project_rules(context, (*step.excludes, f"/{EJECT_DIR}"))
        entries = code_context.select(context, rules)
        return _Recipe(
            key=step_key(step.key(), code_context.tree_hash(context, entries)),
            fill=_no_whiteouts(stage_code, step, context, entries, staging),
            modes={f"{step.workdir.strip('/')}/{d}": 0o777 for d in step.writable_dirs},
        )

    def _wheel_recipe(self, step: WheelStep, *, spec: ImageSpec, staging: Path) -> _Recipe:
        """Install the step's wheels, then compile their bytecode where the image's Python runs.

        A compile that fails leaves the layer as it is without bytecode, cached under that key;
        the .pyc that two compiles disagree on are left out of the layer, which keeps its key.
        """
        plain = step_key(step.key(), installer.__version__, "no-bytecode")
        runner = self.runner if self._compiles(spec) else None
        if runner is None:
            return _Recipe(key=plain, fill=_no_whiteouts(self._stage_wheels, step, staging))
        # The .pyc bytes are the base interpreter's: the base digest is part of the key.
        python = spec.interpreter
        key = step_key(step.key(), installer.__version__, commands.BYTECODE_MODE,
                       commands.COMPILE_SCRIPT, bytecode.RULES, spec.base_digest,
                       python)  # fmt: skip
        compiled: list[bytecode.Bytecode] = []

        def stage_and_compile() -> tuple[str, ...]:
            self._stage_wheels(step, staging)
            compiled.append(bytecode.compile_step(step, runner, image=spec.base_digest,
                                                  python=python, staging=staging))  # fmt: skip
            return ()

        return _Recipe(key=key, fill=stage_and_compile,
                       stored_key=lambda: key if all(c.compiled for c in compiled) else plain,
                       pyc_dropped=lambda: tuple(p for c in compiled for p in c.dropped))  # fmt: skip

    def _compiles(self, spec: ImageSpec) -> bool:
        """Whether the wheel layers get bytecode: the image's Python must run here."""
        return self.runner is not None and emulation.can_execute(spec.platform)

    def _stage_wheels(self, step: WheelStep, staging: Path) -> None:
        paths = []
        for pin in step.wheels:
            path = self.wheels.get(pin.sha256)
            if path is None:
                msg = f"{pin.filename} ({pin.name}=={pin.version}) is not in the wheelhouse"
                raise BuildError(msg, hint="run `mlpack fetch` (it downloads every pinned file)")
            paths.append(path)
        task = f"install {step.name}"
        reporter().start(task, sum(p.stat().st_size for p in paths))
        for pin, path in zip(step.wheels, paths, strict=True):
            verify(path, pin.sha256)
            install_wheel(path, staging=staging, prefix=step.prefix, python=step.python)
            reporter().advance(task, path.stat().st_size)
        reporter().finish(task)
        clashing = clashes(staging / step.site_packages.strip("/"))
        if clashing:
            first, dists = next(iter(clashing.items()))
            reporter().notice(
                f"{len(clashing)} file(s) of {step.name} differ between the distributions that "
                f"install them ({first}: {', '.join(dists)}); the image has the copy of the one "
                "installed last, as with pip"
            )


class _Reported:
    """A layer's output file that reports each write's size to the task ``task``."""

    def __init__(self, out: Output, task: str) -> None:
        self._out = out
        self._task = task

    def write(self, data: bytes, /) -> object:
        """Write ``data`` and report its size."""
        written = self._out.write(data)
        reporter().advance(self._task, len(data))
        return written


@dataclass(frozen=True, kw_only=True)
class _Recipe:
    """How one step becomes a layer: its cache key, the staging function, the packing."""

    key: str
    fill: Callable[[], tuple[str, ...]]  # stages the tree; returns the paths to white out
    modes: Mapping[str, int] = field(default_factory=dict)
    preserve: bool = False  # keep the entries' modes and owners (a diff of the base's tree)
    stored_key: Callable[[], str] | None = None  # the key the layer is cached under, if not key
    pyc_dropped: Callable[[], tuple[str, ...]] = tuple  # after fill: .pyc left out (unstable)


@contextlib.contextmanager
def _disk_space(root: Path) -> Iterator[None]:
    """A full disk while building: one error naming the folder, not a traceback."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        msg = f"no space left on the device of {root} while building: {exc.strerror}"
        raise BuildError(
            msg, hint="free space (`mlpack prune`) or point MLPACK_HOME at a larger disk"
        ) from exc


def _no_whiteouts(fn: Callable[..., None], *args: Any) -> Callable[[], tuple[str, ...]]:
    def fill() -> tuple[str, ...]:
        fn(*args)
        return ()

    return fill


def verify(path: Path, sha256: str) -> None:
    """Re-check a wheelhouse file against the lock before installing it."""
    digest = file_digest(path).removeprefix("sha256:")
    if digest != sha256:
        msg = f"{path.name} in the wheelhouse has sha256 {digest}, the lock says {sha256}"
        raise BuildError(msg, hint=f"delete {path} and re-run `mlpack fetch`")


def stage_venv(step: VenvStep, staging: Path) -> None:
    """Write the venv skeleton: pyvenv.cfg and bin/python* links to the base's interpreter."""
    root = staging / step.prefix.strip("/")
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "lib" / f"python{step.python_minor}" / "site-packages").mkdir(parents=True)
    (root / "lib64").symlink_to("lib")
    (root / "bin" / "python").symlink_to(f"{step.home}/python3")
    (root / "bin" / "python3").symlink_to("python")
    (root / "bin" / f"python{step.python_minor}").symlink_to("python")
    (root / "pyvenv.cfg").write_text(
        f"home = {step.home}\ninclude-system-site-packages = false\nversion = {step.python}\n"
    )


def stage_code(
    step: CodeStep, context: Path, entries: tuple[code_context.CodeEntry, ...], staging: Path
) -> None:
    """Copy the selected project files to the workdir, plus the (empty) output folders."""
    workdir = staging / step.workdir.strip("/")
    workdir.mkdir(parents=True)
    code_context.stage(context, entries, workdir)
    for rel in step.writable_dirs:
        (workdir / rel).mkdir(parents=True, exist_ok=True)


def image_config(spec: ImageSpec, base: StoredImage, layers: list[LayerResult]) -> dict[str, Any]:
    """The image config: the base's, with the spec's env, user, command and labels on top."""
    raw = base.config.raw
    base_conf: dict[str, Any] = raw.get("config") or {}
    env: dict[str, str] = {}
    for item in base_conf.get("Env") or ():
        key, _, value = str(item).partition("=")
        env[key] = value
    env["PATH"] = ":".join((*spec.path_prepend, env.get("PATH") or DEFAULT_PATH))
    env.update(spec.env)
    conf: dict[str, Any] = {
        "Env": [f"{k}={v}" for k, v in env.items()],
        "User": spec.user,
        "WorkingDir": spec.workdir,
        "Labels": {**(base_conf.get("Labels") or {}), **dict(spec.labels)},
    }
    cmd = list(spec.cmd) or base_conf.get("Cmd")
    if cmd:
        conf["Cmd"] = cmd
    if base_conf.get("Entrypoint"):
        conf["Entrypoint"] = base_conf["Entrypoint"]
    if spec.ports:
        conf["ExposedPorts"] = {f"{p}/tcp": {} for p in spec.ports}
    if spec.volumes:
        conf["Volumes"] = {v: {} for v in spec.volumes}
    built = layers[len(base.config.diff_ids) :]
    history = list(raw.get("history") or ()) + [
        {"created": spec.created, "created_by": f"mlpack: {layer.step} ({layer.role})"}
        for layer in built
    ]
    doc: dict[str, Any] = {
        "architecture": base.config.architecture,
        "os": base.config.os,
        "created": spec.created,
        "config": conf,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }
    if base.config.variant:
        doc["variant"] = base.config.variant
    return doc
