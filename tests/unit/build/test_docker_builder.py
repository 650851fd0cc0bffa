"""The Docker builder against a fake engine: the context it sends, and a failing step's report."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mlpack.build.docker import DOCKERFILE, DockerBuilder, write_context
from mlpack.errors import BuildError, ImageError
from mlpack.oci.store import Store
from mlpack.spec import SystemStep, commands
from tests.unit.build.fakes import make_base, make_project, make_spec, make_wheel
from tests.unit.build.test_system import cached, deb


class FakeImages:
    def __init__(self) -> None:
        self.loaded = 0

    def get(self, ref: str) -> object:
        import docker

        raise docker.errors.ImageNotFound(ref)

    def load(self, data: Any) -> None:
        self.loaded += 1


class FakeApi:
    def __init__(self, chunks: list[dict[str, str]]) -> None:
        self.chunks = chunks
        self.kwargs: dict[str, Any] = {}
        self.context = b""

    def build(self, **kwargs: Any) -> list[dict[str, str]]:
        self.kwargs = kwargs
        self.context = kwargs["fileobj"].read()
        return self.chunks


class FakeClient:
    def __init__(self, chunks: list[dict[str, str]]) -> None:
        self.images = FakeImages()
        self.api = FakeApi(chunks)


def setup(tmp_path: Path) -> tuple[Store, dict[str, Path], Any, Path]:
    store = Store(tmp_path / "store")
    (tmp_path / "wheels").mkdir()
    pin = make_wheel(tmp_path / "wheels")
    spec = make_spec(make_base(store, tmp_path), (pin,))
    return (
        store,
        {pin.sha256: tmp_path / "wheels" / pin.filename},
        spec,
        make_project(tmp_path / "p"),
    )


def test_the_context_holds_code_dockerfile_and_wheelhouse_but_no_secret(tmp_path: Path) -> None:
    _, wheels, spec, project = setup(tmp_path)
    buf = io.BytesIO()
    write_context(spec, project, wheels, buf, debs={})
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = set(tar.getnames())
        dockerfile = tar.extractfile(DOCKERFILE).read().decode()  # type: ignore[union-attr]
    assert {"train.py", "pkg/__init__.py", DOCKERFILE} <= names
    assert ".mlpack/requirements/packages.txt" in names
    assert ".mlpack/wheels/packages/hello-1.0-py3-none-any.whl" in names
    assert (
        not {".env", ".git/HEAD", "data/big.csv", "outputs/old.bin", ".mlpack/wheels/x.whl"} & names
    )
    assert "COPY .mlpack/wheels/packages/ /tmp/wheels/" in dockerfile


def test_a_failing_step_is_named_with_the_tail_of_its_log(tmp_path: Path) -> None:
    store, wheels, spec, project = setup(tmp_path)
    client = FakeClient(
        [
            {"stream": "Step 7/20 : RUN python3 -m venv /tmp/pip\n"},
            {"stream": "ERROR: No matching distribution found for hello==1.0\n"},
            {"error": "The command returned a non-zero code: 1"},
        ]
    )
    with pytest.raises(BuildError, match=r"failed at Step 7/20") as info:
        DockerBuilder(store, client=client, wheels=wheels).build(spec, context=project, tag="x:y")
    assert "No matching distribution" in info.value.message
    assert client.images.loaded == 1  # the base went from the store into the engine
    assert client.api.kwargs["buildargs"]["BASE_IMAGE"].startswith("sha256:")
    assert client.api.kwargs["dockerfile"] == DOCKERFILE
    assert client.api.kwargs["network_mode"] == "none"  # no step reaches a network
    with pytest.raises(ImageError):
        store.resolve("x:y")  # nothing tagged


def test_the_locked_debs_go_into_the_context_and_dpkg_installs_them_offline(
    tmp_path: Path,
) -> None:
    store, wheels, spec, project = setup(tmp_path)
    libx = deb("libx1", "1:1.2-3", b"libx deb")
    cached(store, (libx, b"libx deb"))
    spec = dataclasses.replace(spec, steps=(SystemStep(debs=(libx,)), *spec.steps))
    client = FakeClient([{"error": "stop here"}])
    with pytest.raises(BuildError):
        DockerBuilder(store, client=client, wheels=wheels).build(spec, context=project, tag="x:y")
    with tarfile.open(fileobj=io.BytesIO(client.api.context)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert files[".mlpack/debs/libx1_1%3a1.2-3_amd64.deb"] == b"libx deb"
    assert files[".mlpack/debs/install.sh"] == commands.SYSTEM_SCRIPT.encode()
    assert (
        files[".mlpack/debs/SHA256SUMS"] == f"{libx.sha256}  libx1_1%3a1.2-3_amd64.deb\n".encode()
    )
    dockerfile = files[DOCKERFILE].decode()
    assert "apt-get" not in dockerfile  # no package index: the exact files, by dpkg
    assert "sha256sum --check --quiet SHA256SUMS" in dockerfile
    assert "sh /mlpack-debs/install.sh /mlpack-debs/libx1_1%3a1.2-3_amd64.deb" in dockerfile
    # The stage keeps the list of what dpkg deleted; the final stage deletes it all, as the
    # embedded builder's whiteouts do (a COPY cannot delete), then the list.
    assert "cp /mlpack-log/deleted /layer/mlpack-log/" in dockerfile
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert final.index("COPY --from=system /layer/ /") < final.index(
        'do rm -rf "$path"; done < /mlpack-log/deleted \\\n && rm -rf /mlpack-log\n'
    )
    assert "/debs" not in final  # the .deb files never reach the image
    # The hygiene is the install script's alone (the embedded builder runs it too): the
    # Dockerfile has no rule of its own.
    assert "var/log" not in dockerfile
    assert "__pycache__ -prune" not in dockerfile


def test_a_deb_whose_bytes_differ_from_the_lock_never_reaches_the_engine(tmp_path: Path) -> None:
    store, wheels, spec, project = setup(tmp_path)
    libx = deb("libx1", "1.0", b"libx deb")
    cached(store, (libx, b"tampered"))  # a damaged cache entry: fetched again, and unreachable
    spec = dataclasses.replace(spec, steps=(SystemStep(debs=(libx,)), *spec.steps))
    client = FakeClient([])
    with pytest.raises(BuildError, match="libx1"):
        DockerBuilder(store, client=client, wheels=wheels).build(spec, context=project, tag="x:y")
    assert client.api.context == b""
