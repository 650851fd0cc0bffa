"""The Docker backend on both examples: the rendered Dockerfile built by the engine through the
SDK with no network (wheels and the lock's .deb files come in the context), copied into the
store, with the same installed files as the embedded build (content-reproducible:
REPRODUCIBILITY.md §8, .pyc bytes included), and each image's command run on both runtimes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.oci.store import Store
from mlpack.runtime.dockersock import probe_socket
from tests.conftest import require
from tests.e2e.embedded_support import MLPACK
from tests.e2e.test_build_examples import mirror_reachable, project, runner_for, spec_and_wheels

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.docker]
# What installers write about themselves: pip and mlpack differ here, by design.
INSTALLER_FILES = ("/INSTALLER", "/RECORD", "/REQUESTED")
# The inference example has no training entrypoint: its one-shot check loads the model and
# answers a prediction, through the same code /predict runs.
PREDICT = (
    "import json; from app.main import PredictRequest, predict; "
    "print(json.dumps(predict(PredictRequest(instances=[dict(sepal_length=5.1, "
    "sepal_width=3.5, petal_length=1.4, petal_width=0.2)]))))"
)


def installed_files(store: Store, ref: str, prefix: str = "opt/venv/lib/") -> dict[str, str]:
    """sha256 of every regular file under ``prefix`` in the image (upper layers win)."""
    files: dict[str, str] = {}
    image = store.image(ref)
    for desc in image.manifest.layers:
        raw = store.blob_path(desc.digest).read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                name = m.name.lstrip("./")
                if m.isfile() and name.startswith(prefix) and not name.endswith(INSTALLER_FILES):
                    files[name] = hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
    return files


def run_image(store: Store, tag: str, runtime: str, argv: list[str], volumes: list[str]) -> str:
    """Run ``argv`` (empty: the image's default command) on one runtime; its stdout."""
    env = {"PATH": os.environ.get("PATH", ""), "MLPACK_HOME": str(store.root)}
    flags = [f for v in volumes for f in ("-v", v)]
    cmd = (
        [*MLPACK, "run", *flags, tag, *argv]
        if runtime == "embedded"
        else ["docker", "run", "--rm", "--network", "none", *flags, tag, *argv]
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=600)
    assert proc.returncode == 0, f"{runtime}: {proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.parametrize("example", ["training", "inference"])
def test_the_docker_backend_builds_offline_what_the_embedded_builder_does(
    example: str, tmp_path: Path
) -> None:
    require(os.geteuid() == 0, "root (mmdebstrap for THE Debian base)")
    require(probe_socket().ok, "the Docker engine (/var/run/docker.sock)")
    import docker

    from mlpack.build.docker import DockerBuilder

    store = Store(tmp_path / "home")
    root = project(tmp_path / example, example)
    spec, wheels = spec_and_wheels(root, store)
    if example == "training":
        require(mirror_reachable(), "the Debian mirror (the pinned libgomp1 .deb, host side)")
    client = docker.from_env()
    tag = f"localhost/mlpack-e2e/{example}:docker"
    try:
        result = DockerBuilder(store, client=client, wheels=wheels).build(
            spec, context=root, tag=tag
        )
        assert result.backend == "docker"
        assert store.image(tag).digest == result.digest
        roles = [x.role for x in result.layers]
        assert roles[0] is None
        assert {"interpreter", "packages", "code"} <= set(roles)
        assert ("system" in roles) == (example == "training")
        embedded = EmbeddedBuilder(store, wheels=wheels, runner=runner_for(store)).build(
            spec, context=root, tag=f"localhost/mlpack-e2e/{example}:embedded"
        )
        # The same files, .pyc bytes compiled by the image's Python included.
        from_docker = installed_files(store, tag)
        assert any(name.endswith(".pyc") for name in from_docker)
        assert from_docker == installed_files(store, embedded.reference)
        if example == "training":
            gomp = "usr/lib/x86_64-linux-gnu/libgomp.so.1.0.0"
            assert installed_files(store, tag, gomp) == installed_files(
                store, embedded.reference, gomp
            )
            outputs = {name: tmp_path / f"outputs-{name}" for name in ("embedded", "docker")}
            for folder in outputs.values():
                folder.mkdir(mode=0o777)
                folder.chmod(0o777)  # the image runs as 1000:1000
            for runtime, folder in outputs.items():
                # The image's default command: its training entrypoint, `python train.py`.
                volumes = [f"{root / 'data'}:/app/data:ro", f"{root / 'configs'}:/app/configs:ro",
                           f"{folder}:/app/outputs"]  # fmt: skip
                run_image(store, tag, runtime, [], volumes)
                metrics = json.loads((folder / "metrics.json").read_text())
                assert metrics["test_accuracy"] > 0.8, runtime
                assert (folder / "model.joblib").stat().st_size > 0
        else:
            for runtime in ("embedded", "docker"):
                models = [f"{root / 'models'}:/app/models:ro"]  # an input: not in the image
                stdout = run_image(store, tag, runtime, ["python", "-c", PREDICT], models)
                (prediction,) = json.loads(stdout)["predictions"]
                assert prediction["label"] == "setosa", runtime
    finally:
        client.images.remove(tag, force=True)
        client.close()
