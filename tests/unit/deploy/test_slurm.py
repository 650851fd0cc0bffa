"""The sbatch script: deterministic, pinned by digest, torchrun's variables; bad input refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlpack.cli import app as cli_app
from mlpack.deploy import slurm
from mlpack.errors import DeployError, ImageError
from mlpack.oci.archive import import_archive
from mlpack.oci.store import Store
from mlpack.runs import ImageFacts
from mlpack.vocabulary import EntrypointSpec

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


# -- a project folder, a shared image folder


def test_render_project_from_an_image_dir_imports_by_digest_and_runs_the_project() -> None:
    script = slurm.render(
        _job(
            image=DIGEST,
            image_dir="/shared/images",
            project="/shared/proj",
            entry="train",
            data="/shared/data set",
            outputs="/shared/out",
            command=("--epochs", "2"),
        )
    )
    assert f"IMAGE={DIGEST}\nIMAGE_DIR=/shared/images\nPROJECT=/shared/proj\n" in script
    step = 'srun --nodes=2 --ntasks=2 --ntasks-per-node=1 "$MLPACK" import "$IMAGE_DIR"'
    assert f'{step} --digest "$IMAGE"\n' in script
    assert " pull " not in script  # no registry involved
    run = (
        '--image "$IMAGE" --entry train --data \'/shared/data set\' --output /shared/out "$PROJECT"'
    )
    assert f"{run} --epochs 2\n" in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"image_dir": "images"}, "--image-dir 'images' is not absolute"),
        ({"project": "proj"}, "a project folder 'proj' is not absolute"),
        ({"entry": "train"}, "--entry train: it applies to a project folder"),
        ({"data": "/shared/data"}, "--data /shared/data: it applies to a project folder"),
        ({"project": "/p", "outputs": "out"}, "--outputs 'out' is not absolute"),
    ],
)
def test_bad_sources_are_refused(changes: dict[str, object], words: str) -> None:
    with pytest.raises(DeployError, match=words.replace("-", r"\-")):
        slurm.render(_job(**changes))


def _stored(store: Store, ref: str) -> str:
    rootfs = {"type": "layers", "diff_ids": []}
    config = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": rootfs}
    return store.add_image(config=config, layers=(), ref=ref)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    return Store.default()


def test_cli_image_dir_exports_an_oci_layout_the_nodes_import_by_digest(
    home: Store, tmp_path: Path
) -> None:
    digest = _stored(home, "localhost/mytrain:1")
    _stored(home, "localhost/other:1")
    shared, out = tmp_path / "shared", tmp_path / "job.sh"
    code = cli_app.run_app(
        ["slurm", "render", "localhost/mytrain:1", "--image-dir", str(shared), "-o", str(out)]
    )
    assert code == 0
    assert f"IMAGE={digest}\nIMAGE_DIR={shared}\n" in out.read_text()
    assert (shared / "oci-layout").is_file()
    node = Store(tmp_path / "node")  # a node's own store
    [got] = import_archive(node, shared, digest=digest)
    assert got.digest == digest
    assert node.image(digest).digest == digest


def test_import_by_digest_refuses_a_digest_the_folder_lacks(home: Store, tmp_path: Path) -> None:
    _stored(home, "localhost/mytrain:1")
    shared = tmp_path / "shared"
    assert (
        cli_app.run_app(["slurm", "render", "localhost/mytrain:1", "--image-dir", str(shared)]) == 0
    )
    with pytest.raises(ImageError, match="holds no image"):
        import_archive(Store(tmp_path / "node"), shared, digest="sha256:" + "0" * 64)


def test_cli_local_only_image_says_push_or_image_dir(
    home: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    _stored(home, "localhost/mytrain:1")
    assert cli_app.run_app(["slurm", "render", "localhost/mytrain:1"]) == 8
    err = capsys.readouterr().err
    assert "exists only in the local store" in err
    assert "mlpack push localhost/mytrain:1" in err
    assert "--image-dir DIR" in err


def test_cli_two_image_sources_are_refused(
    home: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--push", "127.0.0.1:5000/x:1", "--image-dir", str(tmp_path / "s")]
    assert cli_app.run_app(["slurm", "render", "localhost/mytrain:1", *args]) == 8
    assert "pass one of them" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def _facts(digest: str) -> ImageFacts:
    train = EntrypointSpec(name="train", kind="training", command=("python", "train.py"))
    return ImageFacts(digest=digest, workdir="/app", env=(), entrypoints=(train,), lock_hash=None)


def test_cli_project_is_built_then_run_as_a_project_from_the_shared_folder(
    home: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = _stored(home, "localhost/proj:1")
    built: list[str] = []

    def project_image(target: str, *, kind: str) -> tuple[Path, None, ImageFacts]:
        built.append(kind)
        return Path(target).resolve(), None, _facts(digest)

    monkeypatch.setattr("mlpack.cli.runs.project_image", project_image)
    project, out = tmp_path / "proj", tmp_path / "job.sh"
    project.mkdir()
    shared = tmp_path / "shared"
    args = ["--image-dir", str(shared), "--entry", "train", "-o", str(out)]
    assert cli_app.run_app(["slurm", "render", str(project), *args]) == 0
    script = out.read_text()
    assert built == ["training"]
    assert f"PROJECT={project}\n" in script
    assert '--image "$IMAGE" --entry train "$PROJECT"\n' in script
    assert Store(shared).image(digest).digest == digest


def test_cli_project_without_a_registry_or_folder_says_how(
    home: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = _stored(home, "localhost/proj:1")
    monkeypatch.setattr(
        "mlpack.cli.runs.project_image", lambda target, kind: (Path(target), None, _facts(digest))
    )
    assert cli_app.run_app(["slurm", "render", str(tmp_path)]) == 8
    err = capsys.readouterr().err
    assert "exists only in the local store" in err
    assert "--push REGISTRY/NAME:TAG" in err
    assert "--image-dir DIR" in err


def test_cli_project_unknown_entry_is_refused_before_anything_leaves(
    home: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = _stored(home, "localhost/proj:1")
    monkeypatch.setattr(
        "mlpack.cli.runs.project_image", lambda target, kind: (Path(target), None, _facts(digest))
    )
    shared = tmp_path / "shared"
    args = ["--entry", "nope", "--image-dir", str(shared)]
    assert cli_app.run_app(["slurm", "render", str(tmp_path), *args]) != 0
    assert "no entrypoint 'nope'" in capsys.readouterr().err
    assert not shared.exists()


def test_cli_project_pushed_already_is_pinned_on_its_registry_name(
    home: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = _stored(home, "localhost/proj:1")
    monkeypatch.setattr(
        "mlpack.cli.runs.project_image", lambda target, kind: (Path(target), None, _facts(digest))
    )
    out = tmp_path / "job.sh"
    args = ["--image-ref", "127.0.0.1:5000/team/proj", "-o", str(out)]
    assert cli_app.run_app(["slurm", "render", str(tmp_path), *args]) == 0
    script = out.read_text()
    assert f"IMAGE=127.0.0.1:5000/team/proj@{digest}\n" in script
    assert '"$MLPACK" pull "$IMAGE"' in script


def test_cli_import_by_digest_checks_the_digest_and_the_layout(
    home: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = _stored(home, "localhost/mytrain:1")
    tarball = tmp_path / "image.tar"
    assert (
        cli_app.run_app(["export", "localhost/mytrain:1", "-o", str(tarball), "--format", "docker"])
        == 0
    )
    assert cli_app.run_app(["import", str(tarball), "--digest", "nope"]) != 0
    assert "is not a sha256 digest" in capsys.readouterr().err
    assert cli_app.run_app(["import", str(tarball), "--digest", digest]) != 0
    assert "is not an OCI layout" in capsys.readouterr().err
