"""Project runs and services: ``run PROJECT``, ``runs``, ``rerun`` and ``serve``.

``mlpack run`` (containers.py) hands a project directory to ``run_project`` here: build when
the image is not up to date, mount the analysed layout, run the training entrypoint, stream
and save the log, and write the run record (mlpack.runs).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlpack.cli.output import note, say, table
from mlpack.errors import MlpackError
from mlpack.vocabulary import Backend

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import BinaryIO

    from mlpack.config import ProjectConfig
    from mlpack.runs import ImageFacts, MountRecord, RunRecord
    from mlpack.runtime.protocol import Mount, RunConfig


@contextlib.contextmanager
def teed(log: Path) -> Iterator[None]:
    """Copy everything written to fds 1 and 2 (ours and the container's) into ``log`` too."""
    import sys

    log.parent.mkdir(parents=True, exist_ok=True)
    sink = log.open("ab")
    guard = threading.Lock()
    pumps, saved = [], []
    for fd in (1, 2):
        stream = sys.stdout if fd == 1 else sys.stderr
        stream.flush()
        read, write = os.pipe()
        saved.append(os.dup(fd))
        os.dup2(write, fd)
        os.close(write)
        pump = threading.Thread(target=_pump, args=(read, saved[-1], sink, guard), daemon=True)
        pump.start()
        pumps.append(pump)
    try:
        yield
    finally:
        for fd, old in zip((1, 2), saved, strict=True):
            (sys.stdout if fd == 1 else sys.stderr).flush()
            os.dup2(old, fd)  # closes our write end: the pump sees EOF once the container's go
        for pump in pumps:
            pump.join(timeout=5)
        for old in saved:
            os.close(old)
        sink.close()


def _pump(read: int, out: int, sink: BinaryIO, guard: threading.Lock) -> None:
    with contextlib.suppress(OSError):
        while data := os.read(read, 65536):
            with contextlib.suppress(OSError):
                os.write(out, data)
            with guard:
                sink.write(data)
                sink.flush()
    os.close(read)


def to_mounts(mounts: tuple[MountRecord, ...]) -> tuple[Mount, ...]:
    """Recorded mounts as the runtime takes them."""
    from mlpack.runtime.protocol import Mount

    return tuple(
        Mount(source=Path(m.source), target=m.target, read_only=m.read_only) for m in mounts
    )


def project_mounts(
    root: Path,
    config: ProjectConfig,
    facts: ImageFacts,
    volumes: tuple[Mount, ...],
    *,
    data: Path | None,
    output: Path | None,
    owner: tuple[int, int],
) -> tuple[MountRecord, ...]:
    """The project's layout mounted (``data``/``output`` replace its folders), less any
    folder a ``-v`` mount replaces, then the ``-v`` mounts.
    """
    from mlpack.runs import MountRecord, layout_mounts

    layout = layout_mounts(
        root,
        workdir=facts.workdir,
        inputs=config.inputs,
        outputs=config.outputs,
        data=data,
        output=output,
        owner=owner,
    )
    given = tuple(
        MountRecord(source=str(v.source), target=v.target, read_only=v.read_only) for v in volumes
    )
    taken = {v.target for v in given}
    return (*(m for m in layout if m.target not in taken), *given)


def backend_image(digest: str, backend: Backend) -> str:
    """The image as ``backend`` names it: the store's digest, or in a Docker engine the config
    digest (its image id), loaded there from the store when the engine lacks it.
    """
    if backend == "embedded":
        return digest
    import tempfile

    import docker

    from mlpack.oci.archive import export_image
    from mlpack.oci.store import Store
    from mlpack.runtime.docker import DockerRuntime

    store = Store.default()
    image_id = store.image(digest).manifest.config.digest
    with DockerRuntime() as engine:
        client = engine.client()
        try:
            client.images.get(image_id)
        except docker.errors.ImageNotFound:
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "image.tar"
                export_image(store, digest, archive, fmt="docker")
                with archive.open("rb") as fh:
                    client.images.load(fh)
    return image_id


def execute(record: RunRecord, config: RunConfig, backend: Backend, root: Path) -> RunRecord:
    """Run ``config`` with its output streamed and saved; the record written before and after."""
    from dataclasses import replace

    from mlpack.cli.containers import launch
    from mlpack.runs import RunStore, check_writable_outputs, ended, full_outputs, output_digests

    check_writable_outputs(record.mounts)
    store = RunStore(root)
    record = replace(record, owner=os.getpid())
    store.write(record)
    note(f"run {record.id}: {' '.join(record.command) or '(the image command)'}")
    started = time.monotonic()
    try:
        with teed(store.log_path(record.id)):
            result = launch(config, backend, account=os.geteuid() == 0)
    except MlpackError:
        # The container never ran (its setup failed): the record says so, rather than being
        # left "running" for `runs` to call interrupted.
        duration = round(time.monotonic() - started, 3)
        store.write(replace(record, status="failed", duration_s=duration, owner=0))
        raise
    record = ended(
        replace(record, outputs=output_digests(record.mounts)),
        exit_code=result.exit_code,
        signal=result.signal,
        oom_killed=result.oom_killed,
        duration_s=time.monotonic() - started,
        memory_peak=result.memory_peak,
        cpu_time_us=result.cpu_time_us,
    )
    store.write(record)
    for full in full_outputs(record.mounts) if record.exit_code else ():
        note(f"error: the output folder {full} is full: no space left on its filesystem")
        note("hint: what the run wrote there is kept (digests in the record); free space, rerun")
    how = "killed: out of memory" if result.oom_killed else f"exit {result.exit_code}"
    note(
        f"run {record.id} {record.status} ({how}) in {record.duration_s:.1f}s; "
        f"{len(record.outputs)} output files; record {store.folder(record.id)}"
    )
    return record


def project_image(
    target: str, *, kind: str, image: str | None = None
) -> tuple[Path | None, ProjectConfig | None, ImageFacts]:
    """A project directory (built first, unless ``image`` is given to run it with) or an image
    reference: the project's root and config (None for an image), and the image's facts.

    The config is read (or analysed) once here and serves the build and the layout.
    """
    from mlpack.cli.build import _note
    from mlpack.cli.output import progress
    from mlpack.oci.store import Store
    from mlpack.pipeline import build_project, project_config
    from mlpack.runs import image_facts

    path = Path(target)
    if not path.is_dir():
        return None, None, image_facts(image or target, Store.default())
    root = path.resolve()
    config = project_config(root, note=_note)
    if image is None:
        with progress(notice_prefix="note: "):  # a cache hit when nothing changed
            image = build_project(root, config=config, note=_note).digest
    facts = image_facts(image, Store.default())
    if not facts.entrypoints:
        note(f"note: the project declares no {kind} entrypoint: the image's command runs")
    return root, config, facts


def run_project(
    target: str,
    base: RunConfig,
    *,
    entry: str | None,
    data: Path | None,
    output: Path | None,
    deterministic: bool,
    backend: Backend,
    image: str | None = None,
) -> int:
    """``mlpack run PROJECT``: build, mount the layout, run, record; the exit code.

    ``base``: the run options as given (``-e``, ``-v``, limits); the image, command, env,
    mounts and user are filled in here. ``image``: run the project with this stored image
    instead of building it (a Slurm task runs the image its job pinned).
    """
    from dataclasses import replace

    from mlpack.runs import (
        RunRecord,
        RunStore,
        git_state,
        host_name,
        input_mounts,
        now_iso,
        output_owner,
        run_env,
        task_placement,
    )

    root, config, facts = project_image(target, kind="training", image=image)
    assert root is not None
    assert config is not None
    chosen = facts.entry(entry, "training")
    words = base.command or (chosen.command if chosen else ())
    owner = output_owner()
    store = RunStore(root)
    layout = project_mounts(root, config, facts, base.mounts, data=data, output=output, owner=owner)
    mounts = input_mounts(layout, store.digest_cache())
    passed, recorded = run_env(facts.env, base.env, deterministic=deterministic)
    commit, dirty = git_state(root)
    record = RunRecord(
        id=store.new_id(),
        project=str(root),
        image=image or target,
        image_digest=facts.digest,
        command=words,
        env=recorded,
        mounts=mounts,
        backend=backend,
        host=host_name(),
        started=now_iso(),
        lock_hash=facts.lock_hash,
        git_commit=commit,
        git_dirty=dirty,
        task=task_placement(),
    )
    run = replace(
        base,
        image=backend_image(facts.digest, backend),
        command=words,
        env=passed,
        mounts=to_mounts(mounts),
        user=base.user or f"{owner[0]}:{owner[1]}",
    )
    return execute(record, run, backend, root).exit_code or 0


def runs(
    path: Annotated[Path, typer.Argument(help="The project folder.")] = Path(),
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """List the recorded runs of a project, oldest first."""
    import json
    from dataclasses import asdict

    from mlpack.runs import RunStore

    records = RunStore(path.resolve()).all()
    if as_json:
        say(json.dumps([asdict(r) for r in records], indent=2))
        return
    rows = [
        (
            r.id,
            r.status,
            "" if r.exit_code is None else str(r.exit_code),
            r.started[:19],
            "" if r.duration_s is None else f"{r.duration_s:.1f}s",
            r.image_digest[7:19],
            "" if r.task is None else f"{r.task.rank}/{r.task.world_size}",
            str(len(r.outputs)),
            " ".join(r.command)[:40],
        )
        for r in records
    ]
    table(("ID", "STATUS", "EXIT", "STARTED", "TIME", "IMAGE", "RANK", "OUTPUTS", "COMMAND"), rows)


def rerun(
    run_id: Annotated[str, typer.Argument(metavar="ID", help="A run id (a unique prefix).")],
    path: Annotated[Path, typer.Option("--project", help="The project folder.")] = Path(),
    *,
    backend: Annotated[
        Backend, typer.Option("--backend", help="embedded (default) or docker.")
    ] = "embedded",
) -> None:
    """Run a recorded run again: same image digest, command, env and inputs; compare outputs.

    Refuses when an input changed or the image is gone. The outputs go to fresh folders under
    the new run's record; the exit code is 1 when any output file differs.
    """
    from dataclasses import replace

    from mlpack.oci.store import Store
    from mlpack.runs import (
        RunStore,
        check_inputs,
        compare_outputs,
        host_name,
        image_facts,
        make_output_dir,
        now_iso,
        output_owner,
    )
    from mlpack.runtime.protocol import RunConfig

    store = RunStore(path.resolve())
    old = store.load(run_id)
    image_facts(old.image_digest, Store.default())  # RunError when the image is gone
    check_inputs(old, store.digest_cache())
    new_id = store.new_id()
    owner = output_owner()
    mounts = []
    for i, m in enumerate(old.mounts):
        if not m.read_only:
            fresh = store.folder(new_id) / "outputs" / str(i)
            make_output_dir(fresh, owner)
            m = replace(m, source=str(fresh))
        mounts.append(m)
    for key in sorted(k for k, v in old.env if v is None and k not in os.environ):
        note(f"note: {key} was given at run time and is not recorded; not set here, so unset")
    env = tuple(
        (k, v if v is not None else os.environ[k])
        for k, v in old.env
        if v is not None or k in os.environ
    )
    record = replace(
        old,
        id=new_id,
        mounts=tuple(mounts),
        outputs=(),
        status="running",
        started=now_iso(),
        host=host_name(),
        backend=backend,
        rerun_of=old.id,
    )
    config = RunConfig(
        image=backend_image(old.image_digest, backend),
        command=old.command,
        env=env,
        mounts=to_mounts(record.mounts),
        user=f"{owner[0]}:{owner[1]}",
    )
    done = execute(record, config, backend, store.project)
    rows = compare_outputs(old.outputs, done.outputs)
    for file, verdict in rows:
        say(f"{verdict:<10} {file}")
    same = all(v == "identical" for _, v in rows)
    say(f"outputs {'identical' if same else 'differ'} to run {old.id}")
    raise typer.Exit(done.exit_code or (0 if same else 1))


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("runs")(runs)
    app.command("rerun")(rerun)
    from mlpack.cli.serve import serve

    app.command("serve")(serve)
