"""The two backends as ``mlpack serve`` drives them, and how each gets the host's port.

Both keep the server's network namespace with nothing but loopback (``--network none``):

- a server that can take a socket (uvicorn, gunicorn, hypercorn) gets the host's listening
  socket as fd 3: the embedded runtime passes it directly; on Docker a courier hands it over a
  bind-mounted Unix socket (mlpack.serve.forward). No proxy on either.
- any other server listens on 127.0.0.1:CONTAINER_PORT in its namespace and mlpack forwards
  the host's port to it (``Forwarder``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlpack.errors import ServeError
from mlpack.runtime.protocol import Mount
from mlpack.serve import activate, bind, can_activate
from mlpack.serve.forward import COURIER_DIR, Courier, Forwarder, courier_command

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterator

    from mlpack.runtime.protocol import RunConfig, RunResult
    from mlpack.vocabulary import Backend


class EmbeddedServer:
    """Servers on the embedded runtime."""

    name = "embedded"

    def run(self, config: RunConfig, on_start: Callable[[str], None]) -> RunResult:
        """Run until the server exits; ``on_start(container_id)`` once it runs."""
        from mlpack.runtime.embedded import EmbeddedRuntime

        return EmbeddedRuntime(account=os.geteuid() == 0).run_with(config, on_start=on_start)

    def stop(self, cid: str, timeout: float) -> None:
        """SIGTERM, SIGKILL after ``timeout``; its state, mounts and cgroup removed."""
        from mlpack.runtime.embedded import stop

        with contextlib.suppress(Exception):  # gone already
            stop(cid, timeout=timeout)

    def pid(self, cid: str) -> int | None:
        """The container's pid 1 on the host."""
        from mlpack.runtime.embedded import list_containers

        return next((c.pid for c in list_containers() if c.id == cid and c.pid), None)

    def kill(self, cid: str) -> None:
        """SIGKILL the server now; its run ends and cleans up."""
        self.stop(cid, 0)


class DockerServer:
    """Servers in a Docker engine."""

    name = "docker"

    def __init__(self, stop_timeout: float = 10.0) -> None:
        self.stop_timeout = stop_timeout

    def run(self, config: RunConfig, on_start: Callable[[str], None]) -> RunResult:
        """Run until the server exits; SIGTERM and Ctrl-C are passed on to the server."""
        from mlpack.runtime.docker import DockerRuntime

        with DockerRuntime(stop_timeout=self.stop_timeout, sig_proxy=True) as engine:
            return engine.run_with(config, on_start=on_start)

    def kill(self, cid: str) -> None:
        """SIGKILL the server now; its run ends and removes it."""
        import docker

        from mlpack.runtime.docker import DockerRuntime

        with DockerRuntime() as engine, contextlib.suppress(docker.errors.DockerException):
            engine.client().api.kill(cid)

    def stop(self, cid: str, timeout: float) -> None:
        """``docker stop -t TIMEOUT`` and remove it."""
        import docker

        from mlpack.runtime.docker import DockerRuntime

        with DockerRuntime() as engine, contextlib.suppress(docker.errors.DockerException):
            container = engine.client().containers.get(cid)
            container.stop(timeout=round(timeout))
            container.remove(force=True, v=True)

    def pid(self, cid: str) -> int | None:
        """The container's pid 1 on the host (the engine runs here)."""
        from mlpack.runtime.docker import DockerRuntime

        with DockerRuntime() as engine:
            state = engine.client().api.inspect_container(cid).get("State", {})
        return int(state.get("Pid") or 0) or None


def server_for(backend: Backend, stop_timeout: float) -> EmbeddedServer | DockerServer:
    """The backend named ``backend``."""
    return DockerServer(stop_timeout) if backend == "docker" else EmbeddedServer()


@dataclass(frozen=True, kw_only=True)
class Published:
    """How the host's port reaches one server: the config to run, and a forwarder if any."""

    config: RunConfig
    forwarder: Forwarder | None
    how: str  # "socket", "forward" or "host"


@contextlib.contextmanager
def published(
    config: RunConfig,
    listener: socket.socket,
    *,
    backend: Backend,
    container_port: int,
    owner: tuple[int, int],
) -> Iterator[Published]:
    """``config`` (its command the server's) wired to ``listener`` for ``backend``.

    With ``--network host`` the server binds the port itself: ``listener`` only proved the port
    free and is closed here.
    """
    if config.network == "host":
        host, port = listener.getsockname()[:2]
        listener.close()
        yield Published(
            config=replace(config, command=bind(config.command, host, port)),
            forwarder=None,
            how="host",
        )
        return
    if not can_activate(config.command):
        if os.geteuid() != 0:
            msg = f"cannot forward the port to {' '.join(config.command)!r} without root"
            raise ServeError(
                msg,
                hint="forwarding joins the server's network namespace (setns, root only): "
                "serve with uvicorn, gunicorn or hypercorn (they take the socket), "
                "or use --network host",
            )
        forwarder = Forwarder(listener, container_port)
        try:
            yield Published(config=config, forwarder=forwarder, how="forward")
        finally:
            forwarder.close()
        return
    activation = activate(config.command)
    wired = replace(config, command=activation.command, env=(*activation.env, *config.env))
    if backend == "embedded":
        yield Published(
            config=replace(wired, fds=(listener.fileno(),)), forwarder=None, how="socket"
        )
        return
    with tempfile.TemporaryDirectory(prefix="mlpack-serve-") as folder:
        Path(folder).chmod(0o755)  # the server runs as the invoking user
        courier = Courier(listener, Path(folder), owner)
        try:
            mount = Mount(source=Path(folder), target=COURIER_DIR, read_only=True)
            yield Published(
                config=replace(
                    wired,
                    command=courier_command(wired.command),
                    mounts=(*wired.mounts, mount),
                ),
                forwarder=None,
                how="socket",
            )
        finally:
            courier.close()
