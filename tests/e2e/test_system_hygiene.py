"""The system step on real dpkg with both builders: what a package deletes is gone from the
image, and what varies between runs (logs, caches, dpkg backups, __pycache__, machine-id) is in
no system layer (REPRODUCIBILITY.md §4).

The package is made here with dpkg-deb: its maintainer script deletes a file and a folder of
THE Debian base and leaves one of each varying kind, so the test needs no mirror.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from typing import TYPE_CHECKING

import pytest

from mlpack.base.debian import base_reference
from mlpack.build.embedded import EmbeddedBuilder
from mlpack.lock.lockdata import SystemPackagePin
from mlpack.oci.store import Store
from mlpack.paths import cache_folder
from mlpack.runtime.dockersock import probe_socket
from mlpack.spec import CodeStep, SystemStep, VenvStep
from tests.conftest import require
from tests.e2e.test_build_examples import runner_for
from tests.oci_fixtures import debian_base
from tests.unit.build.fakes import make_project, make_spec

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.build.protocol import BuildResult

pytestmark = [pytest.mark.root, pytest.mark.slow]

POSTINST = """#!/bin/sh
set -e
rm -f /etc/issue.net
rm -rf /usr/share/doc/base-files
echo "installed at $(date +%s.%N)" > /var/log/mlpack-probe.log
mkdir -p /root/.cache/probe /usr/share/mlpack-probe/__pycache__
date +%s.%N > /root/.cache/probe/stamp
date +%s.%N > /usr/share/mlpack-probe/__pycache__/probe.cpython-311.pyc
date +%s.%N | sha256sum | cut -c1-32 > /etc/machine-id
cp /var/lib/dpkg/status /var/lib/dpkg/mlpack-probe-old
"""
DELETED = ("etc/issue.net", "usr/share/doc/base-files")
# Each kind of file that varies between runs, as the layer would name it.
VARYING = re.compile(
    r"^(var/log/.|var/lib/dpkg/[^/]*-old|var/cache/ldconfig/aux-cache|root/\.cache"
    r"|etc/machine-id$)|/__pycache__(/|$)"
)


def probe_deb(tmp: Path, store: Store) -> SystemPackagePin:
    """The probe package, built with dpkg-deb and put where a fetch would leave it."""
    root = tmp / "probe"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "share" / "mlpack-probe").mkdir(parents=True)
    (root / "usr" / "share" / "mlpack-probe" / "data.txt").write_text("kept\n")
    (root / "DEBIAN" / "control").write_text(
        "Package: mlpack-probe\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: mlpack tests <tests@example.invalid>\nDescription: hygiene probe\n"
    )
    (root / "DEBIAN" / "postinst").write_text(POSTINST)
    (root / "DEBIAN" / "postinst").chmod(0o755)
    deb = tmp / "probe.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    data = deb.read_bytes()
    pin = SystemPackagePin(name="mlpack-probe", version="1.0", architecture="all",
                           url="http://127.0.0.1:9/mlpack-probe_1.0_all.deb", size=len(data),
                           sha256=hashlib.sha256(data).hexdigest())  # fmt: skip
    cached = cache_folder("debs", home=store.root) / pin.sha256 / pin.filename
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(deb, cached)
    return pin


def layers(store: Store, result: BuildResult, step: str) -> list[dict[str, tarfile.TarInfo]]:
    """The members of each layer of ``step``, by name."""
    found = []
    for layer in result.layers:
        if layer.step == step:
            raw = store.blob_path(layer.digest).read_bytes()
            data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw  # docker's: plain
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                found.append({m.name.removeprefix("./").rstrip("/"): m for m in tar.getmembers()})
    return found


@pytest.mark.parametrize("backend", ["embedded", "docker"])
def test_what_dpkg_deletes_is_gone_and_what_varies_is_in_no_system_layer(
    backend: str, tmp_path: Path
) -> None:
    require(os.geteuid() == 0, "root (mmdebstrap for THE Debian base, the embedded runtime)")
    require(shutil.which("dpkg-deb") is not None, "dpkg-deb (to make the probe package)")
    store = Store(tmp_path / "home")
    base = debian_base(store)
    pin = probe_deb(tmp_path, store)
    spec = make_spec(base, ())
    spec = dataclasses.replace(
        spec, base_reference=base_reference("3.11"),
        steps=(SystemStep(debs=(pin,)), *(s for s in spec.steps if isinstance(s, (VenvStep, CodeStep)))),
    )  # fmt: skip
    project = make_project(tmp_path / "project")
    tag = f"localhost/mlpack-e2e/hygiene:{backend}"
    if backend == "embedded":
        result = EmbeddedBuilder(store, wheels={}, runner=runner_for(store)).build(
            spec, context=project, tag=tag
        )
        (system,) = layers(store, result, "system")
        # Deletions are whiteouts, the top of a deleted tree only.
        assert {"etc/.wh.issue.net", "usr/share/doc/.wh.base-files"} <= set(system)
        assert not [n for n in system if n.startswith("usr/share/doc/base-files/")]
        names = set(system)
    else:
        require(probe_socket().ok, "the Docker engine (/var/run/docker.sock)")
        import docker

        from mlpack.build.docker import DockerBuilder

        client = docker.from_env()
        try:
            result = DockerBuilder(store, client=client, wheels={}).build(
                spec, context=project, tag=tag
            )
            # The COPY of the stage's tree, then the RUN that deletes what dpkg deleted.
            copied, deletions = layers(store, result, "system")
            created = [h.get("created_by", "") for h in store.image(result.digest).config.raw[
                "history"] if not h.get("empty_layer")]  # fmt: skip
            steps = [x.step for x in result.layers]
            assert "/mlpack-log/deleted" in created[steps.index("system") + 1]
            assert {"etc/.wh.issue.net", "usr/share/doc/.wh.base-files", ".wh.mlpack-log"} <= set(
                deletions
            )
            gone = " && ".join(f"test ! -e /{p}" for p in (*DELETED, "mlpack-log"))
            run = client.containers.run(tag, ["sh", "-c", f"{gone} && echo gone"],
                                        network_mode="none", remove=True)  # fmt: skip
            assert run.strip() == b"gone"
        finally:
            client.images.remove(tag, force=True)
            client.close()
        names = set(copied) | set(deletions)
    assert "usr/share/mlpack-probe/data.txt" in names
    assert "var/lib/dpkg/status" in names  # dpkg's own record is content, not noise
    assert sorted(n for n in names if VARYING.search(n)) == []
