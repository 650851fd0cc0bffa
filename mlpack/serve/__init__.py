"""Serving by socket activation: the host opens the listening socket, the server inherits it.

The container keeps a network namespace with nothing but loopback (``--network none``): a
model server that cannot phone home. mlpack binds HOST:PORT on the host and hands the socket
to the container as fd 3; the server's command is rewritten to take it (``uvicorn --fd 3``,
``hypercorn --bind fd://3``, gunicorn's ``LISTEN_FDS=1``). Requests reach the server with no
proxy in between (ARCHITECTURE.md, decision 8).
"""

from __future__ import annotations

import errno
import http.client
import socket
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Final

from mlpack.errors import ServeError

if TYPE_CHECKING:
    from collections.abc import Callable

LISTEN_FD: Final = 3
HEALTH_PATH: Final = "/health"
# Options that choose where a server listens: the inherited socket replaces them all.
_UVICORN_BIND: Final = {"--host": 1, "--port": 1, "--uds": 1, "--fd": 1}
_BIND: Final = {"-b": 1, "--bind": 1}  # gunicorn's and hypercorn's
_STREAMLIT_BIND: Final = {"--server.address": 1, "--server.port": 1}
_SERVERS: Final = ("uvicorn", "gunicorn", "hypercorn")


@dataclass(frozen=True, kw_only=True)
class Activation:
    """A server command rewritten to take the listening socket at fd 3, and its environment."""

    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    server: str


def open_listener(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """Bind and listen on HOST:PORT; ServeError naming the port when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            msg = f"port {port} on {host} is already in use"
            raise ServeError(msg, hint="stop what listens there, or pick another --port") from exc
        msg = f"cannot listen on {host}:{port}: {exc.strerror}"
        raise ServeError(msg, hint="check --host and --port (ports below 1024 need root)") from exc
    return sock


def _strip(args: tuple[str, ...], options: dict[str, int]) -> list[str]:
    """``args`` without ``options`` (``--opt VALUE`` and ``--opt=VALUE`` forms)."""
    kept: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        name = arg.partition("=")[0]
        if name in options:
            skip = 0 if "=" in arg else options[name]
            continue
        kept.append(arg)
    return kept


def _server_at(command: tuple[str, ...]) -> tuple[str, int] | None:
    """The server program named in ``command`` and its index (``python -m NAME`` too)."""
    for i, word in enumerate(command):
        name = PurePosixPath(word).name
        if name in _SERVERS:
            return name, i
        if word == "-m" and i + 1 < len(command) and command[i + 1] in _SERVERS:
            return command[i + 1], i + 1
    return None


def can_activate(command: tuple[str, ...]) -> bool:
    """Whether ``command`` runs a server that can take the inherited socket."""
    return _server_at(command) is not None


def activate(command: tuple[str, ...]) -> Activation:
    """``command`` rewritten to serve on the inherited socket; ServeError for other servers."""
    found = _server_at(command)
    if found is None:
        msg = f"cannot hand a listening socket to {' '.join(command)!r}"
        raise ServeError(
            msg,
            hint="serve with uvicorn, gunicorn or hypercorn, or use --network host "
            "(the server then binds the host's port itself)",
        )
    server, at = found
    head, args = command[: at + 1], command[at + 1 :]
    if server == "uvicorn":
        return Activation(
            command=(*head, *_strip(args, _UVICORN_BIND), "--fd", str(LISTEN_FD)), server=server
        )
    if server == "hypercorn":
        rest = _strip(args, _BIND)
        return Activation(command=(*head, *rest, "--bind", f"fd://{LISTEN_FD}"), server=server)
    # gunicorn reads systemd's variables; LISTEN_PID must be the server's pid: pid 1 in the
    # container, which is why ``serve`` runs the server without --init.
    return Activation(
        command=(*head, *_strip(args, _BIND)),
        env=(("LISTEN_FDS", "1"), ("LISTEN_PID", "1")),
        server=server,
    )


def bind(command: tuple[str, ...], host: str, port: int) -> tuple[str, ...]:
    """``command`` rewritten to bind HOST:PORT itself (``--network host``): uvicorn, gunicorn,
    hypercorn and Streamlit; other servers as given (their own options choose where they
    listen).
    """
    found = _server_at(command)
    if found is None:
        if _runs_streamlit(command):
            bound = _strip(command, _STREAMLIT_BIND)
            return (*bound, "--server.address", host, "--server.port", str(port))
        return command
    server, at = found
    head, args = command[: at + 1], command[at + 1 :]
    if server == "uvicorn":
        return (*head, *_strip(args, _UVICORN_BIND), "--host", host, "--port", str(port))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (*head, *_strip(args, _BIND), "--bind", address)


def _runs_streamlit(command: tuple[str, ...]) -> bool:
    """``streamlit run app.py`` (``python -m streamlit run`` too)."""
    return any(
        PurePosixPath(word).name == "streamlit" and command[i + 1 : i + 2] == ("run",)
        for i, word in enumerate(command)
    )


def probe(host: str, port: int, path: str, *, timeout: float = 2.0) -> bool:
    """Whether the server answers ``GET path`` with a status below 500.

    A TCP connect alone proves nothing here: the host's socket accepts connections into its
    backlog before the server runs. 404 counts as healthy (a server without that route).
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return status < 500


def wait_healthy(
    host: str,
    port: int,
    *,
    path: str = HEALTH_PATH,
    running: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
) -> bool:
    """Poll until the server is healthy (True), or it exits or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while running() and time.monotonic() < deadline:
        if probe(host, port, path, timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
            return True
        time.sleep(interval)
    return False


def connect_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def url(host: str, port: int) -> str:
    """The service's base URL, as printed for the user."""
    shown = connect_host(host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def tail(path: str, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (empty when it cannot be read)."""
    try:
        with open(path, "rb") as f:  # noqa: PTH123 - seek from the end of a possibly big log
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
