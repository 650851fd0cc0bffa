"""`mlpack build` on bad input, as a real process: one clear error each, a consistent store after,
and a next build that works.

The project is tiny and offline: one pure wheel on a local PEP 503 index, a one-layer base in
the store (`tests/unit/build/fakes.py`) and a lock written for them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from mlpack.config import load_config
from mlpack.errors import ImageError
from mlpack.lock.inputs import inputs_from_config
from mlpack.lock.lockdata import Lock, LockedFile, LockedPackage, Target
from mlpack.lock.lockfile import dumps
from mlpack.oci.store import Store
from mlpack.vocabulary import BaseImage
from tests.conftest import require
from tests.e2e.embedded_support import MLPACK
from tests.oci_fixtures import plain_registry
from tests.unit.build.fakes import make_base
from tests.unit.lock.fakes import http_server, sha256_of, write_simple_index

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TAG = "localhost/demo:bad-input"


def make_wheel(folder: Path, *, payload: int = 0) -> Path:
    """``hello-1.0``: a module and, with ``payload``, that many incompressible bytes of data."""
    files = {
        "hello/__init__.py": b"X = 1\n",
        "hello/blob.bin": os.urandom(payload) if payload else b"",
        "hello-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: hello\nVersion: 1.0\n",
        "hello-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = ""
    for member, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{member},sha256={digest},{len(data)}\n"
    files["hello-1.0.dist-info/RECORD"] = (record + "hello-1.0.dist-info/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hello-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(zipfile.ZipInfo(member, (2020, 1, 1, 0, 0, 0)), data)
    return path


@dataclass(frozen=True, kw_only=True)
class Project:
    root: Path
    home: Path
    index: Path  # the served folder's simple/ index
    wheel: Path  # the wheel as built (the lock pins its sha256)

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "MLPACK_HOME": str(self.home),
            "PIP_CONFIG_FILE": os.devnull,
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        }

    def mlpack(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MLPACK, *args], capture_output=True, text=True, env=self.env(), check=False,
            timeout=timeout, cwd=self.root,
        )  # fmt: skip

    def build(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.mlpack("build", "--json", "--tag", TAG, *args, str(self.root))

    def assert_consistent_and_builds_again(self) -> None:
        """`store check` passes, nothing half-built is tagged, and a build now succeeds."""
        check = self.mlpack("store", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        again = self.build()
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["image"] == TAG
        assert self.mlpack("store", "check").returncode == 0


def assert_untagged(home: Path) -> None:
    """Nothing (half-)built got the tag."""
    with pytest.raises(ImageError):
        Store(home).resolve(TAG)


def one_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A non-zero exit with exactly one ``error:`` line (naming ``needles``) and a ``hint:``."""
    assert proc.returncode not in (0, 70), proc.stderr  # 70: a bug's traceback
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], proc.stderr
    assert any(line.startswith("hint:") for line in proc.stderr.splitlines()), proc.stderr
    assert "Traceback" not in proc.stderr
    return errors[0]


def write_lock(root: Path, *, index_url: str, base: str, wheel: Path) -> None:
    sha = sha256_of(wheel)
    lock = Lock(
        input_hash=inputs_from_config(load_config(root)).digest(),
        resolver="uv",
        target=Target(python="3.11.2", platform="linux/amd64"),
        base=BaseImage(
            reference="localhost/base:1", digest=base, provider="explicit", python_full="3.11.2"
        ),
        index_url=index_url,
        packages=(
            LockedPackage(
                name="hello",
                version="1.0",
                hashes=(sha,),
                files=(LockedFile(name=wheel.name, sha256=sha),),
            ),
        ),
    )
    (root / "mlpack.lock").write_text(dumps(lock))


def make_project(tmp: Path, home: Path, url: str, *, payload: int = 0) -> Project:
    wheel = make_wheel(tmp / "built", payload=payload)
    write_simple_index(tmp / "srv" / "simple", [wheel])
    root = tmp / "demo"
    root.mkdir()
    (root / "train.py").write_text("import hello\nprint(hello.X)\n")
    (root / "mlpack.toml").write_text(
        'name = "demo"\npython = "3.11"\nplatform = "linux/amd64"\nbase = "localhost/base:1"\n'
        f'[dependencies]\nindex-url = "{url}/simple"\n'
        'packages = [{ requirement = "hello", source = "requirements.txt:1" }]\n'
    )
    base = make_base(Store(home), tmp, env=("PYTHON_VERSION=3.11.2",))
    write_lock(root, index_url=f"{url}/simple", base=base, wheel=wheel)
    return Project(root=root, home=home, index=tmp / "srv" / "simple", wheel=wheel)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """The folder a local index serves, and its URL."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # the lock's input hash, as the CLI sees it
    (tmp_path / "srv").mkdir()
    with http_server(tmp_path / "srv") as url:
        yield tmp_path, url


@pytest.fixture
def project(served: tuple[Path, str]) -> Project:
    tmp, url = served
    return make_project(tmp, tmp / "home", url)


def test_the_harness_builds_with_an_sbom(project: Project) -> None:
    proc = project.build()
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [x["role"] for x in doc["layers"]] == ["base", "interpreter", "packages", "code"]
    assert doc["sbom"].startswith("sha256:")
    sbom = project.mlpack("sbom", TAG)
    assert sbom.returncode == 0, sbom.stderr
    purls = [c["purl"] for c in json.loads(sbom.stdout)["components"]]
    assert purls == ["pkg:pypi/hello@1.0"]


def test_an_unknown_platform_is_one_error_before_any_work(project: Project) -> None:
    proc = project.build("--platform", "linux/s390x")
    line = one_error(proc, "linux/s390x")
    assert "not supported" in line
    assert "linux/amd64, linux/arm64" in proc.stderr
    assert not (project.home / "wheelhouse").exists()  # nothing fetched
    project.assert_consistent_and_builds_again()


def test_no_lock_and_no_network_is_one_error(project: Project) -> None:
    (project.root / "mlpack.lock").unlink()
    config = project.root / "mlpack.toml"
    # Port 9 (discard) on loopback: refused at once, as an unreachable index is.
    text = config.read_text()
    url = text.split('index-url = "')[1].split('"')[0]
    config.write_text(text.replace(url, "http://127.0.0.1:9/simple"))
    proc = project.build()
    one_error(proc)
    assert "127.0.0.1:9" in proc.stderr
    assert not (project.root / "mlpack.lock").exists()
    config.write_text(text)
    assert project.mlpack("store", "check").returncode == 0


def test_a_pin_whose_wheel_left_the_index_is_named(project: Project) -> None:
    (project.index / "files" / project.wheel.name).unlink()
    (project.index / "hello" / "index.html").write_text("<html><body></body></html>\n")
    proc = project.build()
    one_error(proc, project.wheel.name)
    assert "hello==1.0" in proc.stderr
    assert_untagged(project.home)
    write_simple_index(project.index, [project.wheel])
    project.assert_consistent_and_builds_again()


def test_a_wheel_whose_hash_does_not_match_is_refused(project: Project) -> None:
    served = project.index / "files" / project.wheel.name
    served.write_bytes(served.read_bytes() + b"tampered")  # the listing keeps the locked hash
    proc = project.build()
    one_error(proc, "sha256", project.wheel.name)
    assert not list((project.home / "wheelhouse").rglob(project.wheel.name))
    served.write_bytes(project.wheel.read_bytes())
    project.assert_consistent_and_builds_again()


def test_a_full_disk_is_one_error_and_frees_its_staging(served: tuple[Path, str]) -> None:
    require(os.geteuid() == 0, "root (mounts a small tmpfs as MLPACK_HOME)")
    tmp, url = served
    home = tmp / "home"
    home.mkdir()
    # Room for the base and the fetched wheel (6 MB), not for installing and packing it too.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=14m", "tmpfs", str(home)], check=True)
    try:
        project = make_project(tmp, home, url, payload=6 << 20)
        assert project.mlpack("fetch", str(project.root)).returncode == 0
        proc = project.build()
        one_error(proc, "no space left", str(home))
        assert not list((home / "tmp").iterdir())  # the staging went with the build
        assert_untagged(home)
        subprocess.run(["mount", "-o", "remount,size=64m", str(home)], check=True)
        project.assert_consistent_and_builds_again()
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


# Runs `mlpack build` with the layer writer stopped at the packages layer: a marker file says
# the build got there, then it sleeps until the test's signal arrives.
_PAUSED_BUILD = """
import pathlib, sys, time
import mlpack.build.embedded as embedded
real = embedded.write_layer
marker = pathlib.Path(sys.argv[1])
def paused(staging, fh, **kw):
    if staging.name == "packages":
        marker.touch()
        time.sleep(120)
    return real(staging, fh, **kw)
embedded.write_layer = paused
sys.argv[1:2] = []
from mlpack.cli import main
main()
"""


def interrupted_build(project: Project, sig: signal.Signals) -> subprocess.CompletedProcess[str]:
    """A real `mlpack build` process, sent ``sig`` while it writes the packages layer."""
    marker = project.home.parent / "paused"
    proc = subprocess.Popen(
        [MLPACK[0], "-c", _PAUSED_BUILD, str(marker), "build", "--tag", TAG, str(project.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=project.env(),
    )  # fmt: skip
    try:
        for _ in range(1200):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), proc.communicate()[1]
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_ctrl_c_mid_build_stops_cleanly(project: Project) -> None:
    proc = interrupted_build(project, signal.SIGINT)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((project.home / "tmp").iterdir())  # the staging was removed
    assert_untagged(project.home)
    project.assert_consistent_and_builds_again()


def test_kill_9_mid_build_leaves_nothing_tagged_and_the_next_build_works(
    project: Project,
) -> None:
    proc = interrupted_build(project, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert_untagged(project.home)
    project.assert_consistent_and_builds_again()
    # The next build's store cleared the dead build's staging.
    assert not list((project.home / "tmp").iterdir())


def test_push_sends_the_sbom_by_digest_next_to_the_image(project: Project) -> None:
    registry = plain_registry()
    repo = f"mlpack-test/sbom-{os.getpid()}"
    proc = project.build("--push", f"{registry}/{repo}:t")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert f"pushed the SBOM ({doc['sbom']})" in proc.stderr
    request = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{doc['sbom']}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        manifest = json.loads(resp.read())
    assert manifest["artifactType"] == "application/vnd.cyclonedx+json"
    assert manifest["subject"]["digest"] == doc["digest"]
