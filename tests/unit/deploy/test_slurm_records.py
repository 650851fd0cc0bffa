"""One run record per Slurm task: the task's place (job, rank, node, master) read and recorded."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mlpack.cli.app import run_app
from mlpack.runs import RunRecord, RunStore, TaskPlacement, task_placement

SLURM = {
    "SLURM_JOB_ID": "42",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "4",
    "SLURMD_NODENAME": "node7",
    "MASTER_ADDR": "node6",
}


def test_a_slurm_task_knows_its_place() -> None:
    assert task_placement(SLURM) == TaskPlacement(
        job_id="42", rank=3, local_rank=1, world_size=4, node="node7", master_addr="node6"
    )


@pytest.mark.parametrize("missing", ["SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS"])
def test_outside_a_slurm_task_there_is_no_place(missing: str) -> None:
    assert task_placement({k: v for k, v in SLURM.items() if k != missing}) is None
    assert task_placement({}) is None


def _record(**changes: object) -> RunRecord:
    base = RunRecord(
        id="20260101-000000-abcdef",
        project="/p",
        image="img",
        image_digest="sha256:" + "1" * 64,
        command=("python", "train.py"),
        env=(),
        mounts=(),
        backend="embedded",
        host="node7",
        started="2026-01-01T00:00:00Z",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_the_place_survives_the_record_on_disk() -> None:
    record = _record(task=task_placement(SLURM))
    assert RunRecord.from_json(record.to_json()) == record
    assert RunRecord.from_json(_record().to_json()).task is None  # a plain run has none


def test_runs_lists_the_rank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = RunStore(tmp_path)
    store.write(
        _record(task=task_placement(SLURM), status="succeeded", exit_code=0, duration_s=1.0)
    )
    assert run_app(["runs", str(tmp_path)]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[6] == "RANK"
    assert row.split()[6] == "3/4"


def test_run_image_option_is_only_for_a_project(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(["run", "--image", "sha256:" + "1" * 64, "busybox:1", "true"]) == 9
    assert "is not a project folder" in capsys.readouterr().err
