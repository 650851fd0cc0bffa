"""``mlpack serve`` over both backends (embedded, docker): the same flags, the same behaviour.

examples/inference is served for real (the model of a real training run mounted read-only) and
real HTTP requests go to 127.0.0.1. Each contract test runs once per backend; the Docker ones
need the engine (``require``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlpack.serve import open_listener
from tests.conftest import require
from tests.e2e.embedded_support import MLPACK
from tests.e2e.test_run_serve import FLOWERS, Site, free_port, site, trained

pytestmark = [pytest.mark.root, pytest.mark.slow]
__all__ = ["site", "trained"]  # the fixtures, shared with test_run_serve
BACKENDS = ["embedded", "docker"]
# An ASGI app that answers everything, and dies with exit code 3 on /crash.
CRASHING_APP = """\
import os

async def app(scope, receive, send):
    if scope["path"] == "/crash":
        os._exit(3)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "docker":
        from mlpack.runtime.dockersock import probe_socket

        require(probe_socket().ok, "a running Docker engine (dockerd)")
    return name


def _predict(port: int) -> list[str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps(FLOWERS).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        body = json.loads(answer.read())
    return [p["label"] for p in body["predictions"]]


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
        data: bytes = answer.read()
        return data


def _port_is_free(port: int) -> bool:
    try:
        open_listener("127.0.0.1", port).close()
    except Exception:  # noqa: BLE001 - ServeError: taken
        return False
    return True


def _service_row(site: Site, name: str) -> list[str]:
    """The `mlpack ps -a` row of service ``name`` (its columns), [] when none."""
    shown = site.mlpack("ps", "-a").stdout.splitlines()
    return next((line.split() for line in shown if line.startswith(f"{name} ")), [])


def _until(check: object, what: str, limit: float = 120) -> None:
    """Poll ``check()`` until true; fail naming ``what`` after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail(f"not reached: {what}")


def _stop_all(site: Site, *names: str) -> None:
    for name in names:
        site.mlpack("stop", "-t", "2", name)


def _docker_has(container: str) -> bool:
    listed = subprocess.run(
        ["docker", "ps", "-a", "-q", "--no-trunc"], capture_output=True, text=True, check=True
    ).stdout
    return any(line.startswith(container) for line in listed.split())


def test_serve_answers_predict_and_stops_gracefully(
    site: Site, trained: Path, backend: str
) -> None:
    port = free_port()
    with subprocess.Popen(
        [*MLPACK, "serve", "--backend", backend, str(site.inference), "--port", str(port),
         "-v", f"{trained}:/app/models:ro"],
        env=site.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            # uvicorn's access log shares stdout: the URL line follows the first /health
            lines = (proc.stdout.readline() for _ in range(50))
            assert any(line.startswith(f"serving http://127.0.0.1:{port}") for line in lines)
            assert _predict(port) == ["setosa", "virginica"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            assert "Shutting down" in proc.stderr.read()  # the server's own shutdown ran
        finally:  # SIGTERM first: a SIGKILLed CLI leaves its container running
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    assert _port_is_free(port)


def test_a_port_in_use_is_refused_before_anything_starts(site: Site, backend: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = site.mlpack("serve", "--backend", backend, str(site.inference), "--port", str(port))
    assert done.returncode == 10
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "starting" not in done.stderr  # nothing was built or started


def test_a_server_that_exits_is_reported_with_its_log(site: Site, backend: str) -> None:
    done = site.mlpack(
        "serve", "--backend", backend, str(site.inference), "--port", str(free_port()),
        "--", "uvicorn", "no_such_module:app",
    )  # fmt: skip
    assert done.returncode != 0
    assert "exited" in done.stderr
    assert "no_such_module" in done.stderr  # the tail of the server's log


def test_detach_ps_logs_stop(site: Site, trained: Path, backend: str) -> None:
    port = free_port()
    name = f"detached-{backend}"
    done = site.mlpack(
        "serve", "--detach", "--name", name, "--backend", backend, str(site.inference),
        "--port", str(port), "-v", f"{trained}:/app/models:ro",
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        assert f"serving http://127.0.0.1:{port} as {name}" in done.stdout
        assert _predict(port) == ["setosa", "virginica"]  # the CLI has returned: still served
        row = _service_row(site, name)
        assert row[1:5] == [str(site.inference)[-29:], f"http://127.0.0.1:{port}", "running", "0"]
        assert row[5] == backend
        container = row[6]
        log = site.mlpack("logs", name)
        assert log.returncode == 0
        assert '"POST /predict HTTP/1.1" 200' in log.stdout  # uvicorn's access line
        with subprocess.Popen(
            [*MLPACK, "logs", "-f", name], env=site.env(), stdout=subprocess.PIPE, text=True
        ) as follower:
            stopped = site.mlpack("stop", name)
            assert stopped.returncode == 0, stopped.stderr
            followed, _ = follower.communicate(timeout=60)  # -f ends with the service
    finally:
        _stop_all(site, name)
    assert '"POST /predict HTTP/1.1" 200' in followed
    assert "Shutting down" in followed  # the server's graceful stop, followed live
    assert _port_is_free(port)
    assert _service_row(site, name) == []
    if backend == "embedded":  # its state, cgroup and mounts are gone with it
        assert site.mlpack("ps", "-a", "-q").stdout.split() == []
        assert not list(Path("/sys/fs/cgroup").glob(f"**/*{container}*"))
        assert container not in Path("/proc/self/mountinfo").read_text()
    else:
        assert not _docker_has(container)


def test_stop_cleans_up_after_a_killed_supervisor(site: Site, trained: Path, backend: str) -> None:
    port, name = free_port(), f"orphan-{backend}"
    done = site.mlpack(
        "serve", "--detach", "--name", name, "--backend", backend, str(site.inference),
        "--port", str(port), "-v", f"{trained}:/app/models:ro",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    from mlpack.serve.services import ServiceStore

    service = ServiceStore(site.home / "services").get(name)
    os.kill(service.supervisor, signal.SIGKILL)  # the server outlives it
    _until(lambda: _service_row(site, name)[3:4] == ["exited"], "the service shows exited")
    assert site.mlpack("stop", name).returncode == 0
    assert _service_row(site, name) == []
    if backend == "embedded":
        assert site.mlpack("ps", "-a", "-q").stdout.split() == []  # the container too
    else:
        assert not _docker_has(service.container)
    assert _port_is_free(port)


def test_a_crashing_server_is_restarted_and_counted(
    site: Site, tmp_path: Path, backend: str
) -> None:
    app = tmp_path / "crash"
    app.mkdir(mode=0o755)
    (app / "crashapp.py").write_text(CRASHING_APP)
    port, name = free_port(), f"crashing-{backend}"
    done = site.mlpack(
        "serve", "--detach", "--name", name, "--backend", backend, "--restart", "on-failure:2",
        str(site.inference), "--port", str(port), "-v", f"{app}:/crash:ro",
        "--", "uvicorn", "--app-dir", "/crash", "crashapp:app", "--lifespan", "off",
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        for restarts in ("1", "2"):
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                _get(port, "/crash")
            _until(
                lambda n=restarts: _service_row(site, name)[3:5] == ["running", n],
                f"running after restart {restarts}",
            )
            assert _get(port, "/health") == b"ok"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _get(port, "/crash")  # a third crash: over the limit
        _until(lambda: _service_row(site, name)[3:5] == ["exited", "2"], "exited after 2 restarts")
        log = site.mlpack("logs", name).stdout
        assert "the server exited with 3: restart 2" in log
        assert "the server exited with 3; its log ends" in log
    finally:
        _stop_all(site, name)
    assert _port_is_free(port)


def test_a_server_that_cannot_take_a_socket_is_forwarded(
    site: Site, tmp_path: Path, backend: str
) -> None:
    files = tmp_path / "files"
    files.mkdir(mode=0o755)
    (files / "health").write_text("fine\n")
    (files / "hello.txt").write_text("hello through the forwarder\n")
    port, name = free_port(), f"forwarded-{backend}"
    done = site.mlpack(
        "serve", "--detach", "--name", name, "--backend", backend, str(site.inference),
        "--port", str(port), "--container-port", "8123", "-v", f"{files}:/files:ro",
        "--", "python", "-m", "http.server", "8123", "--bind", "127.0.0.1", "--directory", "/files",
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        assert _get(port, "/hello.txt") == b"hello through the forwarder\n"
        # The server's namespace has loopback only: nothing on the host listens on 8123.
        assert _port_is_free(8123)
    finally:
        _stop_all(site, name)
    assert _port_is_free(port)


def test_a_forwarded_server_is_reached_on_its_entrypoints_port(
    site: Site, tmp_path: Path, backend: str
) -> None:
    """A Streamlit app listens on 8501, the port its entrypoint declares: with no
    --container-port, the forwarder connects there (it tried 8000, and the app never answered).
    """
    project = tmp_path / "project"
    shutil.copytree(site.inference, project, ignore=shutil.ignore_patterns(".mlpack"))
    with (project / "mlpack.toml").open("a") as toml:
        toml.write(
            '\n[entrypoints.files]\nkind = "inference"\ncommand = ["python", "-m", '
            '"http.server", "8123", "--bind", "127.0.0.1", "--directory", "/files"]\nport = 8123\n'
        )
    files = tmp_path / "files"
    files.mkdir(mode=0o755)
    (files / "hello.txt").write_text("hello on the declared port\n")
    port, name = free_port(), f"declared-port-{backend}"
    done = site.mlpack(
        "serve", "--detach", "--name", name, "--backend", backend, str(project),
        "--entry", "files", "--port", str(port), "-v", f"{files}:/files:ro",
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        assert _get(port, "/hello.txt") == b"hello on the declared port\n"
    finally:
        _stop_all(site, name)
    assert _port_is_free(port)


def test_network_host_lets_the_server_bind_the_port_itself(
    site: Site, trained: Path, backend: str
) -> None:
    port, name = free_port(), f"host-net-{backend}"
    done = site.mlpack(
        "serve", "--detach", "--name", name, "--backend", backend, "--network", "host",
        str(site.inference), "--port", str(port), "-v", f"{trained}:/app/models:ro",
    )  # fmt: skip
    try:
        assert done.returncode == 0, done.stderr
        assert _predict(port) == ["setosa", "virginica"]
        log = site.mlpack("logs", name).stdout
        assert f"Uvicorn running on http://127.0.0.1:{port}" in log  # bound by uvicorn itself
    finally:
        _stop_all(site, name)
    assert _port_is_free(port)
