"""The sbatch script: deterministic, pinned by digest, torchrun's variables; bad input refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlpack.cli import app as cli_app
from mlpack.deploy import slurm
from mlpack.errors import DeployError

DIGEST = "sha256:" + "ab" * 32
PINNED = f"127.0.0.1:5000/team/train:1@{DIGEST}"


def _job(**changes: object) -> slurm.SlurmJob:
    fields: dict[str, object] = {"image": PINNED, "nodes": 2, "ntasks_per_node": 4}
    fields.update(changes)
    return slurm.SlurmJob(**fields)  # type: ignore[arg-type]


def test_render_is_deterministic_and_pins_the_digest() -> None:
    script = slurm.render(_job(command=("python", "train.py", "--lr", "1e-3 x")))
    assert script == slurm.render(_job(command=("python", "train.py", "--lr", "1e-3 x")))
    assert f"IMAGE={PINNED}\n" in script
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=4\n" in script
    assert "python train.py --lr '1e-3 x'" in script
    assert "--network host" in script  # several nodes reach each other on the host network


def test_render_sets_torchrun_variables_from_slurm() -> None:
    script = slurm.render(_job())
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    assert "export WORLD_SIZE=$SLURM_NTASKS" in script
    assert "export LOCAL_WORLD_SIZE=4" in script
    assert "RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID" in script
    for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        assert f"-e {name} " in script


def test_render_pulls_once_per_node_before_the_tasks_run() -> None:
    script = slurm.render(_job())
    pull = script.index('srun --nodes=2 --ntasks=2 --ntasks-per-node=1 "$MLPACK" pull "$IMAGE"')
    assert pull < script.index('"$MLPACK" run')


def test_render_options_and_mounts() -> None:
    script = slurm.render(
        _job(
            nodes=1,
            gpus_per_node=8,
            partition="gpu",
            time="1-00:00:00",
            mounts=("/shared/data:/data:ro", "/shared/out:/out"),
            insecure=("reg.local:5000",),
        )
    )
    assert "#SBATCH --gpus-per-node=8\n#SBATCH --partition=gpu\n#SBATCH --time=1-00:00:00\n" in (
        script
    )
    assert "-v /shared/data:/data:ro" in script
    assert "-v /shared/out:/out" in script
    assert "--gpus all" in script
    assert "export MLPACK_INSECURE_REGISTRIES=reg.local:5000" in script
    assert "--network host" not in script  # one node needs no host network


def test_rendered_script_is_valid_bash() -> None:
    script = slurm.render(_job(command=("sh", "-c", "echo '$RANK'")))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"nodes": 0}, "--nodes 0"),
        ({"ntasks_per_node": 0}, "--ntasks-per-node 0"),
        ({"gpus_per_node": -1}, "--gpus-per-node -1"),
        ({"time": "soon"}, "--time 'soon'"),
        ({"mounts": ("data:/data",)}, "absolute host path"),
        ({"master_port": 70000}, "--master-port 70000"),
    ],
)
def test_bad_options_are_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(DeployError, match=words.replace("-", r"\-").replace("'", "'")):
        slurm.render(_job(**changes))


def test_cli_render_nodes_zero_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "job.sh"
    code = cli_app.run_app(["slurm", "render", PINNED, "--nodes", "0", "-o", str(out)])
    assert code == DeployError.exit_code == 8
    assert "--nodes 0" in capsys.readouterr().err
    assert not out.exists()


def test_cli_render_writes_an_executable_script(tmp_path: Path) -> None:
    out = tmp_path / "job.sh"
    code = cli_app.run_app(["slurm", "render", PINNED, "-N", "1", "-o", str(out), "--", "id"])
    assert code == 0
    assert out.read_text() == slurm.render(_job(nodes=1, ntasks_per_node=1, command=("id",)))
    assert out.stat().st_mode & 0o111


def test_submit_without_sbatch_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    code = cli_app.run_app(["slurm", "submit", PINNED])
    assert code == 8
    assert "`sbatch` is not on PATH" in capsys.readouterr().err


def test_bad_job_id_is_refused() -> None:
    with pytest.raises(DeployError, match="not a Slurm job id"):
        slurm.cancel("1; rm -rf /")


def test_logs_fall_back_to_the_default_output_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol: Slurm cannot say where it went
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlpack-slurm-7.out").write_text("rank 0 done\n")
    assert slurm.logs("7") == "rank 0 done\n"
    with pytest.raises(DeployError, match="cannot read job 8's output"):
        slurm.logs("8")
