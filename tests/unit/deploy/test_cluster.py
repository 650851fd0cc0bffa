"""`mlpack k8s apply` against a local HTTP fixture that records what the client sends."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mlpack.cli import app as cli_app
from mlpack.deploy import cluster
from tests.oci_fixtures import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

TRAINING = Path(__file__).resolve().parents[2] / "fixtures" / "render" / "training"
INFERENCE = TRAINING.parent / "inference"
PUSHED = "127.0.0.1:5000/app@sha256:" + "ab" * 32


class FakeApiServer(ThreadingHTTPServer):
    """Answers every PATCH 200, or ``refuse`` (status, message) for a dry run."""

    requests: list[dict[str, Any]]
    refuse: tuple[int, str] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def do_PATCH(self) -> None:
        url = urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        query = parse_qs(url.query)
        self.server.requests.append(
            {
                "path": url.path,
                "query": query,
                "content_type": self.headers["Content-Type"],
                "auth": self.headers.get("Authorization"),
                "body": body,
            }
        )
        status, message = 200, "ok"
        if self.server.refuse is not None and "dryRun" in query:
            status, message = self.server.refuse
        data = json.dumps({"kind": "Status", "message": message} if status >= 300 else body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    server = FakeApiServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _kubeconfig(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def _rendered(tmp_path: Path, target: Path, kind: str) -> Path:
    out = tmp_path / "manifests"
    argv = ["k8s", "render", str(target), "--kind", kind, "--image-ref", PUSHED, "-o", str(out)]
    assert cli_app.run_app(argv) == 0
    return out


def test_apply_dry_runs_everything_then_applies(
    tmp_path: Path, api_server: FakeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _rendered(tmp_path, INFERENCE, "deployment")
    config = _kubeconfig(tmp_path, api_server.server_address[1])
    argv = ["k8s", "apply", str(out), "--kubeconfig", str(config), "-n", "ml"]
    assert cli_app.run_app(argv) == 0
    sent = api_server.requests
    assert [(r["path"], "dryRun" in r["query"]) for r in sent] == [
        ("/api/v1/namespaces/ml/services/inference", True),
        ("/apis/apps/v1/namespaces/ml/deployments/inference", True),
        ("/api/v1/namespaces/ml/services/inference", False),
        ("/apis/apps/v1/namespaces/ml/deployments/inference", False),
    ]
    for request in sent:
        assert request["content_type"] == "application/apply-patch+yaml"
        assert request["query"]["fieldManager"] == ["mlpack"]
        assert request["auth"] == "Bearer t0ken"
    assert sent[1]["body"]["spec"]["template"]["spec"]["containers"][0]["image"] == PUSHED
    assert "applied Deployment/inference in ml" in capsys.readouterr().out


def test_pytorchjob_goes_to_the_kubeflow_group(tmp_path: Path, api_server: FakeApiServer) -> None:
    out = _rendered(tmp_path, TRAINING, "pytorchjob")
    api = cluster.client(_kubeconfig(tmp_path, api_server.server_address[1]), None)
    cluster.apply(api, cluster.load(out), namespace="default")
    assert api_server.requests[0]["path"] == (
        "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/training"
    )


def test_a_refused_dry_run_changes_nothing(
    tmp_path: Path, api_server: FakeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.refuse = (422, 'Job.batch "training" is invalid')
    out = _rendered(tmp_path, TRAINING, "job")
    config = _kubeconfig(tmp_path, api_server.server_address[1])
    assert cli_app.run_app(["k8s", "apply", str(out), "--kubeconfig", str(config)]) == 8
    assert "server-side dry run of Job/training failed: HTTP 422" in capsys.readouterr().err
    assert all("dryRun" in r["query"] for r in api_server.requests)


def test_no_kubeconfig_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _rendered(tmp_path, TRAINING, "job")
    missing = tmp_path / "nowhere" / "config"
    assert cli_app.run_app(["k8s", "apply", str(out), "--kubeconfig", str(missing)]) == 8
    assert f"no kubeconfig: {missing} does not exist" in capsys.readouterr().err


def test_no_cluster_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _rendered(tmp_path, TRAINING, "job")
    port = free_port()  # nothing listens there
    config = _kubeconfig(tmp_path, port)
    assert cli_app.run_app(["k8s", "apply", str(out), "--kubeconfig", str(config)]) == 8
    assert f"no cluster answers at http://127.0.0.1:{port}" in capsys.readouterr().err


def test_kubeconfig_path_follows_kubectl() -> None:
    assert cluster.kubeconfig_path(None, {"KUBECONFIG": "/a:/b"}) == Path("/a")
    assert cluster.kubeconfig_path(Path("/x"), {"KUBECONFIG": "/a"}) == Path("/x")
    assert cluster.kubeconfig_path(None, {}).parts[-2:] == (".kube", "config")
