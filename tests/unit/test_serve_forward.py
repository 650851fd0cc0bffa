"""The forwarder, the courier and its shim, and service records, without any container.

The forwarder joins "the container's" network namespace: here this process's own, which tests
the setns-connect-copy path for real (root: setns needs CAP_SYS_ADMIN). The courier hands a
listening socket to a real process running the shim, as a Docker container's command would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mlpack.errors import ServeError
from mlpack.serve import open_listener
from mlpack.serve.forward import COURIER_SHIM, Courier, Forwarder
from mlpack.serve.services import ServiceStore, check_name, new_service
from tests.conftest import require


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=answer, daemon=True).start()
    return server, server.getsockname()[1]


def test_the_forwarder_copies_both_ways_through_the_namespace() -> None:
    require(os.geteuid() == 0, "root (setns)")
    server, inner = _echo_server()
    listener = open_listener("127.0.0.1", 0)
    forwarder = Forwarder(listener, inner)
    try:
        forwarder.target(os.getpid())
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            client.sendall(b"hello")
            client.shutdown(socket.SHUT_WR)
            assert client.recv(1024) == b"HELLO"
    finally:
        forwarder.close()
        listener.close()
        server.close()


def test_the_forwarder_holds_connections_while_no_server_runs() -> None:
    listener = open_listener("127.0.0.1", 0)
    forwarder = Forwarder(listener, 9)
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            client.settimeout(0.3)
            with pytest.raises(TimeoutError):  # neither accepted-and-closed nor answered
                client.recv(1)
    finally:
        forwarder.close()
        listener.close()


def test_the_courier_hands_the_listening_socket_to_the_shim_as_fd_3(tmp_path: Path) -> None:
    listener = open_listener("127.0.0.1", 0)
    courier = Courier(listener, tmp_path, (os.getuid(), os.getgid()))
    check = "import os,sys; sys.stdout.write(os.readlink('/proc/self/fd/3'))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", COURIER_SHIM, str(tmp_path / "listen.sock"),
             sys.executable, "-c", check],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        inode = os.fstat(listener.fileno()).st_ino
    finally:
        courier.close()
        listener.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"socket:[{inode}]"
    assert not (tmp_path / "listen.sock").exists()


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "-x", "x" * 64, "a b"])
def test_a_service_name_that_is_not_a_plain_name_is_refused(bad: str) -> None:
    with pytest.raises(ServeError, match="invalid service name"):
        check_name(bad)


def test_a_live_service_keeps_its_name_and_a_dead_one_gives_it_up(tmp_path: Path) -> None:
    store = ServiceStore(tmp_path)
    mine = new_service(
        name="web", image="img", host="127.0.0.1", port=8000, backend="embedded", log=tmp_path
    )
    store.claim(mine)
    assert store.get("web").alive()
    with pytest.raises(ServeError, match="a service named 'web' is running"):
        store.claim(mine)
    dead = store.update("web", supervisor=2**22 + 1)  # no such pid
    assert dead.shown_status() == "exited"
    store.claim(mine)  # a dead supervisor's record is taken over
    assert [s.name for s in store.all()] == ["web"]
    store.remove("web")
    with pytest.raises(ServeError, match="no service named 'web'"):
        store.get("web")


def test_forwarding_without_root_is_refused_with_the_alternatives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlpack.runtime.protocol import RunConfig
    from mlpack.serve.backends import published

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    listener = open_listener("127.0.0.1", 0)
    config = RunConfig(image="img", command=("python", "-m", "http.server"))
    try:
        with (
            pytest.raises(ServeError, match="without root") as refused,
            published(config, listener, backend="embedded", container_port=8000, owner=(1, 1)),
        ):
            pass
    finally:
        listener.close()
    assert "uvicorn" in refused.value.hint
    assert "--network host" in refused.value.hint


@pytest.mark.parametrize("text", ["always", "on-failure:x", "on-failure:-1", ""])
def test_an_invalid_restart_policy_is_refused(text: str) -> None:
    from mlpack.cli.serve import _restart_limit
    from mlpack.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid --restart"):
        _restart_limit(text)


def test_restart_policies_give_their_limits() -> None:
    from mlpack.cli.serve import _restart_limit

    assert _restart_limit("no") == 0
    assert _restart_limit("on-failure:2") == 2
    assert _restart_limit("on-failure") > 1000
