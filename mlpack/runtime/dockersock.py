"""Probe the Docker engine's socket without the docker SDK: missing, forbidden, stale, hung, alien.

Shared by the Docker backend's ``check_available`` and ``mlpack doctor``; it only opens a unix
socket and sends ``GET /_ping``, so it is cheap and never hangs longer than ``timeout``.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from mlpack.errors import ContainerError

DEFAULT_SOCKET: Final = "/var/run/docker.sock"

SocketState = Literal[
    "ok", "remote", "missing", "not_socket", "permission", "refused", "timeout", "not_docker"
]


@dataclass(frozen=True, kw_only=True)
class SocketStatus:
    """What the probe found, with the sentence and the fix a user needs."""

    state: SocketState
    address: str  # the socket path, or DOCKER_HOST when it is not a unix socket
    message: str
    hint: str = ""
    api_version: str | None = None

    @property
    def ok(self) -> bool:
        """Return True when an engine answered (or the address is remote and not probed here)."""
        return self.state in {"ok", "remote"}


def docker_host(env: dict[str, str] | None = None) -> str:
    """Return the engine address: ``DOCKER_HOST`` or the default unix socket."""
    environ = os.environ if env is None else env
    return environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def probe_socket(address: str | None = None, *, timeout: float = 3.0) -> SocketStatus:
    """Connect to the engine's unix socket and ping it; say precisely what is wrong."""
    address = address or docker_host()
    if not address.startswith("unix://"):
        return SocketStatus(
            state="remote",
            address=address,
            message=f"DOCKER_HOST={address} is not a unix socket; the SDK will connect to it",
        )
    path = address[len("unix://") :]
    wrong = _check_path(path)
    if wrong is not None:
        return wrong
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        refused = _connect(sock, path, timeout)
        reply = refused if refused is not None else _ping(sock, path, timeout)
    finally:
        sock.close()
    return reply if isinstance(reply, SocketStatus) else _verdict(path, reply)


def _check_path(path: str) -> SocketStatus | None:
    """What is wrong with the socket's path before connecting, if anything."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return SocketStatus(
            state="missing",
            address=path,
            message=f"no Docker socket at {path}",
            hint="start the engine (dockerd), e.g. `sudo systemctl start docker`, or set "
            "DOCKER_HOST; the embedded runtime needs no daemon (`--runtime embedded`)",
        )
    except PermissionError:
        return _permission(path)
    if not stat.S_ISSOCK(st.st_mode):
        return SocketStatus(
            state="not_socket",
            address=path,
            message=f"{path} exists but is not a socket",
            hint="remove the stray file and restart dockerd, or set DOCKER_HOST to the engine",
        )
    return None


def _connect(sock: socket.socket, path: str, timeout: float) -> SocketStatus | None:
    """Connect ``sock`` to ``path``; what went wrong, if anything."""
    try:
        sock.connect(path)
    except PermissionError:
        return _permission(path)
    except ConnectionRefusedError:
        return SocketStatus(
            state="refused",
            address=path,
            message=f"nothing is listening on {path} (a stale socket left by a stopped dockerd)",
            hint="start the engine (`sudo systemctl start docker` or `dockerd`); "
            "if it refuses to start, remove the stale socket first",
        )
    except TimeoutError:
        return _timeout(path, timeout)
    except OSError as exc:
        if exc.errno == errno.EAGAIN:  # the listen backlog is full: the engine is swamped
            return _timeout(path, timeout)
        raise
    return None


def _ping(sock: socket.socket, path: str, timeout: float) -> bytes | SocketStatus:
    """The raw answer to ``GET /_ping`` (up to 64 KiB), or what went wrong."""
    try:
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = b""
        while len(reply) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    except TimeoutError:
        return _timeout(path, timeout)
    except OSError as exc:
        return SocketStatus(
            state="not_docker",
            address=path,
            message=f"{path} accepted a connection but then failed: {exc.strerror}",
            hint="check the dockerd log; set DOCKER_HOST if the engine listens elsewhere",
        )
    return reply


def _verdict(path: str, reply: bytes) -> SocketStatus:
    """A Docker engine answers /_ping with 200 and "OK"; anything else holds the socket."""
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if lines[0].startswith("HTTP/") and " 200 " in lines[0] + " " and body.strip() == b"OK":
        return SocketStatus(
            state="ok",
            address=path,
            message=f"Docker engine answering on {path}",
            api_version=headers.get("api-version"),
        )
    return SocketStatus(
        state="not_docker",
        address=path,
        message=f"{path} is in use by something that is not a Docker engine "
        f"(its answer to /_ping: {lines[0][:60]!r})",
        hint="point DOCKER_HOST at the Docker engine's socket, or stop the program holding it",
    )


def _permission(path: str) -> SocketStatus:
    return SocketStatus(
        state="permission",
        address=path,
        message=f"permission denied on the Docker socket {path}",
        hint="add your user to the docker group (`sudo usermod -aG docker $USER`, then log in "
        "again) or use the embedded runtime (`--runtime embedded`), which needs no daemon",
    )


def _timeout(path: str, timeout: float) -> SocketStatus:
    return SocketStatus(
        state="timeout",
        address=path,
        message=f"the Docker engine on {path} did not answer within {timeout:g} s (busy or hung)",
        hint="check `systemctl status docker` and the dockerd log; restart the engine if it hangs",
    )


def require_docker(address: str | None = None, *, timeout: float = 3.0) -> SocketStatus:
    """Raise ContainerError with the fix unless an engine answers at ``address``."""
    status = probe_socket(address, timeout=timeout)
    if not status.ok:
        raise ContainerError(status.message, hint=status.hint)
    return status
