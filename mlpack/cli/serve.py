"""``mlpack serve``: the inference entrypoint, its port published from a host-opened socket.

The listening socket is opened here, on the host, before anything else (a port in use fails
first); the server keeps ``--network none`` and gets the socket as fd 3 or, when it cannot
take one, its port forwarded (mlpack.serve.backends). The URL is printed once the server answers
its health path; a server that exits first, or never becomes healthy, is reported with the tail
of its log. With ``--detach`` a supervisor process, forked off, owns the socket, the restarts
and the log; ``mlpack ps``, ``logs`` and ``stop`` find it by its service record.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from mlpack.cli.output import note, say
from mlpack.runtime import options
from mlpack.vocabulary import DEFAULT_PORT, Backend

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from types import FrameType

    from mlpack.config import ProjectConfig
    from mlpack.runs import ImageFacts
    from mlpack.runtime.protocol import Mount, RunConfig, RunResult
    from mlpack.serve.backends import DockerServer, EmbeddedServer, Published
    from mlpack.serve.services import Service, ServiceStore
    from mlpack.vocabulary import EntrypointSpec


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


@dataclass(frozen=True, kw_only=True)
class _Settings:
    """What one ``mlpack serve`` was asked for, beyond the container's config."""

    host: str
    port: int
    health_path: str
    health_timeout: float
    stop_timeout: float
    restarts: int
    backend: Backend
    container_port: int
    owner: tuple[int, int]
    log: str


class _Watch:
    """The health check of one server start, in a thread beside the blocking run."""

    def __init__(
        self,
        settings: _Settings,
        server: EmbeddedServer | DockerServer,
        published: Published,
        on_healthy: Callable[[str], None],
    ) -> None:
        self.settings, self.server, self.published = settings, server, published
        self.on_healthy = on_healthy
        self.done = threading.Event()
        self.healthy = False
        self.gave_up = False
        self.stopping = False
        self.cid = ""
        self.thread = threading.Thread(target=self._check, daemon=True)

    def started(self, cid: str) -> None:
        """``on_start``: the container runs; start the check and the graceful-stop handlers."""
        self.cid = cid
        if self.published.forwarder is not None:
            self.published.forwarder.target(self.server.pid(cid))
        for sig in (signal.SIGINT, signal.SIGTERM):
            relay = signal.getsignal(sig)
            if callable(relay):
                signal.signal(sig, self._stopping(relay))
        self.thread.start()

    def _stopping(self, relay: Callable[[int, FrameType | None], object]) -> Callable[..., None]:
        def handler(sig: int, frame: FrameType | None) -> None:
            self.stopping = True
            timer = threading.Timer(self.settings.stop_timeout, self._kill)
            timer.daemon = True
            timer.start()
            relay(sig, frame)  # the server's own graceful shutdown

        return handler

    def _kill(self) -> None:
        if not self.done.is_set():
            self.server.kill(self.cid)

    def _check(self) -> None:
        from mlpack.serve import connect_host, wait_healthy

        s = self.settings
        self.healthy = wait_healthy(
            connect_host(s.host),
            s.port,
            path=s.health_path,
            running=lambda: not self.done.is_set(),
            timeout=s.health_timeout,
        )
        if self.healthy:
            self.on_healthy(self.cid)
        elif not self.done.is_set():
            self.gave_up = True
            self._kill()


def _server_entry(facts: ImageFacts, entry: str | None) -> EntrypointSpec | None:
    """The named entrypoint, else the first inference one that can take a socket (uvicorn,
    gunicorn, hypercorn), else the first inference one.
    """
    from mlpack.serve import can_activate

    if entry is not None:
        return facts.entry(entry, "inference")
    servers = [e for e in facts.entrypoints if e.kind == "inference"]
    return next((e for e in servers if can_activate(e.command)), servers[0] if servers else None)


def _serve_once(
    server: EmbeddedServer | DockerServer, config: RunConfig, watch: _Watch
) -> RunResult | None:
    """One start of the server; None when Ctrl-C stopped it before it ran."""
    try:
        return server.run(config, watch.started)
    except KeyboardInterrupt:
        return None
    finally:
        watch.done.set()
        if watch.published.forwarder is not None:
            watch.published.forwarder.target(None)


def _ended(watch: _Watch, result: RunResult | None, attempt: int) -> int | None:
    """The exit code when the service is over after this start; None to restart it."""
    from mlpack.serve import tail

    s = watch.settings
    if result is None or (watch.stopping and result.exit_code in (0, 128 + signal.SIGTERM)):
        return 0
    code = result.exit_code
    if watch.gave_up and attempt == 0:
        note(f"error: the server was not healthy after {s.health_timeout:g}s; its log ends:")
        note(tail(s.log))
        return code or 1
    if not watch.healthy and attempt == 0:
        note(f"error: the server exited (code {code}) before it was healthy; its log ends:")
        note(tail(s.log))
        return code or 1
    failed = code != 0 and not watch.stopping
    if failed and attempt < s.restarts:
        note(f"the server exited with {code}: restart {attempt + 1}")
        return None
    if failed:
        note(f"the server exited with {code}; its log ends:")
        note(tail(s.log))
    return code


def _supervise(
    config: RunConfig,
    listener: socket.socket,
    settings: _Settings,
    record: tuple[ServiceStore, str],
    on_healthy: Callable[[str], None],
) -> int:
    """Run the server, restarting it under ``--restart``, until it stops; the exit code."""
    from mlpack.serve.backends import published, server_for

    store, name = record
    server = server_for(settings.backend, settings.stop_timeout)
    with published(
        config,
        listener,
        backend=settings.backend,
        container_port=settings.container_port,
        owner=settings.owner,
    ) as wired:
        attempt = 0
        while True:
            watch = _Watch(settings, server, wired, on_healthy)
            result = _serve_once(server, wired.config, watch)
            code = _ended(watch, result, attempt)
            if code is not None:
                store.update(name, status="exited", container="")
                return code
            attempt += 1
            store.update(name, restarts=attempt, status="restarting")


def _base_config(
    root: Path | None,
    config: ProjectConfig | None,
    facts: ImageFacts,
    command: tuple[str, ...],
    volumes: tuple[Mount, ...],
    owner: tuple[int, int],
) -> RunConfig:
    """The server's container: its command, the project's layout mounted, as the owner."""
    from mlpack.cli.runs import project_mounts, to_mounts
    from mlpack.runtime.protocol import RunConfig

    if root is not None and config is not None:
        layout = project_mounts(root, config, facts, volumes, data=None, output=None, owner=owner)
        volumes = to_mounts(layout)
    return RunConfig(
        image=facts.digest, command=command, mounts=volumes, user=f"{owner[0]}:{owner[1]}"
    )


class _Report:
    """The detached supervisor's one message to the CLI that forked it: healthy, or nothing."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def healthy(self, url: str, cid: str) -> None:
        if self.fd is not None:
            os.write(self.fd, f"{url} {cid}\n".encode())
            os.close(self.fd)
            self.fd = None


def _detach(run: Callable[[_Report], int], log: Path, listener: socket.socket) -> str | None:
    """Fork the supervisor (a session of its own, output to ``log``); its first report.

    The supervisor is a fork, not a new program: it keeps the listening socket this process
    opened and the config it prepared. None when it ended before its server was healthy.
    """
    import sys

    read, write = os.pipe()
    if os.fork() == 0:  # the supervisor
        code = 1
        try:
            os.close(read)
            os.setsid()
            out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            for fd, to in ((null, 0), (out, 1), (out, 2)):
                os.dup2(fd, to)
            code = run(_Report(write))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    listener.close()  # the supervisor's now (with --network host: the server's to bind)
    with os.fdopen(read, "rb") as answer:
        line = answer.readline().decode().strip()
    return line or None


def _start(
    config: RunConfig,
    listener: socket.socket,
    settings: _Settings,
    service: Service,
    *,
    detach: bool,
) -> int:
    """Run the service in the foreground, or detached; the exit code of this command."""
    from mlpack.cli.runs import teed
    from mlpack.serve import tail, url
    from mlpack.serve.services import ServiceStore

    store = ServiceStore()
    store.claim(service)
    where = url(settings.host, settings.port)
    log = Path(service.log)

    def healthy(cid: str) -> None:
        store.update(service.name, container=cid, status="running")
        say(f"serving {where} (container {cid[:12]})")

    if not detach:
        try:
            with teed(log):
                return _supervise(config, listener, settings, (store, service.name), healthy)
        finally:
            store.remove(service.name)

    def supervise(report: _Report) -> int:
        from mlpack.runtime.embedded.state import proc_start_time

        store.update(
            service.name, supervisor=os.getpid(), supervisor_start=proc_start_time(os.getpid())
        )

        def reported(cid: str) -> None:
            healthy(cid)
            report.healthy(where, cid)

        return _supervise(config, listener, settings, (store, service.name), reported)

    answer = _detach(supervise, log, listener)
    if answer is None:
        note(f"error: the server of {service.name} is not running; its log ends:")
        note(tail(str(log)))
        store.remove(service.name)
        return 1
    cid = answer.split()[-1][:12]
    say(f"serving {where} as {service.name} (container {cid})")
    note(f"logs: mlpack logs {service.name}; stop: mlpack stop {service.name}")
    return 0


def serve(
    target: Annotated[
        str, typer.Argument(metavar="[PATH|IMAGE]", help="A project folder or an image.")
    ] = ".",
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The server command (default: the inference entrypoint)."),
    ] = None,
    *,
    port: Annotated[int, typer.Option("--port", "-p", help="Port on the host.")] = DEFAULT_PORT,
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
    backend: Annotated[
        Backend,
        typer.Option("--backend", "--runtime", help="The embedded runtime (default) or Docker."),
    ] = "embedded",
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Keep serving after this command returns.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="The service's name (default: serve-PORT).")
    ] = None,
    network: Annotated[
        Literal["none", "host"],
        typer.Option(
            "--network",
            parser=options.parse_network,
            metavar="none|host",
            help="none: loopback only (default); host: the server binds the host's port itself.",
        ),
    ] = "none",
    container_port: Annotated[
        int | None,
        typer.Option(
            "--container-port",
            help="Where a server that cannot take a socket listens in its namespace (forwarded; "
            f"default: the entrypoint's port, else {DEFAULT_PORT}).",
        ),
    ] = None,
) -> None:
    """Serve a project's inference entrypoint on HOST:PORT (no network route out)."""
    from mlpack.cli.runs import backend_image, project_image
    from mlpack.home import mlpack_home
    from mlpack.runs import output_owner
    from mlpack.serve import open_listener
    from mlpack.serve.services import check_name, new_service

    restarts = _restart_limit(restart)
    owner = output_owner()
    service_name = check_name(name or f"serve-{port}")
    given = tuple(options.parse_env(e) for e in env or ())
    volumes = tuple(options.parse_volume(v) for v in volume or ())
    listener = open_listener(host, port)  # before anything starts: a taken port fails first
    root, project, facts = project_image(target, kind="inference")
    chosen = None if command else _server_entry(facts, entry)
    words = tuple(command or ()) or (chosen.command if chosen else ())
    if container_port is None:  # where the entrypoint listens (Streamlit: 8501)
        container_port = (chosen.port if chosen else None) or DEFAULT_PORT
    config = replace(
        _base_config(root, project, facts, words, volumes, owner),
        image=backend_image(facts.digest, backend),
        env=given,
        network=network,
        memory=options.parse_size(memory, option="--memory") if memory else None,
        cpus=options.parse_cpus(cpus) if cpus else None,
    )
    log = (root / ".mlpack" if root else Path(mlpack_home())) / "serve" / f"{service_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    settings = _Settings(
        host=host,
        port=port,
        health_path=health_path,
        health_timeout=health_timeout,
        stop_timeout=stop_timeout,
        restarts=restarts,
        backend=backend,
        container_port=container_port,
        owner=owner,
        log=str(log),
    )
    note(f"starting {' '.join(words)} on {backend} (log {log})")
    service = new_service(
        name=service_name, image=target, host=host, port=port, backend=backend, log=log
    )
    raise typer.Exit(_start(config, listener, settings, service, detach=detach))
