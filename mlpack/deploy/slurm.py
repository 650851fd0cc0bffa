"""Slurm: render an sbatch script that runs a digest-pinned image on every node, and drive sbatch.

The nodes need no daemon: each brings the image into its own store once, pulled from a registry
or imported from an OCI layout on a shared filesystem, and runs it with the embedded runtime, so
the script names the image by digest and never relies on a local tag. A project folder on the
shared filesystem is run as ``mlpack run PROJECT`` runs it (its layout mounted, one run record
per task). Slurm's commands (sbatch, squeue, sacct, scancel) are the only interface to the
cluster; a missing command or a refusal is a DeployError, never a traceback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlpack.errors import DeployError
from mlpack.render import render_template

TEMPLATE = "slurm/sbatch.sh.j2"
OUTPUT_PATTERN = "mlpack-slurm-%j.out"
_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^\d+$")
_JOB_ID = re.compile(r"^\d+(_\d+)?$")


@dataclass(frozen=True, kw_only=True)
class SlurmJob:
    """Everything the sbatch script says; rendering it is a pure function of these fields."""

    image: str  # registry reference pinned by digest; with image_dir, the bare digest
    nodes: int
    image_dir: str | None = None  # a shared OCI layout the nodes import the image from
    project: str | None = None  # a project folder on the shared filesystem, run as a project
    entry: str | None = None  # the project's entrypoint (default: its training one)
    data: str | None = None  # replaces the project's data folder (``mlpack run --data``)
    outputs: str | None = None  # replaces its first output folder (``mlpack run --output``)
    ntasks_per_node: int = 1
    gpus_per_node: int = 0
    partition: str | None = None
    time: str | None = None
    command: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    insecure: tuple[str, ...] = ()
    job_name: str = "mlpack"
    output: str = OUTPUT_PATTERN
    mlpack: str = "mlpack"
    master_port: int = 29500


def check(job: SlurmJob) -> None:
    """Reject what Slurm would reject later, or worse, accept and misrun."""
    if job.nodes < 1:
        raise DeployError(f"--nodes {job.nodes}: a job needs at least one node", hint="--nodes 1")
    if job.ntasks_per_node < 1:
        msg = f"--ntasks-per-node {job.ntasks_per_node}: each node needs at least one task"
        raise DeployError(msg, hint="--ntasks-per-node 1 (one per GPU for training)")
    if job.gpus_per_node < 0:
        raise DeployError(f"--gpus-per-node {job.gpus_per_node} is negative", hint="0 or more")
    if job.time is not None and not _TIME.match(job.time):
        msg = f"--time {job.time!r} is not a Slurm time limit"
        raise DeployError(msg, hint="minutes, or [D-]HH:MM:SS, e.g. 30 or 1-00:00:00")
    for mount in job.mounts:
        host = mount.split(":", 1)[0]
        if ":" not in mount or not host.startswith("/"):
            msg = f"--mount {mount!r} is not HOST:CONTAINER with an absolute host path"
            raise DeployError(msg, hint="e.g. --mount /shared/data:/data:ro")
    if not 0 < job.master_port < 65536:
        raise DeployError(f"--master-port {job.master_port} is out of range", hint="1-65535")
    paths = (
        ("--image-dir", job.image_dir),
        ("a project folder", job.project),
        ("--data", job.data),
        ("--outputs", job.outputs),
    )
    for name, path in paths:
        if path is not None and not path.startswith("/"):
            msg = f"{name} {path!r} is not absolute: the nodes could not find it"
            raise DeployError(msg, hint="a path on the filesystem the nodes share")
    project_only = (("--entry", job.entry), ("--data", job.data), ("--outputs", job.outputs))
    for name, value in project_only:
        if value is not None and job.project is None:
            msg = f"{name} {value}: it applies to a project folder, not to an image"
            raise DeployError(msg, hint="pass a project folder, or the command after --")


def render(job: SlurmJob) -> str:
    """The sbatch script for ``job``: deterministic text, the same for the same job."""
    check(job)
    return render_template(TEMPLATE, job=job)


def _command(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        msg = f"`{name}` is not on PATH: this machine is not a Slurm submit host"
        raise DeployError(msg, hint="run on a login node, or install Slurm's client commands")
    return found


def _slurm(argv: list[str], *, stdin: str | None = None) -> str:
    """Run a Slurm command; its refusal (stderr) becomes the error's message."""
    exe = _command(argv[0])
    try:
        done = subprocess.run(
            [exe, *argv[1:]], input=stdin, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise DeployError(f"cannot run {argv[0]}: {exc}", hint="check the Slurm install") from exc
    if done.returncode != 0:
        reason = done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}"
        raise DeployError(f"{argv[0]} failed: {reason}", hint="see the Slurm error above")
    return done.stdout


def check_gpus(job: SlurmJob) -> None:
    """Refuse GPUs on a partition whose nodes have none, when ``sinfo`` can tell."""
    if job.gpus_per_node == 0 or shutil.which("sinfo") is None:
        return
    where = [f"--partition={job.partition}"] if job.partition else []
    gres = _slurm(["sinfo", "--noheader", "--format=%G", *where]).split()
    if gres and not any("gpu" in g for g in gres):
        part = job.partition or "the default partition"
        msg = f"--gpus-per-node {job.gpus_per_node}: {part} has no GPUs (sinfo shows no gpu gres)"
        raise DeployError(msg, hint="pick a GPU partition with --partition, or drop the option")


def submit(script: str, *, workdir: Path) -> str:
    """Submit ``script`` with ``sbatch --parsable`` from ``workdir``; return the job id."""
    out = _slurm(["sbatch", "--parsable", f"--chdir={workdir}"], stdin=script)
    job_id = out.strip().split(";", 1)[0]
    if not _JOB_ID.match(job_id):
        raise DeployError(f"sbatch printed no job id: {out!r}", hint="check the Slurm logs")
    return job_id


def _job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise DeployError(f"{job_id!r} is not a Slurm job id", hint="e.g. 42, as submit printed")
    return job_id


def state(job_id: str) -> str:
    """The job's state: squeue while it is queued or running, sacct after, else UNKNOWN."""
    out = _slurm(
        ["squeue", "--noheader", "--states=all", "--format=%T", f"--jobs={_job_id(job_id)}"]
    )
    if out.strip():
        return out.split()[0]
    if shutil.which("sacct") is not None:
        try:
            acct = _slurm(["sacct", "--noheader", "-X", "--format=State", f"--jobs={job_id}"])
        except DeployError:
            acct = ""
        if acct.strip():
            return acct.split()[0]
    return "UNKNOWN"


def output_file(job_id: str) -> Path:
    """The job's output file, as scontrol reports it (the script's --output, expanded)."""
    out = _slurm(["scontrol", "show", "job", _job_id(job_id)])
    found = re.search(r"\bStdOut=(\S+)", out)
    if found is None:
        raise DeployError(f"Slurm reports no output file for job {job_id}", hint="")
    return Path(found.group(1))


def logs(job_id: str, *, output: Path | None = None) -> str:
    """The job's output so far: ``output``, else where Slurm says, else the default name here."""
    if output is not None:
        path = output
    else:
        try:
            path = output_file(job_id)
        except DeployError:  # Slurm forgets finished jobs after MinJobAge
            path = Path(OUTPUT_PATTERN.replace("%j", _job_id(job_id)))
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        msg = f"cannot read job {job_id}'s output {path}: {exc.strerror}"
        raise DeployError(
            msg, hint="the job may not have started yet; see `mlpack slurm status`"
        ) from exc


def cancel(job_id: str) -> None:
    """Cancel the job (scancel)."""
    _slurm(["scancel", _job_id(job_id)])
