"""The Docker builder: the rendered Dockerfile built by a Docker engine through the docker SDK.

docker-py has no BuildKit (docker/docker-py#2230), so this is the classic builder: the
template uses its syntax only. The build context is assembled here rather than by the engine:
the project files the code layer would hold (the same ignore rules as the embedded builder),
the Dockerfile, the hash-checked wheelhouse and the lock's .deb files (fetched and verified on
the host, as the embedded builder does) under ``.mlpack/``, which the code stage deletes. The
build runs with ``network_mode="none"``: no step reaches a network, so no step needs a
credential or a CA bundle (which the classic builder could not pass as a secret anyway).
The base goes from the store into the engine by digest, and the built image comes back into
the store, so ``mlpack run`` and ``mlpack push`` see it as they see an embedded build.
The result is content-reproducible, not bit-for-bit (moby/moby#43124: layer mtimes and
``created`` follow the clock).
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlpack.build import context as code_context
from mlpack.build import system
from mlpack.build.protocol import BuildResult, LayerResult
from mlpack.errors import BuildError, ImageError
from mlpack.oci.archive import export_image, import_archive
from mlpack.paths import cache_folder
from mlpack.render import context_files, render_dockerfile
from mlpack.spec import EJECT_DIR, CodeStep, SystemStep, WheelStep, commands

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlpack.oci.store import Store
    from mlpack.spec import ImageSpec, Step

DOCKERFILE: Final = f"{EJECT_DIR}/Dockerfile"
# In the history of the final stage's RUN that deletes what dpkg deleted.
_DELETES: Final = f"< {commands.LOG}/{commands.DELETED}"
_TAIL: Final = 15  # log lines shown when a step fails


class DockerBuilder:
    """Builds through ``client`` (a ``docker.DockerClient``) and copies the image into ``store``."""

    name = "docker"

    def __init__(self, store: Store, *, client: Any, wheels: Mapping[str, Path]) -> None:
        self.store = store
        self.client = client
        self.wheels = wheels

    def check_available(self) -> None:
        """Ping the engine; the pipeline has already checked the socket itself."""
        import docker

        try:
            self.client.ping()
        except docker.errors.DockerException as exc:
            msg = f"the Docker engine does not answer: {exc}"
            raise BuildError(
                msg, hint="check that dockerd runs (`systemctl status docker`)"
            ) from exc

    def build(self, spec: ImageSpec, *, context: Path, tag: str) -> BuildResult:
        """Build ``spec`` in the engine from ``context``; tag it there and in the store."""
        base_id = self.load_base(spec)
        debs = self.fetch_debs(spec)
        with tempfile.TemporaryFile() as ctx:
            write_context(spec, context, self.wheels, ctx, debs=debs)
            ctx.seek(0)
            self._run_build(ctx, tag=tag, base_id=base_id)
        digest = self._into_store(tag)
        return _result(spec, self.store, digest, tag)

    def load_base(self, spec: ImageSpec) -> str:
        """The engine's id of the base (its config digest), loaded from the store if needed."""
        import docker

        base = self.store.image(spec.base_digest)
        config_id = base.manifest.config.digest
        try:
            self.client.images.get(config_id)
        except docker.errors.ImageNotFound:
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "base.tar"
                export_image(self.store, spec.base_digest, archive, tag=spec.base_reference)
                with archive.open("rb") as fh:
                    self.client.images.load(fh)
        return config_id

    def fetch_debs(self, spec: ImageSpec) -> dict[str, Path]:
        """The system step's .deb files by sha256: fetched and verified on the host, as the
        embedded builder does (the build itself has no network).
        """
        cache = cache_folder("debs", home=self.store.root)
        pins = tuple(pin for s in spec.steps if isinstance(s, SystemStep) for pin in s.debs)
        paths = system.fetch_debs(pins, cache=cache) if pins else ()
        return {pin.sha256: path for pin, path in zip(pins, paths, strict=True)}

    def _run_build(self, ctx: Any, *, tag: str, base_id: str) -> None:
        import docker

        log: list[str] = []
        step = "the build"
        try:
            for chunk in self.client.api.build(
                fileobj=ctx, custom_context=True, dockerfile=DOCKERFILE, tag=tag, rm=True,
                forcerm=True, decode=True, buildargs={"BASE_IMAGE": base_id},
                network_mode="none",
            ):  # fmt: skip
                text = str(chunk.get("stream", ""))
                if text.startswith("Step "):
                    step = text.strip()
                log.extend(line for line in text.splitlines() if line.strip())
                if "error" in chunk:
                    tail = "\n".join(log[-_TAIL:])
                    msg = f"docker build failed at {step}: {chunk['error'].strip()}\n{tail}"
                    raise BuildError(
                        msg, hint="fix the step above, or build with the embedded builder"
                    )
        except docker.errors.APIError as exc:
            msg = f"the Docker engine refused the build: {exc.explanation or exc}"
            raise BuildError(msg, hint="check the engine's log (journalctl -u docker)") from exc

    def _into_store(self, tag: str) -> str:
        """``docker save`` the image and import it into the store under ``tag``."""
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "image.tar"
            with archive.open("wb") as fh:
                for chunk in self.client.images.get(tag).save(named=True):
                    fh.write(chunk)
            imported = import_archive(self.store, archive)
        if not imported:
            msg = f"the engine's image {tag} could not be read back"
            raise ImageError(msg, hint="check the engine's `docker save` output")
        digest = imported[0].digest
        self.store.tag(tag, digest)
        return digest


def write_context(
    spec: ImageSpec,
    project: Path,
    wheels: Mapping[str, Path],
    out: Any,
    *,
    debs: Mapping[str, Path],
) -> None:
    """Write the build context tar: project files, the Dockerfile, what its builder stages read
    under ``.mlpack/`` (requirements, the system stage's script and checksums), the wheels and
    the .deb files (both by sha256).
    """
    code = next((s for s in spec.steps if isinstance(s, CodeStep)), None)
    excludes = (*code.excludes, f"/{EJECT_DIR}") if code else (f"/{EJECT_DIR}",)
    entries = code_context.select(project, code_context.project_rules(project, excludes))
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            tar.addfile(*_member(project, entry))
        _add_bytes(tar, DOCKERFILE, render_dockerfile(spec).encode())
        for name, data in context_files(spec).items():
            _add_bytes(tar, name, data)
        for step in spec.steps:
            if isinstance(step, WheelStep):
                for pin in step.wheels:
                    path = wheels.get(pin.sha256)
                    if path is None:
                        msg = f"{pin.filename} ({pin.name}=={pin.version}) is not in the wheelhouse"
                        raise BuildError(msg, hint="run `mlpack fetch`")
                    _add_file(tar, f"{EJECT_DIR}/wheels/{step.name}/{pin.filename}", path)
            elif isinstance(step, SystemStep):
                for deb in step.debs:
                    _add_file(tar, f"{EJECT_DIR}/debs/{deb.filename}", debs[deb.sha256])


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = path.stat().st_size, 0o644
    with path.open("rb") as fh:
        tar.addfile(info, fh)


def _member(project: Path, entry: code_context.CodeEntry) -> tuple[tarfile.TarInfo, Any]:
    info = tarfile.TarInfo(entry.rel)
    if entry.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, None
    if entry.kind == "symlink":
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.target, 0o777
        return info, None
    data = (project / entry.rel).read_bytes()
    info.size, info.mode = len(data), 0o755 if entry.executable else 0o644
    return info, io.BytesIO(data)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _result(spec: ImageSpec, store: Store, digest: str, tag: str) -> BuildResult:
    """The stored image's layers, named after the plan's steps.

    The classic builder's history says ``COPY dir:<hash> in /opt/venv/``, not which stage it
    came from, so layers are matched in plan order: the copy into ``/`` and the RUN that
    deletes what dpkg deleted are the system step's (two layers: a COPY cannot delete), copies
    into the prefix are the venv and wheel steps in turn, the copy into the workdir is
    the code.
    """
    image = store.image(digest)
    base_ids = store.image(spec.base_digest).config.diff_ids
    history = [h for h in image.config.raw.get("history") or () if not h.get("empty_layer")]
    into_prefix = iter(s for s in spec.steps if s.role in ("interpreter", "heavy", "packages"))
    by_role = {s.role: s for s in spec.steps if s.role in ("system", "code")}
    layers = []
    for i, (desc, diff) in enumerate(
        zip(image.manifest.layers, image.config.diff_ids, strict=True)
    ):
        created_by = str(history[i].get("created_by", "")) if i < len(history) else ""
        if i < len(base_ids) and base_ids[i] == diff:
            layers.append(LayerResult(step="base", role=None, digest=desc.digest, diff_id=diff,
                                      size=desc.size, cached=True))  # fmt: skip
            continue
        step: Step | None = None
        if f" in {spec.prefix}/" in created_by:
            step = next(into_prefix, None)
        elif f" in {spec.workdir}/" in created_by:
            step = by_role.get("code")
        elif created_by.rstrip().endswith(" in /") or _DELETES in created_by:
            step = by_role.get("system")
        name, role = (step.name, step.role) if step else ("docker", None)
        layers.append(
            LayerResult(step=name, role=role, digest=desc.digest, diff_id=diff, size=desc.size,
                        cached=False)
        )  # fmt: skip
    return BuildResult(
        backend="docker",
        reference=tag,
        digest=digest,
        config_digest=image.manifest.config.digest,
        platform=spec.platform,
        base=f"{spec.base_reference}@{spec.base_digest}",
        layers=tuple(layers),
    )
