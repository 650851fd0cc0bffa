"""``mlpack slurm``: render and submit sbatch scripts, and follow the jobs (status, logs, cancel)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlpack.cli.output import say

if TYPE_CHECKING:
    from mlpack.deploy.slurm import SlurmJob

Image = Annotated[
    str,
    typer.Argument(
        metavar="IMAGE", help="REGISTRY/NAME@sha256:..., a registry tag, or a local image."
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


def _job(  # noqa: PLR0913 - one parameter per sbatch option
    image: str,
    command: list[str] | None,
    *,
    nodes: int,
    ntasks_per_node: int,
    gpus_per_node: int,
    partition: str | None,
    time: str | None,
    image_ref: str | None,
    mount: list[str] | None,
    insecure_registry: list[str] | None,
    job_name: str,
    mlpack: str,
    master_port: int,
) -> SlurmJob:
    """The job the options describe, its image pinned; DeployError on bad options first."""
    from mlpack.deploy import slurm
    from mlpack.deploy.images import pinned
    from mlpack.oci.store import Store

    job = slurm.SlurmJob(
        image="",
        nodes=nodes,
        ntasks_per_node=ntasks_per_node,
        gpus_per_node=gpus_per_node,
        partition=partition,
        time=time,
        command=tuple(command or ()),
        mounts=tuple(mount or ()),
        insecure=tuple(insecure_registry or ()),
        job_name=job_name,
        mlpack=mlpack,
        master_port=master_port,
    )
    slurm.check(job)  # bad options fail before the store is read
    return replace(job, image=pinned(image, image_ref=image_ref, store=Store.default()))


def render_cmd(  # noqa: PLR0913
    image: Image,
    command: Command = None,
    *,
    nodes: Nodes = 1,
    ntasks_per_node: Tasks = 1,
    gpus_per_node: Gpus = 0,
    partition: Partition = None,
    time: Time = None,
    image_ref: ImageRef = None,
    mount: Mounts = None,
    insecure_registry: Insecure = None,
    job_name: JobName = "mlpack",
    mlpack: Mlpack = "mlpack",
    master_port: Port = 29500,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write here.")
    ] = None,
) -> None:
    """Write an sbatch script that runs IMAGE, pinned by digest, on every node."""
    from mlpack.deploy import slurm
    from mlpack.oslib.fs import atomic_write

    job = _job(
        image,
        command,
        nodes=nodes,
        ntasks_per_node=ntasks_per_node,
        gpus_per_node=gpus_per_node,
        partition=partition,
        time=time,
        image_ref=image_ref,
        mount=mount,
        insecure_registry=insecure_registry,
        job_name=job_name,
        mlpack=mlpack,
        master_port=master_port,
    )
    script = slurm.render(job)
    if output is None:
        say(script.rstrip("\n"))
    else:
        atomic_write(output, script.encode(), mode=0o755)


def submit_cmd(  # noqa: PLR0913
    image: Image,
    command: Command = None,
    *,
    nodes: Nodes = 1,
    ntasks_per_node: Tasks = 1,
    gpus_per_node: Gpus = 0,
    partition: Partition = None,
    time: Time = None,
    image_ref: ImageRef = None,
    mount: Mounts = None,
    insecure_registry: Insecure = None,
    job_name: JobName = "mlpack",
    mlpack: Mlpack = "mlpack",
    master_port: Port = 29500,
) -> None:
    """Render the sbatch script and submit it; print the job id."""
    from mlpack.deploy import slurm

    job = _job(
        image,
        command,
        nodes=nodes,
        ntasks_per_node=ntasks_per_node,
        gpus_per_node=gpus_per_node,
        partition=partition,
        time=time,
        image_ref=image_ref,
        mount=mount,
        insecure_registry=insecure_registry,
        job_name=job_name,
        mlpack=mlpack,
        master_port=master_port,
    )
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
    group.command("render")(render_cmd)
    group.command("submit")(submit_cmd)
    group.command("status")(status_cmd)
    group.command("logs")(logs_cmd)
    group.command("cancel")(cancel_cmd)
    app.add_typer(group, name="slurm")
