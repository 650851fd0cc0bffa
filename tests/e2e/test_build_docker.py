"""The Docker backend on examples/inference: the rendered Dockerfile built by the engine through
the SDK, copied into the store, runnable there, and with the same installed files as the
embedded build (content-reproducible: REPRODUCIBILITY.md §8)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.oci.store import Store
from mlpack.runtime.dockersock import probe_socket
from tests.conftest import require
from tests.e2e.test_build_examples import project, spec_and_wheels

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.docker]
# What installers write about themselves: pip and mlpack differ here, by design.
INSTALLER_FILES = ("/INSTALLER", "/RECORD", "/REQUESTED")


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


def test_the_docker_backend_installs_what_the_embedded_builder_does(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root (mmdebstrap for THE Debian base)")
    require(probe_socket().ok, "the Docker engine (/var/run/docker.sock)")
    import docker

    from mlpack.build.docker import DockerBuilder

    store = Store(tmp_path / "home")
    root = project(tmp_path / "inference", "inference")
    spec, wheels = spec_and_wheels(root, store)
    client = docker.from_env()
    tag = "localhost/mlpack-e2e/inference:docker"
    try:
        result = DockerBuilder(store, client=client, wheels=wheels).build(
            spec, context=root, tag=tag
        )
        assert result.backend == "docker"
        assert store.image(tag).digest == result.digest
        roles = [x.role for x in result.layers]
        assert roles[0] is None
        assert {"interpreter", "packages", "code"} <= set(roles)
        embedded = EmbeddedBuilder(store, wheels=wheels).build(
            spec, context=root, tag="localhost/mlpack-e2e/inference:embedded"
        )
        from_docker = installed_files(store, tag)
        from_embedded = installed_files(store, embedded.reference)
        assert from_docker
        assert from_docker == from_embedded
    finally:
        client.images.remove(tag, force=True)
        client.close()
