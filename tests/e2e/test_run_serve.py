"""examples/training run as a project (built, trained, recorded, rerun; its faults: OOM, a killed
CLI, a full or read-only output disk), end to end on the embedded runtime. The fixtures here
are shared with test_serve_backends.py, which serves examples/inference on both backends.

The projects carry the fixture mlpack.toml and mlpack.lock (tests/fixtures/render), the lock
re-pointed at THE test base; wheels come from the wheelhouse under $MLPACK_CI_CACHE.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlpack.oci.store import Store
from tests.conftest import require
from tests.e2e.embedded_support import MLPACK, make_rootfs
from tests.oci_fixtures import CACHE, debian_base

pytestmark = [pytest.mark.root, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "render"
FLOWERS = {
    "instances": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    ]
}


@dataclass(frozen=True)
class Site:
    home: Path
    training: Path
    inference: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", ""), "MLPACK_HOME": str(self.home), **extra}

    def mlpack(
        self, *args: str, timeout: float = 600, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MLPACK, *args],
            capture_output=True,
            text=True,
            env=self.env(**extra),
            check=False,
            timeout=timeout,
        )


def _project(dest: Path, example: str, base_digest: str) -> Path:
    shutil.copytree(REPO / "examples" / example, dest)
    shutil.copy(FIXTURES / example / "mlpack.toml", dest / "mlpack.toml")
    text = (FIXTURES / example / "mlpack.lock").read_text()
    text = re.sub(r'(\[base\][^\[]*?digest = ")sha256:[0-9a-f]+', rf"\g<1>{base_digest}", text)
    (dest / "mlpack.lock").write_text(text)
    return dest


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    require(os.geteuid() == 0, "root (the embedded runtime and the test base)")
    wheels = CACHE / "build-home" / "wheelhouse"
    require(wheels.is_dir(), f"the CI wheelhouse {wheels}")
    top = tmp_path_factory.mktemp("runs")
    home = top / "home"
    store = Store(home)
    digest = store.image(debian_base(store)).digest
    (home / "wheelhouse").symlink_to(wheels)
    return Site(
        home=home,
        training=_project(top / "training", "training", digest),
        inference=_project(top / "inference", "inference", digest),
    )


def _runs(site: Site, project: Path) -> list[dict[str, object]]:
    done = site.mlpack("runs", str(project), "--json")
    assert done.returncode == 0, done.stderr
    runs: list[dict[str, object]] = json.loads(done.stdout)
    return runs


def test_run_trains_records_and_a_rerun_reproduces_the_outputs(site: Site) -> None:
    done = site.mlpack("run", "-e", "WANDB_API_KEY=s3cr3t-value", str(site.training))
    assert done.returncode == 0, done.stderr
    outputs = site.training / "outputs"
    metrics = json.loads((outputs / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8
    assert metrics["tracking"] == "wandb"  # the secret reached the run...
    # Created by mlpack for the invoking user: root without sudo gets the image's user.
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (outputs, outputs / "model.json")} == {
        (1000, 1000)
    }
    [record] = _runs(site, site.training)
    assert record["status"] == "succeeded"
    assert record["command"] == ["python", "train.py"]
    assert str(record["image_digest"]).startswith("sha256:")
    assert str(record["lock_hash"]).startswith("sha256:")
    mounts = {m["target"]: m for m in record["mounts"]}  # type: ignore[attr-defined]
    assert mounts["/app/data"]["read_only"]
    assert mounts["/app/data"]["digest"]
    assert not mounts["/app/outputs"]["read_only"]
    assert dict(record["env"])["PYTHONHASHSEED"] == "0"  # type: ignore[call-overload]
    assert dict(record["env"])["WANDB_API_KEY"] is None  # type: ignore[call-overload]
    assert {p for p, _ in record["outputs"]} == {  # type: ignore[attr-defined]
        "/app/outputs/metrics.json",
        "/app/outputs/model.joblib",
        "/app/outputs/model.json",
    }
    folder = site.training / ".mlpack" / "runs" / str(record["id"])
    assert "s3cr3t-value" not in (folder / "run.json").read_text()  # ...and was never stored
    log = folder / "log"
    assert '"test_accuracy"' in log.read_text()

    again = site.mlpack(  # a secret comes from the environment of the rerun
        "rerun", str(record["id"])[:15], "--project", str(site.training),
        WANDB_API_KEY="s3cr3t-value",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "identical  /app/outputs/model.json" in again.stdout
    assert f"outputs identical to run {record['id']}" in again.stdout

    (site.training / "data" / "flowers.csv").write_text(
        (site.training / "data" / "flowers.csv").read_text() + "\n"
    )
    refused = site.mlpack("rerun", str(record["id"]), "--project", str(site.training))
    assert refused.returncode == 9
    assert "input" in refused.stderr
    assert "changed since run" in refused.stderr


def test_outputs_belong_to_the_sudo_user(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "mine" / "out"
    done = site.mlpack(
        "run", "--output", str(out), "-e", "EPOCHS=2", str(site.training),
        SUDO_UID="4321", SUDO_GID="4322",
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # two epochs may miss the accuracy bar
    for made in (out.parent, out, out / "model.json"):
        assert (made.stat().st_uid, made.stat().st_gid) == (4321, 4322)


@pytest.mark.parametrize("backend", ["embedded", "docker"])
def test_the_images_user_can_write_its_home(site: Site, backend: str) -> None:
    """Hugging Face, torch hub and matplotlib cache under ~, and torch asks getpass.getuser():
    the image's user has no passwd entry, the HOME=/ the runtimes gave it was not writable and
    getuser() raised (mlflow-example's run)."""
    if backend == "docker":
        from mlpack.runtime.dockersock import probe_socket

        require(probe_socket().ok, "a running Docker engine (dockerd)")
    probe = (
        "import getpass, pathlib; p = pathlib.Path.home() / '.cache' / 'huggingface'; "
        "p.mkdir(parents=True); (p / 'x').write_text('ok'); print('home', pathlib.Path.home()); "
        "print('user', getpass.getuser())"
    )
    done = site.mlpack("run", "--backend", backend, str(site.training), "--", "python", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert "home /tmp" in done.stdout
    assert "user mlpack" in done.stdout  # torch's inductor asks getpass.getuser()


def test_an_oom_killed_run_is_recorded_as_such(site: Site) -> None:
    hog = "x = bytearray(1 << 30); print(len(x))"
    done = site.mlpack("run", "-m", "64m", str(site.training), "--", "python", "-c", hog)
    assert done.returncode != 0
    assert "oom-killed" in done.stderr
    assert "out of memory" in done.stderr
    assert _runs(site, site.training)[-1]["status"] == "oom-killed"


def test_a_cli_killed_mid_run_leaves_an_interrupted_record(site: Site) -> None:
    with subprocess.Popen(
        [*MLPACK, "run", str(site.training), "--", "sleep", "60"],
        env=site.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("run ") and "sleep 60" in line:
                break
        time.sleep(1)  # the container starts
        proc.kill()
    assert _runs(site, site.training)[-1]["status"] == "interrupted"
    left = site.mlpack("ps", "-q").stdout.split()
    assert left  # the container outlived its CLI: `mlpack stop` ends it and cleans up
    for cid in left:
        assert site.mlpack("stop", "-t", "1", cid).returncode == 0
    assert site.mlpack("ps", "-a", "-q").stdout.split() == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 KiB: room for two of the training's three outputs."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_outputs_on_a_full_disk_fail_clearly_and_keep_what_was_written(
    site: Site, small_disk: Path
) -> None:
    out = small_disk / "out"
    done = site.mlpack("run", "--output", str(out), str(site.training))
    assert done.returncode != 0
    assert "No space left on device" in done.stderr  # the program's own error, streamed
    assert f"error: the output folder {out} is full" in done.stderr
    record = _runs(site, site.training)[-1]
    assert record["status"] == "failed"
    kept = {p.name for p in out.iterdir() if p.stat().st_size}
    assert kept  # what was written before the disk filled is still there...
    recorded = {Path(p).name for p, _ in record["outputs"]}  # type: ignore[attr-defined]
    assert kept <= recorded  # ...and in the record, with its digest
    refused = site.mlpack("run", "--output", str(out), str(site.training))  # full from the start
    assert refused.returncode == 9
    assert f"the output folder {out} (/app/outputs) is on a full filesystem" in refused.stderr


def test_outputs_on_a_read_only_disk_are_refused_before_the_run(
    site: Site, small_disk: Path
) -> None:
    out = small_disk / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("kept\n")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    runs_before = len(_runs(site, site.training))
    done = site.mlpack("run", "--output", str(out), str(site.training))
    assert done.returncode == 9
    assert f"the output folder {out} (/app/outputs) is on a read-only filesystem" in done.stderr
    assert "hint: choose a writable folder" in done.stderr
    assert len(_runs(site, site.training)) == runs_before  # nothing ran
    assert (out / "earlier.txt").read_text() == "kept\n"
    missing = site.mlpack("run", "--output", str(small_disk / "new"), str(site.training))
    assert missing.returncode == 9
    assert f"cannot create the output folder {small_disk / 'new'}" in missing.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def trained(site: Site) -> Path:
    outputs = site.training / "outputs"
    if not (outputs / "model.json").exists():
        assert site.mlpack("run", str(site.training)).returncode == 0
    return outputs


def test_the_listening_socket_is_fd_3_in_the_container(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root")
    from mlpack.runtime.embedded import EmbeddedRuntime
    from mlpack.runtime.protocol import RunConfig

    root = make_rootfs(tmp_path / "rootfs")
    out = tmp_path / "out"
    out.mkdir()
    busy = [os.open(os.devnull, os.O_RDONLY) for _ in range(3)]  # fd 3 is taken here
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        from mlpack.runtime.protocol import Mount

        result = EmbeddedRuntime(root=tmp_path / "state").run(
            RunConfig(
                image=str(root),
                command=("sh", "-c", "readlink /proc/self/fd/3 > /out/fd3"),
                mounts=(Mount(source=out, target="/out"),),
                fds=(listener.fileno(),),
            )
        )
        inode = os.fstat(listener.fileno()).st_ino
    finally:
        listener.close()
        for fd in busy:
            os.close(fd)
    assert result.exit_code == 0
    assert (out / "fd3").read_text().strip() == f"socket:[{inode}]"


@pytest.mark.parametrize("backend", ["embedded", "docker"])
def test_both_backends_run_the_project_and_rerun_it_identically(
    site: Site, tmp_path: Path, backend: str
) -> None:
    from mlpack.runtime.dockersock import probe_socket

    require(probe_socket().ok, "a running Docker engine (dockerd)")  # one of the two runs
    out = tmp_path / "out"
    done = site.mlpack("run", "--backend", backend, "--output", str(out), str(site.training))
    assert done.returncode == 0, done.stderr
    record = _runs(site, site.training)[-1]
    assert record["backend"] == backend
    assert record["status"] == "succeeded"
    assert (out / "model.json").stat().st_uid == 1000
    other = "docker" if backend == "embedded" else "embedded"
    again = site.mlpack(
        "rerun", str(record["id"]), "--project", str(site.training), "--backend", other
    )
    assert again.returncode == 0, again.stderr
    assert f"outputs identical to run {record['id']}" in again.stdout


def test_a_root_filesystem_runs_behind_rootfs(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root")
    root = make_rootfs(tmp_path / "rootfs")
    env = {"PATH": os.environ.get("PATH", ""), "MLPACK_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [*MLPACK, "run", "--rootfs", str(root), "echo", "from", "the", "rootfs"],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from the rootfs\n"
    assert not (root / ".mlpack").exists()  # not taken for a project: nothing recorded
