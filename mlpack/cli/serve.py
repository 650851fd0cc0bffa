"""``mlpack serve``: the inference entrypoint, its port published by socket activation.

The listening socket is opened here, on the host, before anything else (a port in use fails
first); the container gets it as fd 3 and keeps ``--network none`` (mlpack.serve). The URL is
printed once the server answers its health path; a server that exits first, or never becomes
healthy, is reported with the tail of its log.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlpack.cli.output import note, say
from mlpack.runtime import options

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from mlpack.runs import ImageFacts
    from mlpack.runtime.protocol import RunConfig, RunResult


def _restart_limit(text: str) -> int:
    """``no`` (0), ``on-failure`` (unbounded) or ``on-failure:N``."""
    from mlpack.errors import ConfigError

    policy, _, count = text.partition(":")
    if text == "no":
        return 0
    if policy == "on-failure" and (not count or count.isdigit()):
        return int(count) if count else 1 << 30
    msg = f"invalid --restart {text!r}"
    raise ConfigError(msg, hint="write --restart no, on-failure or on-failure:N")


class _Watch:
    """The health check of one server start, in a thread beside the blocking run."""

    def __init__(self, host: str, port: int, path: str, timeout: float, stop_grace: float) -> None:
        self.host, self.port, self.path = host, port, path
        self.timeout, self.stop_grace = timeout, stop_grace
        self.done = threading.Event()
        self.healthy = False
        self.gave_up = False
        self.cid = ""
        self.thread = threading.Thread(target=self._check, daemon=True)

    def started(self, cid: str) -> None:
        """``on_start``: the container runs; start the check and the graceful-stop handlers."""
        self.cid = cid
        for sig in (signal.SIGINT, signal.SIGTERM):
            relay = signal.getsignal(sig)
            if callable(relay):
                signal.signal(sig, self._stopping(relay))
        self.thread.start()

    def _stopping(self, relay: Callable[[int, FrameType | None], object]) -> Callable[..., None]:
        def handler(sig: int, frame: FrameType | None) -> None:
            relay(sig, frame)  # the server's own graceful shutdown
            timer = threading.Timer(self.stop_grace, self._kill)
            timer.daemon = True
            timer.start()

        return handler

    def _kill(self) -> None:
        from mlpack.runtime.embedded import stop

        if not self.done.is_set():
            stop(self.cid, timeout=0)

    def _check(self) -> None:
        from mlpack.serve import connect_host, url, wait_healthy

        self.healthy = wait_healthy(
            connect_host(self.host),
            self.port,
            path=self.path,
            running=lambda: not self.done.is_set(),
            timeout=self.timeout,
        )
        if self.healthy:
            say(f"serving {url(self.host, self.port)} (container {self.cid})")
        elif not self.done.is_set():
            self.gave_up = True
            self._kill()


def _server_command(facts: ImageFacts, entry: str | None) -> tuple[str, ...]:
    """The named entrypoint, else the first inference one that can take a socket (uvicorn,
    gunicorn, hypercorn), else the first inference one.
    """
    from mlpack.serve import can_activate

    if entry is not None:
        chosen = facts.entry(entry, "inference")
        return chosen.command if chosen else ()
    servers = [e for e in facts.entrypoints if e.kind == "inference"]
    best = next((e for e in servers if can_activate(e.command)), servers[0] if servers else None)
    return best.command if best else ()


def _serve_once(config: RunConfig, watch: _Watch) -> RunResult:
    from mlpack.runtime.embedded import EmbeddedRuntime

    try:
        return EmbeddedRuntime().run_with(config, on_start=watch.started)
    finally:
        watch.done.set()


def serve(
    target: Annotated[
        str, typer.Argument(metavar="[PATH|IMAGE]", help="A project folder or an image.")
    ] = ".",
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The server command (default: the inference entrypoint)."),
    ] = None,
    *,
    port: Annotated[int, typer.Option("--port", "-p", help="Port on the host.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    entry: Annotated[
        str | None, typer.Option("--entry", help="The entrypoint to serve, by name.")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("-e", "--env", metavar="KEY[=VALUE]", help="Set a variable.")
    ] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option("-v", "--volume", metavar="HOST:CONTAINER[:ro]", help="Bind-mount a path."),
    ] = None,
    memory: Annotated[
        str | None, typer.Option("-m", "--memory", metavar="SIZE", help="Memory limit.")
    ] = None,
    cpus: Annotated[str | None, typer.Option("--cpus", help="CPU quota, e.g. 2.")] = None,
    health_path: Annotated[
        str, typer.Option("--health-path", help="HTTP path polled until the server answers.")
    ] = "/health",
    health_timeout: Annotated[
        float, typer.Option("--health-timeout", help="Seconds to wait for a healthy server.")
    ] = 120.0,
    stop_timeout: Annotated[
        float, typer.Option("--stop-timeout", help="Seconds from SIGTERM to SIGKILL.")
    ] = 10.0,
    restart: Annotated[
        str, typer.Option("--restart", help="no, on-failure or on-failure:N.")
    ] = "no",
) -> None:
    """Serve a project's inference entrypoint on HOST:PORT (socket activation, no network)."""
    from mlpack.cli.runs import project_image
    from mlpack.runs import layout_mounts, output_owner
    from mlpack.runtime.protocol import Mount, RunConfig
    from mlpack.serve import activate, open_listener, tail

    restarts = _restart_limit(restart)
    given = tuple(options.parse_env(e) for e in env or ())
    volumes = tuple(options.parse_volume(v) for v in volume or ())
    listener = open_listener(host, port)  # before anything starts: a taken port fails first
    root, facts = project_image(target, kind="inference")
    activation = activate(tuple(command or ()) or _server_command(facts, entry))
    owner = output_owner()
    mounts: tuple[Mount, ...] = ()
    if root is not None:
        from mlpack.pipeline import project_config

        layout = project_config(root, note=lambda text: note(f"note: {text}"))
        recorded = layout_mounts(
            root,
            workdir=facts.workdir,
            inputs=layout.inputs,
            outputs=layout.outputs,
            data=None,
            output=None,
            owner=owner,
        )
        taken = {v.target for v in volumes}
        mounts = tuple(
            Mount(source=Path(m.source), target=m.target, read_only=m.read_only)
            for m in recorded
            if m.target not in taken
        )
    config = RunConfig(
        image=facts.digest,
        command=activation.command,
        env=(*activation.env, *given),
        mounts=(*mounts, *volumes),
        user=f"{owner[0]}:{owner[1]}",
        memory=options.parse_size(memory, option="--memory") if memory else None,
        cpus=options.parse_cpus(cpus) if cpus else None,
        fds=(listener.fileno(),),
    )
    from mlpack.cli.runs import teed
    from mlpack.home import mlpack_home

    log = (root / ".mlpack" if root else Path(mlpack_home())) / "serve" / f"{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    note(f"starting {' '.join(activation.command)} (log {log})")
    attempt = 0
    while True:
        watch = _Watch(host, port, health_path, health_timeout, stop_timeout)
        with teed(log):
            result = _serve_once(config, watch)
        if watch.gave_up:
            note(f"error: the server was not healthy after {health_timeout:g}s; its log ends:")
            note(tail(str(log)))
            raise typer.Exit(1)
        failed = result.exit_code != 0 and result.signal not in (signal.SIGTERM, signal.SIGINT)
        if not watch.healthy:
            note(f"error: the server exited (code {result.exit_code}) before it was healthy:")
            note(tail(str(log)))
            raise typer.Exit(result.exit_code or 1)
        if failed and attempt < restarts:
            attempt += 1
            note(f"the server exited with {result.exit_code}: restart {attempt}")
            continue
        if failed:
            note(f"the server exited with {result.exit_code}; its log ends:")
            note(tail(str(log)))
        listener.close()
        raise typer.Exit(0 if not failed else result.exit_code)
