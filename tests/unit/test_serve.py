"""Socket activation: command rewrites, the listener, and the health probe."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from mlpack.errors import ServeError
from mlpack.serve import activate, bind, open_listener, probe, url, wait_healthy


@pytest.mark.parametrize(
    ("command", "expected", "env"),
    [
        (
            ("uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"),
            ("uvicorn", "app.main:app", "--workers", "2", "--fd", "3"),
            (),
        ),
        (
            ("python", "-m", "uvicorn", "app:app", "--port=9000"),
            ("python", "-m", "uvicorn", "app:app", "--fd", "3"),
            (),
        ),
        (
            ("/opt/venv/bin/gunicorn", "-b", "0.0.0.0:8000", "app:app"),
            ("/opt/venv/bin/gunicorn", "app:app"),
            (("LISTEN_FDS", "1"), ("LISTEN_PID", "1")),
        ),
        (
            ("hypercorn", "--bind", "0.0.0.0:80", "app:app"),
            ("hypercorn", "app:app", "--bind", "fd://3"),
            (),
        ),
    ],
)
def test_servers_are_rewritten_to_take_fd_3(
    command: tuple[str, ...], expected: tuple[str, ...], env: tuple[tuple[str, str], ...]
) -> None:
    done = activate(command)
    assert done.command == expected
    assert done.env == env


def test_a_server_that_cannot_take_a_socket_is_refused() -> None:
    with pytest.raises(ServeError, match="cannot hand a listening socket") as info:
        activate(("python", "-m", "app.main"))
    assert "--network host" in info.value.hint


def test_a_port_in_use_is_named_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} on 127.0.0.1 is already in use"):
            open_listener("127.0.0.1", port)


def test_probe_needs_an_http_answer_not_a_connect() -> None:
    listener = open_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    try:
        # The socket accepts into its backlog, but nothing answers: not healthy.
        assert not probe("127.0.0.1", port, "/health", timeout=0.2)
        assert not wait_healthy("127.0.0.1", port, running=lambda: False, timeout=5)
    finally:
        listener.close()


def test_probe_accepts_a_server_that_answers() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert wait_healthy("127.0.0.1", port, running=lambda: True, timeout=30)
        assert probe("127.0.0.1", port, "/no-such-route")  # 404: up, without that route
    finally:
        server.shutdown()
        server.server_close()


def test_urls_name_an_address_a_client_can_use() -> None:
    assert url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert url("::1", 80) == "http://[::1]:80"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ("uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"),
            ("uvicorn", "app:app", "--host", "127.0.0.1", "--port", "9000"),
        ),
        (
            ("gunicorn", "-b", "0.0.0.0:8000", "app:app"),
            ("gunicorn", "app:app", "--bind", "127.0.0.1:9000"),
        ),
        (
            ("python", "-m", "http.server", "8000"),
            ("python", "-m", "http.server", "8000"),
        ),
        (
            ("streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port=8501"),
            (
                "streamlit",
                "run",
                "app.py",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                "9000",
            ),
        ),
    ],
)
def test_with_network_host_servers_are_rewritten_to_bind_the_port(
    command: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert bind(command, "127.0.0.1", 9000) == expected
