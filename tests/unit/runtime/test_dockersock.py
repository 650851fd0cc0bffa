"""The Docker socket probe against real unix sockets: each failure names the socket and the fix."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.runtime.docker import DockerRuntime
from mlpack.runtime.dockersock import docker_host, probe_socket, require_docker
from tests.conftest import require
from tests.unprivileged import run_as_nobody


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="mlsock", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _serve(path: Path, reply: bytes | None) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)

    def loop() -> None:
        held: list[socket.socket] = []
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:  # the test closed the server
                for c in held:
                    c.close()
                return
            if reply is None:  # accept, then never answer (closed with the server)
                held.append(conn)
                continue
            conn.recv(4096)
            conn.sendall(reply)
            conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return srv


def test_missing_socket(sock_dir: Path) -> None:
    status = probe_socket(f"unix://{sock_dir}/docker.sock")
    assert status.state == "missing"
    with pytest.raises(ContainerError, match=f"no Docker socket at {sock_dir}/docker.sock") as info:
        DockerRuntime(base_url=f"unix://{sock_dir}/docker.sock").check_available()
    assert "start the engine (dockerd)" in info.value.hint
    assert "DOCKER_HOST" in info.value.hint


def test_not_a_socket(sock_dir: Path) -> None:
    (sock_dir / "docker.sock").write_text("")
    assert probe_socket(f"unix://{sock_dir}/docker.sock").state == "not_socket"


def test_stale_socket_refuses(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: what a crashed dockerd leaves
    status = probe_socket(f"unix://{path}")
    assert status.state == "refused"
    assert "stale socket" in status.message
    assert "start the engine" in status.hint


def test_hung_engine_times_out(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    srv = _serve(path, None)
    try:
        status = probe_socket(f"unix://{path}", timeout=0.3)
    finally:
        srv.close()
    assert status.state == "timeout"
    assert "did not answer within 0.3 s" in status.message


def test_socket_in_use_by_something_else(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    srv = _serve(path, b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    try:
        status = probe_socket(f"unix://{path}")
    finally:
        srv.close()
    assert status.state == "not_docker"
    assert "not a Docker engine" in status.message


def test_a_docker_like_answer_is_ok(sock_dir: Path) -> None:
    path = sock_dir / "docker.sock"
    srv = _serve(path, b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK")
    try:
        status = require_docker(f"unix://{path}")
    finally:
        srv.close()
    assert status.ok
    assert status.api_version == "1.41"


def test_remote_hosts_are_left_to_the_sdk() -> None:
    assert probe_socket("tcp://127.0.0.1:2375").state == "remote"
    assert docker_host({"DOCKER_HOST": "tcp://h:1"}) == "tcp://h:1"
    assert docker_host({}) == "unix:///var/run/docker.sock"


def test_permission_denied_for_an_unprivileged_user(sock_dir: Path) -> None:
    require(os.geteuid() == 0, "root (to drop to an unprivileged user)")
    path = sock_dir / "docker.sock"
    srv = _serve(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    path.chmod(0o600)
    sock_dir.chmod(0o755)
    code = (
        "import sys; from mlpack.runtime.dockersock import probe_socket; "
        f"s = probe_socket('unix://{path}'); print(s.state); print(s.hint)"
    )
    try:
        out = run_as_nobody(code)
    finally:
        srv.close()
    state, hint = out.stdout.splitlines()[:2]
    assert state == "permission"
    assert "docker group" in hint
    assert "embedded runtime" in hint
