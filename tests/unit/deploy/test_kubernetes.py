"""`mlpack k8s render`: every manifest validates against the Kubernetes API schemas (strict)
and the PyTorchJob against the Kubeflow training operator's CRD schema; bad input writes nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor

from mlpack.cli import app as cli_app
from mlpack.config import load_config
from mlpack.deploy import kubernetes as k8s
from mlpack.errors import DeployError
from mlpack.lock.lockfile import read_lock
from mlpack.oci.store import Store
from mlpack.spec import ENTRYPOINT_LABEL, local_tag, lock_hash

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TRAINING = FIXTURES / "render" / "training"
INFERENCE = FIXTURES / "render" / "inference"
DIGEST = "sha256:" + "ab" * 32
PUSHED = f"127.0.0.1:5000/app@{DIGEST}"
# Kubernetes supports its three newest minor releases (kubernetes.io/releases). On 2026-12-07
# those are 1.35, 1.36 and 1.37, the newest kubernetes-validate 1.37.0 ships schemas for; its
# 1.25-1.34 schemas are of releases past end of life. Raise this list with the package.
SUPPORTED = ("1.35", "1.36", "1.37")
KUBEFLOW_SCHEMA = FIXTURES / "k8s" / "pytorchjob-v1-schema.yaml"


def _render(target: Path, kind: str, *extra: str, out: Path) -> list[dict[str, Any]]:
    argv = ["k8s", "render", str(target), "--kind", kind, "--image-ref", PUSHED, "-o", str(out)]
    assert cli_app.run_app([*argv, *extra]) == 0
    return [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]


def _validate(doc: dict[str, Any]) -> None:
    """Strict schemas of every supported version; the CRD schema and pod template for Kubeflow."""
    if doc["kind"] == "PyTorchJob":
        schema = yaml.safe_load(KUBEFLOW_SCHEMA.read_text())
        jsonschema.Draft7Validator(schema).validate(doc)
        for spec in doc["spec"]["pytorchReplicaSpecs"].values():
            doc = {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "t"},
                "template": spec["template"],
            }
            for version in SUPPORTED:
                kubernetes_validate.validate(doc, version, strict=True)
        return
    for version in SUPPORTED:
        assert kubernetes_validate.validate(doc, version, strict=True) == version


def test_a_project_without_mlpack_toml_is_analysed_in_memory(tmp_path: Path) -> None:
    """As lock, build, run and serve do: the Streamlit demo had no mlpack.toml to render from."""
    project = tmp_path / "demo"
    project.mkdir()
    (project / "requirements.txt").write_text("streamlit==1.40.0\n")
    (project / "streamlit_app.py").write_text("import streamlit as st\nst.title('x')\n")
    [deployment, service] = _render(project, "deployment", out=tmp_path / "out")
    [box] = deployment["spec"]["template"]["spec"]["containers"]
    assert box["command"] == [
        "streamlit", "run", "streamlit_app.py", "--server.address", "0.0.0.0",
        "--server.port", "8501",
    ]  # fmt: skip
    assert box["ports"] == [{"containerPort": 8501, "name": "http", "protocol": "TCP"}]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert not (project / "mlpack.toml").exists()  # nothing written into the project


def test_supported_versions_are_shipped() -> None:
    shipped = {major_minor(v) for v in all_versions()}
    assert set(SUPPORTED) <= shipped


def test_job_validates_and_is_restricted(tmp_path: Path) -> None:
    [job] = _render(TRAINING, "job", "--cpu", "2", "--memory", "8Gi", "--gpus", "1", out=tmp_path)
    _validate(job)
    pod = job["spec"]["template"]["spec"]
    [box] = pod["containers"]
    assert box["image"] == PUSHED
    assert box["command"] == ["python", "train.py"]
    assert box["resources"]["limits"] == {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert box["resources"]["requests"] == box["resources"]["limits"]
    sc = box["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["restartPolicy"] == "Never"


def test_secrets_are_references_never_values(tmp_path: Path) -> None:
    [job] = _render(TRAINING, "job", "--secret", "wandb", out=tmp_path)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_API_KEY"] == {
        "name": "WANDB_API_KEY",
        "valueFrom": {"secretKeyRef": {"key": "WANDB_API_KEY", "name": "wandb"}},
    }
    assert "value" not in env["WANDB_API_KEY"]
    assert env["EPOCHS"] == {"name": "EPOCHS", "value": "20"}


def test_layout_becomes_claims_at_its_paths(tmp_path: Path) -> None:
    [job] = _render(TRAINING, "job", "--data-claim", "ds", "--outputs-claim", "runs", out=tmp_path)
    pod = job["spec"]["template"]["spec"]
    claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
    assert claims["data"] == {"claimName": "ds", "readOnly": True}
    assert claims["outputs"] == {"claimName": "runs", "readOnly": False}
    assert claims["tmp"] is None  # an emptyDir: /tmp stays writable under a read-only root
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/app/data"]["name"] == "data"
    assert mounts["/app/data"]["readOnly"] is True
    assert mounts["/app/configs"]["subPath"] == "configs"
    assert mounts["/app/outputs"]["name"] == "outputs"
    assert mounts["/tmp"]["name"] == "tmp"


@pytest.mark.parametrize("kind", ["job", "pytorchjob", "deployment"])
def test_an_output_file_beside_the_code_is_made_before_it_is_mounted(
    tmp_path: Path, kind: str
) -> None:
    """kubelet makes a missing subPath a folder: model.pkl must exist in the claim first."""
    project = tmp_path / "project"
    shutil.copytree(INFERENCE if kind == "deployment" else TRAINING, project)
    config = project / "mlpack.toml"
    text, found = re.subn(
        r"^outputs = .*$", 'outputs = ["model.pkl"]', config.read_text(), flags=re.MULTILINE
    )
    assert found == 1
    config.write_text(text)
    [doc, *_] = _render(project, kind, out=tmp_path / "out")
    _validate(doc)
    if kind == "pytorchjob":
        pod = doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    else:
        pod = doc["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["image"] == pod["containers"][0]["image"]
    assert init["command"][-1] == "model.pkl"
    assert init["volumeMounts"] == [{"mountPath": "/outputs", "name": "outputs"}]
    assert init["securityContext"] == pod["containers"][0]["securityContext"]
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/app/model.pkl"]["subPath"] == "model.pkl"
    # What the init container runs: a missing file is made, an existing one kept.
    outputs = tmp_path / "claim"
    outputs.mkdir()
    (outputs / "keep.pkl").write_bytes(b"old")
    script = init["command"][2].replace("/outputs/", f"{outputs}/")
    subprocess.run(["sh", "-c", script, "sh", "model.pkl", "keep.pkl"], check=True)
    assert (outputs / "model.pkl").read_bytes() == b""
    assert (outputs / "keep.pkl").read_bytes() == b"old"


def test_no_init_container_without_output_files(tmp_path: Path) -> None:
    [job] = _render(TRAINING, "job", out=tmp_path)
    assert "initContainers" not in job["spec"]["template"]["spec"]


def test_pytorchjob_validates_against_the_kubeflow_crd(tmp_path: Path) -> None:
    [job] = _render(TRAINING, "pytorchjob", "--replicas", "3", "--gpus", "8", out=tmp_path)
    _validate(job)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1
    assert specs["Worker"]["replicas"] == 2
    assert specs["Master"]["template"]["spec"]["containers"][0]["name"] == "pytorch"


def test_kubeflow_schema_rejects_a_broken_job() -> None:
    schema = yaml.safe_load(KUBEFLOW_SCHEMA.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(
            {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {}}
        )


def test_deployment_and_service_probe_the_health_path(tmp_path: Path) -> None:
    docs = _render(INFERENCE, "deployment", "--health-path", "/healthz", out=tmp_path)
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    for doc in docs:
        _validate(doc)
    deployment, service = docs
    [box] = deployment["spec"]["template"]["spec"]["containers"]
    assert box["ports"] == [{"containerPort": 8000, "name": "http", "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert box[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_output_is_deterministic(tmp_path: Path) -> None:
    _render(TRAINING, "pytorchjob", out=tmp_path / "a")
    _render(TRAINING, "pytorchjob", out=tmp_path / "b")
    for path in (tmp_path / "a").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
    text = (tmp_path / "a" / "pytorchjob-training.yaml").read_text()
    assert text.index("apiVersion") < text.index("kind") < text.index("metadata")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kind", "cronjob"], "unknown kind 'cronjob'"),
        (["--gpus", "-1"], "GPU count -1 is negative"),
        (["--cpu", "lots"], "not a Kubernetes quantity"),
        (["--image-ref", "localhost/app@" + DIGEST], "exists only in the local store"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    argv = ["k8s", "render", str(TRAINING), "--image-ref", PUSHED, "-o", str(out), *extra]
    assert cli_app.run_app(argv) == DeployError.exit_code
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_project_without_image_ref_says_push_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert cli_app.run_app(["k8s", "render", str(TRAINING), "-o", str(out)]) == 8
    err = capsys.readouterr().err
    assert "exists only in the local store" in err
    assert "mlpack push" in err
    assert not out.exists()


def test_image_ref_without_digest_pins_the_projects_local_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    lock = read_lock(TRAINING / "mlpack.lock")
    config = load_config(TRAINING)
    digest = _stored(tmp_path / "home", local_tag(config.name, lock_hash(lock)))
    out = tmp_path / "out"
    argv = ["k8s", "render", str(TRAINING), "--image-ref", "127.0.0.1:5000/app", "-o", str(out)]
    assert cli_app.run_app(argv) == 0
    [job] = [yaml.safe_load(p.read_text()) for p in out.iterdir()]
    [box] = job["spec"]["template"]["spec"]["containers"]
    assert box["image"] == f"127.0.0.1:5000/app@{digest}"


def _stored(home: Path, ref: str) -> str:
    entry = {"kind": "training", "command": ["python", "train.py"]}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Labels": {ENTRYPOINT_LABEL + "train": json.dumps(entry)},
            "WorkingDir": "/app",
        },
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return Store(home).add_image(config=config, layers=(), ref=ref)


def test_image_only_in_the_local_store_says_push_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    _stored(tmp_path / "home", "localhost/app:1")
    out = tmp_path / "out"
    assert cli_app.run_app(["k8s", "render", "localhost/app:1", "-o", str(out)]) == 8
    err = capsys.readouterr().err
    assert "image localhost/app:1 exists only in the local store" in err
    assert "mlpack push localhost/app:1" in err
    assert not out.exists()
    # with the pushed reference it renders the image's entrypoint, root filesystem writable
    argv = ["k8s", "render", "localhost/app:1", "--image-ref", PUSHED, "-o", str(out)]
    assert cli_app.run_app(argv) == 0
    [job] = [yaml.safe_load(p.read_text()) for p in out.iterdir()]
    _validate(job)
    [box] = job["spec"]["template"]["spec"]["containers"]
    assert box["command"] == ["python", "train.py"]
    assert box["securityContext"]["readOnlyRootFilesystem"] is False  # layout unknown


def test_dns_label() -> None:
    assert k8s.dns_label("My_Project.v2") == "my-project-v2"
    assert len(k8s.dns_label("x" * 100)) == 63


def test_strict_validation_catches_an_unknown_field(tmp_path: Path) -> None:
    [job] = _render(TRAINING, "job", out=tmp_path)
    job["spec"]["template"]["spec"]["containers"][0]["runAsRoot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, SUPPORTED[-1], strict=True)


def test_stdout_is_one_yaml_stream(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["k8s", "render", str(INFERENCE), "--kind", "deployment", "--image-ref", PUSHED]
    assert cli_app.run_app(argv) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]


def test_a_deployment_needs_a_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["k8s", "render", str(TRAINING), "--kind", "deployment", "--entry", "train"]
    assert cli_app.run_app([*argv, "--image-ref", PUSHED, "-o", str(out)]) == 8
    assert "declares no port" in capsys.readouterr().err
    assert not out.exists()


def test_a_deployment_needs_an_inference_entrypoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["k8s", "render", str(TRAINING), "--kind", "deployment", "--image-ref", PUSHED]
    assert cli_app.run_app(argv) == 8
    assert "no inference entrypoint (it has: train)" in capsys.readouterr().err
