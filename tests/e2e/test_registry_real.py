"""Pull, push, base images and docker load against real registries and the real Docker engine."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import uuid
from typing import TYPE_CHECKING

import pytest

from mlpack.base.resolve import resolve_base
from mlpack.errors import ImageError
from mlpack.oci.archive import export_image, import_archive
from mlpack.oci.registry import pull, push
from mlpack.oci.registry_config import RegistryOptions
from mlpack.oci.snapshots import rootfs
from mlpack.oci.store import Store
from mlpack.progress import RecordingReporter, using
from tests.conftest import require
from tests.oci_fixtures import (
    SDE,
    busybox_image,
    debian_base,
    free_port,
    plain_registry,
    secure_registry,
    sha256_file,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.oci_fixtures import SecureRegistry

pytestmark = [pytest.mark.registry, pytest.mark.slow]
BASE_REF = "localhost/mlpack-base/python:3.11-bookworm"


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store holding THE test base image (Debian bookworm + python3)."""
    store = Store(tmp_path_factory.mktemp("base") / "store")
    debian_base(store)
    return store


@pytest.fixture
def registry() -> str:
    return plain_registry()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRegistry]:
    with secure_registry(tmp_path_factory.mktemp("secure")) as reg:
        yield reg


def _repo() -> str:
    return f"mlpack-test/{uuid.uuid4().hex[:10]}"


def _verify_independently(store: Store, digest: str) -> None:
    """Recompute every digest with hashlib, outside mlpack's own checks."""
    image = store.image(digest)
    assert sha256_file(store.blob_path(digest)) == digest
    for desc in (image.manifest.config, *image.manifest.layers):
        path = store.blob_path(desc.digest)
        assert sha256_file(path) == desc.digest
        assert path.stat().st_size == desc.size


def test_debian_base_image(base_store: Store) -> None:
    image = base_store.image(BASE_REF)
    labels = dict(image.config.labels)
    assert "python3.11=" in labels["org.mlpack.base.packages"]
    assert labels["org.mlpack.base.suite"] == "bookworm"
    assert "PYTHON_VERSION=3.11.2" in image.config.env
    assert image.config.created == "2023-11-14T22:13:20Z"
    root = rootfs(base_store, BASE_REF)
    assert (root / "usr" / "bin" / "python3.11").is_file()
    assert (root / "usr" / "lib" / "python3.11" / "venv").is_dir()
    assert (root / "etc" / "ssl" / "certs").is_dir()
    assert list((root / "var" / "log").iterdir()) == []
    assert list((root / "var" / "lib" / "apt" / "lists").glob("*Packages*")) == []
    assert (
        not (root / "etc" / "machine-id").exists()
        or (root / "etc" / "machine-id").read_bytes() == b""
    )
    # The base's modes and owners are content: read them from the layer itself.
    with tarfile.open(base_store.blob_path(image.manifest.layers[0].digest)) as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert members["tmp"].mode == 0o1777
    assert members["etc/shadow"].mode == 0o640
    assert members["etc/shadow"].gid == 42
    assert members["usr/bin/su"].mode & 0o4000
    assert all(m.mtime <= SDE for m in members.values())


def test_push_pull_plain_registry(base_store: Store, registry: str, tmp_path: Path) -> None:
    target = f"{registry}/{_repo()}:1"
    first = push(base_store, BASE_REF, target)
    assert first.blobs_uploaded == 2
    again = push(base_store, BASE_REF, target)
    assert again.blobs_uploaded == 0
    assert again.blobs_skipped == 2
    assert again.bytes_sent < 4096  # only the manifest
    fresh = Store(tmp_path / "fresh")
    result = pull(target, fresh)
    assert result.digest == first.digest == base_store.resolve(BASE_REF)
    _verify_independently(fresh, result.digest)
    assert fresh.check().ok
    by_digest = pull(
        f"{registry}/{target.split('/', 1)[1].split(':', maxsplit=1)[0]}@{result.digest}",
        Store(tmp_path / "d"),
    )
    assert by_digest.digest == result.digest


def test_push_after_one_layer_change_sends_only_that_layer(registry: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    repo = f"{registry}/{_repo()}"
    busybox_image(store, tmp_path, "app:1", extra="one")
    push(store, "app:1", f"{repo}:1")
    busybox_image(store, tmp_path, "app:2", extra="two")
    changed = store.image("app:2").manifest.layers[1]
    result = push(store, "app:2", f"{repo}:2")
    assert result.blobs_skipped == 1  # the busybox layer
    assert result.blobs_uploaded == 2  # the changed layer and the config
    config_size = store.image("app:2").manifest.config.size
    manifest_size = store.image("app:2").manifest_size
    assert result.bytes_sent == changed.size + config_size + manifest_size


def test_cross_repository_mount_and_chunked_upload(registry: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    busybox_image(store, tmp_path, "app:1")
    src = f"{registry}/{_repo()}:1"
    chunked = push(store, "app:1", src, options=RegistryOptions(upload_chunk_size=64 << 10))
    assert chunked.blobs_uploaded == 3
    puller = Store(tmp_path / "p")
    pull(src, puller)
    _verify_independently(puller, chunked.digest)
    dst = f"{registry}/{_repo()}:1"
    mounted = push(puller, src, dst)
    assert mounted.blobs_mounted == 3
    assert mounted.bytes_sent < 4096
    assert pull(dst, Store(tmp_path / "q")).digest == chunked.digest


def test_two_concurrent_pulls_in_two_processes(
    base_store: Store, registry: str, tmp_path: Path
) -> None:
    target = f"{registry}/{_repo()}:1"
    push(base_store, BASE_REF, target)
    home = tmp_path / "home"
    env = {**os.environ, "MLPACK_HOME": str(home)}
    code = "import sys; from mlpack.cli import main; main(sys.argv[1:])"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, "pull", target], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    digest = base_store.resolve(BASE_REF)
    assert all(digest in o for o in outs)
    assert Store(home).check().ok
    assert Store(home).resolve(target) == digest


def test_tls_and_basic_auth(secure: SecureRegistry, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    digest = busybox_image(store, tmp_path, "app:1")
    target = f"{secure.address}/{_repo()}:1"
    good = RegistryOptions(ca_cert=secure.ca_cert, docker_config=secure.docker_config)
    assert push(store, "app:1", target, options=good).digest == digest
    fresh = Store(tmp_path / "fresh")
    assert pull(target, fresh, options=good).digest == digest
    _verify_independently(fresh, digest)
    with pytest.raises(ImageError, match="TLS") as info:
        pull(
            target,
            Store(tmp_path / "x"),
            options=RegistryOptions(docker_config=secure.docker_config),
        )
    assert "--ca-cert" in info.value.hint
    nobody = RegistryOptions(ca_cert=secure.ca_cert, docker_config=tmp_path / "none.json")
    with pytest.raises(ImageError, match="401") as info:
        pull(target, Store(tmp_path / "y"), options=nobody)
    assert "docker login" in info.value.hint
    wrong = tmp_path / "wrong.json"
    wrong.write_text(
        json.dumps({"auths": {secure.address: {"username": "tester", "password": "no"}}})
    )
    with pytest.raises(ImageError, match="401"):
        pull(
            target,
            Store(tmp_path / "z"),
            options=RegistryOptions(ca_cert=secure.ca_cert, docker_config=wrong),
        )


def test_a_ca_bundle_is_loaded_once_per_process(
    secure: SecureRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests loads a ``verify=`` bundle for every new connection (~30 ms of CPU each with
    Debian's roots); the client keeps one context per bundle for all of its connections.
    """
    from mlpack.oci import registry_client

    store = Store(tmp_path / "s")
    busybox_image(store, tmp_path, "app:1")
    target = f"{secure.address}/{_repo()}:1"
    good = RegistryOptions(ca_cert=secure.ca_cert, docker_config=secure.docker_config)
    registry_client._trust.cache_clear()
    loads: list[str] = []
    real = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, cafile: str | None = None, *args: object) -> None:
        loads.append(str(cafile))
        real(self, cafile, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    push(store, "app:1", target, options=good)
    for name in ("a", "b"):  # two clients, each with its own connections
        pull(target, Store(tmp_path / name), options=good)
    assert loads == [str(secure.ca_cert)], loads


def test_cli_with_ca_cert_and_docker_config(secure: SecureRegistry, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    digest = busybox_image(store, tmp_path, "app:1")
    target = f"{secure.address}/{_repo()}:1"
    env = {
        **os.environ,
        "MLPACK_HOME": str(store.root),
        "DOCKER_CONFIG": str(secure.docker_config.parent),
    }
    run = [sys.executable, "-c", "import sys; from mlpack.cli import main; main(sys.argv[1:])"]
    pushed = subprocess.run(
        [*run, "push", "app:1", target, "--ca-cert", str(secure.ca_cert)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stderr
    env["MLPACK_HOME"] = str(tmp_path / "fresh")
    pulled = subprocess.run(
        [*run, "pull", target, "--ca-cert", str(secure.ca_cert)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    assert digest in pulled.stdout
    bad = subprocess.run(
        [*run, "pull", target], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 5
    assert bad.stderr.count("error:") == 1
    assert "hint:" in bad.stderr


def test_registry_provider_through_mirror(
    base_store: Store, registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushed = push(base_store, BASE_REF, f"{registry}/library/python:3.11-slim")
    monkeypatch.setenv("MLPACK_REGISTRY_MIRROR", f"http://{registry}")
    store = Store(tmp_path / "s")
    chosen = resolve_base("3.11", store=store, platform="linux/amd64")
    assert chosen.provider == "registry"
    assert chosen.digest == pushed.digest
    assert chosen.reference == "docker.io/library/python:3.11-slim"
    assert chosen.python_full == "3.11.2"
    assert store.resolve("python:3.11-slim") == pushed.digest
    cli = subprocess.run(
        [sys.executable, "-c", "import sys; from mlpack.cli import main; main(sys.argv[1:])",
         "base", "--python", "3.11"],
        env={**os.environ, "MLPACK_HOME": str(tmp_path / "cli")},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "provider:  registry" in cli.stdout
    assert pushed.digest in cli.stdout
    explicit = resolve_base(
        "3.11",
        explicit=f"{registry}/library/python:3.11-slim",
        store=store,
        platform="linux/amd64",
    )
    assert explicit.provider == "explicit"
    assert explicit.digest == pushed.digest


def test_debian_provider_when_no_registry_is_reachable(
    base_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = free_port()
    monkeypatch.setenv("MLPACK_REGISTRY_MIRROR", f"127.0.0.1:{closed}")
    # Docker Hub is reached through this (closed) proxy, so it fails at once.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(SDE))
    store = Store(tmp_path / "s")
    from tests.oci_fixtures import copy_image

    copy_image(base_store, store, BASE_REF)  # built once per session; reused when inputs match
    rep = RecordingReporter()
    with using(rep):
        chosen = resolve_base("3.11", store=store, platform="linux/amd64")
    assert chosen.provider == "debian"
    assert chosen.python_full == "3.11.2"
    assert chosen.digest == base_store.resolve(BASE_REF)
    assert any("debian base provider" in n for n in rep.notices)
    with pytest.raises(ImageError, match=r"no Debian suite has Python 3\.9"):
        resolve_base("3.9", store=store, platform="linux/amd64")


@pytest.mark.docker
def test_export_loads_and_runs_in_docker(base_store: Store, tmp_path: Path) -> None:
    docker = shutil.which("docker")
    ok = (
        docker is not None
        and subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0
    )
    require(ok, "a running Docker engine")
    tar = tmp_path / "base.tar"
    tag = f"mlpack-test/base:{uuid.uuid4().hex[:8]}"
    export_image(base_store, BASE_REF, tar, tag=tag)
    try:
        loaded = subprocess.run(
            ["docker", "load", "-i", str(tar)], capture_output=True, text=True, check=True
        )
        assert tag in loaded.stdout
        ran = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                tag,
                "python3",
                "-c",
                "import sys, venv; print(sys.version_info[:2])",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert ran.stdout.strip() == "(3, 11)"
        inspect = json.loads(
            subprocess.run(
                ["docker", "image", "inspect", tag], capture_output=True, check=True
            ).stdout
        )
        diff_ids = inspect[0]["RootFS"]["Layers"]
        assert tuple(diff_ids) == base_store.image(BASE_REF).config.diff_ids
        # And back: the real engine's `docker save` output imports with the same layers.
        saved = tmp_path / "saved.tar"
        subprocess.run(["docker", "save", "-o", str(saved), tag], check=True, capture_output=True)
        other = Store(tmp_path / "imported")
        (imported,) = import_archive(other, saved)
        assert imported.reference == tag
        assert other.image(tag).config.diff_ids == tuple(diff_ids)
        assert (rootfs(other, tag) / "usr" / "bin" / "python3.11").is_file()
        assert other.check().ok
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
