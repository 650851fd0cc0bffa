"""Jobs on the real one-node Slurm cluster that .ci/slurm.sh starts: the busybox image, and
examples/training built as a project (its lock re-pointed at THE test base, wheels from the
wheelhouse under $MLPACK_CI_CACHE, as tests/e2e/test_run_serve.py builds it).
"""

from __future__ import annotations

import json
import os
import re
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
from tests.oci_fixtures import CACHE, debian_base, plain_registry

MLPACK = str(Path(sys.executable).with_name("mlpack"))
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "render"
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


def _mlpack(
    args: list[str], *, cwd: Path, home: Path, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLPACK_HOME": str(home), **extra}  # sbatch passes it on to the job
    return subprocess.run(
        [MLPACK, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _run_job(
    args: list[str], tmp_path: Path, *, home: Path | None = None, **extra: str
) -> tuple[str, str]:
    """Submit, wait for the end; return the job id and its final state."""
    done = _mlpack(
        ["slurm", "submit", "--mlpack", MLPACK, *args],
        cwd=tmp_path,
        home=home or tmp_path / "home",
        **extra,
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


def test_image_from_a_shared_folder_needs_no_registry(tmp_path: Path) -> None:
    """The image is only in the submitter's store; the node's own store imports it by digest."""
    require(os.geteuid() == 0, "root")
    require(_cluster_idle(), "a Slurm cluster with an idle node (.ci/slurm.sh)")
    require(busybox.available(), "busybox-static (/bin/busybox)")
    submitter, node = tmp_path / "submitter", tmp_path / "node"
    name = busybox.store_image(Store(submitter))  # a name no registry has
    digest = Store(submitter).resolve(name)
    out, shared = tmp_path / "out", tmp_path / "shared"
    out.mkdir()
    job, state = _run_job(
        [
            name, "--image-dir", str(shared), "--ntasks-per-node", "2",
            "-v", f"{out}:/out", "--", "sh", "-c", "echo $RANK > /out/rank-$RANK",
        ],
        tmp_path,
        home=submitter,
        SBATCH_EXPORT=f"ALL,MLPACK_HOME={node}",  # the job's tasks use the node's own store
    )  # fmt: skip
    logs = _mlpack(["slurm", "logs", job], cwd=tmp_path, home=tmp_path)
    assert state == "COMPLETED", logs.stdout
    assert [(out / f"rank-{r}").read_text() for r in (0, 1)] == ["0\n", "1\n"]
    assert Store(node).image(digest).digest == digest  # imported into the node's store
    assert Store(shared).image(digest).digest == digest  # from the exported OCI layout
    assert logs.stdout.count(f"<none>: {digest}") == 1  # one import on the node, not per task


# -- examples/training as a project


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """examples/training with the fixture config and lock on THE test base; and its home."""
    require(os.geteuid() == 0, "root (the embedded runtime and the test base)")
    require(_cluster_idle(), "a Slurm cluster with an idle node (.ci/slurm.sh)")
    wheels = CACHE / "build-home" / "wheelhouse"
    require(wheels.is_dir(), f"the CI wheelhouse {wheels}")
    top = tmp_path_factory.mktemp("slurm-training")
    home = top / "home"
    store = Store(home)
    base = store.image(debian_base(store)).digest
    (home / "wheelhouse").symlink_to(wheels)
    project = top / "training"
    shutil.copytree(REPO / "examples" / "training", project)
    shutil.copy(FIXTURES / "training" / "mlpack.toml", project / "mlpack.toml")
    text = (FIXTURES / "training" / "mlpack.lock").read_text()
    text = re.sub(r'(\[base\][^\[]*?digest = ")sha256:[0-9a-f]+', rf"\g<1>{base}", text)
    (project / "mlpack.lock").write_text(text)
    return project, home


def _records(project: Path, home: Path) -> list[dict[str, object]]:
    done = _mlpack(["runs", str(project), "--json"], cwd=project, home=home)
    assert done.returncode == 0, done.stderr
    records: list[dict[str, object]] = json.loads(done.stdout)
    return records


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.registry
def test_project_job_builds_trains_from_the_registry_and_records_its_task(
    training: tuple[Path, Path], tmp_path: Path
) -> None:
    project, home = training
    registry = plain_registry()
    job, state = _run_job(
        [str(project), "--push", f"{registry}/mlpack-test/slurm-training:1"], tmp_path, home=home
    )
    logs = _mlpack(["slurm", "logs", job], cwd=tmp_path, home=home).stdout
    assert state == "COMPLETED", logs
    metrics = json.loads((project / "outputs" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8
    [record] = _records(project, home)
    assert record["status"] == "succeeded"
    assert record["command"] == ["python", "train.py"]  # the project's training entrypoint
    assert str(record["image"]).startswith(f"{registry}/mlpack-test/slurm-training:1@sha256:")
    assert record["task"] == {
        "job_id": job,
        "rank": 0,
        "local_rank": 0,
        "world_size": 1,
        "node": record["host"],
        "master_addr": record["host"],
    }
    mounts = {m["target"]: m for m in record["mounts"]}  # type: ignore[attr-defined]
    assert mounts["/app/data"]["read_only"]  # the analysed layout, as `mlpack run` mounts it
    assert mounts["/app/outputs"]["source"] == str(project / "outputs")


@pytest.mark.slow
@pytest.mark.root
def test_two_tasks_of_a_project_write_two_records_with_one_master(
    training: tuple[Path, Path], tmp_path: Path
) -> None:
    project, home = training
    before = {r["id"] for r in _records(project, home)}
    probe = "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])"
    job, state = _run_job(
        [
            str(project), "--ntasks-per-node", "2", "--image-dir", str(tmp_path / "shared"),
            "--outputs", str(tmp_path / "outs"), "--", "python", "-c", probe,
        ],
        tmp_path,
        home=home,
    )  # fmt: skip
    logs = _mlpack(["slurm", "logs", job], cwd=tmp_path, home=home).stdout
    assert state == "COMPLETED", logs
    assert "rank 0 of 2" in logs
    assert "rank 1 of 2" in logs
    records = [r for r in _records(project, home) if r["id"] not in before]
    tasks: list[dict[str, object]] = sorted(
        (r["task"] for r in records),  # type: ignore[misc]
        key=lambda t: str(t["rank"]),
    )
    assert [(t["job_id"], t["rank"], t["world_size"]) for t in tasks] == [(job, 0, 2), (job, 1, 2)]
    assert len({t["master_addr"] for t in tasks}) == 1
    assert {r["status"] for r in records} == {"succeeded"}
    for r in records:  # --outputs replaced the project's output folder, as `mlpack run --output`
        mounts = {m["target"]: m["source"] for m in r["mounts"]}  # type: ignore[attr-defined]
        assert mounts["/app/outputs"] == str(tmp_path / "outs")
    listed = _mlpack(["runs", str(project)], cwd=project, home=home).stdout
    assert "0/2" in listed
    assert "1/2" in listed
