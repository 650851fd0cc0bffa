"""Jobs on the real one-node Slurm cluster that .ci/slurm.sh starts, running the busybox image."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpack.oci.registry import push
from mlpack.oci.store import Store
from tests import busybox
from tests.conftest import require
from tests.oci_fixtures import plain_registry

MLPACK = str(Path(sys.executable).with_name("mlpack"))
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def _cluster_idle() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    done = subprocess.run(
        ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and any(s in ("idle", "mix") for s in done.stdout.split())


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The busybox image in the local registry, as REF@sha256:..."""
    require(os.geteuid() == 0, "root")
    require(_cluster_idle(), "a Slurm cluster with an idle node (.ci/slurm.sh)")
    require(busybox.available(), "busybox-static (/bin/busybox)")
    registry = plain_registry()
    store = Store(tmp_path_factory.mktemp("build-store"))
    result = push(store, busybox.store_image(store), f"{registry}/mlpack-test/slurm-busybox:1")
    return f"{registry}/mlpack-test/slurm-busybox:1@{result.digest}"


def _mlpack(args: list[str], *, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLPACK_HOME": str(home)}  # sbatch passes it on to the job
    return subprocess.run(
        [MLPACK, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _run_job(args: list[str], tmp_path: Path) -> tuple[str, str]:
    """Submit, wait for the end; return the job id and its final state."""
    done = _mlpack(
        ["slurm", "submit", "--mlpack", MLPACK, *args], cwd=tmp_path, home=tmp_path / "home"
    )
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    state = ""
    for _ in range(600):  # a bound on waiting, not a timing assertion
        state = _mlpack(["slurm", "status", job], cwd=tmp_path, home=tmp_path).stdout.strip()
        if state in DONE:
            break
        time.sleep(0.2)
    return job, state


def test_one_node_job_runs_the_image_and_writes_its_output(image: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    job, state = _run_job(
        [image, "-v", f"{out}:/out", "--", "sh", "-c", "echo hello from $RANK > /out/result"],
        tmp_path,
    )
    assert state == "COMPLETED", _mlpack(["slurm", "logs", job], cwd=tmp_path, home=tmp_path)
    assert (out / "result").read_text() == "hello from 0\n"


def test_two_tasks_get_distinct_ranks_and_one_master(image: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    probe = (
        "echo $RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT"
        " > /out/rank-$RANK"
    )
    job, state = _run_job(
        [image, "--ntasks-per-node", "2", "-v", f"{out}:/out", "--", "sh", "-c", probe], tmp_path
    )
    assert state == "COMPLETED", _mlpack(["slurm", "logs", job], cwd=tmp_path, home=tmp_path)
    lines = sorted((out / f"rank-{r}").read_text().split() for r in (0, 1))
    assert [line[:4] for line in lines] == [["0", "0", "2", "2"], ["1", "1", "2", "2"]]
    assert lines[0][4:] == lines[1][4:]  # one master address and port for both ranks
    assert lines[0][4] != ""


def test_unpullable_image_fails_with_the_reason_in_logs(image: str, tmp_path: Path) -> None:
    missing = image.split("@", 1)[0] + "@sha256:" + "0" * 64
    job, state = _run_job([missing, "--", "true"], tmp_path)
    assert state == "FAILED"
    logs = _mlpack(["slurm", "logs", job], cwd=tmp_path, home=tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert "error:" in logs.stdout
    assert "0" * 64 in logs.stdout
    assert "not found" in logs.stdout  # the registry's reason, from the pull step


def _job_ids() -> set[str]:
    done = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%i"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_gpus_on_a_partition_without_gpus_are_refused(image: str, tmp_path: Path) -> None:
    before = _job_ids()
    done = _mlpack(["slurm", "submit", image, "--gpus-per-node", "1"], cwd=tmp_path, home=tmp_path)
    assert done.returncode == 8
    assert "has no GPUs" in done.stderr
    assert _job_ids() <= before  # nothing submitted
