"""``mlpack slurm``: render and submit sbatch scripts, and follow the jobs (status, logs, cancel).

No ``from __future__ import annotations``: ``_job_command`` hands typer ``_job``'s parameters as
they are, so their annotations must be objects, not strings.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlpack.cli.output import note, progress, say
from mlpack.errors import DeployError

if TYPE_CHECKING:
    from mlpack.deploy.slurm import SlurmJob

Image = Annotated[
    str,
    typer.Argument(
        metavar="PATH|IMAGE",
        help="A project folder (built when stale, run as `mlpack run PROJECT`), "
        "REGISTRY/NAME@sha256:..., a registry tag, or a local image.",
    ),
]
Command = Annotated[
    list[str] | None,
    typer.Argument(help="Command and its arguments (default: the image's).", show_default=False),
]
Nodes = Annotated[int, typer.Option("--nodes", "-N", help="Number of nodes.")]
Tasks = Annotated[
    int, typer.Option("--ntasks-per-node", help="Tasks (ranks) per node, e.g. one per GPU.")
]
Gpus = Annotated[int, typer.Option("--gpus-per-node", help="GPUs per node (0: none).")]
Partition = Annotated[str | None, typer.Option("--partition", "-p", help="Slurm partition.")]
Time = Annotated[str | None, typer.Option("--time", "-t", help="Time limit, e.g. 1:00:00.")]
ImageRef = Annotated[
    str | None,
    typer.Option(
        "--image-ref",
        metavar="REGISTRY/NAME",
        help="Where a local IMAGE was pushed: the nodes pull it from there, by its digest.",
    ),
]
Push = Annotated[
    str | None,
    typer.Option(
        "--push", metavar="REGISTRY/NAME:TAG", help="Push the image there first; nodes pull it."
    ),
]
ImageDir = Annotated[
    Path | None,
    typer.Option(
        "--image-dir",
        metavar="DIR",
        help="Export the image to this shared folder (an OCI layout); nodes import it from there.",
    ),
]
Entry = Annotated[
    str | None, typer.Option("--entry", help="A project's entrypoint (default: its training one).")
]
Data = Annotated[
    Path | None,
    typer.Option(
        "--data", metavar="DIR", help="A project's data folder, on the shared filesystem."
    ),
]
Outputs = Annotated[
    Path | None,
    typer.Option(
        "--outputs", metavar="DIR", help="A project's output folder, on the shared filesystem."
    ),
]
Mounts = Annotated[
    list[str] | None,
    typer.Option("--mount", "-v", metavar="HOST:CONTAINER[:ro]", help="Data or output path."),
]
Insecure = Annotated[
    list[str] | None,
    typer.Option("--insecure-registry", help="Allow plain HTTP to this host[:port] on the nodes."),
]
JobName = Annotated[str, typer.Option("--job-name", "-J", help="Slurm job name.")]
Mlpack = Annotated[
    str, typer.Option("--mlpack", metavar="PATH", help="The mlpack command on the nodes.")
]
Port = Annotated[int, typer.Option("--master-port", help="MASTER_PORT for the rendezvous.")]
JobId = Annotated[str, typer.Argument(metavar="JOB", help="Slurm job id, as submit printed.")]


@dataclass(frozen=True, kw_only=True)
class _Source:
    """Where the nodes get the image: at most one of a registry name, a push, a shared folder."""

    image_ref: str | None
    push: str | None
    image_dir: Path | None
    insecure: tuple[str, ...]


def _job(  # noqa: PLR0913 - one parameter per sbatch option
    target: Image,
    command: Command = None,
    *,
    nodes: Nodes = 1,
    ntasks_per_node: Tasks = 1,
    gpus_per_node: Gpus = 0,
    partition: Partition = None,
    time: Time = None,
    image_ref: ImageRef = None,
    push: Push = None,
    image_dir: ImageDir = None,
    entry: Entry = None,
    data: Data = None,
    outputs: Outputs = None,
    mount: Mounts = None,
    insecure_registry: Insecure = None,
    job_name: JobName = "mlpack",
    mlpack: Mlpack = "mlpack",
    master_port: Port = 29500,
) -> "SlurmJob":
    """The job the options describe, its image pinned; DeployError on bad options first.

    A project folder is built first when its image is stale (the build ``mlpack run`` does),
    then its image goes where ``--image-ref``, ``--push`` or ``--image-dir`` say.
    """
    from mlpack.deploy import slurm

    source = _Source(
        image_ref=image_ref, push=push, image_dir=image_dir, insecure=tuple(insecure_registry or ())
    )
    project = Path(target).resolve() if Path(target).is_dir() else None
    job = slurm.SlurmJob(
        image="",
        nodes=nodes,
        ntasks_per_node=ntasks_per_node,
        gpus_per_node=gpus_per_node,
        partition=partition,
        time=time,
        command=tuple(command or ()),
        mounts=tuple(mount or ()),
        insecure=source.insecure,
        job_name=job_name,
        mlpack=mlpack,
        master_port=master_port,
        project=None if project is None else str(project),
        entry=entry,
        data=None if data is None else str(data.resolve()),
        outputs=None if outputs is None else str(outputs.resolve()),
        image_dir=None if image_dir is None else str(image_dir.resolve()),
    )
    slurm.check(job)  # bad options fail before anything is built, pushed or exported
    if sum(x is not None for x in (image_ref, push, image_dir)) > 1:
        msg = "--image-ref, --push and --image-dir each say where the nodes get the image"
        raise DeployError(msg, hint="pass one of them")
    local = target
    if project is not None:
        from mlpack.cli.runs import project_image

        _, _, facts = project_image(target, kind="training")
        facts.entry(entry, "training")  # an unknown --entry fails here, before a push
        local = facts.digest
    return replace(job, image=_placed(local, source, project=project))


def _job_command(act: Callable[..., None]) -> Callable[..., None]:
    """A command with ``_job``'s options, then ``act``'s own: it calls ``act(job, **own)``.

    ``render`` and ``submit`` take the same sbatch options; typer reads them from the
    signature made here, so they are written once, in ``_job``.
    """
    shared = tuple(inspect.signature(_job).parameters.values())
    own = tuple(inspect.signature(act).parameters.values())[1:]

    def command(**given: Any) -> None:
        act(_job(**{p.name: given.pop(p.name) for p in shared}), **given)

    command.__signature__ = inspect.Signature([*shared, *own])  # type: ignore[attr-defined]
    command.__doc__ = act.__doc__
    return command


def _placed(image: str, source: _Source, *, project: Path | None) -> str:
    """Put the local ``image`` where ``source`` says; what the script names it by."""
    from mlpack.deploy.images import pinned
    from mlpack.oci.store import Store

    store = Store.default()
    if source.image_dir is not None:
        from mlpack.pipeline import copy_image

        digest = store.resolve(image)
        copy_image(store, Store(source.image_dir.resolve()), digest)
        note(f"exported {digest} to {source.image_dir}")
        return digest
    if source.push is not None:
        from mlpack.cli.images import _options
        from mlpack.oci.reference import parse as parse_reference
        from mlpack.oci.registry import push

        with progress():
            pushed = push(store, image, source.push, options=_options(None, list(source.insecure)))
        return str(parse_reference(source.push).with_digest(pushed.digest))
    if project is not None and source.image_ref is None:
        msg = f"the image of {project} ({image[:19]}) exists only in the local store"
        hint = f"the nodes cannot read this machine's store: {_OTHER_WAYS}"
        raise DeployError(msg, hint=hint)
    return pinned(image, image_ref=source.image_ref, store=store, other_ways=_OTHER_WAYS)


_OTHER_WAYS = (
    "pass --push REGISTRY/NAME:TAG to push it first, "
    "or --image-dir DIR to export it to a folder the nodes share"
)


def render_cmd(
    job: "SlurmJob",
    *,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write here.")
    ] = None,
) -> None:
    """Write an sbatch script that runs a project or an image, pinned by digest, on every node."""
    from mlpack.deploy import slurm
    from mlpack.oslib.fs import atomic_write

    script = slurm.render(job)
    if output is None:
        say(script.rstrip("\n"))
    else:
        atomic_write(output, script.encode(), mode=0o755)


def submit_cmd(job: "SlurmJob") -> None:
    """Render the sbatch script and submit it; print the job id."""
    from mlpack.deploy import slurm

    slurm.check_gpus(job)
    say(slurm.submit(slurm.render(job), workdir=Path.cwd()))


def status_cmd(job: JobId) -> None:
    """Print the job's state (PENDING, RUNNING, COMPLETED, FAILED, ...)."""
    from mlpack.deploy import slurm

    say(slurm.state(job))


def logs_cmd(
    job: JobId,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="The output file, if Slurm forgot."),
    ] = None,
) -> None:
    """Print the job's output (all tasks' stdout and stderr)."""
    from mlpack.deploy import slurm

    say(slurm.logs(job, output=output).rstrip("\n"))


def cancel_cmd(job: JobId) -> None:
    """Cancel the job."""
    from mlpack.deploy import slurm

    slurm.cancel(job)


def register(app: typer.Typer) -> None:
    """Add ``mlpack slurm`` and its subcommands to ``app``."""
    group = typer.Typer(help="Run images on a Slurm cluster.", no_args_is_help=True)
    group.command("render")(_job_command(render_cmd))
    group.command("submit")(_job_command(submit_cmd))
    group.command("status")(status_cmd)
    group.command("logs")(logs_cmd)
    group.command("cancel")(cancel_cmd)
    app.add_typer(group, name="slurm")
