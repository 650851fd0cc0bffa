"""plan(): layer order and grouping, config fields, and what never reaches the image."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from mlpack.config import ProjectConfig, load_config
from mlpack.errors import BuildError
from mlpack.lock.lockdata import Lock, LockedFile, LockedPackage, SystemPackagePin
from mlpack.lock.lockfile import read_lock
from mlpack.spec import CodeStep, Provenance, SystemStep, VenvStep, WheelStep, plan

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "render"


def example(name: str, tmp_path: Path) -> tuple[Lock, ProjectConfig]:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return read_lock(root / "mlpack.lock"), load_config(root)


def with_packages(lock: Lock, *names: str) -> Lock:
    extra = tuple(
        LockedPackage(
            name=n,
            version="1.0",
            files=(
                LockedFile(name=f"{n.replace('-', '_')}-1.0-py3-none-any.whl", sha256=n[0] * 64),
            ),
        )
        for n in names
    )
    return dataclasses.replace(lock, packages=(*lock.packages, *extra))


def test_training_plan_orders_layers_and_sets_the_config(tmp_path: Path) -> None:
    lock, config = example("training", tmp_path)
    spec = plan(lock, config, provenance=Provenance(source_date_epoch=1700000000, revision="abc"))
    assert [s.role for s in spec.steps] == ["system", "interpreter", "packages", "code"]
    system, venv, wheels, code = spec.steps
    assert isinstance(system, SystemStep)
    assert system.packages == (("libgomp1", "12.2.0-14+deb12u1"),)
    assert [d.sha256[:8] for d in system.debs] == ["48fec46b"]
    assert isinstance(venv, VenvStep)
    assert venv.prefix == "/opt/venv"
    assert venv.python == "3.11.2"
    assert isinstance(wheels, WheelStep)
    assert wheels.site_packages == "/opt/venv/lib/python3.11/site-packages"
    assert [w.name for w in wheels.wheels] == sorted(p.name for p in lock.packages)
    assert all(w.filename.endswith(".whl") and len(w.sha256) == 64 for w in wheels.wheels)
    assert isinstance(code, CodeStep)
    assert code.writable_dirs == ("outputs",)
    assert {"/outputs", "/data", "/configs", ".env", ".git"} <= set(code.excludes)
    assert spec.user == "1000:1000"
    assert spec.workdir == "/app"
    assert spec.cmd == ("python", "train.py")
    assert spec.volumes == ("/app/configs", "/app/data", "/app/outputs")
    assert ("EPOCHS", "20") in spec.env
    assert ("VIRTUAL_ENV", "/opt/venv") in spec.env
    # The user has no passwd entry: a home it can write, a name for getpass.getuser()
    assert {("HOME", "/tmp"), ("USER", "mlpack")} <= set(spec.env)
    labels = dict(spec.labels)
    assert labels["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"
    assert labels["org.opencontainers.image.revision"] == "abc"
    assert labels["org.mlpack.lock"] == f"sha256:{spec.lock_hash}"
    assert spec.default_tag == f"localhost/training:{spec.lock_hash[:12]}"


def test_a_projects_own_home_wins_over_the_default(tmp_path: Path) -> None:
    from mlpack.vocabulary import EnvSpec

    lock, config = example("training", tmp_path)
    own = EnvSpec(name="HOME", default="/app/outputs/home", secret=False)
    spec = plan(dataclasses.replace(lock, env=(*lock.env, own)), config)
    assert [v for k, v in spec.env if k == "HOME"] == ["/app/outputs/home"]


def test_secrets_are_declared_by_name_never_by_value(tmp_path: Path) -> None:
    lock, config = example("training", tmp_path)
    spec = plan(lock, config)
    assert spec.secret_env == ("WANDB_API_KEY",)
    assert "WANDB_API_KEY" not in dict(spec.env)


def test_a_lock_without_debian_pins_is_refused_and_base_packages_need_no_step(
    tmp_path: Path,
) -> None:
    lock, config = example("training", tmp_path)
    unpinned = dataclasses.replace(lock, system_packages=(SystemPackagePin(name="libgomp1"),))
    with pytest.raises(BuildError, match="without pinned versions: libgomp1") as info:
        plan(unpinned, config)
    assert "mlpack lock" in info.value.hint
    in_base = SystemPackagePin(name="python3", version="3.11.2-1+b1", architecture="amd64")
    spec = plan(dataclasses.replace(lock, system_packages=(in_base,)), config)
    assert not any(isinstance(s, SystemStep) for s in spec.steps)


def test_inference_plan_exposes_the_port_and_serves_by_default(tmp_path: Path) -> None:
    lock, config = example("inference", tmp_path)
    spec = plan(lock, config)
    assert spec.ports == (8000,)
    assert spec.cmd[0] == "uvicorn"
    assert not any(isinstance(s, SystemStep) for s in spec.steps)


def test_heavy_wheels_get_their_own_layers_before_the_rest(tmp_path: Path) -> None:
    lock, config = example("training", tmp_path)
    spec = plan(with_packages(lock, "torch", "nvidia-cublas-cu12", "nvidia-cudnn-cu12"), config)
    names = [s.name for s in spec.steps if isinstance(s, WheelStep)]
    assert names == ["torch", "nvidia", "packages"]
    nvidia = next(s for s in spec.steps if s.name == "nvidia")
    assert isinstance(nvidia, WheelStep)
    assert nvidia.role == "heavy"
    assert [w.name for w in nvidia.wheels] == ["nvidia-cublas-cu12", "nvidia-cudnn-cu12"]


def test_a_new_small_dependency_changes_only_the_packages_key(tmp_path: Path) -> None:
    lock, config = example("training", tmp_path)
    before = plan(with_packages(lock, "torch"), config)
    after = plan(with_packages(lock, "torch", "tqdm"), config)
    old = {s.name: s.key() for s in before.steps}
    new = {s.name: s.key() for s in after.steps}
    changed = {k for k in old if old[k] != new[k]}
    assert changed == {"packages"}


def test_plan_is_pure(tmp_path: Path) -> None:
    lock, config = example("inference", tmp_path)
    assert plan(lock, config) == plan(lock, config)


def test_source_builds_are_refused_with_the_package_named(tmp_path: Path) -> None:
    lock, config = example("training", tmp_path)
    sdist = LockedPackage(name="oldpkg", version="0.1", build="image")
    with pytest.raises(BuildError, match="oldpkg"):
        plan(dataclasses.replace(lock, packages=(*lock.packages, sdist)), config)


def test_a_pin_without_a_wheel_for_the_target_is_an_error(tmp_path: Path) -> None:
    lock, config = example("training", tmp_path)
    odd = LockedPackage(
        name="winonly",
        version="1.0",
        files=(LockedFile(name="winonly-1.0-cp311-cp311-win_amd64.whl", sha256="a" * 64),),
    )
    with pytest.raises(BuildError, match="winonly"):
        plan(dataclasses.replace(lock, packages=(*lock.packages, odd)), config)


def test_a_file_output_is_no_folder_and_no_volume_in_the_image(tmp_path: Path) -> None:
    """``model.pkl`` beside the code is mounted as a file at run time: a folder or a volume at
    its path (an engine makes one for a volume) would stop the script from writing it.
    """
    lock, config = example("training", tmp_path)
    config = dataclasses.replace(config, outputs=("outputs", "model.pkl"))
    spec = plan(lock, config)
    code = spec.steps[-1]
    assert isinstance(code, CodeStep)
    assert code.writable_dirs == ("outputs",)
    assert "/model.pkl" in code.excludes  # a stale local copy stays out of the image
    assert "/app/model.pkl" not in spec.volumes
    assert "/app/outputs" in spec.volumes
