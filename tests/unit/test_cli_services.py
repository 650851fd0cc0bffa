"""``mlpack ps``, ``logs`` and ``stop`` on service records, with a plain process as supervisor.

No container runs here: the records are written as ``mlpack serve`` writes them, and the
supervisor is a real process (``sleep``) so liveness, SIGTERM and cleanup are real.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from mlpack.cli import app as cli_app
from mlpack.runtime.embedded.state import proc_start_time
from mlpack.serve.services import Service, ServiceStore, new_service


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServiceStore:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    return ServiceStore(tmp_path / "home" / "services")


def _service(store: ServiceStore, tmp_path: Path, name: str, pid: int) -> Service:
    log = tmp_path / f"{name}.log"
    log.write_text("INFO: started\nINFO: 127.0.0.1 - POST /predict 200\n")
    service = replace(
        new_service(name=name, image="proj", host="127.0.0.1", port=8123, backend="embedded",
                    log=log),
        supervisor=pid, supervisor_start=proc_start_time(pid), status="running", restarts=2,
    )  # fmt: skip
    store.write(service)
    return service


def test_ps_shows_live_services_and_with_all_the_exited_ones(
    store: ServiceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with subprocess.Popen(["sleep", "60"]) as live:
        try:
            _service(store, tmp_path, "up", live.pid)
            _service(store, tmp_path, "down", 2**22 + 1)  # no such process
            assert cli_app.run_app(["ps"]) == 0
            shown = capsys.readouterr().out
            assert cli_app.run_app(["ps", "-a"]) == 0
            shown_all = capsys.readouterr().out
        finally:
            live.kill()
    rows = {line.split()[0]: line.split() for line in shown.splitlines() if line}
    assert rows["up"][1:5] == ["proj", "http://127.0.0.1:8123", "running", "2"]
    assert "down" not in rows
    assert "down" in {line.split()[0] for line in shown_all.splitlines() if line}


def test_logs_prints_the_service_log(
    store: ServiceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _service(store, tmp_path, "web", 2**22 + 1)
    assert cli_app.run_app(["logs", "web"]) == 0
    assert "POST /predict 200" in capsys.readouterr().out
    assert cli_app.run_app(["logs", "nope"]) == 10
    assert "error: no service named 'nope'" in capsys.readouterr().err


def test_stop_ends_the_supervisor_and_forgets_the_service(
    store: ServiceStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with subprocess.Popen(["sleep", "60"]) as live:
        try:
            _service(store, tmp_path, "web", live.pid)
            assert cli_app.run_app(["stop", "web"]) == 0
            assert live.wait(timeout=30) == -15  # SIGTERM, its graceful stop
        finally:
            live.kill()
    assert capsys.readouterr().out.split() == ["web"]
    assert store.all() == ()


def test_stop_forgets_a_service_whose_supervisor_died(store: ServiceStore, tmp_path: Path) -> None:
    _service(store, tmp_path, "gone", 2**22 + 1)
    assert cli_app.run_app(["stop", "gone"]) == 0
    assert store.all() == ()
