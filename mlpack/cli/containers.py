"""Commands for running containers (run, ps, stop, doctor) and ``runtime`` (the OCI CLI)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer

from mlpack.cli.output import note, say
from mlpack.runtime import options
from mlpack.vocabulary import Backend

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlpack.runtime.embedded.spawn import HelperProcess
    from mlpack.runtime.protocol import RunConfig, RunResult

T = TypeVar("T")
_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
# After IMAGE, every word belongs to the container's command, options included.
_RUN_SETTINGS = {"allow_interspersed_args": False}


def _each(parse: Callable[[str], T], values: list[str] | None) -> tuple[T, ...]:
    return tuple(parse(v) for v in values or ())


def _env(files: list[str] | None, pairs: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``--env-file`` lines first, then ``-e`` values, in order: later ones win in the image."""
    from_files = [pair for path in files or () for pair in options.read_env_file(path)]
    return (*from_files, *_each(options.parse_env, pairs))


def _prestart(runtime: str, tty: bool, interactive: bool) -> HelperProcess | None:
    """Start the helper interpreter now, while this process prepares the container, and keep
    cgroup moves fast meanwhile: ~20 ms off every start (BENCHMARKS B1). Not for a terminal,
    which the helper must be born on.
    """
    if runtime != "embedded" or tty:
        return None
    from mlpack.runtime.embedded.spawn import prestart

    return prestart(interactive=interactive, warm_cgroup_moves=True)


def launch(
    config: RunConfig,
    backend: Backend,
    *,
    cap_profile: Literal["default", "docker"] = "default",
    helper: HelperProcess | None = None,
    account: bool = False,
) -> RunResult:
    """Run ``config`` on ``backend`` to its end (embedded: with a prestarted ``helper``, and
    ``account``: measured in cgroups even without limits).
    """
    if backend == "docker":
        from mlpack.runtime.docker import DockerRuntime

        with DockerRuntime() as docker:
            return docker.run(config)
    from mlpack.runtime.embedded import EmbeddedRuntime

    runtime = EmbeddedRuntime(cap_profile=cap_profile, account=account)
    return runtime.run_with(config, process=helper)


def _memory(text: str) -> int:
    return options.parse_size(text, option="--memory")


def _shm_size(text: str) -> int:
    return options.parse_size(text, option="--shm-size")


def _report(result: RunResult) -> int:
    """Say how the container ended when it did not simply exit; return the exit code."""
    if result.oom_killed:
        limit = f" (limit {options.human_size(result.memory_limit)})" if result.memory_limit else ""
        note(f"killed: out of memory{limit}")
    return result.exit_code


def _is_rootfs(path: Path) -> bool:
    """A directory holding a root filesystem (bin and etc) rather than a project."""
    return (path / "etc").is_dir() and (path / "bin").exists()


def run(
    image: Annotated[
        str | None,
        typer.Argument(
            metavar="[PATH|IMAGE]",
            help="A project folder (built, then its training entrypoint run and recorded), "
            "or an image in the mlpack store (default: the current folder).",
        ),
    ] = None,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="Command and its arguments (default: the image's).", show_default=False
        ),
    ] = None,
    *,
    interactive: Annotated[
        bool, typer.Option("-i", "--interactive", help="Keep stdin open.")
    ] = False,
    tty: Annotated[bool, typer.Option("-t", "--tty", help="Allocate a pseudo-terminal.")] = False,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "-e",
            "--env",
            metavar="KEY[=VALUE]",
            help="Set a variable (KEY alone: the host's value).",
        ),
    ] = None,
    env_file: Annotated[
        list[str] | None,
        typer.Option("--env-file", metavar="FILE", help="Read KEY=VALUE lines from a file."),
    ] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option(
            "-v", "--volume", metavar="HOST:CONTAINER[:ro]", help="Bind-mount a host path."
        ),
    ] = None,
    workdir: Annotated[
        str | None,
        typer.Option(
            "-w",
            "--workdir",
            parser=options.parse_workdir,
            metavar="DIR",
            help="Working directory (absolute).",
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "-u",
            "--user",
            parser=options.parse_user,
            metavar="USER[:GROUP]",
            help="USER[:GROUP], by name or id.",
        ),
    ] = None,
    hostname: Annotated[
        str | None,
        typer.Option(
            "--hostname",
            parser=options.parse_hostname,
            metavar="NAME",
            help="Host name (default: the container id).",
        ),
    ] = None,
    network: Annotated[
        Literal["none", "host"],
        typer.Option(
            "--network",
            parser=options.parse_network,
            metavar="none|host",
            help="none: loopback only; host: the host's network.",
        ),
    ] = "none",
    memory: Annotated[
        int | None,
        typer.Option(
            "-m", "--memory", parser=_memory, metavar="SIZE", help="Memory limit, e.g. 512m, 4g."
        ),
    ] = None,
    cpus: Annotated[
        float | None,
        typer.Option(
            "--cpus", parser=options.parse_cpus, metavar="CPUS", help="CPU quota, e.g. 0.5 or 2."
        ),
    ] = None,
    pids_limit: Annotated[
        int | None,
        typer.Option(
            "--pids-limit",
            parser=options.parse_pids_limit,
            metavar="N",
            help="Maximum number of processes.",
        ),
    ] = None,
    shm_size: Annotated[
        int | None,
        typer.Option(
            "--shm-size",
            parser=_shm_size,
            metavar="SIZE",
            help="Size of /dev/shm (default: half the memory limit).",
        ),
    ] = None,
    init: Annotated[
        bool,
        typer.Option(
            "--init", help="Run a tiny init as pid 1 that reaps zombies and forwards signals."
        ),
    ] = False,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Mount the root filesystem read-only.")
    ] = False,
    gpus: Annotated[
        str | None, typer.Option("--gpus", help="GPUs via CDI: all, a count, or device ids.")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the writable layer after exit.")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            parser=options.parse_name,
            metavar="NAME",
            help="Container name (also its id).",
        ),
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", metavar="KEY=VALUE", help="Add a label.")
    ] = None,
    cap_profile: Annotated[
        Literal["default", "docker"],
        typer.Option("--cap-profile", help="Capabilities: runc's 3 (default) or Docker's 14."),
    ] = "default",
    runtime: Annotated[
        Backend,
        typer.Option(
            "--runtime",
            "--backend",
            help="Backend: the embedded runtime (default) or a Docker engine.",
        ),
    ] = "embedded",
    rootfs: Annotated[
        Path | None,
        typer.Option("--rootfs", metavar="DIR", help="Run from an unpacked root filesystem."),
    ] = None,
    entry: Annotated[
        str | None, typer.Option("--entry", help="A project's entrypoint to run, by name.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", metavar="DIR", help="A project's data folder.")
    ] = None,
    project_image: Annotated[
        str | None,
        typer.Option(
            "--image",
            metavar="IMAGE",
            help="Run a project with this stored image instead of building it (Slurm tasks).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", metavar="DIR", help="A project's output folder."),
    ] = None,
    deterministic_env: Annotated[
        bool,
        typer.Option(
            "--deterministic-env/--no-deterministic-env",
            help="Set PYTHONHASHSEED=0 in a project run (default on).",
        ),
    ] = True,
) -> None:
    """Run a project (build, run its training entrypoint, record the run) or an image."""
    from mlpack.runtime.protocol import RunConfig

    words = tuple(command or ())
    if rootfs is not None:
        words = (image, *words) if image is not None else words
        image = str(rootfs)
    image = image or "."
    project = rootfs is None and Path(image).is_dir() and not _is_rootfs(Path(image))
    if project_image is not None and not project:
        from mlpack.errors import RunError

        msg = f"--image {project_image}: {image} is not a project folder"
        raise RunError(msg, hint="--image runs a project folder with a built image; else drop it")
    with ExitStack() as cleanup:
        helper = None if project else _prestart(runtime, tty, interactive)
        if helper is not None:
            cleanup.callback(helper.discard)
        config = RunConfig(
            image=image,
            command=words[1:] if words[:1] == ("--",) else words,
            env=_env(env_file, env),
            mounts=_each(options.parse_volume, volume),
            workdir=workdir,
            user=user,
            hostname=hostname,
            network=network,
            memory=memory,
            cpus=cpus,
            pids_limit=pids_limit,
            shm_size=shm_size,
            tty=tty,
            interactive=interactive,
            init=init,
            read_only=read_only,
            gpus=gpus,
            keep=keep,
            name=name,
            labels=_each(options.parse_label, label),
        )
        if project:
            from mlpack.cli.runs import run_project

            raise typer.Exit(
                run_project(
                    image,
                    config,
                    entry=entry,
                    data=data,
                    output=output,
                    deterministic=deterministic_env,
                    backend=runtime,
                    image=project_image,
                )
            )
        cleanup.pop_all()  # the runtime owns the helper from here, whatever happens
    raise typer.Exit(_report(launch(config, runtime, cap_profile=cap_profile, helper=helper)))


def runtime(ctx: typer.Context) -> None:
    """The OCI runtime command line (create, start, state, kill, delete, run): mlpack-runtime."""
    from mlpack.cli.app import Flags
    from mlpack.cli.oci_runtime import run_runtime

    flags = ctx.find_object(Flags)
    debug = ["--debug"] if flags is not None and flags.debug else []
    raise typer.Exit(run_runtime([*debug, *ctx.args], prog="mlpack runtime"))


def _services(all_: bool) -> None:
    """The services of ``mlpack serve`` (running ones; ``all_``: exited ones too)."""
    from mlpack.cli.output import table
    from mlpack.serve import url
    from mlpack.serve.services import ServiceStore

    found = [(s, s.shown_status()) for s in ServiceStore().all()]
    rows = [
        (
            s.name,
            s.image[-29:],
            url(s.host, s.port),
            status,
            str(s.restarts),
            s.backend,
            s.container[:12],
        )
        for s, status in found
        if all_ or status != "exited"
    ]
    if rows:
        table(("SERVICE", "IMAGE", "URL", "STATUS", "RESTARTS", "BACKEND", "CONTAINER"), rows)
        say("")


def ps(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Also show stopped containers.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print ids.")] = False,
) -> None:
    """List services (mlpack serve) and containers (stale ones are cleaned up first)."""
    from mlpack.runtime.embedded import list_containers

    rows = [r for r in list_containers() if all_ or r.status in ("running", "created")]
    if quiet:
        for r in rows:
            say(r.id)
        return
    _services(all_)
    say(f"{'CONTAINER ID':<14}{'NAME':<16}{'IMAGE':<30}{'STATUS':<10}{'CREATED':<22}COMMAND")
    for r in rows:
        cmd = " ".join(r.command)
        cmd = cmd if len(cmd) <= 40 else cmd[:37] + "..."
        say(f"{r.id:<14}{r.name:<16}{r.image[-29:]:<30}{r.status:<10}{r.created:<22}{cmd}")


def _stop_service(name: str, timeout: float) -> bool:
    """Stop the service ``name`` if there is one: its supervisor gets SIGTERM (the server's
    graceful stop, SIGKILL after its --stop-timeout); a supervisor that does not end in
    ``timeout`` more seconds is killed, and its container stopped and cleaned up here.
    """
    from mlpack.errors import ServeError
    from mlpack.serve.backends import server_for
    from mlpack.serve.services import ServiceStore

    store = ServiceStore()
    try:
        service = store.get(name)
    except ServeError:
        return False
    if service.alive():
        _end(service.supervisor, timeout + 10, alive=service.alive)
    if service.container:  # its supervisor died without cleaning up
        server_for("docker" if service.backend == "docker" else "embedded", timeout).stop(
            service.container, timeout
        )
    store.remove(name)
    return True


def _end(pid: int, timeout: float, *, alive: Callable[[], bool]) -> None:
    """SIGTERM ``pid``; SIGKILL when it still runs after ``timeout`` seconds; wait for its end."""
    import time

    from mlpack.runtime.embedded.runtime import terminate

    terminate(pid, timeout, alive=alive)
    while alive():
        time.sleep(0.05)


def stop(
    containers: Annotated[list[str], typer.Argument(help="Service names or container ids.")],
    time_: Annotated[
        float, typer.Option("--time", "-t", help="Seconds to wait before SIGKILL.")
    ] = 10.0,
) -> None:
    """Stop services or containers: SIGTERM to pid 1, then SIGKILL after --time seconds."""
    from mlpack.runtime.embedded import stop as stop_container

    for c in containers:
        if not _stop_service(c, time_):
            stop_container(c, timeout=time_)
        say(c)


def logs(
    name: Annotated[str, typer.Argument(help="A service name (mlpack ps).")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the service ends.")
    ] = False,
) -> None:
    """Print a service's log (the server's output, its access lines, restarts)."""
    import sys
    import time

    from mlpack.serve.services import ServiceStore

    service = ServiceStore().get(name)
    with open(service.log, "rb") as log:  # noqa: PTH123 - read as it grows
        while True:
            running = follow and service.alive()  # before the read: its last lines are read
            data = log.read(65536)
            if data:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            elif running:
                time.sleep(0.2)
            else:
                return


def doctor() -> None:
    """Check this host for the runtimes: namespaces, overlayfs, cgroups, seccomp, Docker, GPUs.

    One line per check: status, what was found, and the fix. Exits 1 only when something the
    default (embedded) runtime needs is missing.
    """
    from mlpack.runtime.doctor import doctor as check_host

    report = check_host()
    for check in report.checks:
        line = f"{check.status:<4}  {check.name}: {check.summary}"
        say(f"{line} -> fix: {check.fix}" if check.fix else line, style=check.status)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("run", context_settings=_RUN_SETTINGS)(run)
    app.command("runtime", context_settings=_FORWARD, add_help_option=False)(runtime)
    app.command("ps")(ps)
    app.command("stop")(stop)
    app.command("logs")(logs)
    app.command("doctor")(doctor)
