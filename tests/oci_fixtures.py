"""Test images and registries for the OCI tests: a tiny busybox image, THE Debian base, registries."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlpack.oci import mediatypes
from mlpack.oci.documents import Descriptor
from mlpack.oci.layer_writer import write_layer
from mlpack.oci.store import Store
from tests.conftest import require

if TYPE_CHECKING:
    from collections.abc import Iterator

SDE = 1700000000
CREATED = "2023-11-14T22:13:20Z"
CACHE = Path(os.environ.get("MLPACK_CI_CACHE", "/var/cache/mlpack-ci"))
BUSYBOX = Path("/bin/busybox")


def sha256_file(path: Path) -> str:
    """Hash a file independently of mlpack."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return "sha256:" + h.hexdigest()


def add_tree_image(
    store: Store, trees: list[Path], ref: str, *, cmd: list[str] | None = None
) -> str:
    """Pack each tree as one layer and store an image named ``ref``; return its digest."""
    layers, diff_ids = [], []
    for tree in trees:
        with store.staging("fixture") as stage:
            tmp = stage / "layer.tar.gz"
            with tmp.open("wb") as fh:
                digests = write_layer(tree, fh, source_date_epoch=SDE)
            store.put_file(tmp, digest=digests.digest)
        layers.append(
            Descriptor(
                media_type=mediatypes.OCI_LAYER_GZIP, digest=digests.digest, size=digests.size
            )
        )
        diff_ids.append(digests.diff_id)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd or ["/bin/sh", "-c", "cat /hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": f"layer {i}"} for i in range(len(trees))],
    }
    return store.add_image(config=config, layers=layers, ref=ref)


def add_layer_image(store: Store, layer: bytes, ref: str) -> str:
    """Store a one-layer image whose layer is the gzip'd tar ``layer``; return its digest."""
    diff_id = hashlib.sha256(gzip.decompress(layer))  # test layers fit in memory
    digest = store.put_bytes(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id.hexdigest()]},
    }
    desc = Descriptor(media_type=mediatypes.OCI_LAYER_GZIP, digest=digest, size=len(layer))
    return store.add_image(config=config, layers=(desc,), ref=ref)


def busybox_image(store: Store, tmp: Path, ref: str = "test/busybox:1", extra: str = "hi") -> str:
    """A two-layer image: busybox, then a small file; runs `cat /hello.txt`."""
    require(BUSYBOX.is_file(), "busybox-static (/bin/busybox)")
    base = tmp / "bb-base"
    if not base.exists():
        (base / "bin").mkdir(parents=True)
        shutil.copy(BUSYBOX, base / "bin" / "busybox")
        (base / "bin" / "sh").symlink_to("busybox")
        (base / "bin" / "cat").symlink_to("busybox")
    top = tmp / f"bb-top-{hashlib.sha256(extra.encode()).hexdigest()[:8]}"
    if not top.exists():
        top.mkdir()
        (top / "hello.txt").write_text(extra + "\n")
    return add_tree_image(store, [base, top], ref)


def copy_image(src: Store, dst: Store, ref: str) -> str:
    """Copy one image (all blobs) from ``src`` to ``dst`` under the same name."""
    image = src.image(ref)
    for desc in (image.manifest.config, *image.manifest.layers):
        dst.put_file(src.blob_path(desc.digest), digest=desc.digest)
    dst.put_file(src.blob_path(image.digest), digest=image.digest)
    dst.tag(ref, image.digest)
    return image.digest


def debian_base(store: Store) -> str:
    """THE test base image (Debian bookworm + python3), built once and cached by its inputs."""
    from mlpack.base.debian import PACKAGES, base_reference, build_debian_base, configured_mirror

    require(os.geteuid() == 0, "root (for mmdebstrap --mode=root)")
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap")
    mirror = configured_mirror()
    key = hashlib.sha256(f"bookworm {' '.join(PACKAGES)} {mirror} {SDE}".encode()).hexdigest()[:16]
    cache = Store(CACHE / f"oci-test-base-{key}")
    # Reuses the cached image when its recorded inputs match, rebuilds it otherwise.
    build_debian_base("3.11", cache, mirror=mirror, sde=SDE)
    return copy_image(cache, store, base_reference("3.11"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_http(url: str, context: object | None = None) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1, context=context)  # type: ignore[arg-type]
        except urllib.error.HTTPError:
            return  # 401 means it is up
        except OSError:
            time.sleep(0.1)
        else:
            return
    pytest.fail(f"registry at {url} did not come up")


def plain_registry() -> str:
    """The plain-HTTP registry from .ci/run (MLPACK_TEST_REGISTRY)."""
    address = os.environ.get("MLPACK_TEST_REGISTRY", "")
    up = False
    if address:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
            up = True
    require(up, "the local registry (MLPACK_TEST_REGISTRY)")
    return address


@dataclass(frozen=True)
class SecureRegistry:
    """A docker-registry over TLS with htpasswd basic auth."""

    address: str
    ca_cert: Path
    docker_config: Path
    username: str
    password: str


@contextlib.contextmanager
def secure_registry(tmp: Path) -> Iterator[SecureRegistry]:
    """Start docker-registry with a self-signed CA and bcrypt htpasswd on a free port."""
    exe = shutil.which("docker-registry")
    require(exe is not None, "docker-registry")
    require(
        shutil.which("openssl") is not None and shutil.which("htpasswd") is not None,
        "openssl, htpasswd",
    )
    assert exe is not None
    port = free_port()
    ca_key, ca_crt = tmp / "ca.key", tmp / "ca.crt"
    key, csr, crt = tmp / "srv.key", tmp / "srv.csr", tmp / "srv.crt"

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
        "-out", str(ca_crt), "-days", "2", "-subj", "/CN=mlpack test CA")  # fmt: skip
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    ext = tmp / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))  # fmt: skip
    htpasswd = tmp / "htpasswd"
    run("htpasswd", "-Bbc", str(htpasswd), "tester", "s3cret")
    config = tmp / "registry.yml"
    config.write_text(
        f"""version: 0.1
storage:
  filesystem:
    rootdirectory: {tmp / "data"}
http:
  addr: 127.0.0.1:{port}
  tls:
    certificate: {crt}
    key: {key}
auth:
  htpasswd:
    realm: mlpack-test
    path: {htpasswd}
"""
    )
    import base64
    import json
    import ssl

    docker_dir = tmp / "docker"
    docker_dir.mkdir()
    auth = base64.b64encode(b"tester:s3cret").decode()
    (docker_dir / "config.json").write_text(
        json.dumps({"auths": {f"127.0.0.1:{port}": {"auth": auth}}})
    )
    log = (tmp / "registry.log").open("wb")
    proc = subprocess.Popen([exe, "serve", str(config)], stdout=log, stderr=log)
    try:
        _wait_http(f"https://127.0.0.1:{port}/v2/", ssl.create_default_context(cafile=str(ca_crt)))
        yield SecureRegistry(
            address=f"127.0.0.1:{port}",
            ca_cert=ca_crt,
            docker_config=docker_dir / "config.json",
            username="tester",
            password="s3cret",
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
